"""Acceptance of the Lib's layers (``import_rules``): the real tree keeps them, and each rule catches a violation
planted in a copy of the tree."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from helpers import LIB
from import_rules import import_graph, violations


def test_the_lib_keeps_its_layers():
    assert violations(LIB) == []


def test_every_lib_module_sits_in_a_layer():
    from import_rules import LAYERS

    outside = [module for module in import_graph(LIB) if module and module.split(".")[0] not in LAYERS]
    assert outside == []


@pytest.fixture
def copy_of_lib(tmp_path):
    target = tmp_path / LIB.name
    shutil.copytree(LIB, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _plant(lib, module: str, line: str, at_top: bool = True) -> None:
    path = lib / (module.replace(".", "/") + ".py")
    text = path.read_text(encoding="utf-8")
    marker = "from __future__ import annotations\n"
    if at_top and marker in text:
        text = text.replace(marker, marker + line + "\n", 1)
    else:
        text += f"\n\ndef _planted():\n    {line}\n"
    path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("module, line, expected", [
    ("core.geometry", "import torch", "core.geometry reaches torch: core.geometry -> torch"),
    ("cycle.run_folder", "from ..engine.siren import Siren", "cycle.run_folder reaches torch: cycle.run_folder -> "
                                                             "engine.siren -> torch"),
    ("mrml.bridge", "from ..engine import devices", "mrml.bridge reaches torch"),
    ("cycle.inputs", "import slicer", "cycle.inputs imports slicer (only mrml/ imports slicer)"),
    ("engine.config", "from ..cli.main import main", "engine.config imports cli.main (nothing below cli/"),
    ("core.volume", "from ..cycle.request import RunRequest", "core.volume imports cycle.request (core/ is layer 0"),
    ("cohort.manifest", "from ..mrml import bridge", "cohort.manifest imports mrml.bridge (cohort/ is layer 4, mrml/ "
                                                     "layer 4"),
    ("phantom.evaluation", "import qt", "phantom.evaluation imports qt"),
    ("core.geometry", "from .volume import Volume", "import cycle: core.geometry -> core.volume -> core.geometry"),
])
def test_a_planted_violation_is_found(copy_of_lib, module, line, expected):
    """Each rule can fail: one forbidden import planted in a copy of the Lib (inside a function, where a lazy import
    would hide from an import-time check) is reported, and every report is about the planted import (torch reached
    through it is reported for each module that imports the planted one, with the chain)."""
    _plant(copy_of_lib, module, line, at_top=False)  # the copy had none: test_the_lib_keeps_its_layers
    found = violations(copy_of_lib)
    assert any(expected in text for text in found), found
    assert all(module in text for text in found), found


def test_slicer_app_in_code_is_found_but_not_in_a_docstring(copy_of_lib):
    _plant(copy_of_lib, "mrml.bridge", "return slicer.app.layoutManager()", at_top=False)
    assert violations(copy_of_lib) == ["mrml.bridge uses slicer.app (no Qt or slicer.app in the Lib)"]


_BLOCK_TORCH = """
import importlib.abc, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked for this check")
sys.meta_path.insert(0, _NoTorch())
"""


@pytest.mark.slow
def test_everything_but_the_engine_imports_without_torch():
    """The package stays importable without torch for everything but the engine (and the modules that train or
    evaluate networks); ``mrml`` needs slicer and is left out where slicer-core is missing."""
    needs_torch = [module for module in import_graph(LIB)
                   if module.startswith("engine.") and module != "engine.config"]
    needs_torch += ["cycle.driver", "phantom.evaluation", "phantom.synthetic_pair", "function.volumes",
                    "function.cardiac_function"]
    import importlib.util

    has_slicer = importlib.util.find_spec("slicer") is not None
    modules = [module for module in import_graph(LIB) if module and module not in needs_torch
               and module != "cli.__main__" and (has_slicer or not module.startswith("mrml"))]
    code = _BLOCK_TORCH + "".join(f"import INRCardiacRegistrationLib.{m}\n" for m in modules) + (
        "assert 'torch' not in sys.modules\n"
        "from INRCardiacRegistrationLib.cli.main import build_parser\nbuild_parser()\n"
        "assert 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
