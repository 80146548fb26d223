"""Layout rules: every Lib file is listed in the Slicer module CMake; the Lib imports no Qt or Slicer app."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "INRCardiacRegistration" / "INRCardiacRegistrationLib"
MRML_BRIDGES = {"mrml_bridge.py"}  # the only Lib files allowed to import slicer (MRML classes)


def test_module_cmake_lists_every_lib_file():
    cmake = (ROOT / "INRCardiacRegistration" / "CMakeLists.txt").read_text()
    listed = set(re.findall(r"\$\{MODULE_NAME\}Lib/([\w/]+\.py)", cmake))
    present = {p.relative_to(LIB).as_posix() for p in LIB.rglob("*.py")}
    assert present - listed == set(), "add these to INRCardiacRegistration/CMakeLists.txt"
    assert listed - present == set(), "these are listed but missing"


def test_lib_never_imports_qt_or_slicer_app():
    for path in LIB.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in ("qt", "ctk", "PythonQt"), f"{path.name} imports {name}"
                if path.name not in MRML_BRIDGES:
                    assert top != "slicer", f"{path.name} imports {name}"


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
