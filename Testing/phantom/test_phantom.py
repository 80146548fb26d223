"""The synthetic beating-heart phantom (issue 3): physiology, internal consistency, files, command line.

A small phantom (2 mm voxels, 8 frames) is written once per session; the default configuration is rendered
in memory for the checks that must hold at the default resolution.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from INRCardiacRegistrationLib import phantom as P
from INRCardiacRegistrationLib.cli.main import main
from INRCardiacRegistrationLib.core.metrics import dice
from INRCardiacRegistrationLib.fileio.landmarks import read_markups_json, read_trajectories_csv
from INRCardiacRegistrationLib.phantom.model import LABEL_VALUES, PhantomConfig

SMALL = PhantomConfig(frames=8, spacing_mm=2.0)
MYO, BLOOD, HEART = LABEL_VALUES["myocardium"], LABEL_VALUES["blood_pool"], LABEL_VALUES["heart"]


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory):
    return P.generate_phantom(tmp_path_factory.mktemp("phantom"), SMALL, montage=True)


@pytest.fixture(scope="module")
def phantom(manifest_path):
    return P.load_phantom(manifest_path)


@pytest.fixture(scope="module")
def default_frames():
    """ED and ES of the default phantom (1.75 mm voxels), in memory."""
    return P.phantom_frames(PhantomConfig())


# --- files and manifest ---------------------------------------------------------------------------------
def test_manifest_names_every_file(manifest_path, phantom):
    manifest = json.loads(manifest_path.read_text())
    for key in ("image", "labels", "label_values", "landmarks", "trajectories", "ground_truth_transforms",
                "ed_frame", "es_frame", "spacing", "generator"):
        assert key in manifest, key
    root = manifest_path.parent
    for key in ("image", "labels", "landmarks", "trajectories", "montage"):
        assert (root / manifest[key]).is_file(), key
    assert manifest["label_values"] == {"myocardium": 1, "blood_pool": 2, "heart": 3}
    assert len(manifest["ground_truth_transforms"]) == SMALL.frames
    assert all((root / path).is_file() for path in manifest["ground_truth_transforms"])
    assert manifest["ed_frame"] == 0 and manifest["es_frame"] == SMALL.es_frame == 3
    assert manifest["spacing"] == [2.0, 2.0, 2.0]
    assert PhantomConfig.from_dict(manifest["generator"]["parameters"]) == SMALL
    assert manifest["generator"]["version"]
    assert manifest["generator"]["model_version"] == P.PHANTOM_MODEL_VERSION
    assert (root / manifest["montage"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_images_are_4d_ct_in_hu_with_labels_on_one_grid(manifest_path, phantom):
    image = sitk.ReadImage(str(manifest_path.parent / "ct_4d.nii.gz"))
    labels = sitk.ReadImage(str(manifest_path.parent / "labels_4d.nii.gz"))
    assert image.GetDimension() == 4 and image.GetSize()[3] == SMALL.frames
    assert image.GetPixelID() == sitk.sitkInt16 and labels.GetPixelID() == sitk.sitkUInt8
    assert len(phantom.images) == len(phantom.labels) == SMALL.frames
    for volume in phantom.images + phantom.labels:
        assert volume.geometry.matches(SMALL.geometry)
    ed, labels_ed = phantom.images[0].array, phantom.labels[0].array
    assert set(np.unique(labels_ed)) == {0, MYO, BLOOD, HEART}
    assert 300 <= ed[labels_ed == BLOOD].mean() <= 420        # contrast-filled LV blood pool
    assert 100 <= np.median(ed[labels_ed == MYO]) <= 150      # myocardium
    assert np.percentile(ed, 5) < -700                         # lungs
    assert ed.max() > 500                                      # bone / coronaries


def test_frame_zero_transform_is_identity_and_fields_are_finite(phantom):
    u0, geometry = phantom.ground_truth_displacement(0)
    assert geometry.matches(SMALL.ground_truth_geometry) and np.all(u0 == 0.0)
    u_es, _ = phantom.ground_truth_displacement(phantom.es_frame)
    assert np.isfinite(u_es).all() and 8.0 < np.linalg.norm(u_es, axis=-1).max() < 25.0


def test_in_memory_frames_equal_the_written_ones(phantom):
    frames = P.phantom_frames(SMALL, [SMALL.es_frame, 1], workers=1)
    assert [f.frame for f in frames] == [SMALL.es_frame, 1]
    es = frames[0]
    np.testing.assert_array_equal(es.image.array, phantom.images[SMALL.es_frame].array)
    np.testing.assert_array_equal(es.labels.array, phantom.labels[SMALL.es_frame].array)
    u, _ = phantom.ground_truth_displacement(SMALL.es_frame)
    np.testing.assert_allclose(es.displacement_mm, u, atol=1e-12)
    np.testing.assert_allclose(es.landmarks_lps, phantom.trajectories.points_lps[SMALL.es_frame], atol=1e-5)


# --- acceptance 1: physiology measured from labels and from the ground-truth map -------------------------
def _volume_ml(labels: np.ndarray, value: int, spacing: tuple[float, float, float]) -> float:
    return float(np.count_nonzero(labels == value)) * float(np.prod(spacing)) / 1000.0


@pytest.mark.parametrize("source", ["small", "default"])
def test_ejection_fraction_and_constant_myocardial_volume(source, phantom, default_frames):
    if source == "small":
        labels = [v.array for v in phantom.labels]
        es, spacing = phantom.es_frame, SMALL.spacing_mm
    else:
        labels = [f.labels.array for f in default_frames]
        es, spacing = 1, PhantomConfig().spacing_mm
    blood = [_volume_ml(lab, BLOOD, spacing) for lab in labels]
    myocardium = [_volume_ml(lab, MYO, spacing) for lab in labels]
    ejection_fraction = 1.0 - blood[es] / blood[0]
    assert 0.50 <= ejection_fraction <= 0.65
    assert abs(ejection_fraction - PhantomConfig().ejection_fraction) < 0.01
    assert 100.0 < blood[0] < 150.0 and 100.0 < myocardium[0] < 160.0      # mL, an adult LV
    assert max(abs(m / myocardium[0] - 1.0) for m in myocardium) < 0.05
    assert all(b <= blood[0] + 1e-9 for b in blood)                        # ED is the largest


@pytest.mark.parametrize("torsion, shortening", [(12.0, 0.13), (8.0, 0.10)])
def test_torsion_and_shortening_measured_from_the_map_are_as_configured(torsion, shortening):
    config = PhantomConfig(frames=8, torsion_deg=torsion, longitudinal_shortening=shortening)
    measured = P.measure_motion(config)
    assert measured["torsion_deg"] == pytest.approx(torsion, abs=0.05)
    assert measured["longitudinal_shortening"] == pytest.approx(shortening, abs=0.002)
    assert measured["apex_rotation_deg"] < -1.0 < 1.0 < measured["base_rotation_deg"]   # opposite senses
    ed = P.measure_motion(config, frame=0)
    assert ed["torsion_deg"] == 0.0 and ed["longitudinal_shortening"] == 0.0


def test_torsion_from_the_written_transform(phantom):
    """Rotation of mid-wall rings measured with the .h5 field read by SimpleITK, not the analytic map."""
    transform = sitk.ReadTransform(str(phantom.ground_truth_path(phantom.es_frame)))
    axes = P.heart_axes_lps()
    angles = np.deg2rad(np.arange(0.0, 360.0, 15.0))

    def rotation_deg(z: float) -> float:
        radius = 0.5 * (float(P._endo_radius(z)) + float(P._epi_radius(z)))
        ring = P.from_heart_frame(np.stack([radius * np.cos(angles), radius * np.sin(angles),
                                            np.full_like(angles, z)], axis=-1))
        moved = np.array([transform.TransformPoint(tuple(p)) for p in ring])
        a = (ring - ring.mean(0)) @ axes[:2].T
        b = (moved - moved.mean(0)) @ axes[:2].T
        turn = np.arctan2(b[:, 1], b[:, 0]) - np.arctan2(a[:, 1], a[:, 0])
        return float(np.rad2deg(np.angle(np.mean(np.exp(1j * turn)))))

    torsion = rotation_deg(P.Z_BASE - 1.0) - rotation_deg(P.Z_APICAL)
    assert 10.0 <= torsion <= 15.0


def test_wall_is_incompressible_and_the_map_never_folds():
    config = PhantomConfig(frames=8)
    rng = np.random.default_rng(0)
    # mid-wall reference points, heart frame -> LPS
    z = rng.uniform(8.0, P.Z_BASE - 2.0, 400)
    theta = rng.uniform(0.0, 2 * np.pi, 400)
    endo, epi = P._endo_radius(z), P._epi_radius(z)
    r = endo + rng.uniform(0.2, 0.8, 400) * (epi - endo)
    wall = P.from_heart_frame(np.stack([r * np.cos(theta), r * np.sin(theta), z], axis=-1))
    grid = PhantomConfig(spacing_mm=4.0).geometry.voxel_centres_physical().reshape(-1, 3)
    h = 1e-3
    for points, check in ((wall, "wall"), (grid, "everywhere")):
        jacobian = np.stack([(P.ground_truth_map(points + h * e, config.es_frame, config)
                              - P.ground_truth_map(points - h * e, config.es_frame, config)) / (2 * h)
                             for e in np.eye(3)], axis=-1)
        det = np.linalg.det(jacobian)
        if check == "wall":
            np.testing.assert_allclose(det, 1.0, atol=2e-4)
        else:
            assert det.min() > 0.2


def test_inverse_map_round_trip():
    config = PhantomConfig(frames=8)
    points = config.geometry.voxel_centres_physical()[::3, ::3, ::3].reshape(-1, 3)
    for frame in (1, config.es_frame, 6):
        moved = P.ground_truth_map(points, frame, config)
        np.testing.assert_allclose(P.inverse_ground_truth_map(moved, frame, config), points, atol=1e-6)
        back = P.inverse_ground_truth_map(points, frame, config)
        np.testing.assert_allclose(P.ground_truth_map(back, frame, config), points, atol=1e-6)
    assert np.array_equal(P.ground_truth_map(points, 0, config), points)


def test_motion_fades_away_from_the_heart():
    config = PhantomConfig()
    far = P.from_heart_frame(np.array([[100.0, 0.0, 40.0], [0.0, -100.0, 40.0], [0.0, 0.0, 200.0],
                                       [0.0, 0.0, -60.0]]))
    np.testing.assert_allclose(P.ground_truth_map(far, config.es_frame, config), far, atol=1e-9)


def test_contraction_time_course():
    a = [P.contraction(t / 20, 8 / 20) for t in range(21)]
    assert a[0] == 0.0 and a[8] == 1.0 and a[20] == pytest.approx(0.0, abs=1e-12)
    assert all(0.0 <= v <= 1.0 for v in a)
    assert all(x < y for x, y in zip(a[:8], a[1:9], strict=True))          # monotone systole
    assert max(abs(x - y) for x, y in zip(a, a[1:], strict=False)) < 0.3   # smooth at 20 frames


# --- acceptance 2: labels, landmarks and the map agree ---------------------------------------------------
def test_verify_phantom_reports_the_acceptance_figures(manifest_path):
    """Acceptance 1-3 in one call, measured from the written files (what ``--verify`` prints)."""
    figures = P.verify_phantom(manifest_path)
    assert 0.50 <= figures["ejection_fraction"] <= 0.65
    assert figures["myocardium_volume_max_deviation"] < 0.05
    assert figures["torsion_deg"] == pytest.approx(SMALL.torsion_deg, abs=0.05)
    assert figures["longitudinal_shortening"] == pytest.approx(SMALL.longitudinal_shortening, abs=0.002)
    assert figures["pushed_myocardium_dice_min"] >= 0.97        # ED myocardium pushed to every frame
    assert figures["pushed_myocardium_dice"][0] > 0.99
    assert figures["trajectories_vs_map_max_mm"] < 0.01
    assert figures["transforms_vs_trajectories_max_mm"] < 0.05
    assert len(figures["blood_pool_ml"]) == len(figures["myocardium_ml"]) == SMALL.frames


def test_pushed_ed_myocardium_at_default_resolution(default_frames):
    ed, es = default_frames
    pushed = P.push_reference_mask(ed.labels.array == MYO, es.frame, PhantomConfig())
    assert dice(pushed, es.labels.array == MYO) >= 0.975


def test_trajectories_equal_the_map_of_the_reference_landmarks(manifest_path, phantom):
    reference = read_markups_json(manifest_path.parent / "landmarks_reference.mrk.json")
    trajectories = read_trajectories_csv(manifest_path.parent / "landmark_trajectories.csv")
    assert len(reference) >= 16 and sum(label[0].isdigit() for label in reference.labels) == 4
    assert trajectories.frames == tuple(range(SMALL.frames)) and trajectories.labels == reference.labels
    np.testing.assert_allclose(trajectories.points_lps[0], reference.points_lps, atol=1e-5)
    for frame in range(SMALL.frames):
        mapped = P.ground_truth_map(reference.points_lps, frame, SMALL)
        assert np.abs(mapped - trajectories.points_lps[frame]).max() < 0.01
    # the coronary landmarks lie just outside the myocardium, the wall landmarks inside it
    index = np.rint(phantom.labels[0].geometry.physical_to_index(reference.points_lps)).astype(int)
    values = phantom.labels[0].array[index[:, 2], index[:, 1], index[:, 0]]
    coronary = np.array([label[0].isdigit() for label in reference.labels])
    assert np.all(values[~coronary] == MYO) and not np.any(values[coronary] == BLOOD)


# --- acceptance 3: the written transforms, read with SimpleITK --------------------------------------------
def test_written_transforms_reproduce_the_trajectories(phantom):
    reference = phantom.landmarks.points_lps
    for frame in range(SMALL.frames):
        transform = sitk.ReadTransform(str(phantom.ground_truth_path(frame)))
        moved = np.array([transform.TransformPoint(tuple(float(c) for c in p)) for p in reference])
        assert np.abs(moved - phantom.trajectories.points_lps[frame]).max() < 0.05, frame


def test_ground_truth_transform_resamples_frame_labels_back_onto_the_reference(phantom):
    """Resampling frame t through its transform (SimpleITK, nearest neighbour) recovers the ED labels up to
    the quarter-voxel discretisation of nearest-neighbour sampling."""
    es = phantom.es_frame
    moving = phantom.labels[es].to_sitk()
    warped = sitk.Resample(moving, phantom.labels[0].to_sitk(), phantom.ground_truth_transform(es),
                           sitk.sitkNearestNeighbor, 0)
    back = sitk.GetArrayFromImage(warped)
    assert dice(back == MYO, phantom.labels[0].array == MYO) > 0.93
    assert dice(back == BLOOD, phantom.labels[0].array == BLOOD) > 0.93


# --- configuration and command line ---------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, name", [
    ({"frames": 1}, "frames"), ({"frames": 2.5}, "frames"), ({"spacing_mm": -1.0}, "spacing_mm"),
    ({"spacing_mm": (1.0, 2.0)}, "spacing_mm"), ({"size": (10, 10)}, "size"),
    ({"noise_hu": -1.0}, "noise_hu"),
    ({"ejection_fraction": 0.95}, "ejection_fraction"), ({"torsion_deg": 45.0}, "torsion_deg"),
    ({"longitudinal_shortening": 0.5}, "longitudinal_shortening"), ({"seed": -1}, "seed"),
    ({"translation_mm": (20.0, 0.0, 0.0)}, "translation_mm"), ({"size": 2000}, "size"),
])
def test_bad_configuration_names_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PhantomConfig(**kwargs)


def test_configuration_round_trip_and_presets():
    config = PhantomConfig(frames=10, spacing_mm=2.0, size=(40, 41, 42), seed=3)
    assert config.spacing_mm == (2.0, 2.0, 2.0) and config.grid_size == (40, 41, 42)
    assert PhantomConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown"):
        PhantomConfig.from_dict({"frames": 4, "colour": "red"})
    paper = PhantomConfig.paper_like()
    assert paper.spacing_mm == (0.5, 0.5, 2.0) and paper.frames == 20 and 7 <= paper.es_frame <= 8
    assert paper.ground_truth_geometry.spacing == (1.75, 1.75, 1.75)
    assert PhantomConfig.paper_like(frames=10).frames == 10
    default = PhantomConfig()
    assert 1.5 <= default.spacing_mm[0] <= 2.0 and 0.35 <= default.es_frame / default.frames <= 0.40


def test_cli_writes_a_phantom(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["phantom", str(out), "--frames", "4", "--spacing", "3", "--size", "40", "40", "32",
                 "--seed", "2", "--noise", "5", "--verify"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    printed = capsys.readouterr()
    assert printed.out.strip() == str(out / "manifest.json")
    assert "EF " in printed.err and "pushed_myocardium_dice_min" in printed.err
    assert manifest["size"] == [40, 40, 32] and manifest["spacing"] == [3.0, 3.0, 3.0]
    assert manifest["generator"]["parameters"]["seed"] == 2
    assert manifest["generator"]["parameters"]["noise_hu"] == 5.0
    assert len(manifest["ground_truth_transforms"]) == 4 and manifest["es_frame"] == 2
    assert main(["phantom", str(tmp_path / "quiet"), "--frames", "3", "--spacing", "4", "--quiet"]) == 0
    assert capsys.readouterr() == (str(tmp_path / "quiet" / "manifest.json") + "\n", "")


@pytest.mark.parametrize("arguments, message", [
    (["--frames", "1"], "PhantomConfig 'frames' must be an integer in [2, 200], got 1"),
    (["--spacing", "1", "2"], "--spacing takes one value or three, got 2: [1.0, 2.0]"),
    (["--noise", "-5"], "PhantomConfig 'noise_hu' must be a number in [0, 500] HU, got -5.0"),
    (["--ejection-fraction", "0.9"],
     "PhantomConfig 'ejection_fraction' must be a number in [0, 0.8], got 0.9"),
])
def test_cli_bad_arguments_give_one_line_and_exit_code_2(tmp_path, capsys, arguments, message):
    assert main(["phantom", str(tmp_path / "out"), *arguments]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"inr-cardiac phantom: error: {message}"]
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_cli_error_as_a_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "INRCardiacRegistrationLib.cli", "phantom",
                             str(tmp_path / "out"), "--size", "10", "20"], capture_output=True, text=True)
    assert result.returncode == 2
    expected = "inr-cardiac phantom: error: --size takes one value or three, got 2: [10, 20]"
    assert result.stderr.strip().splitlines() == [expected]
