"""3D Slicer module INRCardiacRegistration (thin): module metadata, parameter node, widget, logic and self-test.

Everything that needs no Qt lives in INRCardiacRegistrationLib: the registration worker (run as a separate
PythonSlicer process so the GUI never blocks), the MRML bridge (inputs out, results in as sequences) and the
run driver (:class:`INRCardiacRegistrationLib.mrml.scene_registration.SceneRegistration`). This file binds them to the
GUI: the ``.ui`` widgets carry ``SlicerParameterName`` properties bound to the parameter node with
``connectParametersToGui``; a QTimer polls the running worker.
"""

import enum
import logging
import os
import pathlib
import shlex
import shutil
from typing import Annotated

import slicer
import vtk
from INRCardiacRegistrationLib.core.vocabulary import RunState
from INRCardiacRegistrationLib.engine.config import field_range, preset, preset_label
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLSegmentationNode, vtkMRMLSequenceNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
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
}


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
        slicer.app.connect("startupCompleted()", registerSampleData)


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
    # landmarks
    landmarks: vtkMRMLMarkupsFiducialNode
    annotatedLandmarks: vtkMRMLSequenceNode
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

    def setup(self):
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(moduleResource("UI/INRCardiacRegistration.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # the widgets bound to the parameter node, by SlicerParameterName (connectParametersToGui returns the tag
        # that disconnectGui needs; connectGui does not return it in Slicer <= 5.8)
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
        self.initializeParameterNode()
        self.updateButtons()

    def cleanup(self):
        if self.run is not None and self.run.running:
            self.run.cancel()  # finished frames stay in the run folder; Resume continues
        if self.timer is not None:
            self.timer.stop()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)

    def onSceneStartClose(self, caller, event):
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
        source = p.myocardiumSource if p else None
        self.ui.segmentationSequenceSelector.enabled = source == MyocardiumSource.SegmentationSequence
        self.ui.referenceSegmentationSelector.enabled = source == MyocardiumSource.ReferenceSegmentation
        self.ui.totalSegmentatorButton.enabled = bool(p and p.ctSequence) and not running
        self.ui.applyButton.enabled = bool(p and p.ctSequence) and not running
        self.ui.cancelButton.enabled = running
        self.ui.resumeButton.enabled = not running and self.run is not None and self.run.progress.state in (
            RunState.CANCELLED, RunState.FAILED)

    # --- actions ---------------------------------------------------------------------------------------
    def onUseShownVolume(self):
        with slicer.util.tryWithErrorDisplay(_("Could not find the sequence of the shown volume."), waitCursor=True):
            sequence = self.logic.shownSequence()
            if sequence is None:
                raise ValueError(_("The volume shown in the red view is not played by a sequence browser."))
            self._parameterNode.ctSequence = sequence

    def onTotalSegmentator(self):
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("TotalSegmentator failed.")):  # no wait cursor over its dialogs
            result = self.logic.segmentWithTotalSegmentator(
                p.ctSequence, p.referenceFrame, cpu=p.device == Device.Cpu,
                onFrame=lambda t, n: self.showStatus(_("TotalSegmentator: frame {t} of {n}").format(t=t + 1, n=n)))
            if result is None:
                return
            p.segmentationSequence = result.sequence
            p.myocardiumSource = MyocardiumSource.SegmentationSequence
            p.myocardiumSegment = result.myocardium_segment
            p.heartSegments = ", ".join(result.heart_segments)
            self.showStatus(_("TotalSegmentator segmented every frame."))

    def onApply(self):
        with slicer.util.tryWithErrorDisplay(_("Could not start the registration.")):
            if not self.logic.ensureDependencies():
                return
            self.run = self.logic.processFromParameterNode(self._parameterNode, waitForCompletion=False)
            self.ui.progressBar.value = 0
            self.showStatus(self.run.progress.text())
            self.timer.start()
        self.updateButtons()

    def onCancel(self):
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
        progress = self.run.poll()
        self.ui.progressBar.value = int(round(100 * progress.fraction))
        self.showStatus(progress.text())
        if self.run.nodes is not None and self.ui.resultsTableView.mrmlTableNode() is not self.run.nodes.table:
            self.ui.resultsTableView.setMRMLTableNode(self.run.nodes.table)
        if not self.run.running:
            self.timer.stop()
            self.updateButtons()
            message = self.run.error_message()
            if message:
                slicer.util.errorDisplay(message, windowTitle=_("INR Cardiac Registration"))
            elif progress.state == RunState.FINISHED:
                self.logic.showResults(self.run.nodes)

    def onShowCharts(self):
        if self.run is not None and self.run.nodes is not None:
            self.logic.showResults(self.run.nodes)

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
    def ensureDependencies(self, askConfirmation=True):
        """PyTorch through the PyTorch extension (a CUDA or CPU build chosen for this computer), the other packages
        with pip after asking. Returns False when the user declined."""
        import importlib.util

        try:
            import PyTorchUtils
        except ImportError:
            PyTorchUtils = None
        if importlib.util.find_spec("torch") is None:
            if PyTorchUtils is None:
                raise RuntimeError(_("This module needs PyTorch: install the 'PyTorch' extension from the Extensions "
                                     "Manager, restart Slicer and try again."))
            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=askConfirmation,
                                                             torchVersionRequirement=TORCH_REQUIREMENT) is None:
                return False
        missing = [req for module, req in PYTHON_REQUIREMENTS.items() if importlib.util.find_spec(module) is None]
        if missing:
            if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                    _("INR Cardiac Registration needs these Python packages: {packages}. Install them now?").format(
                        packages=", ".join(missing)), windowTitle=_("Install Python packages")):
                return False
            slicer.util.pip_install(missing)  # after the user's consent above (all Slicer versions)
        return True

    # --- inputs -------------------------------------------------------------------------------------------
    @staticmethod
    def shownSequence():
        """The sequence that plays the volume shown in the red slice view (its browser's master), or None."""
        layoutManager = slicer.app.layoutManager()
        if layoutManager is None:
            return None
        composite = layoutManager.sliceWidget("Red").mrmlSliceCompositeNode()
        volume = slicer.mrmlScene.GetNodeByID(composite.GetBackgroundVolumeID() or "")
        if volume is None:
            return None
        browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForProxyNode(volume)
        return browser.GetSequenceNode(volume) if browser else None

    def segmentWithTotalSegmentator(self, ctSequence, referenceFrame=0, cpu=False, onFrame=None):
        """Segment every frame with the TotalSegmentator extension (installed on request). Returns the
        :class:`FrameSegmentations`, or None when the user declined an installation or licence."""
        from INRCardiacRegistrationLib.mrml.bridge import browser_for_sequence
        from INRCardiacRegistrationLib.mrml.totalsegmentator_frames import (
            MYOCARDIUM_TASK,
            license_number,
            segment_frames,
        )

        if ctSequence is None:
            raise ValueError(_("Select the CT sequence first."))
        if not hasattr(slicer.modules, "totalsegmentator"):
            if slicer.util.confirmOkCancelDisplay(
                    _("The TotalSegmentator extension is not installed. Install it from the Extensions Manager now? "
                      "(Slicer restarts afterwards.) You can also use your own segmentations."),
                    windowTitle=_("TotalSegmentator")):
                manager = slicer.app.extensionsManagerModel()
                if hasattr(manager, "installExtensionFromServer"):  # Slicer >= 5.4: confirms, then restarts
                    installed = manager.installExtensionFromServer("TotalSegmentator")
                else:
                    installed = manager.downloadAndInstallExtensionByName("TotalSegmentator", True, True)
                    if installed and slicer.util.confirmOkCancelDisplay(
                            _("TotalSegmentator is installed. Restart Slicer now to use it?")):
                        slicer.util.restart()
                if not installed:
                    raise RuntimeError(_("TotalSegmentator could not be installed; see the Extensions Manager, or use "
                                         "your own segmentations."))
            return None
        import TotalSegmentator

        tsLogic = TotalSegmentator.TotalSegmentatorLogic()
        tsLogic.setupPythonRequirements()  # the extension asks before installing its packages
        if not license_number():
            import qt

            key = qt.QInputDialog.getText(
                slicer.util.mainWindow(), _("TotalSegmentator licence"),
                _("The task '{task}' (heart chambers and myocardium) needs a TotalSegmentator licence key (free for "
                  "non-commercial use, from https://backend.totalsegmentator.com/license-academic/). Key:").format(
                    task=MYOCARDIUM_TASK))
            if not key:
                return None
            setLicense = getattr(tsLogic, "setLicense", None) or tsLogic.setlicense
            try:
                setLicense(key)  # saves the key, then asks to restart Slicer
            except ValueError as error:  # 'Restart was cancelled.' (the key is saved) or an invalid key
                slicer.util.infoDisplay(_("TotalSegmentator: {error} Segment again after restarting Slicer.").format(
                    error=error))
            return None  # TotalSegmentator reads the licence at start-up
        browser = browser_for_sequence(ctSequence)
        return segment_frames(tsLogic, browser, ctSequence, referenceFrame, fast=False, cpu=cpu, on_frame=onFrame)

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
        return slicer.util.startupEnvironment() if hasattr(slicer.util, "startupEnvironment") else None

    @staticmethod
    def defaultOutputDirectory():
        return pathlib.Path(slicer.app.cachePath) / "INRCardiacRegistration"

    def process(self, ctSequence, segmentations=None, myocardiumSegment="LV myocardium", heartSegments=None,
                landmarks=None, annotatedLandmarks=None, referenceFrame=0, mode="non-sequential", alpha=0.8,
                preset="paper", device="auto", parameters=None, extraOptions=None, outputDirectory=None,
                runName=None, waitForCompletion=True, timeout=None):
        """Register the reference frame of ``ctSequence`` to every frame.

        Args:
            ctSequence: vtkMRMLSequenceNode of the CT frames (scalar volumes).
            segmentations: vtkMRMLSequenceNode of per-frame segmentations, or a vtkMRMLSegmentationNode of the
                reference frame, or ``{frame: vtkMRMLSegmentationNode}``; None: image-only registration.
            myocardiumSegment: name of the LV-myocardium segment; heartSegments: names of further segments of the
                heart mask (sampling region), e.g. ["LV blood pool", "rest of heart"].
            landmarks: vtkMRMLMarkupsFiducialNode on the reference frame; annotatedLandmarks: their expert positions
                in other frames (a markups sequence or ``{frame: markups}``) for the TRE.
            mode, alpha, preset, device: as ``inr-cardiac register``; parameters: further RegistrationConfig fields,
                e.g. ``{"iterations": 500, "learning_rate": 1e-4}``; extraOptions: further options as the command
                line spells them (checked before anything is exported).
            outputDirectory: where run folders are made (default: Slicer's cache folder); runName: the run folder's
                name (default: CT name and time).
            waitForCompletion: True: block until done and return the result nodes (RunNodes: .transforms,
                .segmentations, .landmarks, .curves, .table, .charts, .browser); False: return the running
                SceneRegistration (poll() it, cancel() it).
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
                                env=self.workerBaseEnvironment(), name=name)
        run.start(ctSequence, segmentations=segmentations, myocardium_segment=myocardiumSegment if segmentations
                  else "", heart_segments=list(heartSegments or []), landmarks=landmarks,
                  annotated_landmarks=annotatedLandmarks, settings=settings, extra_options=list(extraOptions or []))
        logging.info(f"INRCardiacRegistration: worker started, run folder {run.run.root}")
        if not waitForCompletion:
            return run

        def keepResponsive(progress):
            slicer.app.processEvents()

        return run.wait(timeout_s=timeout, on_progress=keepResponsive)

    def processFromParameterNode(self, p, waitForCompletion=False):
        """:meth:`process` with the choices of the parameter node ``p`` (what the Register button does)."""
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
        return self.process(p.ctSequence, segmentations=segmentations, myocardiumSegment=p.myocardiumSegment,
                            heartSegments=heart, landmarks=p.landmarks, annotatedLandmarks=p.annotatedLandmarks,
                            referenceFrame=p.referenceFrame, mode=p.mode.value, alpha=p.alpha, preset=p.preset.value,
                            device=p.device.value, parameters=parameters, extraOptions=shlex.split(p.extraOptions),
                            outputDirectory=p.outputDirectory, runName=p.runName or None,
                            waitForCompletion=waitForCompletion)

    # --- results ----------------------------------------------------------------------------------------
    @staticmethod
    def showResults(nodes):
        """Show the propagated myocardium and the Dice chart; the CT's sequence browser steps everything."""
        if nodes is None:
            return
        browser = nodes.browser
        proxy = browser.GetProxyNode(nodes.segmentations) if browser else None
        if proxy is not None and proxy.GetDisplayNode() is None:
            proxy.CreateDefaultDisplayNodes()
        chart = nodes.charts.get("tre_mm") or nodes.charts.get("dice")
        if chart is not None and slicer.app.layoutManager():
            slicer.modules.plots.logic().ShowChartInLayout(chart)
        if browser is not None and hasattr(slicer.modules.sequences, "setToolBarActiveBrowserNode"):
            slicer.modules.sequences.setToolBarActiveBrowserNode(browser)

    # --- sample data ------------------------------------------------------------------------------------
    def loadPhantom(self, frames=20, spacingMm=1.5, outputDirectory=None):
        """Generate the synthetic phantom (known motion) in a worker process and load it: CT volume sequence,
        segmentation sequence (LV myocardium, LV blood pool, rest of heart) and reference landmarks."""
        import subprocess

        from INRCardiacRegistrationLib.cli.phantom import phantom_command
        from INRCardiacRegistrationLib.cycle.worker_process import worker_environment
        from INRCardiacRegistrationLib.mrml.bridge import load_cycle_files

        folder = pathlib.Path(outputDirectory or pathlib.Path(slicer.app.cachePath) / "INRCardiacPhantom" /
                              f"{frames}f-{spacingMm:g}mm")
        if not (folder / "manifest.json").exists():
            env = worker_environment(self.workerBaseEnvironment())
            with slicer.util.WaitCursor():
                slicer.util.showStatusMessage(_("Generating the phantom (about a minute)..."))
                subprocess.run(phantom_command(self.pythonExecutable(), folder, frames=frames, spacing_mm=spacingMm),
                               env=env, check=True)
        nodes = load_cycle_files(folder / "ct_4d.nii.gz", labels=folder / "labels_4d.nii.gz",
                                 label_names={1: "LV myocardium", 2: "LV blood pool", 3: "rest of heart"},
                                 landmarks=folder / "landmarks_reference.mrk.json", name="INRCardiacPhantom")
        slicer.util.setSliceViewerLayers(background=nodes.browser.GetProxyNode(nodes.ct), fit=True)
        return nodes


#
# Test (runs inside Slicer only)
#
class INRCardiacRegistrationTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_ui_widgets_have_the_classes_the_code_expects()
        self.setUp()
        self.test_tiny_phantom_end_to_end()

    def test_ui_widgets_have_the_classes_the_code_expects(self):
        widget = slicer.modules.inrcardiacregistration.widgetRepresentation().self()
        for name, className in UI_WIDGET_CLASSES.items():
            self.assertEqual(getattr(widget.ui, name).className(), className, name)

    def test_tiny_phantom_end_to_end(self):
        """A 4-frame phantom of 3.5 mm voxels registered with a tiny network on the CPU; checks every result."""
        import tempfile

        import numpy as np

        self.delayDisplay("Generating a tiny phantom")
        logic = INRCardiacRegistrationLogic()
        self.assertTrue(logic.ensureDependencies(askConfirmation=False))
        folder = pathlib.Path(tempfile.mkdtemp(prefix="INRCardiacTest-"))
        loaded = logic.loadPhantom(frames=4, spacingMm=3.5, outputDirectory=folder / "phantom")
        self.assertEqual(loaded.ct.GetNumberOfDataNodes(), 4)
        self.delayDisplay("Registering (tiny network, CPU)")
        nodes = logic.process(loaded.ct, segmentations=loaded.segmentations, myocardiumSegment="LV myocardium",
                              heartSegments=["LV blood pool", "rest of heart"], landmarks=loaded.landmarks,
                              preset="fast", device="cpu",
                              parameters={"width": 64, "points": 2000, "iterations": 60, "warm_start_iterations": 30,
                                          "omega": 20.0},
                              outputDirectory=folder / "runs", runName="tiny", timeout=900)
        self.assertEqual(nodes.frames, [0, 1, 2, 3])
        self.assertEqual(nodes.transforms.GetNumberOfDataNodes(), 4)
        self.assertEqual(nodes.segmentations.GetNumberOfDataNodes(), 4)
        self.assertEqual(nodes.table.GetNumberOfRows(), 4)
        self.assertTrue(loaded.browser.IsSynchronizedSequenceNode(nodes.transforms.GetID()))
        dice = [float(nodes.table.GetCellText(r, nodes.table.GetColumnIndex("dice"))) for r in range(4)]
        self.assertGreater(float(np.nanmin(dice)), 0.8)
        self.delayDisplay("Test passed")
