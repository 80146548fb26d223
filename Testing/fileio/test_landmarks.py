"""Landmark files: Slicer markups JSON (LPS and RAS), .fcsv, reference-point CSV and trajectory CSV."""

from __future__ import annotations

import json

import numpy as np
import pytest
from INRCardiacRegistrationLib.fileio.landmarks import (
    MARKUPS_SCHEMA,
    Landmarks,
    Trajectories,
    read_fcsv,
    read_landmarks,
    read_markups_json,
    read_points_csv,
    read_trajectories_csv,
    write_markups_json,
    write_trajectories_csv,
)

POINTS = np.array([[10.5, -20.25, 30.0], [-1.0, 2.0, -3.125], [0.0, 0.0, 0.0]])
LABELS = ("LAD start", "CX,start", "apex")


@pytest.fixture
def landmarks():
    return Landmarks(LABELS, POINTS)


def test_markups_json_round_trip_in_lps(tmp_path, landmarks):
    path = write_markups_json(tmp_path / "points.mrk.json", landmarks, name="Reference",
                              descriptions=["a", "b", "c"])
    document = json.loads(path.read_text())
    assert document["@schema"] == MARKUPS_SCHEMA
    node = document["markups"][0]
    assert node["type"] == "Fiducial" and node["coordinateSystem"] == "LPS"
    assert node["coordinateUnits"] == "mm"
    assert [p["label"] for p in node["controlPoints"]] == list(LABELS)
    assert node["controlPoints"][1]["description"] == "b"
    assert all(p["positionStatus"] == "defined" for p in node["controlPoints"])
    back = read_markups_json(path)
    assert back.labels == LABELS
    np.testing.assert_array_equal(back.points_lps, POINTS)
    np.testing.assert_array_equal(back.points_ras, POINTS * [-1, -1, 1])


def test_markups_json_in_ras_is_converted_to_lps(tmp_path):
    document = {"@schema": MARKUPS_SCHEMA, "markups": [{
        "type": "Fiducial", "coordinateSystem": "RAS",
        "controlPoints": [{"label": "F-1", "position": [1.0, 2.0, 3.0]},
                          {"label": "", "position": [-4.0, 5.0, -6.0]},
                          {"label": "skipped", "position": [0.0, 0.0, 0.0], "positionStatus": "undefined"}],
    }]}
    (tmp_path / "ras.mrk.json").write_text(json.dumps(document))
    points = read_landmarks(tmp_path / "ras.mrk.json")
    assert points.labels == ("F-1", "2")
    np.testing.assert_array_equal(points.points_lps, [[-1.0, -2.0, 3.0], [4.0, -5.0, -6.0]])


def test_fcsv_ras_and_lps(tmp_path):
    body = "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n" \
           "vtkMRMLMarkupsFiducialNode_0,1,2,3,0,0,0,1,1,1,0,P-1,,\n"
    (tmp_path / "ras.fcsv").write_text("# Markups fiducial file version = 4.11\n# CoordinateSystem = RAS\n"
                                       + body)
    (tmp_path / "lps.fcsv").write_text("# Markups fiducial file version = 5.0\n# CoordinateSystem = LPS\n"
                                       + body)
    np.testing.assert_array_equal(read_fcsv(tmp_path / "ras.fcsv").points_lps, [[-1.0, -2.0, 3.0]])
    lps = read_landmarks(tmp_path / "lps.fcsv")
    assert lps.labels == ("P-1",)
    np.testing.assert_array_equal(lps.points_lps, [[1.0, 2.0, 3.0]])


def test_plain_csv_with_and_without_labels(tmp_path):
    (tmp_path / "named.csv").write_text("landmark,x,y,z\nA,1,2,3\nB,4,5,6\n")
    (tmp_path / "bare.csv").write_text("x,y,z\n1,2,3\n4.5,5,6\n")
    named = read_landmarks(tmp_path / "named.csv")
    assert named.labels == ("A", "B")
    np.testing.assert_array_equal(named.points_lps, [[1, 2, 3], [4, 5, 6]])
    bare = read_points_csv(tmp_path / "bare.csv")
    assert bare.labels == ("1", "2")
    np.testing.assert_array_equal(bare.points_lps, [[1, 2, 3], [4.5, 5, 6]])


def test_trajectories_csv_round_trip(tmp_path):
    points = np.stack([POINTS + t * 0.123456 for t in range(4)])
    trajectories = Trajectories((0, 1, 2, 3), LABELS, points)
    path = write_trajectories_csv(tmp_path / "trajectories.csv", trajectories)
    lines = path.read_text().splitlines()
    assert lines[0] == "frame,landmark,x,y,z" and len(lines) == 1 + 4 * 3
    assert lines[2].startswith('0,"CX,start",')
    back = read_trajectories_csv(path)
    assert back.frames == (0, 1, 2, 3) and back.labels == LABELS
    np.testing.assert_allclose(back.points_lps, points, atol=1e-6)
    np.testing.assert_allclose(back.at_frame(2).points_lps, points[2], atol=1e-6)
    reference = read_landmarks(path)            # a trajectory CSV read as landmarks: its first frame
    np.testing.assert_allclose(reference.points_lps, points[0], atol=1e-6)
    np.testing.assert_allclose(read_landmarks(path, frame=2).points_lps, points[2], atol=1e-6)  # the reference's
    with pytest.raises(ValueError, match="frame 7 is not in the trajectories"):
        read_landmarks(path, frame=7)


@pytest.mark.parametrize("name, text, message", [
    ("missing.csv", None, "not found"),
    ("bad.csv", "a,b,c\n1,2,3\n", "x,y,z"),
    ("nan.csv", "x,y,z\n1,two,3\n", "line 2"),
    ("short.csv", "frame,landmark,x,y,z\n0,A,1,2,3\n1,B,1,2,3\n", "missing"),
    ("dup.csv", "frame,landmark,x,y,z\n0,A,1,2,3\n0,A,1,2,3\n", "twice"),
    ("notes.txt", "x,y,z\n", "unsupported"),
    ("broken.mrk.json", "{not json", "not a valid JSON"),
    ("empty.mrk.json", '{"markups": []}', "no 'markups'"),
    ("system.mrk.json", '{"markups": [{"coordinateSystem": "XYZ", "controlPoints": []}]}',
     "coordinate system"),
])
def test_bad_files_raise_clear_value_errors(tmp_path, name, text, message):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    reader = read_trajectories_csv if name in ("short.csv", "dup.csv") else read_landmarks
    with pytest.raises(ValueError, match=message):
        reader(path)


def test_invalid_landmark_sets():
    with pytest.raises(ValueError, match="shape"):
        Landmarks(("a",), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="unique"):
        Landmarks(("a", "a"), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        Landmarks(("a",), np.full((1, 3), np.nan))
    with pytest.raises(ValueError, match="frames"):
        Trajectories((0,), ("a", "b"), np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="mrk.json"):
        write_markups_json("points.json.txt", Landmarks(("a",), np.zeros((1, 3))))
