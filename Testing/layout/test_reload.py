"""The Slicer module's Reload re-reads the Lib: Slicer's ``reloadScriptedModule`` re-executes only the module file
(Base/Python/slicer/util.py, v5.10.0), so the widget first drops the Lib from ``sys.modules``."""

from __future__ import annotations

import importlib
import sys


def test_forget_loaded_modules_makes_the_next_import_read_the_lib_again():
    import INRCardiacRegistrationLib
    from INRCardiacRegistrationLib.core import vocabulary

    before = vocabulary
    snapshot = {name: module for name, module in sys.modules.items() if name.startswith("INRCardiacRegistrationLib")}
    dropped = INRCardiacRegistrationLib.forget_loaded_modules()
    try:
        assert "INRCardiacRegistrationLib" in dropped and "INRCardiacRegistrationLib.core.vocabulary" in dropped
        assert not any(name.startswith("INRCardiacRegistrationLib") for name in sys.modules)
        again = importlib.import_module("INRCardiacRegistrationLib.core.vocabulary")
        assert again is not before and again.RunState is not before.RunState
    finally:  # the other tests keep using the first module objects
        for name in [n for n in sys.modules if n.startswith("INRCardiacRegistrationLib")]:
            del sys.modules[name]
        sys.modules.update(snapshot)
