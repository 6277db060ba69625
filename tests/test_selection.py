"""SPEC §4 selection heuristics: IoU per segment, the four heuristics, and their invariants.

IoU(s, G) = |s ∩ G| / |s ∪ G| (0 when both are empty). ``all``: union of segments with IoU > 0;
``best``: the single highest-IoU segment if its IoU > 0 (ties → first in generator order);
``iou>t``: union of segments with IoU strictly above t. Failure cases: B07, B12, B13, B30.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from samradbench.errors import ConfigError
from samradbench.metrics import slice_counts, volume_metrics
from samradbench.selection import (
    HEURISTICS,
    Heuristic,
    as_segment_stack,
    get_heuristic,
    segment_ious,
    select,
    selected_indices,
    union_of,
)

NAMES = ["all", "best", "iou>0.25", "iou>0.5"]


def test_heuristic_registry():
    assert sorted(HEURISTICS) == sorted(NAMES)
    assert (HEURISTICS["all"].threshold, HEURISTICS["all"].single) == (0.0, False)
    assert (HEURISTICS["best"].threshold, HEURISTICS["best"].single) == (0.0, True)
    assert (HEURISTICS["iou>0.25"].threshold, HEURISTICS["iou>0.25"].single) == (0.25, False)
    assert (HEURISTICS["iou>0.5"].threshold, HEURISTICS["iou>0.5"].single) == (0.5, False)
    assert get_heuristic("iou-gt-0.25") is HEURISTICS["iou>0.25"]
    assert get_heuristic("iou>0.5").test_id == "iou-gt-0.5"
    with pytest.raises(ConfigError):
        get_heuristic("iou>0.75")


# ---------------------------------------------------------------------------------------------------
# B30: full-frame and background segments


def _b30(box_mask):
    truth = box_mask((100, 100), (40, 49), (40, 49))
    m_full = np.ones((100, 100), bool)
    m_gt = truth.copy()
    m_bg = ~truth
    return truth, np.stack([m_full, m_gt, m_bg])


@pytest.mark.parametrize("as_255", [False, True], ids=["bool", "uint8-0-255"])
def test_b30_full_frame_segment(box_mask, as_255):
    """|G| = 100 of 10 000 pixels.
    IoU(m_full) = 100/10 000 = 0.01; IoU(m_gt) = 100/100 = 1; IoU(m_bg) = 0/10 000 = 0.
    all → m_full ∪ m_gt = full frame: TP 100, FP 9 900, FN 0 → Dice 200/10 100 ≈ 0.0198.
    best, iou>0.25, iou>0.5 → m_gt only → Dice 1. m_bg is never selected.
    """
    truth, segs = _b30(box_mask)
    if as_255:
        segs, truth = segs.astype(np.uint8) * 255, truth.astype(np.uint8) * 255
    np.testing.assert_allclose(segment_ious(segs, truth), [0.01, 1.0, 0.0], rtol=1e-15, atol=0)
    expected_idx = {"all": [0, 1], "best": [1], "iou>0.25": [1], "iou>0.5": [1]}
    expected_dice = {"all": 200 / 10100, "best": 1.0, "iou>0.25": 1.0, "iou>0.5": 1.0}
    for name in NAMES:
        assert selected_indices(segment_ious(segs, truth), name).tolist() == expected_idx[name]
        pred = select(segs, truth, name)
        assert pred.dtype == bool and pred.shape == (100, 100)
        m = volume_metrics([slice_counts(pred, truth)])
        assert m["dice"] == pytest.approx(expected_dice[name], rel=1e-15, abs=0)
    assert select(segs, truth, "all").all()


# ---------------------------------------------------------------------------------------------------
# B07: no segments


@pytest.mark.parametrize("name", NAMES)
def test_b07_no_segments_volume(name, box_mask):
    """(32, 32, 4) volume, 6 × 6 truth in slices 1–2 (72 voxels), the generator returns nothing.
    Prediction all zero: TP 0, FP 0, FN 72 → Dice 0/72 = 0.0, IoU 0.0; fraction detected 0/72 = 0.0;
    no slice has a selection → dice_pos None, n_slices_selected 0."""
    truth = np.zeros((32, 32, 4), bool)
    truth[10:16, 10:16, 1:3] = True
    pred = np.zeros_like(truth)
    counts = []
    for k in range(4):
        g = truth[..., k]
        no_segments = np.zeros((0, 32, 32), bool)
        assert selected_indices(segment_ious(no_segments, g), name).size == 0
        pred[..., k] = select(no_segments, g, name)
        counts.append(slice_counts(pred[..., k], g))
    assert not pred.any() and pred.shape == truth.shape
    m = volume_metrics(counts)
    assert m["dice"] == 0.0 and m["iou"] == 0.0
    assert m["fraction_detected"] == 0.0
    assert m["dice_pos"] is None
    assert m["n_slices_selected"] == 0 and m["n_slices_truth"] == 2 and m["n_slices"] == 4
    assert m["truth_voxels"] == 72


def test_b07_empty_list_of_segments(box_mask):
    truth = box_mask((32, 32), (10, 15), (10, 15))
    for name in NAMES:
        pred = select([], truth, name)
        assert pred.shape == (32, 32) and not pred.any()
    assert segment_ious([], truth).shape == (0,)


def test_empty_stack_helpers():
    shape = (5, 7)
    assert as_segment_stack(np.zeros((0, 5, 7)), shape).shape == (0, 5, 7)
    assert as_segment_stack(np.zeros((0, 5, 7)), shape).dtype == bool
    assert segment_ious(np.zeros((0, 5, 7), bool), np.ones(shape, bool)).shape == (0,)
    u = union_of(np.zeros((0, 5, 7), bool), np.array([], dtype=np.int64), shape)
    assert u.shape == shape and not u.any()


# ---------------------------------------------------------------------------------------------------
# B12: three candidate masks, best by IoU


def test_b12_three_masks_best_by_iou(box_mask):
    """32 × 32, truth 6 × 6 at rows/cols 10–15 (36 px).
    m0 = 2 × 2 part: IoU 4/36 = 0.111;  m1 = truth: IoU 1;  m2 = whole frame: IoU 36/1024 = 0.0352.
    best → index 1, Dice 1.0;  iou>0.25, iou>0.5 → [1];  all → [0, 1, 2] = whole frame:
    TP 36, FP 988 → Dice 72/1060."""
    truth = box_mask((32, 32), (10, 15), (10, 15))
    m0 = box_mask((32, 32), (10, 11), (10, 11))
    m1 = truth.copy()
    m2 = np.ones((32, 32), bool)
    segs = np.stack([m0, m1, m2])
    ious = segment_ious(segs, truth)
    np.testing.assert_allclose(ious, [4 / 36, 1.0, 36 / 1024], rtol=1e-15, atol=0)
    assert selected_indices(ious, "best").tolist() == [1]
    assert selected_indices(ious, "iou>0.25").tolist() == [1]
    assert selected_indices(ious, "iou>0.5").tolist() == [1]
    assert selected_indices(ious, "all").tolist() == [0, 1, 2]
    assert volume_metrics([slice_counts(select(segs, truth, "best"), truth)])["dice"] == 1.0
    assert volume_metrics([slice_counts(select(segs, truth, "all"), truth)])["dice"] == pytest.approx(
        72 / 1060, rel=1e-15
    )
    # batched multimask output (4 prompts × 3 masks, shape (4, 3, 32, 32)): no squeeze or shape
    # error; all 12 masks are candidates in generator order, prompt by prompt (index 3n + k), so the
    # four copies of m1 tie at IoU 1 and the first, index 1, is best
    batched = np.stack([segs] * 4)
    np.testing.assert_allclose(segment_ious(batched, truth), [4 / 36, 1.0, 36 / 1024] * 4, rtol=1e-15, atol=0)
    assert selected_indices(segment_ious(batched, truth), "best").tolist() == [1]
    assert volume_metrics([slice_counts(select(batched, truth, "best"), truth)])["dice"] == 1.0
    # any other rank, or a frame of the wrong size, is refused rather than squeezed or guessed
    with pytest.raises(ValueError, match=r"\(N, H, W\) or \(N, K, H, W\)"):
        segment_ious(batched[None], truth)
    with pytest.raises(ValueError, match=r"\(32, 16\) does not match .*\(32, 32\)"):
        segment_ious(batched[..., :16], truth)


# ---------------------------------------------------------------------------------------------------
# B13: shapes must match exactly


def test_b13_low_res_mask_is_refused(box_mask):
    truth = box_mask((320, 260), (100, 150), (100, 150))
    low_res = np.zeros((1, 256, 256), bool)
    low_res[0, 80:120, 80:120] = True
    for call in (
        lambda: segment_ious(low_res, truth),
        lambda: select(low_res, truth, "best"),
        lambda: select(low_res[0], truth, "all"),
        lambda: slice_counts(low_res[0], truth),
    ):
        with pytest.raises(ValueError) as exc:
            call()
        msg = str(exc.value)
        assert "(256, 256)" in msg and "(320, 260)" in msg, msg
    # full-size (1, 320, 260) masks are fine
    full = truth[None].copy()
    assert segment_ious(full, truth).tolist() == [1.0]


def test_b13_no_broadcasting(box_mask):
    """Shapes that numpy would broadcast ((1, W), (H, 1)) are refused, never stretched."""
    truth = box_mask((8, 6), (2, 4), (1, 3))
    for bad in (np.ones((1, 6), bool), np.ones((8, 1), bool), np.ones((1, 1), bool)):
        with pytest.raises(ValueError):
            segment_ious(bad[None], truth)
        with pytest.raises(ValueError):
            slice_counts(bad, truth)
    with pytest.raises(ValueError):
        segment_ious(np.ones((2, 6, 8), bool), truth)  # transposed (W, H)


# ---------------------------------------------------------------------------------------------------
# ties and literal IoUs


def test_best_tie_goes_to_first_in_generator_order(box_mask):
    """Truth rows 0–1, cols 0–3 (8 px). Left half and right half each: IoU 4/8 = 0.5 → a tie.
    best → index 0 whichever half comes first; iou>0.5 selects neither (0.5 is not > 0.5)."""
    truth = box_mask((4, 4), (0, 1), (0, 3))
    left = box_mask((4, 4), (0, 1), (0, 1))
    right = box_mask((4, 4), (0, 1), (2, 3))
    for segs, winner in ((np.stack([left, right]), left), (np.stack([right, left]), right)):
        ious = segment_ious(segs, truth)
        assert ious.tolist() == [0.5, 0.5]
        assert selected_indices(ious, "best").tolist() == [0]
        assert (select(segs, truth, "best") == winner).all()
        assert selected_indices(ious, "iou>0.5").tolist() == []
        assert selected_indices(ious, "iou>0.25").tolist() == [0, 1]
    # a later strictly better segment still wins
    assert selected_indices(np.array([0.3, 0.3, 0.31, 0.31]), "best").tolist() == [2]
    assert selected_indices(np.array([0.0, 0.0]), "best").tolist() == []


@pytest.mark.parametrize(
    "seg_box, expected",
    [
        # truth: rows 2–5, cols 2–5 (16 px) in 8 × 8
        (((2, 5), (2, 5)), 1.0),  # identical
        (((2, 3), (2, 5)), 8 / 16),  # top half: ∩ 8, ∪ 16
        (((0, 7), (0, 7)), 16 / 64),  # whole frame: exactly 0.25 → not > 0.25
        (((4, 7), (4, 7)), 4 / 28),  # corner overlap: ∩ 2×2 = 4, ∪ 16 + 16 − 4 = 28
        (((0, 1), (0, 1)), 0.0),  # disjoint
        (((3, 3), (3, 3)), 1 / 16),  # one pixel inside
        (((1, 6), (2, 5)), 16 / 24),  # taller: ∩ 16, ∪ 24
    ],
)
def test_iou_literals(box_mask, seg_box, expected):
    truth = box_mask((8, 8), (2, 5), (2, 5))
    seg = box_mask((8, 8), *seg_box)
    assert segment_ious(seg[None], truth)[0] == pytest.approx(expected, rel=1e-15, abs=0)


def test_threshold_is_strict(box_mask):
    """Whole frame against a 4 × 4 truth in 8 × 8: IoU exactly 16/64 = 0.25 → not selected by iou>0.25;
    top half: IoU exactly 0.5 → not selected by iou>0.5."""
    truth = box_mask((8, 8), (2, 5), (2, 5))
    segs = np.stack([np.ones((8, 8), bool), box_mask((8, 8), (2, 3), (2, 5))])
    ious = segment_ious(segs, truth)
    assert ious.tolist() == [0.25, 0.5]
    assert selected_indices(ious, "iou>0.25").tolist() == [1]
    assert selected_indices(ious, "iou>0.5").tolist() == []


def test_both_empty_iou_is_zero_and_empty_truth_selects_nothing():
    truth = np.zeros((6, 6), bool)
    segs = np.stack([np.zeros((6, 6), bool), np.ones((6, 6), bool)])
    assert segment_ious(segs, truth).tolist() == [0.0, 0.0]
    for name in NAMES:
        assert not select(segs, truth, name).any()


# ---------------------------------------------------------------------------------------------------
# properties


@st.composite
def slices_with_segments(draw, max_side=24, max_n=12):
    """(segments (N, H, W) bool, truth (H, W) bool) from a drawn seed: a mix of random rectangles,
    random blobs, copies/parts of the truth, the full frame, the background and empty masks."""
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    n = draw(st.integers(0, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    truth_kind = draw(st.sampled_from(["rect", "blob", "empty", "full"]))
    rng = np.random.default_rng(seed)

    def rect():
        m = np.zeros((h, w), bool)
        r0, r1 = sorted(rng.integers(0, h, size=2))
        c0, c1 = sorted(rng.integers(0, w, size=2))
        m[r0 : r1 + 1, c0 : c1 + 1] = True
        return m

    truth = {
        "rect": rect,
        "blob": lambda: rng.random((h, w)) < rng.uniform(0.05, 0.7),
        "empty": lambda: np.zeros((h, w), bool),
        "full": lambda: np.ones((h, w), bool),
    }[truth_kind]()
    segs = np.zeros((n, h, w), bool)
    for k in range(n):
        kind = rng.integers(0, 7)
        if kind == 0:
            segs[k] = rect()
        elif kind == 1:
            segs[k] = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        elif kind == 2:
            segs[k] = truth
        elif kind == 3:
            segs[k] = truth & rect()
        elif kind == 4:
            segs[k] = True
        elif kind == 5:
            segs[k] = ~truth
        # kind 6: empty mask
    if n and rng.random() < 0.3:  # duplicates → ties
        segs[rng.integers(0, n)] = segs[rng.integers(0, n)]
    return segs, truth


def reference_ious(segs: np.ndarray, truth: np.ndarray) -> list[float]:
    out = []
    for s in segs:
        inter = int(np.logical_and(s, truth).sum())
        union = int(np.logical_or(s, truth).sum())
        out.append(inter / union if union else 0.0)
    return out


def reference_selection(ious: list[float], name: str) -> list[int]:
    if name == "best":
        best = max(ious, default=0.0)
        return [ious.index(best)] if best > 0 else []
    t = {"all": 0.0, "iou>0.25": 0.25, "iou>0.5": 0.5}[name]
    return [i for i, v in enumerate(ious) if v > t]


@given(slices_with_segments())
def test_segment_ious_match_reference(data):
    segs, truth = data
    ious = segment_ious(segs, truth)
    assert ious.dtype == np.float64 and ious.shape == (len(segs),)
    assert ious.tolist() == reference_ious(segs, truth)
    assert ((ious >= 0) & (ious <= 1)).all()
    # 0/255 masks give the same numbers
    assert segment_ious(segs.astype(np.uint8) * 255, truth.astype(np.uint8) * 255).tolist() == ious.tolist()


@given(slices_with_segments())
def test_selection_matches_reference_and_invariants(data):
    segs, truth = data
    ref_ious = reference_ious(segs, truth)
    ious = segment_ious(segs, truth)
    chosen = {}
    masks = {}
    for name in NAMES:
        idx = selected_indices(ious, name).tolist()
        assert idx == reference_selection(ref_ious, name), name
        chosen[name] = set(idx)
        masks[name] = select(segs, truth, name)
        ref_union = np.zeros(truth.shape, bool)
        for i in idx:
            ref_union |= segs[i]
        assert (masks[name] == ref_union).all()
        assert masks[name].dtype == bool and masks[name].shape == truth.shape
    # index subsets and mask subsets
    assert chosen["iou>0.5"] <= chosen["iou>0.25"] <= chosen["all"]
    assert chosen["best"] <= chosen["all"] and len(chosen["best"]) <= 1
    assert not (masks["iou>0.5"] & ~masks["iou>0.25"]).any()
    assert not (masks["iou>0.25"] & ~masks["all"]).any()
    assert not (masks["best"] & ~masks["all"]).any()
    # best is empty exactly when all is
    assert bool(chosen["best"]) == bool(chosen["all"])
    # empty truth or no segments → nothing selected
    if not truth.any() or len(segs) == 0:
        for name in NAMES:
            assert not chosen[name] and not masks[name].any()
    # every selected segment overlaps the truth
    for i in chosen["all"]:
        assert (segs[i] & truth).any()


@given(
    st.lists(st.floats(0, 1, allow_nan=False), max_size=20),
    st.floats(0, 1, allow_nan=False),
    st.floats(0, 1, allow_nan=False),
    st.booleans(),
)
def test_selection_monotonic_in_threshold(ious, t1, t2, single):
    lo, hi = sorted((t1, t2))
    ious = np.array(ious, dtype=np.float64)
    loose = set(selected_indices(ious, Heuristic("loose", lo, single)).tolist())
    strict = set(selected_indices(ious, Heuristic("strict", hi, single)).tolist())
    if single:
        # the single best qualifies under the strict threshold only if it does under the loose one
        assert strict <= loose or not strict
        assert len(loose) <= 1 and len(strict) <= 1
        if strict:
            assert strict == loose
    else:
        assert strict <= loose
        assert loose == {i for i, v in enumerate(ious) if v > lo}


@given(slices_with_segments(), st.sampled_from(NAMES))
def test_empty_truth_never_selected(data, name):
    segs, truth = data
    empty = np.zeros_like(truth)
    assert selected_indices(segment_ious(segs, empty), name).size == 0
    assert not select(segs, empty, name).any()


@given(st.integers(1, 24), st.integers(1, 24), st.integers(0, 2**32 - 1), st.sampled_from(NAMES))
def test_no_segments_selects_nothing(h, w, seed, name):
    truth = np.random.default_rng(seed).random((h, w)) < 0.5
    none = np.zeros((0, h, w), bool)
    assert segment_ious(none, truth).shape == (0,)
    assert selected_indices(segment_ious(none, truth), name).size == 0
    pred = select(none, truth, name)
    assert pred.shape == (h, w) and not pred.any()


def test_logit_or_probability_masks_are_refused_not_read_as_nonzero(box_mask):
    """A logit mask (−8 outside, +8 inside) read as "nonzero = inside" would be the full frame:
    IoU 36/1024 instead of 1. It is a ValueError; float 0/1 and int 0/255 masks are accepted."""
    truth = box_mask((32, 32), (10, 15), (10, 15))
    logits = np.where(truth, 8.0, -8.0)[None]
    with pytest.raises(ValueError, match="logits or probabilities"):
        segment_ious(logits, truth)
    with pytest.raises(ValueError, match="logits or probabilities"):
        segment_ious((truth * 0.9)[None], truth)
    assert segment_ious(truth.astype(np.float32)[None], truth).tolist() == [1.0]
    assert segment_ious(truth.astype(np.int16)[None] * 255, truth).tolist() == [1.0]
