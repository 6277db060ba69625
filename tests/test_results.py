"""Results document: strict JSON, atomic writes, summaries (SPEC §6; failure case B31)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from samradbench.report import summary_table
from samradbench.results import ResultsDocument, dumps_strict, loads_strict, summarise, to_jsonable, write_atomic


def _raise(name):
    raise ValueError(name)


def test_b31_numpy_scalars_and_nan_become_native_json():
    """B31: float32, int64, NaN and arrays; NaN must become null, the text must parse strictly."""
    doc = {"dice": np.float32(0.5), "n_slices": np.int64(20), "dice_pred_slices": float("nan"),
           "voxels": np.array([1, 2]), "inf": np.float64("inf"), "flag": np.bool_(True)}
    text = dumps_strict(doc)
    back = json.loads(text, parse_constant=_raise)
    assert back == {"dice": 0.5, "n_slices": 20, "dice_pred_slices": None, "voxels": [1, 2], "inf": None,
                    "flag": True}
    assert "NaN" not in text and "Infinity" not in text


def test_unknown_objects_are_refused_not_stringified():
    with pytest.raises(TypeError, match="cannot write object"):
        to_jsonable({"x": object()})


def test_loads_strict_refuses_nan():
    with pytest.raises(ValueError):
        loads_strict('{"a": NaN}')


def test_write_atomic_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    write_atomic(path, '{"old": 1}\n')

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_atomic(path, '{"new": 2}\n')
    assert json.loads(path.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"], "no temporary file left behind"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_write_atomic_gives_the_permissions_of_a_plain_open(tmp_path, umask, mode):
    """Shared GPU boxes: results must be as readable as any file the user writes (0666 & ~umask),
    not mkstemp's private 0600."""
    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "r.json", "{}\n")
        with open(tmp_path / "plain.json", "w") as fh:
            fh.write("{}\n")
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == mode == (tmp_path / "plain.json").stat().st_mode & 0o777


def test_write_atomic_keeps_the_permissions_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "r.json"
    write_atomic(path, "{}\n")
    os.chmod(path, 0o600)  # the user made it private
    write_atomic(path, '{"a": 1}\n')
    assert path.stat().st_mode & 0o777 == 0o600 and json.loads(path.read_text()) == {"a": 1}


def _row(volume, dice, dice_pos=None, f=None, seconds=1.0, generated=4, heuristic="all"):
    return {"dataset": "d", "target": "t", "generator": "g", "heuristic": heuristic, "model_label": "m",
            "volume": volume, "dice": dice, "dice_pos": dice_pos, "fraction_detected": f,
            "generator_seconds": seconds, "n_slices_generated": generated, "encode_seconds": None}


def test_summary_by_hand():
    """Dice 0.2, 0.4, 0.9 and one null: mean 0.5, median 0.4; numpy's linear quartiles are
    0.3 (0.2 + 0.5·0.2) and 0.65 (0.4 + 0.5·0.5). Seconds: (1 + 2 + 3 + 2) s over 4·4 slices = 0.5."""
    rows = [_row("a", 0.2, 0.5, 0.5, 1.0), _row("b", 0.4, 0.6, 0.5, 2.0), _row("c", 0.9, 0.9, 1.0, 3.0),
            _row("e", None, None, None, 2.0)]
    (s,) = summarise(rows)
    assert s["n_volumes"] == 4 and s["n_null"] == 1
    assert math.isclose(s["dice_mean"], 0.5) and math.isclose(s["dice_median"], 0.4)
    assert math.isclose(s["dice_q1"], 0.3) and math.isclose(s["dice_q3"], 0.65)
    assert math.isclose(s["dice_pos_median"], 0.6) and math.isclose(s["fraction_detected_median"], 0.5)
    assert math.isclose(s["seconds_per_slice"], 0.5)


def test_summary_all_null_is_null_not_nan():
    (s,) = summarise([_row("a", None)])
    assert s["dice_mean"] is None and s["dice_median"] is None and s["n_null"] == 1


def test_document_rewrites_incrementally(tmp_path):
    doc = ResultsDocument(tmp_path / "out" / "r.json", {"python": "3"}, {"k": 1})
    doc.add_volume([_row("a", 0.5)])
    first = loads_strict(doc.path.read_text())
    assert set(first) == {"schema_version", "status", "environment", "config", "cases", "summary", "failures",
                          "absent"}
    assert first["status"] == "running"
    assert len(first["cases"]) == 1
    doc.add_failure(dataset="d", volume="b", generator="g", reason="DataError: bad")
    doc.add_volume([_row("c", 1.0)])
    second = loads_strict(doc.path.read_text())
    assert len(second["cases"]) == 2 and second["failures"][0]["volume"] == "b"
    assert second["summary"][0]["n_volumes"] == 2


def test_table_shows_na_for_null():
    table = summary_table(summarise([_row("a", None)]))
    assert "n/a" in table and "nan" not in table.lower()
