"""Strain and twist: exact values for maps whose strain is known in closed form, the network's deformation gradient
against autograd, and the estimator on the phantom's analytic motion against the twist it was built with."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from INRCardiacRegistrationLib.engine.displacement_map import DisplacementMap, SampledDisplacementMap
from INRCardiacRegistrationLib.engine.jacobian import jacobian_autograd
from INRCardiacRegistrationLib.function.lv_frame import APICAL, BASAL, estimate_lv_frame
from INRCardiacRegistrationLib.function.strain import MyocardialPoints, identity_strain, map_frame_strain
from INRCardiacRegistrationLib.phantom.config import LABEL_VALUES
from INRCardiacRegistrationLib.phantom.heart_frame import Z_APICAL, Z_BASE, heart_axes_lps
from INRCardiacRegistrationLib.phantom.motion import (
    frame_motion,
    ground_truth_deformation_gradient,
    ground_truth_map,
)
from synthetic_lv import synthetic_lv


class _Analytic(DisplacementMap):
    """phi given by a function of the points; F by central differences (the base class)."""

    def __init__(self, phi):
        self.phi = phi

    def displacement_at(self, points_mm):
        points = np.asarray(points_mm, dtype=float).reshape(-1, 3)
        return self.phi(points) - points


@pytest.fixture(scope="module")
def lv_points():
    lv = synthetic_lv(spacing_mm=2.0)
    frame = estimate_lv_frame(lv.myocardium, lv.geometry, lv.cavity)
    return lv, MyocardialPoints.of(lv.myocardium, lv.geometry, frame)


def _about_axis(points, frame, turn, stretch_long=1.0, stretch_across=1.0):
    """Scale along / across the LV axis about the apex, then turn each point by ``turn(height)`` (radians,
    right-handed about apex -> base)."""
    relative = points - frame.apex_mm
    height = relative @ frame.long_axis
    across = relative - np.outer(height, frame.long_axis)
    angle = turn(height)[:, None]
    turned = (np.cos(angle) * across + np.sin(angle) * np.cross(frame.long_axis, across)) * stretch_across
    return frame.apex_mm + turned + np.outer(stretch_long * height, frame.long_axis)


def test_strain_of_stretches_along_and_across_the_axis(lv_points):
    _, points = lv_points
    frame = points.frame
    assert identity_strain(points).gls_pct == 0.0
    shortening = map_frame_strain(points, _Analytic(lambda p: _about_axis(p, frame, lambda h: 0 * h, 0.85)))
    assert shortening.gls_pct == pytest.approx(100 * (0.85 ** 2 - 1) / 2, abs=1e-4)
    assert abs(shortening.gcs_pct) < 1e-4 and abs(shortening.grs_pct) < 1e-4 and abs(shortening.twist_deg) < 1e-6
    narrowing = map_frame_strain(points, _Analytic(lambda p: _about_axis(p, frame, lambda h: 0 * h, 1.0, 0.8)))
    assert narrowing.gcs_pct == pytest.approx(100 * (0.8 ** 2 - 1) / 2, abs=1e-4)
    assert narrowing.grs_pct == pytest.approx(100 * (0.8 ** 2 - 1) / 2, abs=1e-4)
    assert abs(narrowing.gls_pct) < 1e-4
    assert np.allclose(narrowing.segments_pct[:, 2], 0.0, atol=1e-4)


def test_twist_of_a_linear_torsion(lv_points):
    """Each level turns by kappa * height (right-handed about apex -> base, i.e. clockwise seen from the apex): the
    twist (apical minus basal rotation, counter-clockwise seen from the apex) is kappa times the rings' mean height
    difference."""
    _, points = lv_points
    frame = points.frame
    kappa = np.radians(0.2)  # per mm
    strain = map_frame_strain(points, _Analytic(lambda p: _about_axis(p, frame, lambda h: kappa * h)))
    heights = frame.heights(points.points_mm)
    basal, apical = (heights[np.isin(points.segments, ring)].mean() for ring in (BASAL, APICAL))
    assert strain.twist_deg == pytest.approx(np.degrees(kappa) * (basal - apical), abs=0.05)
    assert strain.apical_rotation_deg == pytest.approx(-np.degrees(kappa) * apical, abs=0.05)


def test_the_networks_deformation_gradient_is_its_autograd_jacobian(trained, pair):
    points = pair.fixed.geometry.index_to_physical(np.argwhere(pair.fixed_label.array)[:, ::-1][:500])
    exact = trained.deformation_gradient_at(points)
    x = torch.as_tensor(points, dtype=torch.float32)
    _, jacobian = jacobian_autograd(lambda y: trained.coordinates.scale_mm * trained.network(
        trained.coordinates.to_normalized(y)), x, create_graph=False)
    assert np.abs(exact - (jacobian.double().numpy() + np.eye(3))).max() < 1e-4


def test_the_fields_deformation_gradient_is_exact_for_a_linear_field(lv_points):
    lv, _ = lv_points
    matrix = np.array([[0.1, 0.02, 0.0], [-0.03, -0.05, 0.01], [0.0, 0.04, 0.08]])
    grid = lv.geometry
    centres = grid.voxel_centres_physical()
    field = SampledDisplacementMap(centres @ matrix.T, grid)
    inside = centres[20:30, 20:30, 20:30].reshape(-1, 3)
    assert np.abs(field.deformation_gradient_at(inside) - (np.eye(3) + matrix)).max() < 1e-5


def test_the_phantom_twist_and_incompressible_wall_through_the_estimator(tiny_phantom):
    """The phantom's analytic map (not the registration code): its wall keeps its volume (det F = 1), and the
    estimator's twist is the configured torsion over the rings' height difference (rotation is linear in height
    between Z_APICAL and Z_BASE and continues so beyond them)."""
    labels = tiny_phantom.labels[0]
    values = np.asarray(labels.array)
    frame = estimate_lv_frame(values == LABEL_VALUES["myocardium"], labels.geometry,
                              values == LABEL_VALUES["blood_pool"])
    points = MyocardialPoints.of(values == LABEL_VALUES["myocardium"], labels.geometry, frame)
    config, t = tiny_phantom.config, tiny_phantom.es_frame
    gradient = ground_truth_deformation_gradient(points.points_mm, t, config)
    assert np.abs(np.linalg.det(gradient) - 1.0).max() < 1e-3
    from INRCardiacRegistrationLib.function.strain import frame_strain

    strain = frame_strain(points, ground_truth_map(points.points_mm, t, config), gradient)
    motion = frame_motion(config, t)
    axis = heart_axes_lps()[2]
    heights = (points.points_mm - tiny_phantom.landmarks.points_lps[-1]) @ axis  # any origin on the axis will do
    basal, apical = (heights[np.isin(points.segments, ring)].mean() for ring in (BASAL, APICAL))
    torsion = np.degrees(motion.rot_base_rad - motion.rot_apex_rad)  # right-handed: base minus apex
    assert strain.twist_deg == pytest.approx(torsion * (basal - apical) / (Z_BASE - Z_APICAL), abs=0.3)
    assert strain.gls_pct < -5.0 and strain.gcs_pct < -5.0 and strain.grs_pct > 10.0


def test_the_estimator_finds_the_phantoms_hypokinetic_segment(tiny_phantom):
    """On the analytic motion of a phantom whose segment 10 keeps about a fifth of its radial wall motion, the least
    radial strain at ES is in segment 10 (the estimator's AHA layout agrees with the phantom's)."""
    from dataclasses import replace

    from INRCardiacRegistrationLib.function.strain import frame_strain

    labels = tiny_phantom.labels[0]
    values = np.asarray(labels.array)
    wall, cavity = values == LABEL_VALUES["myocardium"], values == LABEL_VALUES["blood_pool"]
    points = MyocardialPoints.of(wall, labels.geometry, estimate_lv_frame(wall, labels.geometry, cavity))
    config = replace(tiny_phantom.config, hypokinetic_segment=10)
    t = config.es_frame
    strain = frame_strain(points, ground_truth_map(points.points_mm, t, config),
                          ground_truth_deformation_gradient(points.points_mm, t, config))
    assert int(np.argmin(strain.segments_pct[:16, 0])) + 1 == 10
    assert int(np.argmax(strain.segments_pct[:16, 1])) + 1 == 10
