"""Packaging: every Lib file is listed in the Slicer module CMake and lands in the wheel; the extension's metadata
and icons. (The import rules between the Lib's layers are in ``test_import_rules.py``.)"""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "INRCardiacRegistration" / "INRCardiacRegistrationLib"


def test_module_cmake_lists_every_lib_file():
    cmake = (ROOT / "INRCardiacRegistration" / "CMakeLists.txt").read_text()
    listed = set(re.findall(r"\$\{MODULE_NAME\}Lib/([\w/]+\.py)", cmake))
    present = {p.relative_to(LIB).as_posix() for p in LIB.rglob("*.py")}
    assert present - listed == set(), "add these to INRCardiacRegistration/CMakeLists.txt"
    assert listed - present == set(), "these are listed but missing"


def test_a_built_wheel_holds_every_lib_module(tmp_path):
    """Packaging finds every subpackage: a wheel built from the sources (setuptools' own backend, as pip would call
    it) holds every Lib module, the console script and nothing from the tests."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(LIB, source / "INRCardiacRegistration" / LIB.name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    code = "import sys, setuptools.build_meta as b; print(b.build_wheel(sys.argv[1]))"
    result = subprocess.run([sys.executable, "-c", code, str(out)], cwd=source, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    wheel = out / result.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    modules = {f"{LIB.name}/{p.relative_to(LIB).as_posix()}" for p in LIB.rglob("*.py")}
    assert modules - names == set(), "modules missing from the wheel"
    assert {n for n in names if n.endswith(".py")} == modules
    assert "inr-cardiac = INRCardiacRegistrationLib.cli.main:main" in entry_points


def test_resources_listed_in_cmake_exist():
    cmake = (ROOT / "INRCardiacRegistration" / "CMakeLists.txt").read_text()
    block = cmake.split("set(MODULE_RESOURCE_FILES", 1)[1].split(")", 1)[0]
    for entry in block.split():
        assert (ROOT / "Resources" / entry.replace("${MODULE_NAME}", "INRCardiacRegistration")).exists(), entry


def test_extension_metadata_and_icons():
    """The extension CMake has the metadata the Extensions Index needs; the icons are real 128x128 images."""
    import matplotlib.image

    cmake = (ROOT / "CMakeLists.txt").read_text()
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL"):
        assert re.search(rf'set\({key} "[^"]+"\)', cmake), key
    assert re.search(r'set\(EXTENSION_CATEGORY "Registration"\)', cmake)
    assert "PyTorch" in re.search(r'set\(EXTENSION_DEPENDS "([^"]*)"\)', cmake).group(1).split()
    module = (ROOT / "INRCardiacRegistration" / "CMakeLists.txt").read_text()
    assert "WITH_GENERIC_TESTS" in module and "slicer_add_python_unittest" in module
    for icon in (ROOT / "INRCardiacRegistration.png", ROOT / "Resources" / "Icons" / "INRCardiacRegistration.png"):
        image = matplotlib.image.imread(icon)
        assert image.shape[:2] == (128, 128), icon
        assert image[..., :3].std() > 0.05, f"{icon} looks like a flat placeholder"
