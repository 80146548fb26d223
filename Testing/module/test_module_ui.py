"""The Slicer module file against its Qt Designer ``.ui`` file, without Slicer: the module is read as Python source
(AST) and the ``.ui`` as XML, because neither Qt nor ``parameterNodeWrapper`` exists outside Slicer.

- every ``self.ui.NAME`` the module uses is declared in ``UI_WIDGET_CLASSES`` and exists in the ``.ui`` with that
  class;
- every ``SlicerParameterName`` in the ``.ui`` is a field of the ``@parameterNodeWrapper`` class, on a widget class
  that Slicer's GUI connectors can bind to the field's type (they match the widget class exactly), and every field
  is bound once;
- the MRML widgets get the scene (``mrmlSceneChanged`` -> ``setMRMLScene``).
"""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "INRCardiacRegistration" / "INRCardiacRegistration.py"
UI = ROOT / "Resources" / "UI" / "INRCardiacRegistration.ui"

# Slicer's parameterNodeWrapper GUI connectors (Base/Python/slicer/parameterNodeWrapper/guiConnectors.py): the
# widget classes each field type can be bound to.
CONNECTOR_WIDGETS = {
    "bool": {"QCheckBox", "QPushButton"},
    "int": {"QSpinBox", "QSlider"},
    "float": {"QDoubleSpinBox", "ctkSliderWidget"},
    "str": {"QLineEdit", "QTextEdit"},
    "enum": {"QComboBox"},
    "path": {"ctkPathLineEdit", "ctkDirectoryButton"},
    "node": {"qMRMLNodeComboBox"},
}
MRML_WIDGETS = {"qMRMLNodeComboBox", "qSlicerMarkupsPlaceWidget", "qMRMLTableView"}


@pytest.fixture(scope="module")
def module_tree():
    return ast.parse(MODULE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def ui_widgets():
    root = ET.parse(UI).getroot()
    widgets = {}
    for element in root.iter("widget"):
        name = element.get("name")
        assert name not in widgets, f"widget name {name} is used twice in the .ui"
        parameter = None
        for prop in element.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                assert prop.get("stdset") == "0", f"{name}: SlicerParameterName must be a dynamic property"
                parameter = prop.findtext("string")
        widgets[name] = (element.get("class"), parameter)
    return widgets


def _enum_classes(tree) -> set[str]:
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)
            and any(isinstance(base, ast.Attribute) and base.attr == "Enum" for base in node.bases)}


def _field_kind(annotation, enums: set[str]) -> str:
    if isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name) \
            and annotation.value.id == "Annotated":
        annotation = annotation.slice.elts[0]
    text = ast.unparse(annotation)
    if text in ("bool", "int", "float", "str"):
        return text
    if text in enums:
        return "enum"
    if text in ("pathlib.Path", "Path"):
        return "path"
    if text.startswith("vtkMRML"):
        return "node"
    raise AssertionError(f"parameter node field type {text} has no known GUI connector")


def _parameter_fields(tree) -> dict[str, str]:
    enums = _enum_classes(tree)
    wrapped = [node for node in tree.body if isinstance(node, ast.ClassDef)
               and any(ast.unparse(d) == "parameterNodeWrapper" for d in node.decorator_list)]
    assert len(wrapped) == 1, "the module needs exactly one @parameterNodeWrapper class"
    return {item.target.id: _field_kind(item.annotation, enums) for item in wrapped[0].body
            if isinstance(item, ast.AnnAssign)}


def _declared_widget_classes(tree) -> dict[str, str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "UI_WIDGET_CLASSES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("UI_WIDGET_CLASSES is missing from the module")


def _used_widgets(tree) -> set[str]:
    """Names X in ``self.ui.X`` / ``widget.ui.X`` anywhere in the module."""
    return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"}


def test_every_widget_the_code_uses_exists_with_its_class(module_tree, ui_widgets):
    declared = _declared_widget_classes(module_tree)
    used = _used_widgets(module_tree)
    assert used, "the module uses no widget at all?"
    assert used <= set(declared), f"widgets used but not declared in UI_WIDGET_CLASSES: {sorted(used - set(declared))}"
    for name, class_name in declared.items():
        assert name in ui_widgets, f"{name} is not in {UI.name}"
        assert ui_widgets[name][0] == class_name, f"{name} is a {ui_widgets[name][0]} in the .ui, the code expects " \
                                                  f"a {class_name}"


def test_every_parameter_name_is_a_field_on_a_widget_that_can_show_it(module_tree, ui_widgets):
    fields = _parameter_fields(module_tree)
    bound: dict[str, str] = {}
    for name, (class_name, parameter) in ui_widgets.items():
        if parameter is None:
            continue
        assert parameter in fields, f"{name}: SlicerParameterName {parameter!r} is not a parameter node field"
        assert parameter not in bound, f"{parameter} is bound to both {bound[parameter]} and {name}"
        kind = fields[parameter]
        assert class_name in CONNECTOR_WIDGETS[kind], \
            f"{name}: a {class_name} cannot show a {kind} field ({parameter}); use one of {CONNECTOR_WIDGETS[kind]}"
        bound[parameter] = name
    assert set(bound) == set(fields), f"parameter node fields without a widget: {sorted(set(fields) - set(bound))}"


def test_mrml_widgets_receive_the_scene(ui_widgets):
    root = ET.parse(UI).getroot()
    connected = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
                 and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    needing = {name for name, (class_name, _) in ui_widgets.items() if class_name in MRML_WIDGETS}
    assert needing and needing <= connected, f"MRML widgets without the scene: {sorted(needing - connected)}"
    assert ui_widgets[root.find("widget").get("name")][0] == "qMRMLWidget"


def test_the_check_can_fail(module_tree, ui_widgets):
    """The checks above catch a renamed widget and a mistyped parameter name."""
    broken = dict(ui_widgets)
    broken["alphaSliderWidget"] = ("QSpinBox", "alpha")  # an int widget for a float field
    with pytest.raises(AssertionError, match="cannot show a float field"):
        test_every_parameter_name_is_a_field_on_a_widget_that_can_show_it(module_tree, broken)
    broken = dict(ui_widgets)
    broken["seedSpinBox"] = ("QSpinBox", "sed")
    with pytest.raises(AssertionError, match="'sed' is not a parameter node field"):
        test_every_parameter_name_is_a_field_on_a_widget_that_can_show_it(module_tree, broken)
    broken = {k: v for k, v in ui_widgets.items() if k != "cancelButton"}
    with pytest.raises(AssertionError, match="cancelButton is not in"):
        test_every_widget_the_code_uses_exists_with_its_class(module_tree, broken)


def _camel_to_snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _registration_parameters(tree) -> dict[str, tuple]:
    """``{config field: (default, (low, high))}`` of the parameter-node fields that are registration settings, with
    the default and the ``WithinRange`` bounds evaluated as the module writes them (against the real Lib)."""
    from INRCardiacRegistrationLib.engine import config

    wrapped = next(node for node in tree.body if isinstance(node, ast.ClassDef)
                   and any(ast.unparse(d) == "parameterNodeWrapper" for d in node.decorator_list))
    namespace = {"PAPER": config.preset("paper"), "field_range": config.field_range, "preset": config.preset,
                 "WithinRange": lambda low, high: (low, high)}
    paper = config.preset("paper")
    found = {}
    for item in wrapped.body:
        field = _camel_to_snake(item.target.id) if isinstance(item, ast.AnnAssign) else None
        if field not in config.field_names() or isinstance(getattr(paper, field), str):
            continue  # text settings (the device) are enums in the GUI
        annotation = item.annotation
        assert isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value) == "Annotated", \
            f"{item.target.id} needs a WithinRange taken from the configuration"
        bounds = eval(ast.unparse(annotation.slice.elts[1]), namespace)  # noqa: S307 (the module's own source)
        found[field] = (eval(ast.unparse(item.value), namespace), bounds)  # noqa: S307
    return found


def test_parameter_node_defaults_and_ranges_are_the_configurations(module_tree):
    """The registration settings of the parameter node default to ``preset("paper")`` and range over what the
    configuration accepts (its ``field_range``), not over a second list of numbers."""
    from INRCardiacRegistrationLib.engine.config import field_range, preset

    found = _registration_parameters(module_tree)
    assert {"alpha", "iterations", "warm_start_iterations", "points", "learning_rate", "regularization_weight",
            "seed"} <= set(found)
    paper = preset("paper")
    for field, (default, bounds) in found.items():
        assert default == getattr(paper, field), f"{field}: default {default} is not the paper's"
        assert bounds == field_range(field), f"{field}: range {bounds} is not the configuration's"


def test_ui_spin_boxes_offer_the_configurations_range(module_tree):
    """The ``.ui`` widgets of those settings start at the paper's value and span the configuration's range (Qt
    Designer files cannot import it, so this test keeps them equal)."""
    from INRCardiacRegistrationLib.engine.config import field_range, preset

    fields = set(_registration_parameters(module_tree))
    paper = preset("paper")
    root = ET.parse(UI).getroot()
    checked = 0
    for element in root.iter("widget"):
        properties = {prop.get("name"): prop for prop in element.findall("property")}
        bound = properties.get("SlicerParameterName")
        field = _camel_to_snake(bound.findtext("string")) if bound is not None else None
        if field not in fields:
            continue
        number = {name: float(prop[0].text) for name, prop in properties.items()
                  if name in ("minimum", "maximum", "value")}
        assert (number["minimum"], number["maximum"]) == field_range(field), element.get("name")
        assert number["value"] == getattr(paper, field), element.get("name")
        checked += 1
    assert checked == len(fields)


def test_preset_choices_are_the_configurations_presets(module_tree):
    from INRCardiacRegistrationLib.engine.config import PRESETS

    preset_enum = next(node for node in module_tree.body if isinstance(node, ast.ClassDef) and node.name == "Preset")
    values = {ast.literal_eval(item.value) for item in preset_enum.body if isinstance(item, ast.Assign)}
    assert values == set(PRESETS)


def test_a_default_or_range_of_its_own_is_found(module_tree):
    """The two checks above fail on a parameter node that lists its own numbers (as it once did: iterations >= 1)."""
    import copy

    for replace, message in ((lambda item: setattr(item, "value", ast.Constant(1500)), "iterations: default 1500"),
                             (lambda item: item.annotation.slice.elts.__setitem__(1, ast.parse(
                                 "WithinRange(1, 100000)", mode="eval").body), "iterations: range \\(1, 100000\\)")):
        tree = copy.deepcopy(module_tree)
        wrapped = next(node for node in tree.body if isinstance(node, ast.ClassDef)
                       and any(ast.unparse(d) == "parameterNodeWrapper" for d in node.decorator_list))
        replace(next(item for item in wrapped.body
                     if isinstance(item, ast.AnnAssign) and item.target.id == "iterations"))
        with pytest.raises(AssertionError, match=message):
            test_parameter_node_defaults_and_ranges_are_the_configurations(tree)
