"""The phantom on disk: writing one synthetic patient (:func:`generate_phantom`), reading it back
(:class:`Phantom`, :func:`load_phantom`) and the run request that registers it (:func:`phantom_request`).

Every path in ``manifest.json`` is relative to it; images are in LPS mm, the ground-truth transforms are ITK
displacement fields on the reference grid (resampling convention: reference point -> its position in frame t).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import __version__
from ..core.atomic_file import write_text_atomic
from ..core.geometry import Geometry
from ..core.text_files import read_json
from ..core.vocabulary import InputError
from ..core.volume import Volume, write_image_atomic
from ..cycle.request import CycleConfig, InputFiles, RunRequest
from ..fileio.displacement_field import (
    read_displacement_field,
    read_displacement_transform,
    write_displacement_field,
)
from ..fileio.frame_sequence import read_4d_frames
from ..fileio.landmarks import (
    Landmarks,
    Trajectories,
    read_markups_json,
    read_trajectories_csv,
    write_markups_json,
    write_trajectories_csv,
)
from .anatomy import landmark_descriptions, landmark_trajectories, phantom_landmarks
from .config import LABEL_VALUES, PHANTOM_MODEL_VERSION, PhantomConfig
from .montage import write_montage
from .rendering import PhantomFrame, make_phantom_frame, prepare_rendering, worker_count


def _join_frames(volumes: Sequence[Volume]) -> sitk.Image:
    return sitk.JoinSeries([v.to_sitk() for v in volumes])


def _volume_ml(labels: np.ndarray, value: int, geometry: Geometry) -> float:
    return float(np.count_nonzero(labels == value)) * geometry.voxel_volume_mm3 / 1000.0


def generate_phantom(out_dir: str | Path, config: PhantomConfig | None = None, montage: bool = False,
                     progress: Callable[[str], None] | None = None, workers: int | None = None) -> Path:
    """Write one synthetic patient into ``out_dir`` and return the path of its ``manifest.json``.

    Files (paths in the manifest are relative to it): ``ct_4d.nii.gz`` (int16 HU, frames along the 4th
    axis), ``labels_4d.nii.gz`` (uint8, :data:`LABEL_VALUES`), ``landmarks_reference.mrk.json`` (Slicer
    markups, LPS), ``landmark_trajectories.csv`` (``frame,landmark,x,y,z``, LPS mm),
    ``ground_truth/frame_NNN.h5`` (ITK displacement-field transforms, frame 0 -> frame t, resampling
    convention) and, with ``montage``, ``montage.png``. The manifest is written last.
    """
    config = config or PhantomConfig()
    prepare_rendering(config)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"out_dir exists and is not a folder: {out_dir}")
    (out_dir / "ground_truth").mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # a folder without a manifest is incomplete
    say = progress or (lambda message: None)
    started = time.perf_counter()
    images: list[Volume | None] = [None] * config.frames
    labels: list[Volume | None] = [None] * config.frames
    montage_frames: dict[int, PhantomFrame] = {}

    # Frames are rendered in worker threads (numpy releases the GIL); every file is written here, in this
    # thread, because SimpleITK's HDF5 writer is not thread-safe.
    with ThreadPoolExecutor(max_workers=worker_count(workers)) as pool:
        results = pool.map(lambda f: make_phantom_frame(config, f, with_displacement=True), range(config.frames))
        for result in results:
            frame = result.frame
            write_displacement_field(out_dir / f"ground_truth/frame_{frame:03d}.h5", result.displacement_mm,
                                     result.displacement_geometry)
            result.displacement_mm = None
            images[frame], labels[frame] = result.image, result.labels
            if montage and frame in (0, config.es_frame):
                montage_frames[frame] = result
            elapsed = time.perf_counter() - started
            say(f"frame {frame} rendered ({frame + 1}/{config.frames}, {elapsed:.1f} s)")
    gt_paths = [f"ground_truth/frame_{t:03d}.h5" for t in range(config.frames)]
    write_image_atomic(_join_frames(images), out_dir / "ct_4d.nii.gz")
    write_image_atomic(_join_frames(labels), out_dir / "labels_4d.nii.gz")
    reference = phantom_landmarks()
    write_markups_json(out_dir / "landmarks_reference.mrk.json", reference, name="PhantomLandmarks",
                       descriptions=list(landmark_descriptions()))
    write_trajectories_csv(out_dir / "landmark_trajectories.csv", landmark_trajectories(config))
    geometry = config.geometry
    blood = [_volume_ml(v.array, LABEL_VALUES["blood_pool"], geometry) for v in labels]
    myocardium = [_volume_ml(v.array, LABEL_VALUES["myocardium"], geometry) for v in labels]
    manifest = {
        "image": "ct_4d.nii.gz",
        "labels": "labels_4d.nii.gz",
        "label_values": dict(LABEL_VALUES),
        "heart_mask": "labels >= 1",
        "landmarks": "landmarks_reference.mrk.json",
        "trajectories": "landmark_trajectories.csv",
        "ground_truth_transforms": gt_paths,
        "ground_truth_convention": "ITK displacement field on the reference (frame 0) grid, resampling "
                                   "convention: TransformPoint(p) = position in frame t of reference point p",
        "coordinate_system": "LPS",
        "units": "mm",
        "frames": config.frames,
        "reference_frame": 0,
        "ed_frame": 0,
        "es_frame": config.es_frame,
        "spacing": list(geometry.spacing),
        "size": list(geometry.size),
        "geometry": geometry.to_dict(),
        "ground_truth_geometry": config.ground_truth_geometry.to_dict(),
        "label_volumes_ml": {"blood_pool": [round(v, 3) for v in blood],
                             "myocardium": [round(v, 3) for v in myocardium]},
        "generator": {"name": "INRCardiacRegistrationLib.phantom", "version": __version__,
                      "model_version": PHANTOM_MODEL_VERSION, "parameters": config.to_dict(),
                      "seconds": round(time.perf_counter() - started, 2)},
    }
    if montage:
        write_montage(out_dir / "montage.png", montage_frames[0], montage_frames[config.es_frame])
        manifest["montage"] = "montage.png"
    path = out_dir / "manifest.json"
    write_text_atomic(path, json.dumps(manifest, indent=2) + "\n")
    say(f"wrote {path} in {time.perf_counter() - started:.1f} s")
    return path


@dataclass
class Phantom:
    """A phantom read back from its manifest (see :func:`load_phantom`)."""

    manifest_path: Path
    manifest: dict
    images: list[Volume]
    labels: list[Volume]
    landmarks: Landmarks
    trajectories: Trajectories

    @property
    def ed_frame(self) -> int:
        return int(self.manifest["ed_frame"])

    @property
    def es_frame(self) -> int:
        return int(self.manifest["es_frame"])

    @property
    def label_values(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.manifest["label_values"].items()}

    @property
    def config(self) -> PhantomConfig:
        return PhantomConfig.from_dict(self.manifest["generator"]["parameters"])

    def ground_truth_path(self, frame: int) -> Path:
        paths = self.manifest["ground_truth_transforms"]
        if not 0 <= frame < len(paths):
            raise InputError(f"frame must be in [0, {len(paths) - 1}], got {frame}")
        return self.manifest_path.parent / paths[frame]

    def ground_truth_transform(self, frame: int) -> sitk.Transform:
        """The reference -> ``frame`` map as a SimpleITK transform (TransformPoint(p) = phi_t(p), LPS mm)."""
        return read_displacement_transform(self.ground_truth_path(frame))

    def ground_truth_displacement(self, frame: int) -> tuple[np.ndarray, Geometry]:
        """``(u, geometry)``: u (k, j, i, 3) LPS mm on the ground-truth grid."""
        return read_displacement_field(self.ground_truth_path(frame))

    def run_request(self, settings: CycleConfig | None = None) -> RunRequest:
        """The run request that registers this phantom (see :func:`phantom_request`)."""
        return phantom_request(self.manifest_path, settings)


def read_phantom_manifest(manifest_path: str | Path) -> tuple[Path, dict]:
    """``(path of manifest.json, its content)`` for a phantom's ``manifest.json`` or folder; InputError when it is
    missing, unreadable or lacks a key."""
    manifest_path = Path(manifest_path)
    if manifest_path.is_dir():
        manifest_path = manifest_path / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(f"phantom manifest not found: {manifest_path}")
    manifest = read_json(manifest_path, "phantom manifest")
    missing = [k for k in ("image", "labels", "label_values", "landmarks", "trajectories",
                           "ground_truth_transforms", "ed_frame", "es_frame") if k not in manifest]
    if missing:
        raise InputError(f"{manifest_path} lacks the keys {missing}")
    return manifest_path, manifest


def phantom_request(manifest_path: str | Path, settings: CycleConfig | None = None) -> RunRequest:
    """The run request that registers the phantom of ``manifest_path`` (its ``manifest.json`` or folder): its 4D CT,
    4D labels (myocardium value, every heart label for sampling), reference landmarks and their true trajectories
    (for the TRE), with ``settings`` (default: the paper's)."""
    manifest_path, info = read_phantom_manifest(manifest_path)
    root = manifest_path.parent
    values = {key: int(value) for key, value in info["label_values"].items()}
    files = InputFiles(image=root / info["image"], labels=(str(root / info["labels"]),),
                       myocardium_label=values["myocardium"], heart_label=tuple(sorted(set(values.values()))),
                       landmarks=root / info["landmarks"], landmarks_annotated=root / info["trajectories"],
                       blood_pool_label=values["blood_pool"])
    return RunRequest(files, settings if settings is not None else CycleConfig())


def load_phantom(manifest_path: str | Path) -> Phantom:
    """Read a phantom written by :func:`generate_phantom`: frames as Volumes, landmarks, trajectories."""
    manifest_path, manifest = read_phantom_manifest(manifest_path)
    root = manifest_path.parent
    return Phantom(manifest_path, manifest, read_4d_frames(root / manifest["image"], "image"),
                   read_4d_frames(root / manifest["labels"], "labels"),
                   read_markups_json(root / manifest["landmarks"]),
                   read_trajectories_csv(root / manifest["trajectories"]))
