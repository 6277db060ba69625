"""SPEC §5 metrics: per-slice TP/FP/FN as the primary record; Dice, IoU, Dice_pos and the fraction
of detected object derived from them. ``None`` is "undefined" (JSON null).

Literal values are worked out by hand; the cross-check compares with scikit-learn's f1_score and
jaccard_score, an independent implementation. Failure cases: B07 (metrics part), B28, B30.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import f1_score, jaccard_score

from samradbench.metrics import SliceCounts, dice_from_counts, iou_from_counts, slice_counts, volume_metrics


def counts_along(pred: np.ndarray, truth: np.ndarray, axis: int = 2) -> list[SliceCounts]:
    return [slice_counts(np.take(pred, k, axis=axis), np.take(truth, k, axis=axis)) for k in range(truth.shape[axis])]


def assert_metric_value(v):
    """Every metric is None or a finite float in [0, 1] — never NaN, never 2.0."""
    assert v is None or (isinstance(v, float) and math.isfinite(v) and 0.0 <= v <= 1.0), v


# ---------------------------------------------------------------------------------------------------
# literals from counts


@pytest.mark.parametrize(
    "tp, fp, fn, dice, iou",
    [
        (1, 0, 0, 1.0, 1.0),  # 2/2, 1/1
        (0, 1, 0, 0.0, 0.0),  # 0/1, 0/1 — empty truth, non-empty prediction
        (0, 0, 1, 0.0, 0.0),  # 0/1, 0/1 — non-empty truth, empty prediction
        (0, 0, 0, None, None),  # both empty: undefined
        (5, 3, 2, 10 / 15, 5 / 10),  # 2·5/(10+3+2), 5/(5+3+2)
        (10, 0, 10, 20 / 30, 10 / 20),
        (3, 1, 1, 6 / 8, 3 / 5),
        (100, 9900, 0, 200 / 10100, 100 / 10000),  # B30 'all': the full frame
        (36, 988, 0, 72 / 1060, 36 / 1024),  # B12 'all'
        (192, 320, 0, 384 / 704, 192 / 512),  # B26: union scored against label 1 → 0.545
        (7, 0, 0, 1.0, 1.0),
        (0, 5, 9, 0.0, 0.0),
    ],
)
def test_dice_iou_from_counts(tp, fp, fn, dice, iou):
    d, j = dice_from_counts(tp, fp, fn), iou_from_counts(tp, fp, fn)
    if dice is None:
        assert d is None and j is None
        return
    assert d == pytest.approx(dice, rel=1e-15, abs=0) and j == pytest.approx(iou, rel=1e-15, abs=0)
    assert isinstance(d, float) and isinstance(j, float)


def test_b26_union_against_label_1():
    """B26: |A| = 192, |B| = 320; predicting A ∪ B and scoring against A alone:
    TP 192, FP 320, FN 0 → Dice 2·192/(2·192 + 320) = 384/704 = 0.5454…"""
    assert dice_from_counts(192, 320, 0) == pytest.approx(0.5454545454545454, rel=1e-15)


def test_slice_counts_literal():
    """3 × 4 slice. truth = column 0 and (0, 1); pred = row 0.
    truth = {(0,0),(1,0),(2,0),(0,1)} (4); pred = {(0,0),(0,1),(0,2),(0,3)} (4);
    TP = {(0,0),(0,1)} = 2, FP = 2, FN = 2."""
    truth = np.zeros((3, 4), bool)
    truth[:, 0] = True
    truth[0, 1] = True
    pred = np.zeros((3, 4), bool)
    pred[0, :] = True
    c = slice_counts(pred, truth)
    assert (c.tp, c.fp, c.fn, c.truth, c.selected) == (2, 2, 2, 4, True)
    c255 = slice_counts(pred.astype(np.uint8) * 255, truth.astype(np.uint8) * 255)
    assert c255 == c
    empty = slice_counts(np.zeros((3, 4), bool), truth)
    assert (empty.tp, empty.fp, empty.fn, empty.truth, empty.selected) == (0, 0, 4, 4, False)


def test_volume_dice_is_not_mean_of_slice_dice():
    """Three 4 × 4 slices (axis 2):
      slice 0: truth 10 px, prediction the same     → TP 10, FP 0, FN 0 → Dice 1
      slice 1: truth 2 px, prediction empty         → TP 0,  FP 0, FN 2 → Dice 0
      slice 2: truth 1 px, prediction it + 1 more   → TP 1,  FP 1, FN 0 → Dice 2/3
    mean of per-slice Dice = (1 + 0 + 2/3)/3 = 5/9 ≈ 0.556
    per-volume Dice = 2·11/(2·11 + 1 + 2) = 22/25 = 0.88;  IoU = 11/14
    dice_pos (slices 0, 2): 22/(22 + 1 + 0) = 22/23;  fraction detected = (10 + 1)/13 = 11/13.
    """
    truth = np.zeros((4, 4, 3), bool)
    pred = np.zeros((4, 4, 3), bool)
    truth[..., 0].flat[:10] = True
    pred[..., 0].flat[:10] = True
    truth[3, 2:4, 1] = True
    truth[0, 0, 2] = True
    pred[0, 0, 2] = pred[3, 3, 2] = True
    counts = counts_along(pred, truth)
    per_slice = [dice_from_counts(c.tp, c.fp, c.fn) for c in counts]
    assert per_slice == pytest.approx([1.0, 0.0, 2 / 3], rel=1e-15)
    assert float(np.mean(per_slice)) == pytest.approx(5 / 9, rel=1e-15)
    m = volume_metrics(counts)
    assert m["dice"] == pytest.approx(22 / 25, rel=1e-15)
    assert m["dice"] != pytest.approx(5 / 9)
    assert m["iou"] == pytest.approx(11 / 14, rel=1e-15)
    assert m["dice_pos"] == pytest.approx(22 / 23, rel=1e-15)
    assert m["fraction_detected"] == pytest.approx(11 / 13, rel=1e-15)
    assert (m["tp"], m["fp"], m["fn"], m["truth_voxels"]) == (11, 1, 2, 13)
    assert (m["n_slices"], m["n_slices_truth"], m["n_slices_selected"]) == (3, 3, 2)
    # the SPEC's bounds hold on this example: dice_pos ≥ dice, dice ≤ 2f/(1+f) = 22/24
    assert m["dice_pos"] >= m["dice"] and m["dice"] <= 2 * (11 / 13) / (1 + 11 / 13)


def test_dice_pos_equals_dice_when_every_truth_slice_is_selected():
    """Slice 0: TP 4, FP 2, FN 1; slice 1: TP 0, FP 3, FN 0 (false alarm on an empty-truth slice).
    Both are selected → dice_pos = dice = 8/(8 + 5 + 1) = 8/14; fraction detected = 5/5 = 1."""
    m = volume_metrics([SliceCounts(4, 2, 1, 5, True), SliceCounts(0, 3, 0, 0, True), SliceCounts(0, 0, 0, 0, False)])
    assert m["dice"] == pytest.approx(8 / 14, rel=1e-15)
    assert m["dice_pos"] == pytest.approx(8 / 14, rel=1e-15)
    assert m["fraction_detected"] == 1.0
    assert (m["n_slices"], m["n_slices_truth"], m["n_slices_selected"]) == (3, 1, 2)


def test_fraction_detected_literal():
    """Truth voxels per slice 30, 50, 20 (total 100); selections on slices 0 and 2 (1 TP each):
    fraction detected = (30 + 20)/100 = 0.5, even though only 2 voxels are right.
    Dice = 2·2/(2·2 + 0 + 98) = 4/102;  dice_pos = 4/(4 + 48) = 4/52;  2f/(1+f) = 1/1.5 = 2/3 ≥ Dice."""
    m = volume_metrics([SliceCounts(1, 0, 29, 30, True), SliceCounts(0, 0, 50, 50, False), SliceCounts(1, 0, 19, 20, True)])
    assert m["fraction_detected"] == 0.5
    assert m["dice"] == pytest.approx(4 / 102, rel=1e-15)
    assert m["dice_pos"] == pytest.approx(4 / 52, rel=1e-15)


# ---------------------------------------------------------------------------------------------------
# B28 empty conventions


def _b28(case):
    truth = np.zeros((16, 16, 4), bool)
    pred = np.zeros((16, 16, 4), bool)
    if case == "pred-one-voxel":
        pred[3, 4, 1] = True
    elif case == "truth-one-voxel":
        truth[7, 8, 2] = True
    return pred, truth


@pytest.mark.parametrize(
    "case, expected",
    [
        # both empty: TP + FP + FN = 0 → undefined; nothing selected; no truth → fraction undefined
        ("both-empty", dict(dice=None, iou=None, dice_pos=None, fraction_detected=None, n_slices_selected=0)),
        # truth empty, one predicted voxel: TP 0, FP 1 → 0/1 = 0.0; the selected slice gives dice_pos 0/1
        ("pred-one-voxel", dict(dice=0.0, iou=0.0, dice_pos=0.0, fraction_detected=None, n_slices_selected=1)),
        # one truth voxel, nothing predicted: TP 0, FN 1 → 0.0; fraction 0/1 = 0.0; no selection
        ("truth-one-voxel", dict(dice=0.0, iou=0.0, dice_pos=None, fraction_detected=0.0, n_slices_selected=0)),
    ],
)
@pytest.mark.filterwarnings("error")
def test_b28_empty_conventions(case, expected):
    pred, truth = _b28(case)
    m = volume_metrics(counts_along(pred, truth))
    for key, value in expected.items():
        if value is None:
            assert m[key] is None, (key, m[key])
        else:
            assert m[key] == value, (key, m[key])
    for key in ("dice", "iou", "dice_pos", "fraction_detected"):
        assert_metric_value(m[key])
    assert m["n_slices"] == 4


def test_empty_slice_list():
    m = volume_metrics([])
    assert m["dice"] is None and m["iou"] is None and m["dice_pos"] is None and m["fraction_detected"] is None
    assert (m["n_slices"], m["n_slices_truth"], m["n_slices_selected"], m["truth_voxels"]) == (0, 0, 0, 0)


def test_slice_counts_refuses_shape_mismatch():
    with pytest.raises(ValueError) as exc:
        slice_counts(np.zeros((256, 256), bool), np.zeros((320, 260), bool))
    assert "(256, 256)" in str(exc.value) and "(320, 260)" in str(exc.value)
    with pytest.raises(ValueError):
        slice_counts(np.zeros((1, 260), bool), np.zeros((320, 260), bool))  # would broadcast


# ---------------------------------------------------------------------------------------------------
# properties


@st.composite
def mask_pairs(draw, max_side=16):
    """(pred, truth) 3-D bool masks from a drawn seed; densities vary, including empty and full."""
    shape = (draw(st.integers(1, max_side)), draw(st.integers(1, max_side)), draw(st.integers(1, 8)))
    seed = draw(st.integers(0, 2**32 - 1))
    p_pred = draw(st.sampled_from([0.0, 0.01, 0.1, 0.3, 0.7, 1.0]))
    p_truth = draw(st.sampled_from([0.0, 0.01, 0.1, 0.3, 0.7, 1.0]))
    correlated = draw(st.booleans())
    rng = np.random.default_rng(seed)
    truth = rng.random(shape) < p_truth
    if correlated:  # prediction = truth with some voxels flipped, some slices blanked
        pred = truth ^ (rng.random(shape) < p_pred * 0.3)
        pred[..., rng.random(shape[2]) < 0.3] = False
    else:
        pred = rng.random(shape) < p_pred
    return pred, truth


@given(mask_pairs(), st.integers(0, 2))
def test_metric_invariants(pair, axis):
    pred, truth = pair
    m = volume_metrics(counts_along(pred, truth, axis))
    for key in ("dice", "iou", "dice_pos", "fraction_detected"):
        assert_metric_value(m[key])
    # null exactly when both are empty
    both_empty = not pred.any() and not truth.any()
    assert (m["dice"] is None) == both_empty and (m["iou"] is None) == both_empty
    # counts
    assert m["tp"] == int((pred & truth).sum()) and m["fp"] == int((pred & ~truth).sum())
    assert m["fn"] == int((~pred & truth).sum()) and m["truth_voxels"] == int(truth.sum())
    assert m["n_slices"] == truth.shape[axis]
    sel = [bool(np.take(pred, k, axis=axis).any()) for k in range(truth.shape[axis])]
    has_truth = [bool(np.take(truth, k, axis=axis).any()) for k in range(truth.shape[axis])]
    assert m["n_slices_selected"] == sum(sel) and m["n_slices_truth"] == sum(has_truth)
    if m["dice"] is None:
        return
    # Dice = 2 IoU / (1 + IoU)
    assert m["dice"] == pytest.approx(2 * m["iou"] / (1 + m["iou"]), rel=1e-12, abs=1e-15)
    # dice_pos ≥ dice (dice_pos undefined only when nothing is predicted, and then dice = 0)
    if m["dice_pos"] is None:
        assert m["dice"] == 0.0 and m["n_slices_selected"] == 0
    else:
        assert m["dice_pos"] >= m["dice"] - 1e-15
    # dice ≤ 2f/(1 + f)
    f = m["fraction_detected"]
    if f is None:
        assert m["dice"] == 0.0  # no truth, something predicted
    else:
        assert m["dice"] <= 2 * f / (1 + f) + 1e-12
        expected_f = sum(int(np.take(truth, k, axis=axis).sum()) for k in range(truth.shape[axis]) if sel[k])
        assert f == pytest.approx(expected_f / truth.sum(), rel=1e-15)


@given(mask_pairs(), st.integers(0, 2))
def test_dice_and_iou_symmetric(pair, axis):
    pred, truth = pair
    a = volume_metrics(counts_along(pred, truth, axis))
    b = volume_metrics(counts_along(truth, pred, axis))
    assert a["dice"] == b["dice"] and a["iou"] == b["iou"]


@given(mask_pairs(), st.integers(0, 2))
def test_volume_metrics_match_sklearn(pair, axis):
    """Independent cross-check: volume Dice = F1 and IoU = Jaccard on the flattened masks."""
    pred, truth = pair
    m = volume_metrics(counts_along(pred, truth, axis))
    if not pred.any() and not truth.any():
        assert m["dice"] is None and m["iou"] is None  # sklearn is undefined (0/0) here
        return
    y_true, y_pred = truth.ravel().astype(np.int64), pred.ravel().astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on ill-defined precision/recall (e.g. no truth)
        f1 = f1_score(y_true, y_pred, labels=[0, 1], pos_label=1, average="binary", zero_division=0.0)
        jac = jaccard_score(y_true, y_pred, labels=[0, 1], pos_label=1, average="binary", zero_division=0.0)
    assert abs(m["dice"] - f1) <= 1e-12
    assert abs(m["iou"] - jac) <= 1e-12


@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)).map(
            lambda t: SliceCounts(t[0], t[1], t[2], t[0] + t[2], bool(t[0] + t[1]))
        ),
        max_size=12,
    )
)
def test_volume_metrics_from_counts(slices):
    """volume_metrics against a direct formula on summed counts (pure Python)."""
    m = volume_metrics(slices)
    tp, fp, fn = (sum(getattr(s, k) for s in slices) for k in ("tp", "fp", "fn"))
    if tp + fp + fn == 0:
        assert m["dice"] is None and m["iou"] is None
    else:
        assert m["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn), rel=1e-15)
        assert m["iou"] == pytest.approx(tp / (tp + fp + fn), rel=1e-15)
    sel = [s for s in slices if s.selected]
    if not sel:
        assert m["dice_pos"] is None
    else:
        stp, sfp, sfn = (sum(getattr(s, k) for s in sel) for k in ("tp", "fp", "fn"))
        assert m["dice_pos"] == pytest.approx(2 * stp / (2 * stp + sfp + sfn), rel=1e-15)
        assert m["dice"] is not None and m["dice_pos"] >= m["dice"] - 1e-15
    total = sum(s.truth for s in slices)
    if total == 0:
        assert m["fraction_detected"] is None
    else:
        assert m["fraction_detected"] == pytest.approx(sum(s.truth for s in sel) / total, rel=1e-15)
    for key in ("dice", "iou", "dice_pos", "fraction_detected"):
        assert_metric_value(m[key])
