"""SPEC §5: per-slice TP/FP/FN counts as the primary record, and every volume metric derived from them.

Pure numpy. ``None`` stands for "undefined" (e.g. Dice when prediction and truth are both empty);
it is written as JSON ``null`` and left out of averages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SliceCounts:
    """Counts of one slice: true/false positives, false negatives, truth voxels, and whether a
    segment was selected there."""

    tp: int
    fp: int
    fn: int
    truth: int
    selected: bool


def slice_counts(pred: np.ndarray, truth: np.ndarray) -> SliceCounts:
    """Counts for one slice; ``pred`` and ``truth`` must have the same shape (no broadcasting)."""
    p = np.asarray(pred) != 0
    t = np.asarray(truth) != 0
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} does not match ground-truth shape {t.shape}")
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p)) - tp
    t_n = int(np.count_nonzero(t))
    return SliceCounts(tp=tp, fp=fp, fn=t_n - tp, truth=t_n, selected=bool(tp + fp))


def dice_from_counts(tp: int, fp: int, fn: int) -> float | None:
    """2TP / (2TP + FP + FN); None when TP + FP + FN = 0 (both empty)."""
    den = 2 * tp + fp + fn
    return None if tp + fp + fn == 0 else 2.0 * tp / den


def iou_from_counts(tp: int, fp: int, fn: int) -> float | None:
    """TP / (TP + FP + FN); None when both are empty."""
    den = tp + fp + fn
    return None if den == 0 else tp / den


def volume_metrics(slices: list[SliceCounts]) -> dict:
    """Volume metrics from per-slice counts (SPEC §5).

    - ``dice``, ``iou``: over the whole volume's summed counts.
    - ``dice_pos``: Dice over only the slices with a selected segment; None if there is none.
    - ``fraction_detected``: truth voxels in slices with a selection ÷ all truth voxels; None when the
      volume has no truth.
    """
    tp = sum(s.tp for s in slices)
    fp = sum(s.fp for s in slices)
    fn = sum(s.fn for s in slices)
    truth = sum(s.truth for s in slices)
    sel = [s for s in slices if s.selected]
    if sel:
        dice_pos = dice_from_counts(sum(s.tp for s in sel), sum(s.fp for s in sel), sum(s.fn for s in sel))
    else:
        dice_pos = None
    detected = sum(s.truth for s in sel)
    return {
        "dice": dice_from_counts(tp, fp, fn),
        "iou": iou_from_counts(tp, fp, fn),
        "dice_pos": dice_pos,
        "fraction_detected": (detected / truth) if truth else None,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "truth_voxels": truth,
        "n_slices": len(slices),
        "n_slices_truth": sum(1 for s in slices if s.truth),
        "n_slices_selected": len(sel),
    }
