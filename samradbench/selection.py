"""SPEC §4: the four oracle heuristics that pick a slice's "segment of interest" from a generator's output.

Pure numpy. Segments of one slice are a boolean stack (N, H, W); the ground truth G is (H, W).
IoU of all N segments against G is one vectorised operation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class Heuristic:
    name: str  # as in the SPEC and the results: 'all', 'best', 'iou>0.25', 'iou>0.5'
    threshold: float  # a segment qualifies when IoU > threshold
    single: bool  # keep only the best qualifying segment

    @property
    def test_id(self) -> str:
        """The name as it appears in pytest ids, where '>' cannot be typed into ``-k``: 'iou-gt-0.25'."""
        return self.name.replace(">", "-gt-")


HEURISTICS: dict[str, Heuristic] = {
    h.name: h
    for h in (
        Heuristic("all", 0.0, False),
        Heuristic("best", 0.0, True),
        Heuristic("iou>0.25", 0.25, False),
        Heuristic("iou>0.5", 0.5, False),
    )
}


def as_segment_stack(segments: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Segments as a boolean (N, H, W) stack for a slice of ``shape``; refuses any other shape.

    A multimask (N, K, H, W) stack is flattened to (N·K, H, W): mask k of prompt n gets index n·K + k.

    Never resizes or broadcasts: a (256, 256) low-resolution mask against a (320, 260) slice is a
    ValueError naming both shapes. Non-boolean masks (0/1, 0/255) count as "nonzero = inside"; masks
    with negative or fractional values (logits, probabilities) are a ValueError, never "nonzero".
    """
    if isinstance(segments, (list, tuple)) and any(isinstance(s, dict) for s in segments):
        raise ValueError(
            "segments must be boolean (N, H, W) masks (SAM output_mode='binary_mask'); "
            "got RLE/record dicts, which are not decoded here"
        )
    if isinstance(segments, (list, tuple)) and len(segments) == 0:
        return np.zeros((0, *shape), dtype=bool)  # SAM's generate() returns [] when it finds nothing
    segs = np.asarray(segments)
    if segs.dtype == object:
        raise ValueError(f"segments must be a numeric or boolean (N, H, W) stack, got an object array of shape {segs.shape}")
    if segs.ndim == 2:
        segs = segs[None]
    elif segs.ndim == 4:
        # (N prompts, K multimask outputs, H, W), as SamPredictor's batched output (B12): every mask
        # is a candidate, in the generator's order (prompt by prompt), never squeezed or cut to K = 1
        segs = segs.reshape(-1, *segs.shape[2:])
    if segs.ndim != 3:
        raise ValueError(f"segments must be an (N, H, W) or (N, K, H, W) stack, got shape {segs.shape}")
    if segs.shape[0] and segs.shape[1:] != tuple(shape):
        raise ValueError(
            f"segment shape {segs.shape[1:]} does not match ground-truth slice shape {tuple(shape)}"
        )
    if segs.shape[0] == 0:
        return np.zeros((0, *shape), dtype=bool)
    if segs.dtype == bool:
        return segs
    if segs.dtype.kind not in "iuf":
        raise ValueError(f"segments must be boolean or numeric masks, got dtype {segs.dtype}")
    if (segs.dtype.kind in "if" and (segs < 0).any()) or (segs.dtype.kind == "f" and (segs != np.floor(segs)).any()):
        raise ValueError(
            "segments look like logits or probabilities (negative or fractional values); "
            "masks must be boolean, or 0/1 or 0/255 labels (threshold logits at 0 first)"
        )
    return segs != 0


def segment_ious(segments: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """IoU of every segment with ``truth``, shape (N,), float64; 0 where both are empty."""
    truth = np.asarray(truth) != 0
    segs = as_segment_stack(segments, truth.shape)
    n = segs.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    flat = segs.reshape(n, -1)
    t = truth.reshape(-1)
    inter = np.count_nonzero(flat & t, axis=1).astype(np.float64)
    area = np.count_nonzero(flat, axis=1).astype(np.float64)
    union = area + float(np.count_nonzero(t)) - inter
    out = np.zeros(n, dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def selected_indices(ious: np.ndarray, heuristic: Heuristic | str) -> np.ndarray:
    """Indices (into the generator's order) of the segments ``heuristic`` selects, given their IoUs."""
    h = heuristic if isinstance(heuristic, Heuristic) else get_heuristic(heuristic)
    ious = np.asarray(ious, dtype=np.float64)
    qualifying = np.flatnonzero(ious > h.threshold)
    if h.single and qualifying.size:
        return np.array([int(np.argmax(ious))])  # argmax: first of tied maxima; max > 0 here
    return qualifying


def union_of(segments: np.ndarray, indices: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean union of the chosen segments; all-False when none is chosen."""
    segs = as_segment_stack(segments, shape)
    if len(indices) == 0:
        return np.zeros(shape, dtype=bool)
    return np.any(segs[np.asarray(indices)], axis=0)


def select(segments: np.ndarray, truth: np.ndarray, heuristic: Heuristic | str) -> np.ndarray:
    """The selected (H, W) boolean mask of one slice under ``heuristic``."""
    truth = np.asarray(truth) != 0
    idx = selected_indices(segment_ious(segments, truth), heuristic)
    return union_of(segments, idx, truth.shape)


def get_heuristic(name: str) -> Heuristic:
    for h in HEURISTICS.values():
        if name in (h.name, h.test_id):
            return h
    raise ConfigError(f"unknown selection heuristic {name!r}; expected one of {sorted(HEURISTICS)}")
