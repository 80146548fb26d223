"""A whole-cycle registration started from a Slicer scene and run in the background, without Qt.

This is what the module's Logic drives (the widget adds only a QTimer that calls :meth:`SceneRegistration.poll`
and a progress bar): the inputs are exported from the scene into ``RUN_DIR/inputs`` (:func:`.bridge.export_inputs`)
and become a run request, the worker (``inr-cardiac register``) runs as a separate process (``PythonSlicer`` inside
Slicer, so the GUI never blocks and a crash cannot take Slicer down), its ``progress.jsonl`` becomes a
:class:`~..cycle.worker_process.RunProgress`, and every frame the worker finishes is imported into the scene at once
(:func:`.bridge.import_run`): the transform, segmentation and landmark sequences grow while the run goes on.
Cancel keeps the finished frames (in the run folder and in the scene); :meth:`SceneRegistration.resume` continues.
Closing the scene during a run cancels the worker and detaches the run from the scene, so that no node of the
closed scene is written to. An import that fails (a damaged frame file) ends the run once, as failed, with the
cause in :meth:`SceneRegistration.error_message`: polling again does not repeat it.

It imports ``slicer`` only through :mod:`.bridge`, so the tests drive it on the ``slicer-core`` wheel with
the real worker.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..core.vocabulary import FINAL_EVENTS, InputError, RunState
from ..cycle.request import CycleConfig, RunRequest, WorkerOptions, worker_command
from ..cycle.run_folder import RunFolder
from ..cycle.worker_process import RunProgress, WorkerProcess, worker_environment
from .bridge import RunNodes, browser_for_sequence, export_inputs, import_run, scene_or_default


class RegistrationFailed(RuntimeError):
    """The worker ended without finishing (bad input or an error); the message ends with its last log lines."""


class SceneRegistration:
    """One run folder, its worker process and the scene nodes of its results.

    Args:
        run_dir: the run folder (new, or one to resume).
        scene: the MRML scene (default ``slicer.mrmlScene``).
        python: the interpreter that runs the worker (default ``sys.executable``; ``PythonSlicer`` in Slicer).
        env: the worker's base environment (default ``os.environ``; in Slicer its startup environment).
        name: prefix of the result node names (default: the run folder's name).
        stabilising: also import the transform sequence that stabilises each frame onto the reference (the one
            that moves reference-frame content to each frame is always imported).
    """

    def __init__(self, run_dir: str | Path, *, scene=None, python: str | Path | None = None,
                 env: dict[str, str] | None = None, name: str | None = None, stabilising: bool = False) -> None:
        self.run = RunFolder(run_dir)
        self.scene = scene_or_default(scene)
        self.stabilising = stabilising
        self.detached = False  # the scene was closed: nothing more is imported
        self.import_error = ""  # why importing the results failed (the run then ended as failed)
        self._close_observer = None
        self.python = str(python or sys.executable)
        self.env = env
        self.name = name
        self.browser = None
        self.worker: WorkerProcess | None = None
        self.progress = RunProgress()
        self.nodes: RunNodes | None = None
        self.exported = None  # the InputFiles exported from the scene
        self.request: RunRequest | None = None

    # --- starting ----------------------------------------------------------------------------------------
    def start(self, ct_sequence, *, segmentations=None, myocardium_segment: str = "",
              heart_segments: list[str] | None = None, blood_pool_segment: str = "", landmarks=None,
              annotated_landmarks=None, evaluation_segmentations=None, settings: CycleConfig | None = None,
              extra_options: list[str] | None = None, browser=None) -> SceneRegistration:
        """Export the inputs from the scene and start the worker on them.

        ``ct_sequence`` and the label/landmark arguments are those of :func:`.bridge.export_inputs`; ``settings``:
        the cycle and registration settings (default: the paper's); ``extra_options``: further options in the
        command line's spelling, applied to the request (a power user's free text; checked here, before anything
        is exported). ``browser``: the CT's sequence browser (default: the one playing ``ct_sequence``, made if
        there is none); the results are synchronised to it.
        """
        if self.run.exists():
            raise InputError(f"{self.run.root} already holds a run: resume it, or choose a new output folder")
        if self.run.root.exists() and any(self.run.root.iterdir()):
            raise InputError(f"output folder {self.run.root} is not empty: choose a new folder")
        settings = settings if settings is not None else CycleConfig()
        refused = {name: "the scene's inputs" for name in ("image", "labels", "myocardium_label", "heart_label",
                                                           "landmarks", "landmarks_annotated", "blood_pool_label",
                                                           "rv_label")}
        RunRequest(settings=settings).with_options(extra_options or [], "extra options", refused)  # fails early
        reference = settings.reference_frame
        if segmentations is None or (isinstance(segmentations, dict) and reference not in segmentations):
            # the worker would refuse it too, after every frame is written: say it before
            raise InputError(f"no segmentation of the reference frame {reference}: its LV myocardium is needed (a "
                             "segmentation of that frame, or a segmentation sequence)", option="labels")
        self.browser = browser or browser_for_sequence(ct_sequence, self.scene)
        self.exported = export_inputs(ct_sequence, self.run.inputs_dir, segmentations=segmentations,
                                      myocardium_segment=myocardium_segment, heart_segments=heart_segments,
                                      blood_pool_segment=blood_pool_segment, landmarks=landmarks,
                                      annotated_landmarks=annotated_landmarks,
                                      evaluation_segmentations=evaluation_segmentations, scene=self.scene)
        self.request = RunRequest(self.exported, settings).with_options(extra_options or [], "extra options",
                                                                         refused)
        return self._launch(worker_command(self.python, self.run.root, self.request))

    def resume(self, browser=None, nodes: RunNodes | None = None) -> SceneRegistration:
        """Continue the run in ``run_dir`` with the settings of its ``run.json`` (after a cancel or a crash).
        ``nodes``: the result nodes of the earlier session, to keep adding to (default: new nodes)."""
        if not self.run.exists():
            raise InputError(f"{self.run.root} holds no run to resume (no run.json)")
        self.browser = browser if browser is not None else self.browser
        self.nodes = nodes if nodes is not None else self.nodes
        self.request = self.run.read_request()  # the worker reads it from run.json (device: 'auto' again)
        return self._launch(worker_command(self.python, self.run.root, None, WorkerOptions(resume=True)))

    def _launch(self, argv: list[str]) -> SceneRegistration:
        if self.worker is not None and self.worker.running:
            raise RuntimeError("the worker is still running")
        if self.detached:
            raise InputError("the scene of this run was closed: import the run folder into the new scene")
        self.progress = RunProgress()
        self.import_error = ""
        self.worker = WorkerProcess(argv, self.run.root, env=worker_environment(self.env)).start()
        if self._close_observer is None:
            self._close_observer = self.scene.AddObserver(self.scene.StartCloseEvent, self._on_scene_close)
        return self

    def _on_scene_close(self, caller=None, event=None) -> None:
        self.detach()

    def detach(self) -> None:
        """Forget the scene (it is being closed): cancel the worker (finished frames stay in the run folder, where
        :meth:`resume` or an import into another scene finds them) and never touch the old nodes again."""
        self.detached = True
        if self._close_observer is not None:
            self.scene.RemoveObserver(self._close_observer)
            self._close_observer = None
        if self.running:
            self.worker.cancel()
            self.worker.poll()
            self.progress.state = self.worker.outcome()
        self.nodes = None
        self.browser = None

    # --- following -----------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.running

    def poll(self) -> RunProgress:
        """Read the new progress events, import newly finished frames into the scene, and return the progress.
        Once :attr:`running` is False after a poll, ``progress.state`` is the worker's outcome (final)."""
        if self.worker is None or self.import_error:
            return self.progress
        alive = self.worker.running  # read before the events, so that no event after the exit is missed
        events = self.worker.poll()
        for event in events:
            self.progress.update(event)
        if (any(event.get("event") in ("frame_finished", *FINAL_EVENTS) for event in events) or not alive) \
                and not self.detached:
            try:
                self.import_results()
            except Exception as error:  # noqa: BLE001 - any failure ends the run once, with its cause
                self.import_error = f"{type(error).__name__}: {error}"
                if self.worker.running:
                    self.worker.cancel()
                self.progress.state = RunState.FAILED
                self.progress.error = self.import_error
                return self.progress
        if not alive:
            self.progress.state = self.worker.outcome()
        elif not self.worker.running:  # it ended while its events were read or frames imported: read the rest
            return self.poll()
        return self.progress

    def import_results(self) -> RunNodes | None:
        """Import the frames finished so far (nothing before the worker has written ``run.json``, nothing once the
        scene was closed)."""
        if self.run.exists() and not self.detached:
            self.nodes = import_run(self.run.root, self.scene, browser=self.browser, nodes=self.nodes,
                                    name=self.name, stabilising=self.stabilising)
        return self.nodes

    def wait(self, timeout_s: float | None = None, interval_s: float = 0.5,
             on_progress: Callable[[RunProgress], None] | None = None) -> RunNodes | None:
        """Poll until the worker ends and return the result nodes. Raises :class:`RegistrationFailed` when it
        failed or rejected its input, and TimeoutError (after cancelling it) past ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            progress = self.poll()
            if on_progress is not None:
                on_progress(progress)
            if not self.running and progress.state.is_final:
                break
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise TimeoutError(f"the registration did not end within {timeout_s:g} s; cancelled it "
                                   f"({self.progress.frames_done} frames kept in {self.run.root})")
            time.sleep(interval_s)
        self.raise_if_failed()
        return self.nodes

    def cancel(self) -> RunProgress:
        """Stop the worker (cancel file, then the whole process tree); finished frames stay, in the run folder and
        in the scene."""
        if self.worker is not None:
            self.worker.cancel()
        return self.poll()

    # --- errors --------------------------------------------------------------------------------------------
    def error_message(self, lines: int = 15) -> str:
        """What went wrong, with the worker's last log lines (empty when it did not fail)."""
        if self.worker is None or self.progress.state not in (RunState.FAILED, RunState.BAD_INPUT):
            return ""
        head = {RunState.BAD_INPUT: "The registration did not start: the inputs were rejected.",
                RunState.FAILED: "The registration failed."}[self.progress.state]
        if self.import_error:
            head = f"The results could not be imported into the scene ({self.import_error}); the run was stopped."
        tail = "\n".join(self.worker.log_tail(lines))
        return f"{head} Frames finished before are kept in {self.run.root}.\nLast lines of {self.run.log_path}:\n{tail}"

    def raise_if_failed(self) -> None:
        message = self.error_message()
        if message:
            raise RegistrationFailed(message)
