"""The Slicer module file keeps the contract of Slicer's scripted-module template, read from its source (AST; no
Qt or Slicer application can run here). Each rule names the Slicer v5.10.0 source it follows:

- the Logic opens no dialog (it raises typed errors or takes callbacks; the Widget asks): template
  Utilities/Templates/Modules/Scripted/TemplateKey.py keeps GUI out of the Logic so it runs from the console;
- ``process`` returns one type, the running registration (``wait()`` gives the result nodes);
- TotalSegmentator's installation is not preceded by a question of ours: qSlicerExtensionsManagerModel.cxx
  (installExtensionFromServer, lines 1733-1735) asks "Do you want to install '%1' now?" itself, and asks to
  restart (lines 1777-1782);
- Reload re-reads the Lib: util.py reloadScriptedModule (lines 1398-1463) re-executes only the module file;
- no ``sliceWidget("Red")``: qMRMLLayoutManager.cxx (lines 849-857) returns None for a view the layout lacks;
- the polling timer stops before it shows an error, so an error is shown once;
- the self-test skips (unittest.SkipTest, which testing.py runUnitTest counts as success) instead of installing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "INRCardiacRegistration" / "INRCardiacRegistration.py"
DIALOGS = {"confirmOkCancelDisplay", "confirmYesNoDisplay", "errorDisplay", "infoDisplay", "warningDisplay",
           "messageBox", "tryWithErrorDisplay", "QInputDialog", "QMessageBox", "QFileDialog", "ctkMessageBox"}


def _classes(tree) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _methods(cls: ast.ClassDef) -> dict[str, ast.FunctionDef]:
    return {node.name: node for node in cls.body if isinstance(node, ast.FunctionDef)}


def _names(node) -> set[str]:
    """Every attribute and name used under ``node``."""
    return {n.attr if isinstance(n, ast.Attribute) else n.id for n in ast.walk(node)
            if isinstance(n, ast.Attribute | ast.Name)}


def dialogs_in(node) -> set[str]:
    return _names(node) & DIALOGS


@pytest.fixture(scope="module")
def tree():
    return ast.parse(MODULE.read_text(encoding="utf-8"))


def test_the_logic_opens_no_dialog(tree):
    logic = _classes(tree)["INRCardiacRegistrationLogic"]
    assert dialogs_in(logic) == set()
    errors = {"DependenciesMissing", "TotalSegmentatorNotInstalled", "TotalSegmentatorLicenceNeeded"}
    assert errors <= set(_classes(tree)) and errors <= _names(logic)


def test_the_dialog_check_catches_a_planted_dialog():
    planted = ast.parse("class Logic:\n    def f(self):\n        if not slicer.util.confirmOkCancelDisplay('x'):\n"
                        "            return\n")
    assert dialogs_in(planted) == {"confirmOkCancelDisplay"}


def test_process_returns_the_running_registration_only(tree):
    methods = _methods(_classes(tree)["INRCardiacRegistrationLogic"])
    returns = [node for node in ast.walk(methods["process"]) if isinstance(node, ast.Return)]
    assert [ast.unparse(node.value) for node in returns] == ["run"]
    assert "waitForCompletion" not in _names(methods["process"]) | {a.arg for a in methods["process"].args.args}
    (only,) = [node for node in ast.walk(methods["processFromParameterNode"]) if isinstance(node, ast.Return)]
    assert ast.unparse(only.value).startswith("self.process(")


def test_totalsegmentator_install_asks_only_through_the_extensions_manager(tree):
    on_segment = _methods(_classes(tree)["INRCardiacRegistrationWidget"])["onTotalSegmentator"]
    handler = next(h for h in ast.walk(on_segment) if isinstance(h, ast.ExceptHandler)
                   and ast.unparse(h.type) == "TotalSegmentatorNotInstalled")
    assert "installExtensionFromServer" in _names(handler) and dialogs_in(handler) == set()


def test_reload_forgets_the_lib_before_slicer_reloads_the_module(tree):
    on_reload = _methods(_classes(tree)["INRCardiacRegistrationWidget"])["onReload"]
    calls = [ast.unparse(node.func) for node in ast.walk(on_reload) if isinstance(node, ast.Call)]
    assert calls.index("INRCardiacRegistrationLib.forget_loaded_modules") < \
        calls.index("ScriptedLoadableModuleWidget.onReload")


def test_no_view_is_assumed_to_exist(tree):
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr == "sliceWidget"]
    assert calls == []


def test_the_timer_stops_before_it_shows_an_error(tree):
    on_timer = _methods(_classes(tree)["INRCardiacRegistrationWidget"])["onTimer"]
    (guard,) = [node for node in ast.walk(on_timer) if isinstance(node, ast.Try)]
    assert "poll" in _names(guard.body[0])
    handler = ast.unparse(guard.handlers[0])
    assert handler.index("self.timer.stop()") < handler.index("errorDisplay")


def test_the_self_test_skips_instead_of_installing(tree):
    test_class = _classes(tree)["INRCardiacRegistrationTest"]
    assert not _names(test_class) & {"installDependencies", "installTorch", "pip_install", "ensureDependencies"}
    end_to_end = _methods(test_class)["test_tiny_phantom_end_to_end"]
    assert any(isinstance(node, ast.Raise) and "SkipTest" in ast.unparse(node) for node in ast.walk(end_to_end))
    run_test = _methods(test_class)["runTest"]
    assert any(isinstance(h, ast.ExceptHandler) and ast.unparse(h.type) == "unittest.SkipTest"
               for h in ast.walk(run_test))
