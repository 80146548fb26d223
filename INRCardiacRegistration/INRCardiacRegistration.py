"""3D Slicer module INRCardiacRegistration (thin): module metadata, widget, logic and self-test.

All algorithms live in INRCardiacRegistrationLib (importable without Slicer). The full GUI (inputs,
background worker, results as sequences) is built on top of this skeleton.
"""

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

try:
    from slicer.i18n import tr as _
except ImportError:  # Slicer < 5.4
    def _(text):
        return text


class INRCardiacRegistration(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("INR Cardiac Registration")
        self.parent.categories = [_("Registration")]
        self.parent.dependencies = []
        self.parent.contributors = ["INRCardiacRegistration developers"]
        self.parent.helpText = _(
            "Tracks the left-ventricle myocardium through a cardiac cycle in 4D cardiac CT by deformable "
            "registration with implicit neural representations (SIREN) guided by the myocardium's signed "
            "distance field.")
        self.parent.acknowledgementText = _(
            "Method: M. M. Lowes, J. J. Pedersen, B. S. Hansen, K. F. Kofoed, M. Sermesant, R. R. Paulsen, "
            "'Implicit Neural Representations for Registration of Left Ventricle Myocardium During a Cardiac "
            "Cycle'. SIREN: Sitzmann et al., NeurIPS 2020.")


class INRCardiacRegistrationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/INRCardiacRegistration.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = INRCardiacRegistrationLogic()


class INRCardiacRegistrationLogic(ScriptedLoadableModuleLogic):
    """Usable without the widget (from the Python console or other modules)."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)

    @staticmethod
    def libraryVersion():
        import INRCardiacRegistrationLib

        return INRCardiacRegistrationLib.__version__


class INRCardiacRegistrationTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_library_imports()

    def test_library_imports(self):
        self.delayDisplay("Importing INRCardiacRegistrationLib")
        self.assertTrue(INRCardiacRegistrationLogic.libraryVersion())
        self.delayDisplay("Test passed")
