"""Cohort runs: every manifest patient registered by the same worker as ``inr-cardiac register``, one Dask task each.

The scheduling, retries and cluster connection are Dask's (``distributed``): an embedded ``LocalCluster`` by
default, or any running Dask scheduler (for example one started on a SLURM cluster with dask-jobqueue). A task
(:func:`register_patient`) runs the worker (``python -m INRCardiacRegistrationLib.cli register``, its command line
built from the patient's run request) as a child process into the
patient's own run folder, so a crash, a CUDA error or an out-of-memory kill stays inside that patient, and the GPU
memory is returned when it ends. The cohort folder must be reachable by the workers under the same path (a
shared file system on a cluster).

Cohort folder layout::

    cohort.json            format, manifest, the batch's common options, each patient's run request
    cohort_events.jsonl    the batch's own events, one JSON line each: batch_started, patient_skipped,
                           patient_submitted, patient_finished, patient_failed, patient_cancelled,
                           batch_finished, batch_cancelled (each with "time", unix seconds, and "batch", its id)
    lock                   held by the one batch that drives this folder
    cancel                 written on Ctrl-C/SIGTERM: tasks stop their worker after its saved frames
    runs/PATIENT/          the patient's run folder (:mod:`..cycle.run_folder`); its worker.log holds every
                           attempt's output
    cohort_metrics.csv, cohort_summary.csv, cohort_report.png      (:mod:`.summary`)

Re-running the same command continues the cohort: finished patients are skipped, interrupted ones resume from
their saved frames (the worker resumes them), failed ones are tried again.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..core.atomic_file import write_text_atomic
from ..core.file_lock import LockBusy, exclusive_lock
from ..core.text_files import read_json
from ..core.vocabulary import InputError, RunState
from ..cycle.request import RunRequest, WorkerOptions, worker_command
from ..cycle.run_folder import RunFolder
from ..cycle.worker_process import WorkerProcess, worker_environment
from .manifest import CohortPatient
from .summary import patient_metrics, summary_text, write_cohort_summary

COHORT_FORMAT = "inr-cardiac-cohort/1"
EVENTS_FILE = "cohort_events.jsonl"


class PatientFailed(RuntimeError):
    """A patient's worker failed in a way worth another attempt (Dask retries the task)."""


@dataclass(frozen=True)
class PatientTask:
    """What a Dask worker needs to run one patient (plain data: it travels to remote workers)."""

    patient: str
    request: dict  # RunRequest.to_dict()
    run_dir: str
    batch: str
    cancel_path: str
    threads: int | None = None
    gpus: int = 0
    gpu_slots: bool = False
    lock_wait_s: float = 300.0
    report: bool = True  # the patient's report.png


@dataclass
class BatchSettings:
    """How to run a cohort (the ``batch`` command's options).

    ``executor``: ``local`` (an embedded Dask LocalCluster of ``workers`` processes) or ``dask`` (the scheduler at
    ``scheduler``: ``tcp://host:port`` or a scheduler JSON file). ``gpus_per_task``: GPUs one patient holds (a Dask
    resource ``GPU``; workers must advertise it, ``--resources GPU=1``); default: 1 on a local machine with CUDA,
    else 0. ``threads_per_task``: CPU threads of one worker (default locally: the cores shared out). ``retries``:
    further attempts for a patient whose worker failed or died (bad input is not retried). ``report``: write
    ``cohort_report.png`` and every patient's ``report.png``.
    """

    executor: str = "local"
    scheduler: str | None = None
    workers: int | None = None
    gpus_per_task: int | None = None
    threads_per_task: int | None = None
    retries: int = 1
    lock_wait_s: float = 300.0
    report: bool = True
    cancel_grace_s: float = 120.0


@dataclass
class PatientOutcome:
    patient: str
    status: RunState
    reason: str = ""
    attempts: int = 0
    seconds: float = 0.0


@dataclass
class BatchResult:
    outcomes: dict[str, PatientOutcome] = field(default_factory=dict)
    summary: str = ""
    cancelled: bool = False

    @property
    def failed(self) -> list[str]:
        """Patients that did not finish (failed, or cancelled, or never reported back)."""
        return [p for p, o in self.outcomes.items() if o.status != RunState.FINISHED]

    @property
    def status(self) -> str:
        """``cancelled`` (the batch was), ``failed`` (some patient did not finish) or ``finished``."""
        return RunState.CANCELLED if self.cancelled else RunState.FAILED if self.failed else RunState.FINISHED


# --- the task (runs on a Dask worker) ------------------------------------------------------------------------
_ATTEMPT_PREFIX = "# inr-cardiac batch "
_RESUMABLE = "stopped after its saved frames; the same batch command continues it"


def _attempt_marker(batch: str) -> str:
    return f"{_ATTEMPT_PREFIX}{batch}: attempt"


def _failure_reason(lines: list[str], code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        return f"the worker was killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    for line in reversed(lines):
        if line.startswith(_ATTEMPT_PREFIX):
            break
        if "error" in line.lower() or "failed" in line.lower():
            return line.removeprefix("inr-cardiac register: ").removeprefix("error: ").strip()
    body = [line for line in lines if not line.startswith(_ATTEMPT_PREFIX)]
    return body[-1].strip() if body else f"exit code {code}"


MEMORY_PER_CPU_WORKER_GIB = 3.0  # one patient's worker on a CPU: torch, the frames, the field grid (generous)


def cpu_workers() -> int:
    """Local workers without CUDA: one per CPU core this process may use, each with one thread
    (docs/benchmarks.md, "Cohort throughput": 2 workers x 1 thread gave 61 patients an hour on 2 cores, 1 x 2 gave
    43), at most one per :data:`MEMORY_PER_CPU_WORKER_GIB` of the machine's memory."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (AttributeError, ValueError, OSError):  # not POSIX: the cores decide
        return cores
    return max(1, min(cores, int(memory_gib // MEMORY_PER_CPU_WORKER_GIB)))


def gpu_slot(visible: str | None, index: int, gpus: int) -> str:
    """``CUDA_VISIBLE_DEVICES`` for local worker ``index`` holding ``gpus`` GPUs: its share of the devices this
    machine shows (``visible``, the batch's own ``CUDA_VISIBLE_DEVICES``; None: all, numbered from 0)."""
    devices = [d.strip() for d in visible.split(",") if d.strip()] if visible is not None else None
    wanted = range(index * gpus, index * gpus + gpus)
    if devices is None:
        return ",".join(str(k) for k in wanted)
    if wanted.stop > len(devices):
        raise PatientFailed(f"worker {index} needs GPUs {list(wanted)} of CUDA_VISIBLE_DEVICES={visible}")
    return ",".join(devices[k] for k in wanted)


def _local_worker_index() -> int:
    from distributed import get_worker

    name = get_worker().name
    return int(name) if str(name).isdigit() else 0


def register_patient(task: PatientTask) -> dict:
    """Register one patient into ``task.run_dir`` with a child ``register`` process; a Dask task.

    A finished run is returned as it is; a run folder with ``run.json`` is resumed. Returns ``{"patient", "status"
    (finished, cancelled, bad input), "reason", "seconds"}``; raises :class:`PatientFailed` when the worker failed
    or died, so that Dask retries it. While it runs, the cohort's ``cancel`` file stops the worker cleanly.
    """
    run = RunFolder(task.run_dir)
    result = {"patient": task.patient, "status": RunState.FINISHED.value, "reason": "", "seconds": 0.0}
    if run.is_finished():
        return {**result, "reason": "already finished"}
    if Path(task.cancel_path).exists():
        return {**result, "status": RunState.CANCELLED.value,
                "reason": "the batch was cancelled before this patient started"}
    # resume continues a run folder or starts a new one; deciding here, before the child holds the folder's lock,
    # would race with an earlier worker that is still writing it
    options = WorkerOptions(resume=True, exit_with_parent=os.getpid(), cancel_files=(task.cancel_path,),
                            lock_wait_s=task.lock_wait_s, report=task.report)
    resuming = run.exists()
    env = worker_environment()
    if task.threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(task.threads)
    if task.gpus and task.gpu_slots:
        env["CUDA_VISIBLE_DEVICES"] = gpu_slot(os.environ.get("CUDA_VISIBLE_DEVICES"), _local_worker_index(), task.gpus)
    run.root.mkdir(parents=True, exist_ok=True)
    with open(run.log_path, "a", encoding="utf-8") as log:
        log.write(f"\n{_attempt_marker(task.batch)} on {socket.gethostname()} at {time.strftime('%Y-%m-%d %H:%M:%S')}"
                  f"{' (resume)' if resuming else ''}\n")
    started = time.perf_counter()
    argv = worker_command(sys.executable, task.run_dir, RunRequest.from_dict(task.request), options)
    worker = WorkerProcess(argv, run.root, env).start()
    while worker.running:
        if Path(task.cancel_path).exists():  # the worker watches the file itself; this is the fallback
            worker.cancel(grace_s=120.0, terminate_s=30.0)
            break
        time.sleep(0.5)
    code = worker.wait()
    outcome = worker.outcome()
    result.update(status=outcome.value, seconds=round(time.perf_counter() - started, 2))
    if outcome == RunState.FINISHED:
        return result
    if outcome == RunState.CANCELLED:
        return {**result, "reason": _RESUMABLE}
    result["reason"] = _failure_reason(worker.log_tail(40), code)
    if outcome == RunState.BAD_INPUT:
        return result
    raise PatientFailed(result["reason"])


# --- the driver --------------------------------------------------------------------------------------------
def _stored_request(record: dict, where: str) -> RunRequest:
    """A patient's request as ``cohort.json`` records it (``{"image", "options"}`` in cohorts of earlier versions,
    whose options could hold the worker's own quiet and no-report options); InputError names ``where``."""
    try:
        if "request" in record:
            return RunRequest.from_dict(record["request"])
        return RunRequest.from_argv([record.get("image") or "", *record.get("options", [])],
                                    ignore_worker_options=True)
    except (InputError, TypeError, AttributeError) as error:
        raise InputError(f"{where}: cannot read the patient's recorded request ({error})") from None


def _attempts(run: RunFolder, batch: str) -> int:
    if not run.log_path.is_file():
        return 0
    return run.log_path.read_text(encoding="utf-8", errors="replace").count(_attempt_marker(batch))


def _import_distributed():
    try:
        import distributed
    except ImportError as error:
        raise InputError("inr-cardiac batch needs Dask: pip install 'dask[distributed]' (or the package's "
                         "[cohort] extra)") from error
    return distributed


def _workers(client) -> list[dict]:
    """The scheduler's description of every worker (empty when the scheduler cannot be asked)."""
    try:
        try:
            info = client.scheduler_info(n_workers=-1)
        except TypeError:  # older distributed: every worker is listed anyway
            info = client.scheduler_info()
    except Exception:  # a lost scheduler counts as no workers
        return []
    return list(info.get("workers", {}).values())


def _gpus_offered(client) -> list[float]:
    """The ``GPU`` resource of each worker (0 where it has none)."""
    return [worker.get("resources", {}).get("GPU", 0) for worker in _workers(client)]


@contextmanager
def _sigint_ignored():
    """While inside, SIGINT is ignored, and so are they in the processes started meanwhile (an ignored signal stays
    ignored across exec): the local Dask workers then survive a Ctrl-C in the terminal, which goes to the whole
    process group, and the batch alone decides how to stop (it cancels the running patients cleanly)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class CohortBatch:
    """Drive one cohort: check the folder, skip finished patients, run the rest as Dask tasks, write the summary.

    ``on_event`` gets every event written to ``cohort_events.jsonl`` and, about every second while patients run,
    ``{"event": "status", "running": {patient: RunProgress text}, "done": n, "todo": m}``. Setting ``cancel`` (or
    SIGINT/SIGTERM in the command) stops the batch: queued patients do not start, running ones stop after their
    saved frames; re-running continues.
    """

    def __init__(self, patients: list[CohortPatient], cohort_dir: str | Path, common_options: list[str] | None = None,
                 settings: BatchSettings | None = None, manifest: str | Path | None = None,
                 on_event: Callable[[dict], None] | None = None, cancel: threading.Event | None = None) -> None:
        self.patients = list(patients)
        self.root = Path(cohort_dir).expanduser().resolve()
        self.common = list(common_options or [])  # as given, recorded in cohort.json (already in each request)
        self.settings = settings or BatchSettings()
        self.manifest = str(Path(manifest).resolve()) if manifest else None
        self.on_event = on_event
        self.cancel = cancel or threading.Event()
        self.batch = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        if self.settings.executor not in ("local", "dask"):
            raise InputError(f"executor must be local or dask, got {self.settings.executor!r}")
        if self.settings.retries < 0:
            raise InputError(f"retries must be >= 0, got {self.settings.retries}")
        if self.settings.workers is not None and self.settings.workers < 1:
            raise InputError(f"workers must be >= 1, got {self.settings.workers}")

    # --- paths and records ------------------------------------------------------------------------------
    def run_folder(self, patient: str) -> RunFolder:
        return RunFolder(self.root / "runs" / patient)

    @property
    def cancel_path(self) -> Path:
        return self.root / "cancel"

    def emit(self, event: str, **fields) -> dict:
        record = {"event": event, "time": round(time.time(), 3), "batch": self.batch, **fields}
        with open(self.root / EVENTS_FILE, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")
        if self.on_event is not None:
            self.on_event(record)
        return record

    def _check_and_record(self) -> None:
        """Refuse to continue a cohort whose started patients now get other inputs or options; write cohort.json."""
        path = self.root / "cohort.json"
        stored = {}
        if path.is_file():
            stored = read_json(path, "cohort record")
            if not isinstance(stored, dict):
                raise InputError(f"{path} is not a cohort record (a JSON object)")
            if stored.get("format") != COHORT_FORMAT:
                raise InputError(f"{path} has format {stored.get('format')!r}, expected {COHORT_FORMAT!r}")
        before = stored.get("patients", {})
        folded = {name.casefold(): record for name, record in before.items()}  # one folder on case-insensitive disks
        changed = [p.patient for p in self.patients if p.patient.casefold() in folded
                   and self.run_folder(p.patient).exists()
                   and _stored_request(folded[p.patient.casefold()], f"{path} patient {p.patient}").differences(
                       p.request)]
        if changed:
            raise InputError(f"{self.root} was run with other inputs or options for {', '.join(changed[:5])}"
                             f"{' ...' if len(changed) > 5 else ''}: use the same manifest and common options, "
                             f"another cohort folder, or delete {self.root / 'runs'}/PATIENT to redo a patient")
        patients = {**before, **{p.patient: {"request": p.request.to_dict()} for p in self.patients}}
        write_text_atomic(path, json.dumps({"format": COHORT_FORMAT, "manifest": self.manifest,
                                            "options": self.common, "patients": patients}, indent=2) + "\n")

    # --- the executor ------------------------------------------------------------------------------------
    def _open_client(self, todo: int):
        """A Dask client and, for the local executor, its cluster (closed by the caller)."""
        distributed = _import_distributed()
        settings = self.settings
        if settings.executor == "dask" or settings.scheduler:
            address = settings.scheduler or distributed.config.get("scheduler-address", None)
            if not address:
                raise InputError("the dask executor needs the scheduler's address (tcp://host:port or a scheduler JSON "
                                 "file)", option="scheduler")
            try:
                if Path(address).is_file():
                    client = distributed.Client(scheduler_file=address, timeout="30s")
                else:
                    client = distributed.Client(address, timeout="30s")
            except OSError as error:
                raise InputError(f"cannot reach the Dask scheduler at {address}: {error}") from error
            return client, None, settings.gpus_per_task or 0, settings.threads_per_task, False
        gpus = settings.gpus_per_task
        from ..engine.devices import cuda_device_count  # imports torch: only the local executor needs it

        devices = cuda_device_count()
        if gpus is None:
            gpus = 1 if devices else 0
        if gpus and devices < gpus:
            raise InputError(f"{gpus} GPU(s) per task, but this machine has {devices} CUDA device(s); ask for 0 GPUs "
                             "per task to run on the CPU", option="gpus_per_task")
        workers = settings.workers or (devices // gpus if gpus else (1 if devices else cpu_workers()))
        if gpus and workers * gpus > devices:
            raise InputError(f"{workers} workers x {gpus} GPU(s) per task need {workers * gpus} GPUs; this machine has "
                             f"{devices}")
        workers = max(1, min(workers, todo))
        # the batch reports failures and retries itself (per patient, with the reason); Dask's own log lines for a
        # failed attempt ("Compute Failed" and its traceback) would only repeat them
        threads = settings.threads_per_task or max(1, (os.cpu_count() or 1) // workers)
        with _sigint_ignored():
            cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                               dashboard_address=":0", memory_limit=0, silence_logs=logging.CRITICAL,
                                               resources={"GPU": gpus} if gpus else None)
        try:
            return distributed.Client(cluster), cluster, gpus, threads, True
        except BaseException:
            cluster.close()
            raise

    # --- running -----------------------------------------------------------------------------------------
    def run(self) -> BatchResult:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            with exclusive_lock(self.root / "lock"):
                return self._run_locked()
        except LockBusy as busy:
            raise InputError(f"another batch is running this cohort: {busy}") from None

    def _run_locked(self) -> BatchResult:
        self._check_and_record()
        self.cancel_path.unlink(missing_ok=True)
        result = BatchResult()
        todo = []
        self.emit("batch_started", patients=len(self.patients), executor=self.settings.executor,
                  scheduler=self.settings.scheduler, pid=os.getpid(), host=socket.gethostname())
        for patient in self.patients:
            if self.run_folder(patient.patient).is_finished():
                result.outcomes[patient.patient] = PatientOutcome(patient.patient, RunState.FINISHED)
                self.emit("patient_skipped", patient=patient.patient, reason="finished before")
            else:
                todo.append(patient)
        if todo:
            self._run_tasks(todo, result)
        verdicts = {p: (o.status, o.reason) for p, o in result.outcomes.items()}
        metrics = [patient_metrics(p.patient, self.run_folder(p.patient).root, *verdicts.get(p.patient, (None, "")))
                   for p in self.patients]
        means = write_cohort_summary(self.root, metrics, report=self.settings.report)
        result.summary = summary_text(metrics, means)
        result.cancelled = self.cancel.is_set()
        self.emit(f"batch_{'cancelled' if result.status == RunState.CANCELLED else 'finished'}",
                  finished=sum(o.status == RunState.FINISHED for o in result.outcomes.values()), failed=result.failed)
        return result

    def _run_tasks(self, todo: list[CohortPatient], result: BatchResult) -> None:
        from ..cycle.worker_process import ProgressReader, RunProgress

        client, cluster, gpus, threads, local = self._open_client(len(todo))
        try:
            offered = [] if local else _gpus_offered(client)
            if gpus and not local and not any(g >= gpus for g in offered):
                self.emit("warning", text=f"no Dask worker offers the resource GPU={gpus} yet (start workers with "
                                          f"--resources GPU={gpus}); the patients wait until one joins")
            elif not gpus and any(offered):
                self.emit("warning", text="the Dask workers offer GPUs but the patients ask for none: a worker with "
                                          "several threads runs several patients on its GPU at once")
            futures = {}
            for patient in todo:
                task = PatientTask(patient=patient.patient, request=patient.request.to_dict(),
                                   run_dir=str(self.run_folder(patient.patient).root),
                                   batch=self.batch, cancel_path=str(self.cancel_path), threads=threads, gpus=gpus,
                                   gpu_slots=local, lock_wait_s=self.settings.lock_wait_s,
                                   report=self.settings.report)
                futures[patient.patient] = client.submit(
                    register_patient, task, key=f"inr-cardiac-{patient.patient}-{self.batch}", pure=False,
                    retries=self.settings.retries, resources={"GPU": gpus} if gpus else None)
                self.emit("patient_submitted", patient=patient.patient, queued=len(todo),
                          resume=self.run_folder(patient.patient).exists())
            readers = {p: (ProgressReader(self.run_folder(p).progress_path), RunProgress()) for p in futures}
            pending = dict(futures)
            cancelled_at = None
            while pending:
                for patient, future in list(pending.items()):
                    if future.done():
                        del pending[patient]
                        result.outcomes[patient] = self._outcome(patient, future)
                if self.cancel.is_set() and cancelled_at is None:
                    write_text_atomic(self.cancel_path, "cancel\n")
                    cancelled_at = time.monotonic()
                elif cancelled_at is not None and (time.monotonic() - cancelled_at > self.settings.cancel_grace_s
                                                   or (not _workers(client)
                                                       and not any(self.run_folder(p).is_locked() for p in pending))):
                    break  # the tasks cannot report back any more and no registration writes
                running = {}
                for patient in pending:
                    reader, progress = readers[patient]
                    for event in reader.read_new():
                        progress.update(event)
                    if progress.state in ("starting", "running") and self.run_folder(patient).exists():
                        running[patient] = progress.text()
                if self.on_event is not None:
                    self.on_event({"event": "status", "running": running, "done": len(futures) - len(pending),
                                   "todo": len(futures)})
                if pending:
                    time.sleep(0.5)
            for patient in pending:  # cancelled before their task reported back
                run = self.run_folder(patient)
                reason = ("still running when the batch stopped waiting; it stops when its worker sees the cancel"
                          if run.is_locked() else _RESUMABLE)
                attempts = _attempts(run, self.batch)
                result.outcomes[patient] = PatientOutcome(patient, RunState.CANCELLED, reason, attempts)
                self.emit("patient_cancelled", patient=patient, reason=reason,
                          attempts=result.outcomes[patient].attempts)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

    def _outcome(self, patient: str, future) -> PatientOutcome:
        run = self.run_folder(patient)
        attempts = _attempts(run, self.batch)
        if future.status == "finished":
            value = future.result()
            status = RunState.FAILED if value["status"] == RunState.BAD_INPUT else RunState(value["status"])
            outcome = PatientOutcome(patient, status, value.get("reason", ""), attempts, value.get("seconds", 0.0))
        elif future.status == "cancelled":
            outcome = PatientOutcome(patient, RunState.CANCELLED, "cancelled", attempts)
        else:
            error = future.exception()
            reason = str(error) if isinstance(error, PatientFailed) else f"{type(error).__name__}: {error}"
            outcome = PatientOutcome(patient, RunState.FAILED, reason, attempts)
        kind = {RunState.FINISHED: "patient_finished", RunState.CANCELLED: "patient_cancelled"}.get(outcome.status,
                                                                                                "patient_failed")
        self.emit(kind, patient=patient, reason=outcome.reason, attempts=outcome.attempts, seconds=outcome.seconds)
        return outcome

