"""Pairs trained together as one batched network against the same pairs trained one by one (real optimisation on
the CPU): the GPU path's exactness, checked where there is no GPU."""

from __future__ import annotations

import threading

import pytest
import torch
from helpers import SMALL
from INRCardiacRegistrationLib.core.vocabulary import InputError
from INRCardiacRegistrationLib.engine.batched_siren import BatchedSiren
from INRCardiacRegistrationLib.engine.pair_batch import PairJob, register_pairs_together
from INRCardiacRegistrationLib.engine.pair_registration import RegistrationCancelled, register_pair
from INRCardiacRegistrationLib.engine.siren import Siren

# the width of the ``trained`` warm start
CONFIG = SMALL.replace(iterations=40, points=500, jacobian_points=200, progress_every=8)


def test_a_batched_network_computes_each_network_and_its_jacobian():
    networks = []
    for seed in range(3):
        torch.manual_seed(seed)
        network = Siren(16, 3, 20.0, zero_output=False)
        networks.append(network)
    batched = BatchedSiren(networks)
    x = torch.rand(3, 50, 3) * 2 - 1
    u, jacobian = batched.forward_with_jacobian(x)
    for k, network in enumerate(networks):
        torch.testing.assert_close(batched(x)[k], network(x[k]), rtol=1e-5, atol=1e-6)
        own_u, own_jacobian = network.forward_with_jacobian(x[k])
        torch.testing.assert_close(u[k], own_u, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(jacobian[k], own_jacobian, rtol=1e-5, atol=1e-5)
        for name, value in batched.network(k).state_dict().items():
            assert torch.equal(value, network.state_dict()[name]), name
    with pytest.raises(InputError, match="one shape"):
        BatchedSiren([Siren(16, 3, 20.0), Siren(8, 3, 20.0)])


def _close(a, b) -> None:
    assert len(a.loss_history) == len(b.loss_history)
    torch.testing.assert_close(torch.tensor(a.loss_history), torch.tensor(b.loss_history), rtol=1e-5, atol=1e-6)
    for name, value in a.network.state_dict().items():
        torch.testing.assert_close(value, b.network.state_dict()[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_pairs_trained_together_equal_pairs_trained_one_by_one(pair, pair_mask, trained):
    """Three pairs: one from scratch with the SDF term (runs all its iterations), two warm-started with the plateau
    rule and the tail average (the plateau ends them at their own iterations; they leave the batch, the others go
    on), each with its own seed."""
    config = CONFIG.replace(plateau_window=8, plateau_gain=0.5, tail_average=8)
    warm = [PairJob(pair.fixed, pair.moving, mask=pair_mask, blood_pool=pair_mask, initial=trained,
                    config=config.replace(seed=seed)) for seed in (1, 2)]
    scratch = PairJob(pair.fixed, pair.moving, fixed_label=pair.fixed_label, moving_label=pair.moving_label,
                      mask=pair_mask, blood_pool=pair_mask, config=config.replace(seed=3))
    jobs = [warm[0], scratch, warm[1]]
    together = register_pairs_together(jobs)
    alone = [register_pair(job.fixed, job.moving, fixed_label=job.fixed_label, moving_label=job.moving_label,
                           mask=job.mask, blood_pool=job.blood_pool, initial=job.initial, config=job.config)
             for job in jobs]
    for batched, single in zip(together, alone, strict=True):
        _close(batched, single)
    # the warm-started pairs left the batch early (the one between them went on alone)
    assert len(alone[1].loss_history) == 40 and len(alone[0].loss_history) < 40 and len(alone[2].loss_history) < 40


@pytest.mark.slow
def test_a_cancelled_batch_saves_each_pair_and_register_pair_resumes_it(pair, pair_mask, trained):
    """Two warm-started pairs end at their plateau and are handed to ``finished`` (the second one's hand-over
    cancels the batch); the pair from scratch still training saves its state (its slice of the batched network, Adam
    moments and weights of its last iterations), the state register_pair saves: resumed alone, it ends as the pair
    trained alone from the start would (within rounding: its first steps were batched)."""
    config = CONFIG.replace(alpha=0.0, plateau_window=8, plateau_gain=0.5, tail_average=8)
    cancel = threading.Event()
    saved: dict[int, object] = {}
    done: dict[int, object] = {}

    def finished(index: int, result) -> None:
        done[index] = result
        if len(done) == 2:
            cancel.set()

    jobs = [PairJob(pair.fixed, pair.moving, mask=pair_mask, initial=initial, config=config.replace(seed=seed),
                    save_state=lambda state, s=seed: saved.__setitem__(s, state))
            for seed, initial in ((1, trained), (2, None), (3, trained))]
    with pytest.raises(RegistrationCancelled):
        register_pairs_together(jobs, cancel=cancel, finished=finished)
    assert sorted(done) == [0, 2] and sorted(saved) == [2]
    state = saved[2]
    assert max(len(result.loss_history) for result in done.values()) == state.iteration < 40
    assert state.tail.shape[0] == 8
    resumed = register_pair(pair.fixed, pair.moving, mask=pair_mask, config=config.replace(seed=2),
                            resume_from=state)
    alone = register_pair(pair.fixed, pair.moving, mask=pair_mask, config=config.replace(seed=2))
    _close(resumed, alone)


def test_pairs_of_different_configurations_are_refused(pair, pair_mask):
    jobs = [PairJob(pair.fixed, pair.moving, mask=pair_mask, config=CONFIG),
            PairJob(pair.fixed, pair.moving, mask=pair_mask, config=CONFIG.replace(learning_rate=1e-3))]
    with pytest.raises(InputError, match="learning_rate"):
        register_pairs_together(jobs)
    with pytest.raises(InputError, match="analytic"):
        register_pairs_together([PairJob(pair.fixed, pair.moving, mask=pair_mask,
                                         config=CONFIG.replace(jacobian="autograd"))])
