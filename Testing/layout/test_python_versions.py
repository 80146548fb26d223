"""One supported Python line: the Lib and the module run on Python 3.10 and newer (the README's Quick start), so
also on the Python 3.12 of 3D Slicer 5.10, the oldest Slicer supported (Slicer 5.8 and older ship Python 3.9).

``vermin`` (a well-kept checker of the oldest Python a file needs: syntax, standard-library modules, functions
and keyword arguments) must find nothing that needs more than 3.10, and no file may import a standard-library
module removed in Python 3.12 or 3.13 (PEP 594 and PEP 632; the Python that runs these tests may still have
them). Each check is shown failing on planted examples."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE = ROOT / "INRCardiacRegistration"
OLDEST_PYTHON = "3.10"
# removed in 3.12 (What's New in Python 3.12: distutils, imp, asynchat, asyncore, smtpd) and in 3.13 (PEP 594)
REMOVED_MODULES = {
    "distutils", "imp", "asynchat", "asyncore", "smtpd",
    "aifc", "audioop", "cgi", "cgitb", "chunk", "crypt", "imghdr", "lib2to3", "mailcap", "msilib", "nis", "nntplib",
    "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau", "telnetlib", "uu", "xdrlib",
}

pytest.importorskip("vermin", reason="vermin is a test requirement (pip install -e '.[test]')")


def vermin(*paths: Path) -> subprocess.CompletedProcess:
    """vermin's verdict on ``paths`` for Python >= OLDEST_PYTHON (exit code 0: nothing newer is needed)."""
    argv = [f"-t={OLDEST_PYTHON}-", "--violations", "--no-tips", "--eval-annotations", *map(str, paths)]
    return subprocess.run([sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", *argv],
                          capture_output=True, text=True, timeout=300)


def removed_imports(path: Path) -> list[str]:
    """``file:line module`` for every import of a module in :data:`REMOVED_MODULES`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
        found += [f"{path.name}:{node.lineno} {name}" for name in names if name.split(".")[0] in REMOVED_MODULES]
    return found


def test_the_code_needs_nothing_newer_than_python_3_10():
    result = vermin(CODE)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(rf"Minimum required versions: {re.escape(OLDEST_PYTHON)}\b", result.stdout), result.stdout


def test_no_module_removed_from_the_standard_library_is_imported():
    found = [hit for path in sorted(CODE.rglob("*.py")) for hit in removed_imports(path)]
    assert found == []


PLANTED = {
    "batched.py": "import itertools\n\n\ndef pairs(xs):\n    return list(itertools.batched(xs, 2))\n",  # 3.12
    "type_alias.py": "type Point = tuple[float, float]\n",  # 3.12 syntax
    "exception_group.py": "try:\n    pass\nexcept* ValueError:\n    pass\n",  # 3.11 syntax
    "tomllib_import.py": "import tomllib\n",  # 3.11 module
}


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_the_version_check_fails_on_planted_examples(tmp_path, name):
    planted = tmp_path / name
    planted.write_text(PLANTED[name], encoding="utf-8")
    result = vermin(planted)
    assert result.returncode != 0 and "Target versions not met" in result.stdout, result.stdout


def test_the_removed_module_check_fails_on_a_planted_example(tmp_path):
    planted = tmp_path / "old.py"
    planted.write_text("import imp\nfrom distutils.version import LooseVersion\nfrom . import cgi\n", encoding="utf-8")
    assert removed_imports(planted) == ["old.py:1 imp", "old.py:2 distutils.version"]


def test_the_supported_lines_are_stated_everywhere():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'requires-python = ">={OLDEST_PYTHON}"' in pyproject
    assert "find_package(Slicer 5.10 REQUIRED)" in (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "Slicer 5.10" in readme and f"Python {OLDEST_PYTHON}" in readme
