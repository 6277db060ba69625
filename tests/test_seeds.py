"""SPEC §3 "seeded SAM": an n × n seed grid over the slice's ground-truth bounding box.

Rule (seeds.seed_pixels' docstring): bounding box [r0, r1] × [c0, c1], h = r1 − r0 + 1,
w = c1 − c0 + 1; seed (i, j) is row ⌊r0 + (i + ½)·h/n⌋, column ⌊c0 + (j + ½)·w/n⌋. A seed outside the
object moves to the nearest object pixel (Euclidean; ties → lowest row, then column). Repeats are
kept once, in row-major grid order. SAM points are (x = col / W, y = row / H).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from samradbench.errors import ConfigError
from samradbench.seeds import seed_pixels, to_sam_points


def reference_seeds(truth: np.ndarray, n: int) -> list[tuple[int, int]]:
    """Independent implementation in integer arithmetic and plain Python loops."""
    pts = [(r, c) for r in range(truth.shape[0]) for c in range(truth.shape[1]) if truth[r, c]]
    if not pts:
        return []
    r0, r1 = min(p[0] for p in pts), max(p[0] for p in pts)
    c0, c1 = min(p[1] for p in pts), max(p[1] for p in pts)
    h, w = r1 - r0 + 1, c1 - c0 + 1
    rows = [r0 + ((2 * i + 1) * h) // (2 * n) for i in range(n)]  # exact ⌊r0 + (i + ½) h / n⌋
    cols = [c0 + ((2 * j + 1) * w) // (2 * n) for j in range(n)]
    out: list[tuple[int, int]] = []
    for gr in rows:
        for gc in cols:
            p = (gr, gc)
            if not truth[gr, gc]:
                p = min(pts, key=lambda q: ((q[0] - gr) ** 2 + (q[1] - gc) ** 2, q[0], q[1]))
            if p not in out:
                out.append(p)
    return out


def as_list(seeds: np.ndarray) -> list[tuple[int, int]]:
    assert seeds.ndim == 2 and seeds.shape[1] == 2
    return [(int(r), int(c)) for r, c in seeds]


# ---------------------------------------------------------------------------------------------------
# literals


def test_square_9x9_n3(box_mask):
    """Square rows 3–11, cols 6–14 (h = w = 9), n = 3: offsets (i + ½)·9/3 = 1.5, 4.5, 7.5.
    rows ⌊3 + 1.5⌋ = 4, ⌊3 + 4.5⌋ = 7, ⌊3 + 7.5⌋ = 10;  cols ⌊6 + 1.5⌋ = 7, 10, 13. All inside."""
    truth = box_mask((20, 20), (3, 11), (6, 14))
    seeds = seed_pixels(truth, 3)
    assert seeds.dtype.kind == "i"
    assert as_list(seeds) == [(4, 7), (4, 10), (4, 13), (7, 7), (7, 10), (7, 13), (10, 7), (10, 10), (10, 13)]


def test_square_9x9_n4(box_mask):
    """Same square, n = 4: offsets (i + ½)·9/4 = 1.125, 3.375, 5.625, 7.875 → rows 4, 6, 8, 10;
    cols 7, 9, 11, 13. 16 distinct seeds (the paper's 16 points)."""
    truth = box_mask((20, 20), (3, 11), (6, 14))
    rows, cols = [4, 6, 8, 10], [7, 9, 11, 13]
    assert as_list(seed_pixels(truth, 4)) == [(r, c) for r in rows for c in cols]


def test_n1_single_centre(box_mask):
    """n = 1 on rows 2–5, cols 0–2 (h = 4, w = 3): row ⌊2 + 2⌋ = 4, col ⌊0 + 1.5⌋ = 1."""
    assert as_list(seed_pixels(box_mask((8, 8), (2, 5), (0, 2)), 1)) == [(4, 1)]


def test_l_shape_moves_and_ties(box_mask):
    """L: vertical bar rows 2–10 × cols 2–4, horizontal bar rows 8–10 × cols 2–10 (box 9 × 9 at (2, 2)).
    Grid rows/cols ⌊2 + 1.5⌋ = 3, ⌊2 + 4.5⌋ = 6, ⌊2 + 7.5⌋ = 9.

      (3,3) inside.
      (3,6) outside → nearest (3,4), d² = 4 (the bar below is 5 rows away).
      (3,9) outside → (3,4) d² = 25 and (8,9) d² = 25 tie; lowest row → (3,4), a repeat, dropped.
      (6,3) inside.
      (6,6) outside → (6,4) d² = 4 and (8,6) d² = 4 tie; lowest row → (6,4).
      (6,9) outside → (8,9) d² = 4 (next best (6,4), d² = 25).
      (9,3), (9,6), (9,9) inside.
    """
    truth = box_mask((16, 16), (2, 10), (2, 4)) | box_mask((16, 16), (8, 10), (2, 10))
    expected = [(3, 3), (3, 4), (6, 3), (6, 4), (8, 9), (9, 3), (9, 6), (9, 9)]
    assert as_list(seed_pixels(truth, 3)) == expected
    assert reference_seeds(truth, 3) == expected


def test_ring_centre_in_hole_ties_to_lowest_row(box_mask):
    """5×5 square outline at rows/cols 0–4 (hole rows/cols 1–3); n = 1 → centre (⌊2.5⌋, ⌊2.5⌋) = (2, 2)
    in the hole. (0,2), (2,0), (2,4), (4,2) are all at d² = 4 → lowest row → (0, 2)."""
    truth = box_mask((7, 7), (0, 4), (0, 4)) & ~box_mask((7, 7), (1, 3), (1, 3))
    assert as_list(seed_pixels(truth, 1)) == [(0, 2)]


def test_tie_same_row_goes_to_lowest_column():
    """Two pixels (5, 1) and (5, 5): box row 5, cols 1–5, n = 1 → centre (5, ⌊1 + 2.5⌋) = (5, 3), outside;
    both at d² = 4, same row → lowest column (5, 1)."""
    truth = np.zeros((8, 8), bool)
    truth[5, 1] = truth[5, 5] = True
    assert as_list(seed_pixels(truth, 1)) == [(5, 1)]


def test_b11_disc_seeds(disc_mask):
    """B11: H = 100, W = 50, disc radius 5 at (70, 10): box rows 65–75, cols 5–15 (h = w = 11), n = 3.
    Offsets (i + ½)·11/3 = 1.83, 5.5, 9.17 → rows 66, 70, 74; cols 6, 10, 14.

    Corners lie outside ((±4)² + (±4)² = 32 > 25) and move by one pixel, each a two-way tie:
      (66,6):  (66,7) and (67,6) both d² = 1 → lowest row (66,7)
      (66,14): (66,13) and (67,14) → (66,13)
      (74,6):  (73,6) and (74,7)  → (73,6)
      (74,14): (73,14) and (74,13) → (73,14)
    Edge centres (66,10), (70,6), (70,14), (74,10) are at distance 4 ≤ 5: inside, kept as they are.
    """
    truth = disc_mask((100, 50), (70, 10), 5)
    expected = [(66, 7), (66, 10), (66, 13), (70, 6), (70, 10), (70, 14), (73, 6), (74, 10), (73, 14)]
    assert reference_seeds(truth, 3) == expected
    assert as_list(seed_pixels(truth, 3)) == expected


def test_b11_disc_sam_points(disc_mask):
    """B11: the disc centre (70, 10) on a 100 × 50 slice → (x = 10/50, y = 70/100) = (0.2, 0.7); the
    centre cell of the 3 × 3 grid (row ⌊65 + 5.5⌋ = 70, col ⌊5 + 5.5⌋ = 10) is that centre."""
    truth = disc_mask((100, 50), (70, 10), 5)
    seeds = seed_pixels(truth, 3)
    assert len(seeds) == 9 and all(truth[r, c] for r, c in as_list(seeds))
    assert as_list(seeds)[4] == (70, 10)
    pts = to_sam_points(seeds, truth.shape)
    assert pts.shape == (9, 2) and pts.dtype == np.float64
    np.testing.assert_allclose(pts[4], [0.2, 0.7], rtol=0, atol=1e-15)
    np.testing.assert_allclose(pts[0], [7 / 50, 66 / 100], rtol=0, atol=1e-15)
    assert ((pts >= 0) & (pts <= 1)).all()
    np.testing.assert_allclose(to_sam_points(np.array([[70, 10]]), (100, 50)), [[0.2, 0.7]], atol=1e-15)


def test_to_sam_points_literals():
    """(row, col) → (col / W, row / H) on a non-square 48 × 80 slice."""
    pix = np.array([[0, 0], [47, 79], [12, 40], [24, 20]])
    expected = [[0.0, 0.0], [79 / 80, 47 / 48], [0.5, 0.25], [0.25, 0.5]]
    np.testing.assert_allclose(to_sam_points(pix, (48, 80)), expected, rtol=0, atol=1e-15)
    assert to_sam_points(np.zeros((0, 2), np.int64), (48, 80)).shape == (0, 2)


def test_empty_truth_gives_no_seeds():
    seeds = seed_pixels(np.zeros((10, 12), bool), 3)
    assert seeds.shape == (0, 2)
    assert to_sam_points(seeds, (10, 12)).shape == (0, 2)


def test_seed_errors():
    with pytest.raises(ConfigError):
        seed_pixels(np.ones((4, 4), bool), 0)
    with pytest.raises(ConfigError):
        seed_pixels(np.ones((4, 4, 2), bool), 3)


def test_uint8_0_255_truth_same_as_bool(box_mask):
    truth = box_mask((20, 20), (3, 11), (6, 14))
    assert as_list(seed_pixels(truth.astype(np.uint8) * 255, 3)) == as_list(seed_pixels(truth, 3))


def test_cell_centre_exact_whole_number_n5_h90():
    truth = np.zeros((100, 3), bool)
    truth[0:90, 1] = True
    # rows ⌊(2i + 1)·90 / 10⌋ = 9, 27, 45, 63, 81; w = 1 → every column is 1
    assert as_list(seed_pixels(truth, 5)) == [(9, 1), (27, 1), (45, 1), (63, 1), (81, 1)]


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_grid_rows_exact_for_paper_grid_sizes(n):
    """Exhaustive over box heights 1–256 and offsets r0 ∈ {0, 1, 5}: a one-column bar of height h
    gives exactly the rows ⌊r0 + (2i + 1)·h / (2n)⌋ (distinct, in order)."""
    for r0 in (0, 1, 5):
        for h in range(1, 257):
            truth = np.zeros((r0 + h + 1, 1), bool)
            truth[r0 : r0 + h, 0] = True
            rows = list(dict.fromkeys(r0 + ((2 * i + 1) * h) // (2 * n) for i in range(n)))
            assert [p[0] for p in as_list(seed_pixels(truth, n))] == rows, (n, r0, h)


# ---------------------------------------------------------------------------------------------------
# properties


def _disc(h, w, rc, cc, radius):
    rr, cc_ = np.indices((h, w))
    return (rr - rc) ** 2 + (cc_ - cc) ** 2 <= radius**2


@st.composite
def truths(draw, max_side=32):
    """A 2-D truth from a drawn seed: a random blob, rectangle, ring or scatter of pixels."""
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["blob", "rect", "ring", "scatter", "two", "disc"]))
    rng = np.random.default_rng(seed)
    t = np.zeros((h, w), bool)
    r0, r1 = sorted(rng.integers(0, h, size=2))
    c0, c1 = sorted(rng.integers(0, w, size=2))
    if kind == "blob":
        t = rng.random((h, w)) < rng.uniform(0.05, 0.9)
    elif kind == "rect":
        t[r0 : r1 + 1, c0 : c1 + 1] = True
    elif kind == "ring":
        t[r0 : r1 + 1, c0 : c1 + 1] = True
        t[r0 + 1 : r1, c0 + 1 : c1] = False
    elif kind == "scatter":
        k = int(rng.integers(1, 6))
        t[rng.integers(0, h, size=k), rng.integers(0, w, size=k)] = True
    elif kind == "two":
        t[r0, c0] = t[r1, c1] = True
    else:
        t = _disc(h, w, (r0 + r1) / 2, (c0 + c1) / 2, rng.uniform(0.5, max(h, w) / 2))
    return t


@given(truths(), st.integers(1, 5))
def test_seeds_lie_inside_distinct_at_most_n_squared(truth, n):
    got = as_list(seed_pixels(truth, n))
    if not truth.any():
        assert got == []
        return
    assert all(truth[r, c] for r, c in got)  # every seed inside the object
    assert 1 <= len(got) <= n * n
    assert len(set(got)) == len(got)  # distinct


@given(truths(), st.integers(1, 5))
@example(_disc(100, 50, 70, 10, 5), 3)  # B11 (a moved seed once shifted later cells of its grid row)
def test_seeds_match_independent_reference(truth, n):
    assert as_list(seed_pixels(truth, n)) == reference_seeds(truth, n)


@given(
    st.integers(1, 5),
    st.integers(0, 2**32 - 1),
    st.integers(0, 27),
    st.integers(0, 27),
)
def test_filled_rectangle_gives_n_squared_distinct_seeds(n, seed, extra_h, extra_w):
    rng = np.random.default_rng(seed)
    h, w = n + extra_h, n + extra_w  # at least n × n
    H, W = h + int(rng.integers(0, 5)), w + int(rng.integers(0, 5))
    r0, c0 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    truth = np.zeros((H, W), bool)
    truth[r0 : r0 + h, c0 : c0 + w] = True
    got = as_list(seed_pixels(truth, n))
    assert len(got) == n * n and len(set(got)) == n * n
    assert all(truth[r, c] for r, c in got)
    # row-major grid order, and no seed needed to move: rows/columns strictly increasing per grid line
    rows = sorted({r for r, _ in got})
    cols = sorted({c for _, c in got})
    assert got == [(r, c) for r in rows for c in cols]
    assert rows == [r0 + ((2 * i + 1) * h) // (2 * n) for i in range(n)]
    assert cols == [c0 + ((2 * j + 1) * w) // (2 * n) for j in range(n)]


@given(truths(), st.integers(1, 5))
def test_sam_points_in_unit_square(truth, n):
    seeds = seed_pixels(truth, n)
    pts = to_sam_points(seeds, truth.shape)
    assert pts.shape == (len(seeds), 2)
    assert ((pts >= 0) & (pts <= 1)).all()
    H, W = truth.shape
    for (r, c), (x, y) in zip(as_list(seeds), pts):
        assert x == c / W and y == r / H
