"""Pairwise registration on a synthetic pair with KNOWN motion: accuracy, the exported field against
SimpleITK, reproducibility, checkpoints, warm start, progress and cancel. Real torch optimisation."""

import threading

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from helpers import SMALL
from INRCardiacRegistrationLib.core.metrics import dice
from INRCardiacRegistrationLib.engine.pair_registration import RegistrationCancelled, register_pair
from INRCardiacRegistrationLib.engine.registration_result import PairRegistration
from INRCardiacRegistrationLib.fileio.displacement_field import read_displacement_transform


def _mask_points(pair, mask):
    return pair.fixed.geometry.index_to_physical(np.argwhere(mask.array)[:, ::-1])


@pytest.mark.slow
def test_image_only_registration_recovers_known_motion(pair, pair_mask, trained):
    """alpha = 0: mean error of phi inside the mask <= 30% of the identity's error."""
    points = _mask_points(pair, pair_mask)
    truth = pair.phi(points)
    initial_error = np.linalg.norm(truth - points, axis=1).mean()
    final_error = np.linalg.norm(truth - trained.map_points(points), axis=1).mean()
    print(f"mean error inside mask: {initial_error:.3f} mm -> {final_error:.3f} mm "
          f"({100 * final_error / initial_error:.1f}%)")
    assert final_error <= 0.3 * initial_error
    assert trained.alpha_used == 0.0
    assert trained.loss_history[-1] < trained.loss_history[0]


@pytest.mark.slow
def test_sdf_only_registration_aligns_the_shape(pair, pair_mask):
    """alpha = 1: the fixed label propagated to the moving frame reaches Dice >= 0.95 with its label."""
    result = register_pair(pair.fixed, pair.moving, fixed_label=pair.fixed_label, moving_label=pair.moving_label,
                           mask=pair_mask, config=SMALL.replace(alpha=1.0))
    propagated = result.propagate_fixed_label(pair.fixed_label, pair.moving.geometry)
    before = dice(pair.fixed_label.array, pair.moving_label.array)
    after = dice(propagated.array, pair.moving_label.array)
    print(f"Dice {before:.3f} -> {after:.3f}")
    assert result.alpha_used == 1.0
    assert after >= 0.95


@pytest.mark.slow
def test_exported_field_agrees_with_simpleitk(tmp_path, pair, trained):
    path = trained.export_displacement_field(tmp_path / "field.h5")
    transform = sitk.ReadTransform(str(path))
    geometry = pair.fixed.geometry
    rng = np.random.default_rng(0)
    ijk = rng.uniform(2, np.array(geometry.size) - 3, size=(500, 3))
    points = geometry.index_to_physical(ijk)
    ours = trained.map_points(points)
    theirs = np.array([transform.TransformPoint(p.tolist()) for p in points])
    assert np.max(np.linalg.norm(ours - theirs, axis=1)) <= 0.05
    # Resampling the moving image with the exported transform == the engine's own warp.
    warped = trained.warp_moving(pair.moving)
    resampled = sitk.Resample(pair.moving.to_sitk(), geometry.reference_image(), transform, sitk.sitkLinear, 0.0)
    theirs = sitk.GetArrayFromImage(resampled)
    inside = geometry.contains_physical(trained.map_points(geometry.voxel_centres_physical().reshape(-1, 3)))
    inside = inside.reshape(geometry.array_shape)
    np.testing.assert_allclose(warped.array[inside], theirs[inside], atol=1e-4)
    for suffix in ("nrrd", "mha"):
        other = read_displacement_transform(trained.export_displacement_field(tmp_path / f"field.{suffix}"))
        for point in points[:20]:
            np.testing.assert_allclose(other.TransformPoint(point.tolist()), transform.TransformPoint(point.tolist()),
                                       atol=1e-6)


@pytest.mark.slow
def test_same_seed_same_result_and_checkpoint_roundtrip(tmp_path, pair, pair_mask, trained):
    config = SMALL.replace(alpha=0.0, iterations=30)
    first = register_pair(pair.fixed, pair.moving, mask=pair_mask, config=config)
    second = register_pair(pair.fixed, pair.moving, mask=pair_mask, config=config)
    other_seed = register_pair(pair.fixed, pair.moving, mask=pair_mask, config=config.replace(seed=5))
    points = _mask_points(pair, pair_mask)[::7]
    np.testing.assert_array_equal(first.map_points(points), second.map_points(points))
    assert first.loss_history == second.loss_history
    assert not np.array_equal(first.map_points(points), other_seed.map_points(points))
    loaded = PairRegistration.load(trained.save(tmp_path / "pair.pt"))
    np.testing.assert_array_equal(loaded.map_points(points), trained.map_points(points))
    assert loaded.config == trained.config and loaded.coordinates == trained.coordinates


@pytest.mark.slow
def test_warm_start_starts_where_the_previous_network_ended(pair, pair_mask, trained):
    config = SMALL.replace(alpha=0.0, iterations=1, learning_rate=1e-12)
    warm = register_pair(pair.fixed, pair.moving, mask=pair_mask, config=config, initial=trained,
                         coordinates=trained.coordinates)
    points = _mask_points(pair, pair_mask)[::11]
    np.testing.assert_allclose(warm.map_points(points), trained.map_points(points), atol=1e-4)
    with pytest.raises(ValueError, match="warm start"):
        register_pair(pair.fixed, pair.moving, mask=pair_mask, config=config.replace(width=64), initial=trained)


def test_progress_and_cooperative_cancel(pair, pair_mask):
    events = []
    cancel = threading.Event()

    def on_progress(event):
        events.append(event)
        if event.iteration >= 20:
            cancel.set()

    with pytest.raises(RegistrationCancelled):
        register_pair(pair.fixed, pair.moving, mask=pair_mask, progress=on_progress, cancel=cancel,
                      config=SMALL.replace(alpha=0.0, iterations=100, progress_every=10))
    assert [e.iteration for e in events] == [10, 20]
    assert all(e.iterations == 100 and np.isfinite(e.loss) and e.eta_s >= 0 for e in events)


@pytest.mark.slow
def test_jacobian_determinant_on_grid_is_near_one_for_smooth_motion(pair, trained):
    determinants = trained.jacobian_determinant_on_grid()
    assert determinants.shape == pair.fixed.geometry.array_shape
    assert np.all(determinants > 0)
    assert abs(float(np.median(determinants)) - 1.0) < 0.05


def test_jacobian_penalty_on_a_subset_of_points(pair, pair_mask):
    """jacobian_points < points: the penalty uses part of the batch; results stay accurate and smooth."""
    config = SMALL.replace(alpha=0.0, iterations=40, jacobian_points=500)
    result = register_pair(pair.fixed, pair.moving, mask=pair_mask, config=config)
    assert np.all(np.isfinite(result.loss_history)) and result.loss_history[-1] < result.loss_history[0]
    assert np.all(result.jacobian_determinant_on_grid() > 0)
    with pytest.raises(ValueError, match="'jacobian_points'"):
        SMALL.replace(jacobian_points=-1)


def _jitters(losses: list[float], count: int) -> bool:
    """The criterion, re-computed from a loss history: over the last ``count`` losses the loss fell by no more than
    their standard deviation."""
    last, before = np.array(losses[-count:]), np.array(losses[-2 * count:-count])
    return len(losses) >= 2 * count and before.mean() - last.mean() <= last.std(ddof=1)


def test_tail_average_is_the_mean_of_the_last_iterates_where_the_loss_jitters(pair, pair_mask, trained):
    """tail_average n: a pair whose loss only jitters over its last n iterations returns the mean of its networks
    after them. Oracle: the same pair without averaging (a warm-started one stops at the same iteration N) and with
    ceilings N-1 ... N-n+1 (a shorter pair takes the same steps), their weights averaged here. A pair whose loss still
    falls (from scratch, short) keeps its last iterate."""
    config = SMALL.replace(alpha=0.0, iterations=200, points=500, plateau_window=10, plateau_gain=0.5)
    averaged = register_pair(pair.fixed, pair.moving, mask=pair_mask, initial=trained,
                             config=config.replace(tail_average=10))
    count = len(averaged.loss_history)
    assert 20 <= count < 200 and _jitters(averaged.loss_history, 10)  # the plateau ended it, levelled
    lasts = [register_pair(pair.fixed, pair.moving, mask=pair_mask, initial=trained,
                           config=config.replace(iterations=n if n < count else 200)) for n in range(count - 9,
                                                                                                     count + 1)]
    assert averaged.loss_history == lasts[-1].loss_history  # averaging does not change the training
    for name, value in averaged.network.state_dict().items():
        expected = torch.stack([last.network.state_dict()[name] for last in lasts]).mean(dim=0)
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(averaged.network.output.weight, lasts[-1].network.output.weight)
    short = config.replace(points=2000, width=32, iterations=30)
    plain = register_pair(pair.fixed, pair.moving, mask=pair_mask, config=short)
    assert not _jitters(plain.loss_history, 10)  # still falling fast from scratch
    kept = register_pair(pair.fixed, pair.moving, mask=pair_mask, config=short.replace(tail_average=10))
    assert torch.equal(kept.network.output.weight, plain.network.output.weight)
