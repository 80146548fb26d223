"""The phantom's motion (``phantom.motion``): physiology measured from the labels and from the ground-truth map
(acceptance 1), an incompressible wall, a map that never folds, its inverse, and the contraction time course."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from INRCardiacRegistrationLib.core.metrics import dice
from INRCardiacRegistrationLib.phantom.config import PhantomConfig
from INRCardiacRegistrationLib.phantom.heart_frame import (
    Z_APICAL,
    Z_BASE,
    endo_radius,
    epi_radius,
    from_heart_frame,
    heart_axes_lps,
)
from INRCardiacRegistrationLib.phantom.motion import (
    contraction,
    ground_truth_map,
    inverse_ground_truth_map,
    push_reference_mask,
)
from small_phantom import BLOOD, MYO, SMALL


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


def test_torsion_from_the_written_transform(phantom):
    """Rotation of mid-wall rings measured with the .h5 field read by SimpleITK, not the analytic map."""
    transform = sitk.ReadTransform(str(phantom.ground_truth_path(phantom.es_frame)))
    axes = heart_axes_lps()
    angles = np.deg2rad(np.arange(0.0, 360.0, 15.0))

    def rotation_deg(z: float) -> float:
        radius = 0.5 * (float(endo_radius(z)) + float(epi_radius(z)))
        ring = from_heart_frame(np.stack([radius * np.cos(angles), radius * np.sin(angles),
                                            np.full_like(angles, z)], axis=-1))
        moved = np.array([transform.TransformPoint(tuple(p)) for p in ring])
        a = (ring - ring.mean(0)) @ axes[:2].T
        b = (moved - moved.mean(0)) @ axes[:2].T
        turn = np.arctan2(b[:, 1], b[:, 0]) - np.arctan2(a[:, 1], a[:, 0])
        return float(np.rad2deg(np.angle(np.mean(np.exp(1j * turn)))))

    torsion = rotation_deg(Z_BASE - 1.0) - rotation_deg(Z_APICAL)
    assert 10.0 <= torsion <= 15.0


def test_wall_is_incompressible_and_the_map_never_folds():
    config = PhantomConfig(frames=8)
    rng = np.random.default_rng(0)
    # mid-wall reference points, heart frame -> LPS
    z = rng.uniform(8.0, Z_BASE - 2.0, 400)
    theta = rng.uniform(0.0, 2 * np.pi, 400)
    endo, epi = endo_radius(z), epi_radius(z)
    r = endo + rng.uniform(0.2, 0.8, 400) * (epi - endo)
    wall = from_heart_frame(np.stack([r * np.cos(theta), r * np.sin(theta), z], axis=-1))
    grid = PhantomConfig(spacing_mm=4.0).geometry.voxel_centres_physical().reshape(-1, 3)
    h = 1e-3
    for points, check in ((wall, "wall"), (grid, "everywhere")):
        jacobian = np.stack([(ground_truth_map(points + h * e, config.es_frame, config)
                              - ground_truth_map(points - h * e, config.es_frame, config)) / (2 * h)
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
        moved = ground_truth_map(points, frame, config)
        np.testing.assert_allclose(inverse_ground_truth_map(moved, frame, config), points, atol=1e-6)
        back = inverse_ground_truth_map(points, frame, config)
        np.testing.assert_allclose(ground_truth_map(back, frame, config), points, atol=1e-6)
    assert np.array_equal(ground_truth_map(points, 0, config), points)


def test_motion_fades_away_from_the_heart():
    config = PhantomConfig()
    far = from_heart_frame(np.array([[100.0, 0.0, 40.0], [0.0, -100.0, 40.0], [0.0, 0.0, 200.0],
                                       [0.0, 0.0, -60.0]]))
    np.testing.assert_allclose(ground_truth_map(far, config.es_frame, config), far, atol=1e-9)


def test_contraction_time_course():
    a = [contraction(t / 20, 8 / 20) for t in range(21)]
    assert a[0] == 0.0 and a[8] == 1.0 and a[20] == pytest.approx(0.0, abs=1e-12)
    assert all(0.0 <= v <= 1.0 for v in a)
    assert all(x < y for x, y in zip(a[:8], a[1:9], strict=True))          # monotone systole
    assert max(abs(x - y) for x, y in zip(a, a[1:], strict=False)) < 0.3   # smooth at 20 frames


def test_pushed_ed_myocardium_at_default_resolution(default_frames):
    ed, es = default_frames
    pushed = push_reference_mask(ed.labels.array == MYO, es.frame, PhantomConfig())
    assert dice(pushed, es.labels.array == MYO) >= 0.975
