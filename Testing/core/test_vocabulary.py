"""The shared vocabulary: InputError, exit codes, run states, cancel signals and the metric catalogue."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import threading

import numpy as np
import pytest
from INRCardiacRegistrationLib.core.vocabulary import (
    FINAL_EVENTS,
    METRIC_COLUMNS,
    METRICS,
    TRACKING_METRICS,
    ExitCode,
    InputError,
    Metric,
    RunState,
    is_cancelled,
    metric,
)
from INRCardiacRegistrationLib.cycle.run_folder import FrameRecord, RunFolder


# --- InputError ------------------------------------------------------------------------------------------
def test_input_error_is_a_value_error_with_an_optional_option():
    error = InputError("'alpha' must be in [0, 1], got 2", option="alpha")
    assert isinstance(error, ValueError)
    assert str(error) == "'alpha' must be in [0, 1], got 2"
    assert error.option == "alpha"
    assert InputError("missing file").option is None
    with pytest.raises(TypeError):
        InputError("message", "alpha")  # option is keyword-only
    with pytest.raises(ValueError, match="missing"):
        raise InputError("missing file")


# --- exit codes and run states ---------------------------------------------------------------------------
def test_exit_codes():
    assert (ExitCode.FINISHED, ExitCode.FAILED, ExitCode.BAD_INPUT) == (0, 1, 2)
    assert ExitCode.CANCELLED == 130
    assert isinstance(ExitCode.CANCELLED, int)


@pytest.mark.parametrize("code, state", [
    (0, RunState.FINISHED), (ExitCode.FINISHED, RunState.FINISHED),
    (2, RunState.BAD_INPUT), (130, RunState.CANCELLED), (ExitCode.CANCELLED, RunState.CANCELLED),
    (1, RunState.FAILED), (3, RunState.FAILED), (137, RunState.FAILED), (-9, RunState.FAILED),
    (-15, RunState.FAILED), (-2, RunState.FAILED),
])
def test_state_from_exit_code(code, state):
    assert RunState.from_exit_code(code) is state


def test_state_prints_and_serialises_as_its_value():
    assert json.dumps({"s": RunState.FINISHED}) == '{"s": "finished"}'
    assert json.loads(json.dumps([RunState.BAD_INPUT])) == ["bad input"]
    assert f"{RunState.BAD_INPUT}" == "bad input"
    assert str(RunState.CANCELLED) == "cancelled"
    assert " ".join(["status:", RunState.RUNNING]) == "status: running"  # a str wherever one is needed
    assert RunState.FAILED == "failed"  # compares equal to the string stored in run.json
    assert RunState("bad input") is RunState.BAD_INPUT


def test_final_states():
    final = {state for state in RunState if state.is_final}
    assert final == {RunState.FINISHED, RunState.CANCELLED, RunState.FAILED, RunState.BAD_INPUT}
    assert not RunState.STARTING.is_final and not RunState.RUNNING.is_final
    assert set(FINAL_EVENTS) == {"finished", "cancelled", "failed"}
    assert all(RunState(event).is_final for event in FINAL_EVENTS)


# --- cancel signals --------------------------------------------------------------------------------------
def test_is_cancelled_with_none_an_event_and_a_callable():
    assert is_cancelled(None) is False
    event = threading.Event()
    assert is_cancelled(event) is False
    event.set()
    assert is_cancelled(event) is True

    answers = iter([0, "", 1, "stop"])
    calls = []

    def ask():
        calls.append(1)
        return next(answers)

    assert [is_cancelled(ask) for _ in range(4)] == [False, False, True, True]  # truthiness, a bool returned
    assert len(calls) == 4  # asked anew every time


# --- the metric catalogue --------------------------------------------------------------------------------
def test_catalogue_columns_are_the_metrics_csv_header(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.write_metrics([FrameRecord(frame=0)])
    with open(folder.metrics_csv, encoding="utf-8", newline="") as stream:
        header, *rows = list(csv.reader(stream))
    assert tuple(header) == METRIC_COLUMNS
    assert header[0] == "frame" and tuple(header[1:]) == tuple(entry.column for entry in METRICS)
    # the reference frame's row: frame 0, 0 iterations, everything else empty
    assert rows == [["0" if column in ("frame", "iterations") else "" for column in header]]
    assert json.loads(folder.metrics_json.read_text(encoding="utf-8"))["columns"] == list(METRIC_COLUMNS)


def test_every_column_is_a_frame_record_field_in_order():
    fields = [item.name for item in dataclasses.fields(FrameRecord)]
    assert list(METRIC_COLUMNS) == [name for name in fields if name in METRIC_COLUMNS]
    assert len(set(METRIC_COLUMNS)) == len(METRIC_COLUMNS)
    assert set(TRACKING_METRICS) <= set(METRIC_COLUMNS)


def _sample(column: str):
    """A value of the FrameRecord field's type (its annotation, a string under ``from __future__``)."""
    kind = {item.name: getattr(item.type, "__name__", item.type) for item in dataclasses.fields(FrameRecord)}[column]
    return {"float": 1.23456, "int": 250, "str": "0->3"}[kind]


@pytest.mark.parametrize("entry", METRICS, ids=lambda entry: entry.column)
def test_every_form_formats_a_value_of_its_columns_type(entry):
    value = _sample(entry.column)
    formatted = format(value, entry.form)
    assert formatted
    assert entry.text(value).startswith(formatted)
    assert entry.text(None) == "-"
    assert metric(entry.column) is entry


@pytest.mark.parametrize("column, value, text", [
    ("dice", 0.91234, "0.912"),
    ("hd95_mm", 1.2345, "1.23 mm"),
    ("tre_mm", 3.0, "3.00 mm"),
    ("negative_jacobian_pct", 0.5, "0.5000 %"),
    ("final_loss", -0.87654, "-0.8765"),
    ("seconds", 12.34, "12.3 s"),
    ("iterations", 200, "200"),
    ("alpha_used", 0.8, "0.80"),
    ("pair", "0->3", "0->3"),
])
def test_metric_text(column, value, text):
    assert metric(column).text(value) == text


@pytest.mark.parametrize("missing", [None, math.nan, math.inf, -math.inf, np.float32("nan"), np.float64("inf")])
def test_missing_values_print_as_a_dash(missing):
    assert metric("hd95_mm").text(missing) == "-"


def test_numpy_scalars_and_whole_floats_format_by_their_column():
    """metrics.csv read back gives floats (iterations 200.0) and numpy gives its own scalars."""
    assert metric("iterations").text(200.0) == "200"
    assert metric("dice").text(np.float32(0.5)) == "0.500"
    assert metric("seconds").text(np.int64(3)) == "3.0 s"


def test_metric_labels():
    assert metric("hd95_mm").label == "HD95 (mm)"
    assert metric("negative_jacobian_pct").label == "Folding (%)"
    assert metric("seconds").label == "Time (s)"
    assert metric("dice").label == "Dice"
    assert Metric("x", "X", "", ".1f", "test").label == "X"


def test_only_dice_is_better_higher():
    assert [entry.column for entry in METRICS if entry.higher_is_better] == ["dice"]


def test_unknown_metric_is_a_key_error_naming_the_columns():
    with pytest.raises(KeyError, match="nope") as raised:
        metric("nope")
    assert "hd95_mm" in str(raised.value)
    with pytest.raises(KeyError):
        metric("frame")  # a column, but not a metric
