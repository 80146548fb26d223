"""A pair stopped part-way goes on from its saved training state and ends exactly where an uninterrupted pair ends."""

from __future__ import annotations

import threading

import pytest
import torch
from helpers import SMALL
from INRCardiacRegistrationLib.core.vocabulary import InputError
from INRCardiacRegistrationLib.engine.pair_registration import RegistrationCancelled, register_pair
from INRCardiacRegistrationLib.engine.training_state import PairTrainingState, StaleTrainingState

CONFIG = SMALL.replace(iterations=60, points=1500, width=64, progress_every=10)


def _stopped_at(iteration: int, pair, pair_mask, config, tmp_path, initial=None, labels=True) -> PairTrainingState:
    """Train until ``iteration``, cancel, and return the state saved on cancel, read back from its file."""
    label_args = {"fixed_label": pair.fixed_label, "moving_label": pair.moving_label} if labels else {}
    cancel = threading.Event()
    saved: list[PairTrainingState] = []

    def progress(event) -> None:
        if event.iteration >= iteration:
            cancel.set()

    with pytest.raises(RegistrationCancelled):
        register_pair(pair.fixed, pair.moving, **label_args,
                      mask=pair_mask, config=config, initial=initial, progress=progress, cancel=cancel,
                      save_state=saved.append, save_every_s=1e9)
    assert [state.iteration for state in saved] == [iteration]  # only the save on cancel (the period is long)
    return PairTrainingState.load(saved[0].save(tmp_path / "state.pt"))


def _same_network(a, b) -> None:
    for (name, x), (_, y) in zip(a.network.state_dict().items(), b.network.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_a_resumed_pair_ends_with_the_uninterrupted_network(tmp_path, pair, pair_mask):
    whole = register_pair(pair.fixed, pair.moving, fixed_label=pair.fixed_label, moving_label=pair.moving_label,
                          mask=pair_mask, config=CONFIG)
    state = _stopped_at(30, pair, pair_mask, CONFIG, tmp_path)
    assert len(state.losses) == 30 and state.losses.tolist() == whole.loss_history[:30]
    seen = []
    resumed = register_pair(pair.fixed, pair.moving, fixed_label=pair.fixed_label, moving_label=pair.moving_label,
                            mask=pair_mask, config=CONFIG, resume_from=state, progress=seen.append)
    assert seen[0].iteration == 40  # the first report after the 30 iterations done: none is trained again
    assert resumed.loss_history == whole.loss_history
    _same_network(resumed, whole)
    assert resumed.seconds >= state.seconds


@pytest.mark.parametrize("before_end", [10, 20])
def test_a_warm_started_pair_resumes_with_its_plateau_windows(tmp_path, pair, pair_mask, trained, before_end):
    """The plateau rule sees the windows before the stop again: the resumed pair stops where the whole one did
    (stopped in the middle of a window, and at a window's end, whose check the resumed pair must not repeat). Its
    result, the mean of its last 20 iterates, takes some of them from the saved state."""
    config = CONFIG.replace(iterations=400, plateau_window=20, plateau_gain=0.5, alpha=0.0, width=SMALL.width,
                            tail_average=20)
    whole = register_pair(pair.fixed, pair.moving, mask=pair_mask, config=config, initial=trained)
    assert 40 < len(whole.loss_history) < 400  # the plateau ended it early
    state = _stopped_at(len(whole.loss_history) - before_end, pair, pair_mask, config, tmp_path, initial=trained,
                        labels=False)
    assert state.tail.shape[0] == 20
    resumed = register_pair(pair.fixed, pair.moving, mask=pair_mask, config=config, initial=trained,
                            resume_from=state)
    assert resumed.loss_history == whole.loss_history
    _same_network(resumed, whole)


def test_a_state_is_resumed_only_by_its_own_pair(tmp_path, pair, pair_mask):
    state = _stopped_at(20, pair, pair_mask, CONFIG, tmp_path)
    with pytest.raises(StaleTrainingState, match="config"):
        register_pair(pair.fixed, pair.moving, fixed_label=pair.fixed_label, moving_label=pair.moving_label,
                      mask=pair_mask, config=CONFIG.replace(seed=1), resume_from=state)
    with pytest.raises(StaleTrainingState, match="moving"):
        register_pair(pair.fixed, pair.fixed, fixed_label=pair.fixed_label, moving_label=pair.moving_label,
                      mask=pair_mask, config=CONFIG, resume_from=state)


def test_states_are_saved_periodically(pair, pair_mask):
    saved: list[PairTrainingState] = []
    register_pair(pair.fixed, pair.moving, fixed_label=pair.fixed_label, moving_label=pair.moving_label,
                  mask=pair_mask, config=CONFIG, save_state=saved.append, save_every_s=0.0)
    # every progress report but the last (a finished pair needs no state)
    assert [state.iteration for state in saved] == [10, 20, 30, 40, 50]
    assert all(len(state.losses) == state.iteration for state in saved)


def test_a_damaged_state_file_is_an_input_error(tmp_path):
    path = tmp_path / "state.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="not a readable training state"):
        PairTrainingState.load(path)
    torch.save({"format": "inr-cardiac-pair-training-state/1", "iteration": 3}, path)  # fields missing
    with pytest.raises(InputError, match="not a readable training state"):
        PairTrainingState.load(path)


def test_a_state_that_cannot_be_restored_is_stale(tmp_path, pair, pair_mask):
    """A state whose generator, optimiser or losses do not fit (another device's generator, a torn file) is stale:
    the caller starts the pair over instead of failing."""
    state = _stopped_at(20, pair, pair_mask, CONFIG, tmp_path)
    broken = [PairTrainingState(**{**vars(state), "generator": torch.zeros(16, dtype=torch.uint8)}),
              PairTrainingState(**{**vars(state), "losses": state.losses[:5]}),
              PairTrainingState(**{**vars(state), "optimizer": {"state": {}, "param_groups": []}})]
    for bad in broken:
        with pytest.raises(StaleTrainingState):
            register_pair(pair.fixed, pair.moving, fixed_label=pair.fixed_label, moving_label=pair.moving_label,
                          mask=pair_mask, config=CONFIG, resume_from=bad)
