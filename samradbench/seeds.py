"""SPEC §3 "seeded SAM": an n × n grid of seed points spanning a slice's ground-truth bounding box.

Pure numpy. Points are (row, col) pixel indices here; :func:`to_sam_points` turns them into the
normalised (x = col / W, y = row / H) grid that ``SamAutomaticMaskGenerator(point_grids=...)`` takes.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError


def seed_pixels(truth: np.ndarray, n: int = 3) -> np.ndarray:
    """Seed pixels for one slice, shape (k, 2) as (row, col), k ≤ n², inside ``truth``.

    The ground truth's bounding box [r0, r1] × [c0, c1] is cut into an n × n partition; seed (i, j)
    is the pixel holding the centre of cell (i, j), i.e. row ⌊r0 + (i + ½)·h / n⌋ with h = r1 − r0 + 1
    (columns alike). A seed that falls outside the object moves to the nearest object pixel
    (Euclidean; ties to the lowest row, then column). Repeated pixels are kept once, in grid order
    (row-major over (i, j)). An empty ``truth`` gives no seeds.
    """
    if n < 1:
        raise ConfigError(f"seed grid size must be ≥ 1, got {n}")
    truth = np.asarray(truth, dtype=bool)
    if truth.ndim != 2:
        raise ConfigError(f"seed_pixels needs a 2-D slice, got shape {truth.shape}")
    rows, cols = np.nonzero(truth)  # row-major order: lowest row, then column, first
    if rows.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
    h, w = r1 - r0 + 1, c1 - c0 + 1
    # ⌊r0 + (i + ½)·h / n⌋ in exact integer arithmetic (float products can land one pixel low)
    odd = 2 * np.arange(n, dtype=np.int64) + 1
    grid_r = r0 + (odd * h) // (2 * n)
    grid_c = c0 + (odd * w) // (2 * n)
    seeds: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    for gr in grid_r:
        for gc in grid_c:
            r, c = int(gr), int(gc)
            if not truth[r, c]:
                d2 = (rows - r) ** 2 + (cols - c) ** 2
                k = int(np.argmin(d2))  # first minimum = lowest row, then column
                r, c = rows[k], cols[k]
            p = (int(r), int(c))
            if p not in seen:
                seen.add(p)
                seeds.append(p)
    return np.asarray(seeds, dtype=np.int64)


def to_sam_points(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(row, col) pixels → SAM's normalised point grid, columns (x = col / W, y = row / H), float64."""
    H, W = int(shape[0]), int(shape[1])
    pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
    return np.stack([pixels[:, 1] / W, pixels[:, 0] / H], axis=1)
