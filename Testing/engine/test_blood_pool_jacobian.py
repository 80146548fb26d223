"""The Jacobian penalty inside the LV blood pool taken relative to the pool's mean determinant: its definition, and
on the small phantom's ED -> ES pair (real optimisation) that it lets the cavity empty as the phantom's does while
the paper's penalty holds it back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import SMALL
from INRCardiacRegistrationLib.core.masks import dilate_voxels
from INRCardiacRegistrationLib.engine.losses import blood_pool_relative_determinant, registration_loss
from INRCardiacRegistrationLib.engine.pair_registration import register_pair
from INRCardiacRegistrationLib.phantom.config import LABEL_VALUES, PhantomConfig
from INRCardiacRegistrationLib.phantom.motion import ground_truth_deformation_gradient
from INRCardiacRegistrationLib.phantom.rendering import phantom_frames


def test_pool_determinants_are_divided_by_their_detached_mean():
    determinant = torch.tensor([0.4, 0.5, 0.6, 1.1, 0.9], requires_grad=True)
    pool = torch.tensor([True, True, True, False, False])
    relative = blood_pool_relative_determinant(determinant, pool)
    assert torch.allclose(relative, torch.tensor([0.8, 1.0, 1.2, 1.1, 0.9]))
    relative.sum().backward()
    assert torch.allclose(determinant.grad, torch.tensor([2.0, 2.0, 2.0, 1.0, 1.0]))  # 1 / mean, the mean detached
    none = torch.zeros(5, dtype=torch.bool)
    assert torch.equal(blood_pool_relative_determinant(determinant, none), determinant)
    values = torch.zeros(5)
    evenly = registration_loss(values, values, None, None, torch.tensor([0.5, 0.5, 0.5, 1.0, 1.0]), 0.0, 1.0, 10.0,
                               blood_pool=pool)
    assert float(evenly["jacobian"]) == pytest.approx(0.0, abs=1e-7)  # an evenly emptying cavity costs nothing
    paper = registration_loss(values, values, None, None, torch.tensor([0.5, 0.5, 0.5, 1.0, 1.0]), 0.0, 1.0, 10.0)
    assert float(paper["jacobian"]) == pytest.approx(3 * 0.25 / 0.5 / 5)


@pytest.mark.slow
def test_the_cavity_empties_as_the_phantoms_with_the_relative_penalty():
    """ED -> ES of the phantom at 3 mm voxels, alpha 0.8, the same settings but the penalty in the cavity. The
    mean det J over the reference cavity is the ES/ED volume ratio of the cavity map; the truth is the phantom's
    analytic map; the relative penalty must come closer to it, and keep the myocardium's volume (det J = 1 there in
    the phantom) closer too."""
    config = PhantomConfig(frames=8, spacing_mm=3.0)
    ed_frame, es_frame = phantom_frames(config, with_displacement=False)
    es = config.es_frame
    labels0, labels_es = ed_frame.labels, es_frame.labels
    values = np.asarray(labels0.array)
    cavity = labels0.with_array(values == LABEL_VALUES["blood_pool"])
    wall = labels0.with_array(values == LABEL_VALUES["myocardium"])
    mask = dilate_voxels(labels0.with_array(values >= 1), 2)
    moving_wall = labels_es.with_array(np.asarray(labels_es.array) == LABEL_VALUES["myocardium"])
    cavity_points = labels0.geometry.index_to_physical(np.argwhere(cavity.array)[:, ::-1])
    wall_points = labels0.geometry.index_to_physical(np.argwhere(wall.array)[:, ::-1])
    truth = np.linalg.det(ground_truth_deformation_gradient(cavity_points, es, config)).mean()
    settings = SMALL.replace(alpha=0.8, iterations=200, points=2000)
    found = {}
    for mode in ("identity", "relative"):
        result = register_pair(ed_frame.image, es_frame.image, fixed_label=wall, moving_label=moving_wall,
                               mask=mask, blood_pool=cavity, config=settings.replace(blood_pool_jacobian=mode))
        found[mode] = (result.jacobian_determinant_at(cavity_points).mean(),
                       result.jacobian_determinant_at(wall_points).mean())
    print(f"cavity mean det J: truth {truth:.3f}, paper penalty {found['identity'][0]:.3f}, relative "
          f"{found['relative'][0]:.3f}; myocardium mean det J (truth 1): {found['identity'][1]:.3f}, "
          f"{found['relative'][1]:.3f}")
    assert abs(found["relative"][0] - truth) < abs(found["identity"][0] - truth)
    assert abs(found["relative"][1] - 1.0) < abs(found["identity"][1] - 1.0)
