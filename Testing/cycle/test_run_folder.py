"""The run-folder contract (atomic records, events, metrics), the cycle inputs' checks, and the small pieces the
cycle builds on (sub-grids, configuration round trips)."""

import math

import numpy as np
import pytest
from helpers import oblique_direction
from INRCardiacRegistrationLib.core.geometry import Geometry
from INRCardiacRegistrationLib.core.vocabulary import METRIC_COLUMNS
from INRCardiacRegistrationLib.core.volume import Volume
from INRCardiacRegistrationLib.cycle.inputs import build_cycle_inputs
from INRCardiacRegistrationLib.cycle.request import CycleConfig
from INRCardiacRegistrationLib.cycle.run_folder import FrameRecord, RunFolder, frame_stem
from INRCardiacRegistrationLib.fileio.landmarks import Landmarks, Trajectories


def test_frame_files_carry_the_zero_padded_index(tmp_path):
    run = RunFolder(tmp_path)
    assert frame_stem(7) == "frame_007" and frame_stem(1234) == "frame_1234"
    assert run.transform_path(7).name == "frame_007.h5"
    assert run.label_path(7).name == "frame_007.nii.gz"
    assert run.landmarks_path(7).name == "frame_007.mrk.json"


def test_a_frame_is_finished_only_when_its_record_and_files_exist(tmp_path):
    run = RunFolder(tmp_path)
    run.transform_path(3).parent.mkdir(parents=True)
    run.transform_path(3).write_text("field")
    record = FrameRecord(frame=3, dice=0.9, files={"transform": "transforms/frame_003.h5", "label": "labels/x.nii.gz"})
    run.write_frame_record(record)
    assert run.read_frame_record(3) is None  # the label file is missing
    run.label_path(3).parent.mkdir()
    (tmp_path / "labels" / "x.nii.gz").write_text("label")
    assert run.read_frame_record(3).dice == 0.9
    assert list(run.finished_records(5)) == [3]
    run.record_path(4).write_text("{ half-writ")  # a corrupt record counts as unfinished
    assert list(run.finished_records(5)) == [3]


def test_metrics_round_trip_with_empty_cells(tmp_path):
    run = RunFolder(tmp_path)
    records = [FrameRecord(frame=1, dice=0.95, hd95_mm=1.75, final_loss=-0.99, seconds=3.5, iterations=150,
                           alpha_used=0.8, pair="0->1"), FrameRecord(frame=0, dice=1.0, hd95_mm=0.0)]
    run.write_metrics(records)
    lines = run.metrics_csv.read_text().splitlines()
    assert lines[0] == ",".join(METRIC_COLUMNS)
    assert lines[1].startswith("0,1,0,,")  # NaN -> empty cell, ordered by frame
    rows = run.read_metrics()
    assert rows[1]["dice"] == 0.95 and rows[1]["pair"] == "0->1" and rows[1]["iterations"] == 150
    assert math.isnan(rows[0]["tre_mm"]) and math.isnan(rows[1]["tre_mm"])


def test_events_skip_a_partial_last_line(tmp_path):
    run = RunFolder(tmp_path)
    run.append_event("started", frames=3)
    run.append_event("iteration", frame=1, loss=float("nan"))
    with open(run.progress_path, "a") as stream:
        stream.write('{"event": "frame_fini')
    events = run.read_events()
    assert [e["event"] for e in events] == ["started", "iteration"]
    assert events[1]["loss"] is None and "time" in events[0]


def test_cancel_file(tmp_path):
    run = RunFolder(tmp_path)
    assert not run.cancel_requested()
    run.request_cancel()
    assert run.cancel_requested()
    run.clear_cancel()
    assert not run.cancel_requested()


def test_run_info_format_is_checked(tmp_path):
    run = RunFolder(tmp_path)
    with pytest.raises(ValueError, match="not a run folder"):
        run.read_run_info()
    run.write_run_info({"status": "running"})
    assert run.update_run_info(status="finished")["status"] == "finished"
    run.run_json.write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="format"):
        run.read_run_info()


def test_subgrid_keeps_the_voxels_of_the_grid():
    grid = Geometry((20, 18, 16), (1.5, 1.25, 2.0), (10.0, -5.0, 3.0), oblique_direction())
    sub = grid.subgrid(np.array([3.2, -4.0, 5.0]), np.array([9.0, 7.5, 40.0]))
    assert sub.size == (7, 9, 11) and sub.spacing == grid.spacing and sub.direction == grid.direction
    np.testing.assert_allclose(sub.index_to_physical([0, 0, 0]), grid.index_to_physical([3, 0, 5]), atol=1e-9)
    np.testing.assert_allclose(sub.index_to_physical([6, 8, 10]), grid.index_to_physical([9, 8, 15]), atol=1e-9)


def test_cycle_config_round_trip_and_checks():
    config = CycleConfig(mode="sequential", reference_frame=3, preset="fast")
    assert CycleConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="'mode'"):
        CycleConfig(mode="sideways")
    with pytest.raises(ValueError, match="'field_region'"):
        CycleConfig(field_region="everything")


def _labels(values_per_frame):
    grid = Geometry((10, 9, 8), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    out = {}
    for t, values in values_per_frame.items():
        array = np.zeros(grid.array_shape, np.uint8)
        for n, value in enumerate(values):
            array[2 + n, 3:6, 3:7] = value
        out[t] = Volume(array, grid, f"labels frame {t}")
    frames = [Volume(np.random.default_rng(t).normal(size=grid.array_shape), grid, f"frame {t}") for t in range(3)]
    return frames, out


def test_cycle_inputs_name_each_problem():
    frames, labels = _labels({0: [1, 2], 2: [1, 2]})
    with pytest.raises(ValueError, match="values 1, 2: say which one"):
        build_cycle_inputs(frames, labels)
    with pytest.raises(ValueError, match="does not contain label value 5"):
        build_cycle_inputs(frames, labels, myocardium_label=5)
    with pytest.raises(ValueError, match="reference frame 1 has no myocardium label"):
        build_cycle_inputs(frames, labels, 1, myocardium_label=1)
    with pytest.raises(ValueError, match="heart label value\\(s\\) 7"):
        build_cycle_inputs(frames, labels, myocardium_label=1, heart_labels=[7])
    with pytest.raises(ValueError, match="no labels given"):
        build_cycle_inputs(frames, {})
    centre = frames[0].geometry.index_to_physical([4.0, 4.0, 4.0])
    landmarks = Landmarks(("a", "b"), np.stack([centre, centre + 1.0]))
    annotated = Trajectories((0, 5), ("a",), np.stack([centre, centre])[:, None])
    with pytest.raises(ValueError, match="frames \\[5\\] outside"):
        build_cycle_inputs(frames, labels, myocardium_label=1, landmarks=landmarks, annotated=annotated)
    inputs = build_cycle_inputs(frames, labels, myocardium_label=1, heart_labels=[1, 2], landmarks=landmarks)
    assert sorted(inputs.myocardium) == [0, 2] and inputs.heart.array.sum() == 2 * 12
