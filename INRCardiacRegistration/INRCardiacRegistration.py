"""3D Slicer module INRCardiacRegistration (thin): module metadata, parameter node, widget, logic and self-test.

Everything that needs no Qt lives in INRCardiacRegistrationLib: the registration worker (run as a separate
PythonSlicer process so the GUI never blocks), the MRML bridge (inputs out, results in as sequences) and the
run driver (:class:`INRCardiacRegistrationLib.mrml.scene_registration.SceneRegistration`). This file binds them to the
GUI: the ``.ui`` widgets carry ``SlicerParameterName`` properties bound to the parameter node with
``connectParametersToGui``; a QTimer polls the running worker.

As in Slicer's module template, the Logic opens no dialog: it raises the typed errors below (or takes callbacks),
and the Widget asks the user. Needs 3D Slicer 5.10 or later (Python 3.12).
"""

import enum
import logging
import os
import pathlib
import shlex
import shutil
import unittest
from typing import Annotated

import slicer
import vtk
from INRCardiacRegistrationLib.core.vocabulary import RunState
from INRCardiacRegistrationLib.engine.config import field_range, preset, preset_label
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLSegmentationNode, vtkMRMLSequenceNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

CITATION = ("M. M. Lowes, J. J. Pedersen, B. S. Hansen, K. F. Kofoed, M. Sermesant, R. R. Paulsen: 'Implicit Neural "
            "Representations for Registration of Left Ventricle Myocardium During a Cardiac Cycle'.")
PYTHON_REQUIREMENTS = {"scipy": "scipy>=1.10", "matplotlib": "matplotlib>=3.7", "tqdm": "tqdm>=4.60"}
TORCH_REQUIREMENT = ">=2.1"
PAPER = preset("paper")  # the parameter node's defaults

# Every widget this file touches through self.ui, with its class in the .ui file
# (Testing/module/test_module_ui.py checks both against Resources/UI/INRCardiacRegistration.ui).
UI_WIDGET_CLASSES = {
    "ctSequenceSelector": "qMRMLNodeComboBox",
    "useShownVolumeButton": "QPushButton",
    "myocardiumSourceComboBox": "QComboBox",
    "segmentationSequenceSelector": "qMRMLNodeComboBox",
    "referenceSegmentationSelector": "qMRMLNodeComboBox",
    "totalSegmentatorButton": "QPushButton",
    "landmarksSelector": "qMRMLNodeComboBox",
    "landmarksPlaceWidget": "qSlicerMarkupsPlaceWidget",
    "applyButton": "QPushButton",
    "cancelButton": "QPushButton",
    "resumeButton": "QPushButton",
    "progressBar": "QProgressBar",
    "statusLabel": "QLabel",
    "resultsTableView": "qMRMLTableView",
    "showChartsButton": "QPushButton",
    "openRunFolderButton": "QPushButton",
    "loadRunFolderButton": "QPushButton",
    "stabilisingCheckBox": "QCheckBox",
    "followNodeSelector": "qMRMLNodeComboBox",
    "followButton": "QPushButton",
}


#
# What the Logic raises where the Widget has to ask the user
#
class DependenciesMissing(RuntimeError):
    """PyTorch and/or other Python packages are not installed; :meth:`INRCardiacRegistrationLogic.installDependencies`
    installs them (without asking: the caller asked)."""

    def __init__(self, torch, packages):
        self.torch, self.packages = bool(torch), list(packages)
        names = (["PyTorch"] if torch else []) + self.packages
        super().__init__(_("INR Cardiac Registration needs these Python packages: {names}.").format(
            names=", ".join(names)))


class TotalSegmentatorNotInstalled(RuntimeError):
    """The TotalSegmentator extension is not installed (the Extensions Manager installs it, asking itself)."""


class TotalSegmentatorLicenceNeeded(RuntimeError):
    """The myocardium task of TotalSegmentator needs a licence key, and none is set."""


class MyocardiumSource(enum.Enum):
    SegmentationSequence = "segmentation sequence (one per frame)"
    ReferenceSegmentation = "segmentation of the reference frame only"
    TotalSegmentator = "TotalSegmentator (segment every frame)"

    def label(self):
        return self.value


class RegistrationMode(enum.Enum):
    NonSequential = "non-sequential"
    Sequential = "sequential"

    def label(self):
        return {"non-sequential": "reference -> every frame (paper)", "sequential": "frame to frame"}[self.value]


class Preset(enum.Enum):
    Paper = "paper"
    Fast = "fast"
    Ct = "ct"
    CineMri = "cine-mri"

    def label(self):
        return preset_label(self.value)


class Device(enum.Enum):
    Auto = "auto"
    Cpu = "cpu"
    Cuda = "cuda"

    def label(self):
        return {"auto": "automatic (GPU if available)", "cpu": "CPU", "cuda": "GPU (CUDA)"}[self.value]


#
# Module
#
class INRCardiacRegistration(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("INR Cardiac Registration")
        self.parent.categories = [_("Registration")]
        self.parent.dependencies = ["Sequences", "Segmentations", "Markups"]
        self.parent.contributors = ["INRCardiacRegistration developers"]
        self.parent.helpText = _(
            "Tracks the left-ventricle myocardium through a whole cardiac cycle in 4D cardiac CT: deformable "
            "registration of the reference frame to every frame with an implicit neural representation (SIREN) "
            "guided by the myocardium's signed distance field. Results: a transform sequence, the myocardium in "
            "every frame, landmark trajectories and Dice/HD95/TRE per frame. The registration runs in a separate "
            "process; Cancel keeps the finished frames and Resume continues.") + "<br><br>" + _("Method: ") + CITATION
        self.parent.acknowledgementText = _(
            "Method: {citation} SIREN: V. Sitzmann et al., 'Implicit Neural Representations with Periodic Activation "
            "Functions', NeurIPS 2020. Segmentation: TotalSegmentator (J. Wasserthal et al.), when installed."
        ).format(citation=CITATION)
        slicer.app.connect("startupCompleted()", onStartupCompleted)


def onStartupCompleted():
    registerSceneObserver()  # first: it must not depend on the sample data's registration
    try:
        registerSampleData()
    except Exception:  # noqa: BLE001 - a missing icon must not break the module
        logging.exception("INRCardiacRegistration: could not register the phantom as sample data")


def registerSceneObserver():
    """After each scene load, the grids of this module's transform sequences get linear interpolation back (Slicer
    stores no interpolation mode and reads grids as cubic: vtkITKTransformConverter.h, v5.10.0)."""

    def onEndImport(caller, event):
        from INRCardiacRegistrationLib.mrml.bridge import restore_linear_interpolation

        restore_linear_interpolation(slicer.mrmlScene)

    slicer.mrmlScene.AddObserver(slicer.mrmlScene.EndImportEvent, onEndImport)


def moduleResource(relativePath):
    """A file of Resources/: next to the module file in a built extension, at the repository root when the source
    folder is used directly as an additional module path."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(here, "Resources", relativePath), os.path.join(here, "..", "Resources",
                                                                                  relativePath)):
        if os.path.exists(candidate):
            return os.path.normpath(candidate)
    raise FileNotFoundError(f"INRCardiacRegistration resource {relativePath} not found next to {here}")


def registerSampleData():
    """The synthetic beating-heart phantom as sample data, generated on this computer (nothing is downloaded)."""
    try:
        import SampleData
    except ImportError:
        return
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="INR Cardiac Registration",
        sampleName="INRCardiacPhantom",
        thumbnailFileName=moduleResource("Icons/INRCardiacRegistration.png"),
        uris=["local:phantom"], fileNames=["INRCardiacPhantom"], nodeNames=["INRCardiacPhantom"],
        customDownloader=lambda source=None: INRCardiacRegistrationLogic().loadPhantom(),
    )


#
# Parameter node
#
@parameterNodeWrapper
class INRCardiacRegistrationParameterNode:
    # inputs
    ctSequence: vtkMRMLSequenceNode
    referenceFrame: Annotated[int, WithinRange(0, 999)] = 0
    myocardiumSource: MyocardiumSource = MyocardiumSource.SegmentationSequence
    segmentationSequence: vtkMRMLSequenceNode
    referenceSegmentation: vtkMRMLSegmentationNode
    myocardiumSegment: str = "LV myocardium"
    heartSegments: str = ""  # comma-separated segment names forming the heart mask with the myocardium
    bloodPoolSegment: str = ""  # the LV cavity segment: the run then measures the cardiac function
    # landmarks
    landmarks: vtkMRMLMarkupsFiducialNode
    annotatedLandmarks: vtkMRMLSequenceNode
    # an expert segmentation of one frame, for scoring only (Dice, HD95 of that frame; never in the loss)
    evaluationSegmentation: vtkMRMLSegmentationNode
    evaluationFrame: Annotated[int, WithinRange(0, 999)] = 0
    # registration
    # defaults and ranges are the configuration's own (Testing/module/test_module_ui.py checks them); decimals and
    # steps are set in the .ui
    mode: RegistrationMode = RegistrationMode.NonSequential
    alpha: Annotated[float, WithinRange(*field_range("alpha"))] = PAPER.alpha
    preset: Preset = Preset.Paper
    device: Device = Device.Auto
    overridePreset: bool = False
    iterations: Annotated[int, WithinRange(*field_range("iterations"))] = PAPER.iterations
    warmStartIterations: Annotated[int, WithinRange(*field_range("warm_start_iterations"))] = \
        PAPER.warm_start_iterations
    points: Annotated[int, WithinRange(*field_range("points"))] = PAPER.points
    learningRate: Annotated[float, WithinRange(*field_range("learning_rate"))] = PAPER.learning_rate
    regularizationWeight: Annotated[float, WithinRange(*field_range("regularization_weight"))] = \
        PAPER.regularization_weight
    seed: Annotated[int, WithinRange(*field_range("seed"))] = PAPER.seed
    extraOptions: str = ""
    # outputs
    outputDirectory: pathlib.Path
    runName: str = ""
    stabilisingTransforms: bool = False  # also the sequence that stabilises each frame onto the reference


#
# Widget
#
class INRCardiacRegistrationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.run = None
        self.timer = None
        self.segmenting = False  # TotalSegmentator is running (in this thread, events pumped by its log lines)
        self.cancelRequested = False
        self.loadedNodes = None  # the results of a run folder opened with "Load run folder..."

    def setup(self):
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(moduleResource("UI/INRCardiacRegistration.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # the widgets bound to the parameter node, by SlicerParameterName (connectParametersToGui returns the tag
        # that disconnectGui needs)
        self.parameterWidgets = {w.property("SlicerParameterName"): w for w in uiWidget.findChildren(qt.QWidget)
                                 if w.property("SlicerParameterName")}
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = INRCardiacRegistrationLogic()

        self.timer = qt.QTimer()
        self.timer.setInterval(500)
        self.timer.connect("timeout()", self.onTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.useShownVolumeButton.connect("clicked(bool)", self.onUseShownVolume)
        self.ui.totalSegmentatorButton.connect("clicked(bool)", self.onTotalSegmentator)
        self.ui.landmarksSelector.connect("currentNodeChanged(vtkMRMLNode*)",
                                          self.ui.landmarksPlaceWidget.setCurrentNode)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.resumeButton.connect("clicked(bool)", self.onResume)
        self.ui.showChartsButton.connect("clicked(bool)", self.onShowCharts)
        self.ui.openRunFolderButton.connect("clicked(bool)", self.onOpenRunFolder)
        self.ui.loadRunFolderButton.connect("clicked(bool)", self.onLoadRunFolder)
        self.ui.followButton.connect("clicked(bool)", self.onFollow)
        self.initializeParameterNode()
        self.updateButtons()

    def cleanup(self):
        if self.run is not None and self.run.running:
            self.run.cancel()  # finished frames stay in the run folder; Resume continues
        if self.timer is not None:
            self.timer.stop()
        self.removeObservers()

    def onReload(self):
        """Reload re-reads the Lib too: Slicer's reloadScriptedModule re-executes only this file
        (Base/Python/slicer/util.py, v5.10.0), and the Lib's modules would stay cached in sys.modules."""
        import INRCardiacRegistrationLib

        INRCardiacRegistrationLib.forget_loaded_modules()
        ScriptedLoadableModuleWidget.onReload(self)

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)

    def onSceneStartClose(self, caller, event):
        if self.segmenting:  # TotalSegmentator stops before its next frame
            self.cancelRequested = True
        if self.run is not None:  # the run cancels itself and writes no node of the closing scene
            self.run.detach()
            self.timer.stop()
            self.showStatus(_("Scene closed: the run was stopped; its finished frames are in {folder}.").format(
                folder=self.run.run.root))
            self.run = None
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.ctSequence:
            self._parameterNode.ctSequence = self.logic.shownSequence()
        if str(self._parameterNode.outputDirectory) in ("", "."):
            self._parameterNode.outputDirectory = self.logic.defaultOutputDirectory()

    def setParameterNode(self, parameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectParametersToGui(self.parameterWidgets)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
            self.updateButtons()

    def updateButtons(self, caller=None, event=None):
        p = self._parameterNode
        running = self.run is not None and self.run.running
        busy = running or self.segmenting
        source = p.myocardiumSource if p else None
        self.ui.segmentationSequenceSelector.enabled = source == MyocardiumSource.SegmentationSequence
        self.ui.referenceSegmentationSelector.enabled = source == MyocardiumSource.ReferenceSegmentation
        self.ui.totalSegmentatorButton.enabled = bool(p and p.ctSequence) and not busy
        self.ui.applyButton.enabled = bool(p and p.ctSequence) and not busy
        self.ui.cancelButton.enabled = busy
        self.ui.resumeButton.enabled = not busy and self.run is not None and self.run.progress.state in (
            RunState.CANCELLED, RunState.FAILED)
        self.ui.followButton.enabled = self.resultNodes() is not None
        self.ui.loadRunFolderButton.enabled = not busy

    # --- actions ---------------------------------------------------------------------------------------
    def onUseShownVolume(self):
        with slicer.util.tryWithErrorDisplay(_("Could not find the sequence of the shown volume."), waitCursor=True):
            sequence = self.logic.shownSequence()
            if sequence is None:
                raise ValueError(_("No slice view shows a volume that a sequence browser plays."))
            self._parameterNode.ctSequence = sequence

    def onTotalSegmentator(self):
        from INRCardiacRegistrationLib.mrml.totalsegmentator_frames import SegmentationCancelled

        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("TotalSegmentator failed.")):  # no wait cursor over its dialogs
            try:
                tsLogic = self.logic.totalSegmentatorLogic()
            except TotalSegmentatorNotInstalled:
                # The Extensions Manager asks "Do you want to install...?" and to restart itself
                # (qSlicerExtensionsManagerModel.cxx, v5.10.0, installExtensionFromServer): no question of ours first.
                if slicer.app.extensionsManagerModel().installExtensionFromServer("TotalSegmentator"):
                    # also true when it was installed before and Slicer has not been restarted since
                    self.showStatus(_("TotalSegmentator is installed: restart Slicer to use it."))
                else:
                    self.showStatus(_("TotalSegmentator is not installed; you can also use your own segmentations."))
                return
            tsLogic.setupPythonRequirements()  # the extension asks before it installs its packages
            self.segmenting, self.cancelRequested = True, False
            self.updateButtons()
            try:
                result = self.logic.segmentWithTotalSegmentator(
                    tsLogic, p.ctSequence, p.referenceFrame, cpu=p.device == Device.Cpu,
                    onFrame=lambda t, n: self.showStatus(_("TotalSegmentator: frame {t} of {n}").format(t=t + 1, n=n)),
                    onLog=self.onSegmentationLog, cancelled=lambda: self.cancelRequested)
            except TotalSegmentatorLicenceNeeded as needed:
                self.askTotalSegmentatorLicence(tsLogic, str(needed))
                return
            except SegmentationCancelled as cancelled:
                self.showStatus(str(cancelled))
                return
            finally:
                self.segmenting = False
                self.updateButtons()
            p.segmentationSequence = result.sequence
            p.myocardiumSource = MyocardiumSource.SegmentationSequence
            p.myocardiumSegment = result.myocardium_segment
            p.heartSegments = ", ".join(result.heart_segments)
            p.bloodPoolSegment = result.blood_pool_segment
            self.showStatus(_("TotalSegmentator segmented every frame."))

    def onSegmentationLog(self, text):
        """Each line TotalSegmentator prints: shown, and the GUI's events processed (Cancel, repaint)."""
        import qt

        if text.strip():
            self.ui.statusLabel.text = text.strip()[-120:]
        slicer.app.processEvents(qt.QEventLoop.AllEvents)

    def askTotalSegmentatorLicence(self, tsLogic, reason):
        import qt

        key = qt.QInputDialog.getText(slicer.util.mainWindow(), _("TotalSegmentator licence"), reason + " " + _(
            "Licence key (free for non-commercial use, from https://backend.totalsegmentator.com/license-academic/):"))
        if key:
            try:
                self.logic.setTotalSegmentatorLicence(tsLogic, key)  # the extension then asks to restart Slicer
            except ValueError as error:  # 'Restart was cancelled.' (the key is saved) or an invalid key
                self.showStatus(_("TotalSegmentator: {error} Segment again after restarting Slicer.").format(
                    error=error))

    def onApply(self):
        with slicer.util.tryWithErrorDisplay(_("Could not start the registration.")):
            missing = self.logic.missingDependencies()
            if missing is not None:
                if not slicer.util.confirmOkCancelDisplay(str(missing) + " " + _("Install them now?"),
                                                          windowTitle=_("Install Python packages")):
                    return
                with slicer.util.WaitCursor():
                    self.logic.installDependencies()
            self.run = self.logic.processFromParameterNode(self._parameterNode)
            self.loadedNodes = None  # from now on the results are this run's
            self.ui.progressBar.value = 0
            self.showStatus(self.run.progress.text())
            self.timer.start()
        self.updateButtons()

    def onCancel(self):
        if self.segmenting:
            self.cancelRequested = True
            self.showStatus(_("Cancelling TotalSegmentator after the frame it is segmenting..."))
            return
        if self.run is None:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not cancel the registration."), waitCursor=True):
            self.showStatus(_("Cancelling (the frames already finished are kept)..."))
            self.run.cancel()
            self.onTimer()

    def onResume(self):
        with slicer.util.tryWithErrorDisplay(_("Could not resume the registration."), waitCursor=True):
            self.run.resume()
            self.timer.start()
        self.updateButtons()

    def onTimer(self):
        if self.run is None:
            self.timer.stop()
            return
        try:
            progress = self.run.poll()  # an import that fails ends the run as failed (shown once, below)
            if self.run.nodes is not None and self.ui.resultsTableView.mrmlTableNode() is not self.run.nodes.table:
                self.ui.resultsTableView.setMRMLTableNode(self.run.nodes.table)
        except Exception as error:  # never again from this timer: stop first, then show it once
            self.timer.stop()
            logging.exception("INRCardiacRegistration: polling the run failed")
            slicer.util.errorDisplay(_("Following the registration failed: {error}").format(error=error),
                                     windowTitle=_("INR Cardiac Registration"))
            self.updateButtons()
            return
        self.ui.progressBar.value = int(round(100 * progress.fraction))
        self.showStatus(progress.text())
        if not self.run.running:
            self.timer.stop()
            self.updateButtons()
            message = self.run.error_message()
            if message:
                slicer.util.errorDisplay(message, windowTitle=_("INR Cardiac Registration"))
            elif progress.state == RunState.FINISHED:
                self.logic.showResults(self.run.nodes)
                if progress.warnings:
                    slicer.util.warningDisplay("\n".join(progress.warnings), windowTitle=_("INR Cardiac Registration"))

    def resultNodes(self):
        """The results shown: the run folder loaded last (until a new run starts), else the run of this session."""
        if self.loadedNodes is not None:
            return self.loadedNodes
        return self.run.nodes if self.run is not None else None

    def onShowCharts(self):
        if self.resultNodes() is not None:
            self.logic.showResults(self.resultNodes())

    def onLoadRunFolder(self):
        import qt

        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Run folder (the one with run.json)"))
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not load the run folder."), waitCursor=True):
            self.loadedNodes = self.logic.loadRunFolder(folder)
            self.updateButtons()
            self.logic.showResults(self.loadedNodes)
            self.showStatus(_("Loaded {count} finished frame(s) of {folder}; play the sequence browser.").format(
                count=len(self.loadedNodes.frames), folder=folder))

    def onFollow(self):
        with slicer.util.tryWithErrorDisplay(_("Could not move the node with the heart.")):
            if self.resultNodes() is None:
                raise ValueError(_("Register first, or load a run folder: the transforms come from a run."))
            node = self.ui.followNodeSelector.currentNode()
            self.logic.moveWithMotion(node, self.resultNodes())
            self.showStatus(_("{name} now moves with the heart; play the sequence browser.").format(
                name=node.GetName()))

    def onOpenRunFolder(self):
        import qt

        if self.run is not None:
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(self.run.run.root)))

    def showStatus(self, text):
        self.ui.statusLabel.text = text
        slicer.util.showStatusMessage(text, 3000)


#
# Logic
#
class INRCardiacRegistrationLogic(ScriptedLoadableModuleLogic):
    """Usable without the widget, from the Python console or other modules (see README, "Console API")."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return INRCardiacRegistrationParameterNode(super().getParameterNode())

    @staticmethod
    def libraryVersion():
        import INRCardiacRegistrationLib

        return INRCardiacRegistrationLib.__version__

    # --- dependencies (installed only when the user agrees, never at import time) -----------------------
    @staticmethod
    def missingDependencies():
        """A :class:`DependenciesMissing` naming what is not installed, or None when everything is."""
        import importlib.util

        packages = [req for module, req in PYTHON_REQUIREMENTS.items() if importlib.util.find_spec(module) is None]
        torch = importlib.util.find_spec("torch") is None
        return DependenciesMissing(torch, packages) if torch or packages else None

    def installDependencies(self):
        """Install what :meth:`missingDependencies` names, without asking (the caller asked): PyTorch through the
        PyTorch extension (a CUDA or CPU build chosen for this computer), the other packages with pip."""
        missing = self.missingDependencies()
        if missing is None:
            return
        if missing.torch:
            try:
                import PyTorchUtils
            except ImportError as error:
                raise RuntimeError(_("This module needs PyTorch: install the 'PyTorch' extension from the Extensions "
                                     "Manager, restart Slicer and try again.")) from error
            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                             torchVersionRequirement=TORCH_REQUIREMENT) is None:
                raise RuntimeError(_("PyTorch could not be installed."))
        if missing.packages:
            slicer.util.pip_install(missing.packages)

    # --- inputs -------------------------------------------------------------------------------------------
    @staticmethod
    def shownSequence():
        """The sequence that plays the volume shown in a slice view (Red first; any layout), or None."""
        from INRCardiacRegistrationLib.mrml.bridge import shown_sequence

        return shown_sequence(slicer.mrmlScene)

    @staticmethod
    def totalSegmentatorLogic():
        """The TotalSegmentator extension's logic; :class:`TotalSegmentatorNotInstalled` when it is missing."""
        if not hasattr(slicer.modules, "totalsegmentator"):
            raise TotalSegmentatorNotInstalled(_("The TotalSegmentator extension is not installed."))
        import TotalSegmentator

        return TotalSegmentator.TotalSegmentatorLogic()

    @staticmethod
    def setTotalSegmentatorLicence(tsLogic, key):
        """Store a TotalSegmentator licence key (the extension then asks to restart Slicer)."""
        tsLogic.setLicense(key)

    def segmentWithTotalSegmentator(self, tsLogic, ctSequence, referenceFrame=0, cpu=False, onFrame=None,
                                    onLog=None, cancelled=None):
        """Segment every frame with the TotalSegmentator extension's logic ``tsLogic`` (its Python requirements set
        up). Returns the :class:`FrameSegmentations`; raises :class:`TotalSegmentatorLicenceNeeded` without a licence
        and ``SegmentationCancelled`` when ``cancelled()`` turns True (asked before each frame). ``onLog(line)``
        receives TotalSegmentator's output while a frame runs (process GUI events there)."""
        from INRCardiacRegistrationLib.mrml.bridge import browser_for_sequence
        from INRCardiacRegistrationLib.mrml.totalsegmentator_frames import (
            MYOCARDIUM_TASK,
            license_number,
            segment_frames,
        )

        if ctSequence is None:
            raise ValueError(_("Select the CT sequence first."))
        if not license_number():
            raise TotalSegmentatorLicenceNeeded(_(
                "The TotalSegmentator task '{task}' (heart chambers and myocardium) needs a licence key.").format(
                task=MYOCARDIUM_TASK))
        browser = browser_for_sequence(ctSequence)
        return segment_frames(tsLogic, browser, ctSequence, referenceFrame, fast=False, cpu=cpu, on_frame=onFrame,
                              on_log=onLog, cancelled=cancelled)

    # --- running ----------------------------------------------------------------------------------------
    @staticmethod
    def pythonExecutable():
        """PythonSlicer: the worker runs in its own process with Slicer's Python packages."""
        found = shutil.which("PythonSlicer")
        if found:
            return found
        candidate = os.path.join(slicer.app.slicerHome, "bin", "PythonSlicer" + (".exe" if os.name == "nt" else ""))
        if not os.path.exists(candidate):
            raise RuntimeError(_("PythonSlicer was not found in this Slicer installation."))
        return candidate

    @staticmethod
    def workerBaseEnvironment():
        """The environment Slicer was started with (not the launcher's), for worker processes."""
        return slicer.util.startupEnvironment()

    @staticmethod
    def defaultOutputDirectory():
        return pathlib.Path(slicer.app.cachePath) / "INRCardiacRegistration"

    def process(self, ctSequence, segmentations=None, myocardiumSegment="LV myocardium", heartSegments=None,
                bloodPoolSegment="", landmarks=None, annotatedLandmarks=None, evaluationSegmentations=None,
                referenceFrame=0, mode="non-sequential", alpha=0.8, preset="paper", device="auto", parameters=None,
                extraOptions=None, outputDirectory=None, runName=None, stabilising=False):
        """Start registering the reference frame of ``ctSequence`` to every frame, in a worker process, and return
        the running :class:`~INRCardiacRegistrationLib.mrml.scene_registration.SceneRegistration`: ``poll()`` it
        (the results grow in the scene), ``cancel()``, ``resume()``, or ``wait()`` for the result nodes.

        Args:
            ctSequence: vtkMRMLSequenceNode of the CT frames (scalar volumes).
            segmentations: vtkMRMLSequenceNode of per-frame segmentations, or a vtkMRMLSegmentationNode of the
                reference frame, or ``{frame: vtkMRMLSegmentationNode}`` (with the reference frame); frames without
                one are registered on the image alone.
            myocardiumSegment: name of the LV-myocardium segment; heartSegments: names of further segments of the
                heart mask (sampling region), e.g. ["LV blood pool", "rest of heart"]; bloodPoolSegment: the LV
                cavity segment (optional): the run then also measures the cardiac function (volumes, EF, strain).
            landmarks: vtkMRMLMarkupsFiducialNode on the reference frame; annotatedLandmarks: their expert positions
                in other frames (a markups sequence or ``{frame: markups}``) for the TRE.
            evaluationSegmentations: expert segmentations of other frames (as ``segmentations``, with the same
                myocardium segment), used only to score the run (Dice, HD95 in its table), never in the loss.
            mode, alpha, preset, device: as ``inr-cardiac register``; parameters: further RegistrationConfig fields,
                e.g. ``{"iterations": 500, "learning_rate": 1e-4}``; extraOptions: further options as the command
                line spells them (checked before anything is exported).
            outputDirectory: where run folders are made (default: Slicer's cache folder); runName: the run folder's
                name (default: CT name and time).
            stabilising: also import the transform sequence that stabilises each frame onto the reference (the
                one that moves reference-frame content to each frame is always imported).
        """
        import time

        from INRCardiacRegistrationLib.cycle.request import CycleConfig
        from INRCardiacRegistrationLib.mrml.scene_registration import SceneRegistration

        if ctSequence is None:
            raise ValueError(_("No CT sequence given."))
        if segmentations is not None and not isinstance(segmentations, dict) and segmentations.IsA(
                "vtkMRMLSegmentationNode"):
            segmentations = {int(referenceFrame): segmentations}
        fields = {**(parameters or {}), "alpha": float(alpha), "device": str(device)}
        settings = CycleConfig.from_preset(str(preset), mode=str(mode), reference_frame=int(referenceFrame), **fields)
        name = runName or f"{ctSequence.GetName()}-{time.strftime('%Y%m%d-%H%M%S')}"
        safeName = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        root = pathlib.Path(outputDirectory) if outputDirectory and str(outputDirectory) not in ("", ".") \
            else self.defaultOutputDirectory()
        run = SceneRegistration(root / safeName, scene=slicer.mrmlScene, python=self.pythonExecutable(),
                                env=self.workerBaseEnvironment(), name=name, stabilising=bool(stabilising))
        run.start(ctSequence, segmentations=segmentations, myocardium_segment=myocardiumSegment if segmentations
                  else "", heart_segments=list(heartSegments or []),
                  blood_pool_segment=bloodPoolSegment if segmentations else "", landmarks=landmarks,
                  annotated_landmarks=annotatedLandmarks, evaluation_segmentations=evaluationSegmentations,
                  settings=settings, extra_options=list(extraOptions or []))
        logging.info(f"INRCardiacRegistration: worker started, run folder {run.run.root}")
        return run

    def processFromParameterNode(self, p):
        """:meth:`process` with the choices of the parameter node ``p`` (what the Register button does); returns
        the running registration."""
        if p.myocardiumSource == MyocardiumSource.ReferenceSegmentation:
            segmentations = p.referenceSegmentation
        else:  # a segmentation sequence, given or made by TotalSegmentator
            segmentations = p.segmentationSequence
            if segmentations is None and p.myocardiumSource == MyocardiumSource.TotalSegmentator:
                raise ValueError(_("Press 'Segment all frames with TotalSegmentator' first."))
        parameters = {}
        if p.overridePreset:
            parameters = {"iterations": p.iterations, "warm_start_iterations": p.warmStartIterations,
                          "points": p.points, "learning_rate": p.learningRate,
                          "regularization_weight": p.regularizationWeight, "seed": p.seed}
        heart = [s.strip() for s in p.heartSegments.split(",") if s.strip()]
        evaluation = {p.evaluationFrame: p.evaluationSegmentation} if p.evaluationSegmentation else None
        return self.process(p.ctSequence, segmentations=segmentations, myocardiumSegment=p.myocardiumSegment,
                            heartSegments=heart, bloodPoolSegment=p.bloodPoolSegment.strip(), landmarks=p.landmarks,
                            annotatedLandmarks=p.annotatedLandmarks, evaluationSegmentations=evaluation,
                            referenceFrame=p.referenceFrame, mode=p.mode.value, alpha=p.alpha, preset=p.preset.value,
                            device=p.device.value, parameters=parameters, extraOptions=shlex.split(p.extraOptions),
                            outputDirectory=p.outputDirectory, runName=p.runName or None,
                            stabilising=p.stabilisingTransforms)

    @staticmethod
    def moveWithMotion(node, nodes):
        """Put ``node`` (segmentation, markups, model of the reference frame) under the transform that moves
        reference-frame content to each frame: it follows the heart as the result browser plays."""
        from INRCardiacRegistrationLib.mrml.bridge import move_with_motion

        move_with_motion(node, nodes)

    # --- results ----------------------------------------------------------------------------------------
    @staticmethod
    def loadRunFolder(runDirectory):
        """Open a run folder (command line, cohort, GPU server; finished or in progress) with the CT it was made
        from; returns its result nodes (see :func:`INRCardiacRegistrationLib.mrml.bridge.load_run_folder`)."""
        from INRCardiacRegistrationLib.mrml.bridge import load_run_folder

        cycle, nodes = load_run_folder(runDirectory)
        if cycle is not None:
            slicer.util.setSliceViewerLayers(background=cycle.browser.GetProxyNode(cycle.ct), fit=True)
        return nodes

    @staticmethod
    def showResults(nodes):
        """Show the propagated myocardium, the strain map over the CT (when the function was measured) and the
        volume (else TRE or Dice) chart; the CT's sequence browser steps everything."""
        if nodes is None:
            return
        browser = nodes.browser
        proxy = browser.GetProxyNode(nodes.segmentations) if browser else None
        if proxy is not None and proxy.GetDisplayNode() is None:
            proxy.CreateDefaultDisplayNodes()
        strainMap = nodes.function.get("strain_map")
        strainProxy = browser.GetProxyNode(strainMap) if browser and strainMap else None
        if strainProxy is not None:
            slicer.util.setSliceViewerLayers(foreground=strainProxy, foregroundOpacity=0.6)
        chart = nodes.function.get("volumes") or nodes.charts.get("tre_mm") or nodes.charts.get("dice")
        if chart is not None and slicer.app.layoutManager():
            slicer.modules.plots.logic().ShowChartInLayout(chart)
        if browser is not None:
            slicer.modules.sequences.setToolBarActiveBrowserNode(browser)

    # --- sample data ------------------------------------------------------------------------------------
    def loadPhantom(self, frames=20, spacingMm=1.5, outputDirectory=None):
        """Generate the synthetic phantom (known motion) in a worker process and load it: CT volume sequence,
        segmentation sequence (LV myocardium, LV blood pool, rest of heart) and reference landmarks."""
        import subprocess
        import time

        import qt
        from INRCardiacRegistrationLib.cli.phantom import phantom_command
        from INRCardiacRegistrationLib.cycle.worker_process import worker_environment
        from INRCardiacRegistrationLib.mrml.bridge import load_cycle_files

        folder = pathlib.Path(outputDirectory or pathlib.Path(slicer.app.cachePath) / "INRCardiacPhantom" /
                              f"{frames}f-{spacingMm:g}mm")
        if not (folder / "manifest.json").exists():
            env = worker_environment(self.workerBaseEnvironment())
            command = phantom_command(self.pythonExecutable(), folder, frames=frames, spacing_mm=spacingMm)
            with slicer.util.WaitCursor():
                slicer.util.showStatusMessage(_("Generating the phantom (about a minute)..."))
                process = subprocess.Popen(command, env=env)
                while process.poll() is None:  # Slicer repaints meanwhile; clicks wait (no second generator)
                    slicer.app.processEvents(qt.QEventLoop.ExcludeUserInputEvents)
                    time.sleep(0.05)
            if process.returncode != 0:
                raise subprocess.CalledProcessError(process.returncode, command)
        nodes = load_cycle_files(folder / "ct_4d.nii.gz", labels=folder / "labels_4d.nii.gz",
                                 label_names={1: "LV myocardium", 2: "LV blood pool", 3: "rest of heart"},
                                 landmarks=folder / "landmarks_reference.mrk.json", name="INRCardiacPhantom")
        slicer.util.setSliceViewerLayers(background=nodes.browser.GetProxyNode(nodes.ct), fit=True)
        return nodes


#
# Test (runs inside Slicer only)
#
class INRCardiacRegistrationTest(ScriptedLoadableModuleTest):
    """Slicer's ctest runs each ``test_*`` method through unittest (Base/Python/slicer/testing.py, runUnitTest,
    v5.10.0), where a ``unittest.SkipTest`` counts as skipped; the module's Test button calls :meth:`runTest`
    directly, which shows a skip instead of failing. Nothing is installed by the test."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for test in (self.test_ui_widgets_have_the_classes_the_code_expects, self.test_tiny_phantom_end_to_end):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as skipped:
                self.delayDisplay(f"Skipped {test.__name__}: {skipped}")

    def test_ui_widgets_have_the_classes_the_code_expects(self):
        widget = slicer.modules.inrcardiacregistration.widgetRepresentation().self()
        for name, className in UI_WIDGET_CLASSES.items():
            self.assertEqual(getattr(widget.ui, name).className(), className, name)

    def test_tiny_phantom_end_to_end(self):
        """A 4-frame phantom of 3.5 mm voxels registered with a tiny network on the CPU (seconds); checks every
        result. Skipped when PyTorch or another requirement is not installed."""
        import tempfile

        import numpy as np

        logic = INRCardiacRegistrationLogic()
        missing = logic.missingDependencies()
        if missing is not None:
            raise unittest.SkipTest(f"{missing} Install the PyTorch extension and press Register once; the self-test "
                                    "installs nothing.")
        self.delayDisplay("Generating a tiny phantom")
        folder = pathlib.Path(tempfile.mkdtemp(prefix="INRCardiacTest-"))
        loaded = logic.loadPhantom(frames=4, spacingMm=3.5, outputDirectory=folder / "phantom")
        self.assertEqual(loaded.ct.GetNumberOfDataNodes(), 4)
        self.delayDisplay("Registering (tiny network, CPU)")
        run = logic.process(loaded.ct, segmentations=loaded.segmentations, myocardiumSegment="LV myocardium",
                            heartSegments=["LV blood pool", "rest of heart"], bloodPoolSegment="LV blood pool",
                            landmarks=loaded.landmarks,
                            preset="fast", device="cpu",
                            parameters={"width": 64, "points": 2000, "iterations": 60, "warm_start_iterations": 30,
                                        "omega": 20.0},
                            outputDirectory=folder / "runs", runName="tiny", stabilising=True)
        nodes = run.wait(timeout_s=600, on_progress=lambda progress: slicer.app.processEvents())
        self.assertEqual(nodes.frames, [0, 1, 2, 3])
        self.assertEqual(nodes.moving_transforms.GetNumberOfDataNodes(), 4)
        self.assertEqual(nodes.stabilising_transforms.GetNumberOfDataNodes(), 4)
        self.assertEqual(nodes.segmentations.GetNumberOfDataNodes(), 4)
        self.assertEqual(nodes.table.GetNumberOfRows(), 4)
        self.assertTrue(loaded.browser.IsSynchronizedSequenceNode(nodes.moving_transforms.GetID()))
        dice = [float(nodes.table.GetCellText(r, nodes.table.GetColumnIndex("dice"))) for r in range(4)]
        self.assertGreater(float(np.nanmin(dice)), 0.8)
        logic.moveWithMotion(loaded.landmarks, nodes)
        self.assertIsNotNone(loaded.landmarks.GetParentTransformNode())
        self.assertTrue({"table", "volumes", "strain", "strain_map", "peaks", "bullseye"} <= set(nodes.function))
        logic.showResults(nodes)  # the strain map as the slice views' foreground, the volume chart
        self.delayDisplay("Loading the run folder again, as 'Load run folder...' does")
        again = logic.loadRunFolder(run.run.root)
        self.assertEqual(again.frames, [0, 1, 2, 3])
        self.delayDisplay("Test passed")
