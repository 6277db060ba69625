"""Independent cross-check on the shared real volumes (issue 3 item 3).

The harness's volume Dice and IoU must equal scikit-learn's F1 and Jaccard scores of the flattened
prediction and truth, where the prediction volume is rebuilt here with a plain per-segment loop
(the paper's selection, written independently of ``samradbench.selection``) from the same
deterministic generators (oracle and the SLIC baseline).
"""

from __future__ import annotations

import numpy as np
import pytest

sklearn_metrics = pytest.importorskip("sklearn.metrics")

from samradbench.datasets import discover_datasets, target_mask  # noqa: E402
from samradbench.generators import build_baseline  # noqa: E402
from samradbench.preprocess import take_slice, to_rgb  # noqa: E402
from samradbench.runner import RunOptions, prepare_volume, run_volume  # noqa: E402

from samradbench.plugin import NO_REAL_DATA, configured_data_root  # noqa: E402

THRESHOLDS = {"all": 0.0, "best": None, "iou>0.25": 0.25, "iou>0.5": 0.5}


def _reference_select(masks, truth):
    """The paper's heuristics, one segment at a time: {heuristic: selected mask}."""
    ious = []
    for m in masks:
        inter = np.logical_and(m, truth).sum()
        union = np.logical_or(m, truth).sum()
        ious.append(inter / union if union else 0.0)
    out = {}
    for h, threshold in THRESHOLDS.items():
        picked = np.zeros(truth.shape, bool)
        if h == "best":
            if ious and max(ious) > 0:
                picked |= masks[ious.index(max(ious))]  # list.index: the first of tied maxima
        else:
            for m, iou in zip(masks, ious):
                if iou > threshold:
                    picked |= m
        out[h] = picked
    return out


def pytest_generate_tests(metafunc):
    """One case per volume of the configured data root (every volume of the shared data in CI)."""
    if "ref" not in metafunc.fixturenames:
        return
    root = configured_data_root(metafunc.config)
    if root is None:
        metafunc.parametrize("ds,ref", [pytest.param(None, None, marks=pytest.mark.skip(reason=NO_REAL_DATA))])
        return
    cases = [(ds, ref) for ds in discover_datasets(root) for ref in ds.cases]
    metafunc.parametrize("ds,ref", cases, ids=[f"{ds.name}-{ref.case_id}" for ds, ref in cases])


@pytest.mark.parametrize("generator_name", ["oracle", "superpixels"])
def test_volume_dice_and_iou_match_sklearn(ds, ref, generator_name):
    generator = build_baseline(generator_name)
    options = RunOptions()
    volume = prepare_volume(ds, ref, options)
    rows = run_volume(volume, ds.targets, generator, tuple(THRESHOLDS), options).rows
    assert rows, "every shared volume has ground truth for every target"
    axis = volume.axis
    generated = {}  # slice → masks of a truth-independent generator, shared by the targets
    for target in ds.targets:
        truth = target_mask(volume.label, target)
        preds = {h: np.zeros(truth.shape, bool) for h in THRESHOLDS}
        for k in range(volume.n_slices):
            t = take_slice(truth, axis, k)
            if not t.any():
                continue  # no segment can be selected without truth
            if generator.uses_truth or k not in generated:
                rgb = to_rgb(take_slice(volume.image_u8, axis, k))
                generated[k] = generator.generate(rgb, t if generator.uses_truth else None).masks
            idx = [slice(None)] * 3
            idx[axis] = k
            for h, picked in _reference_select(generated[k], t).items():
                preds[h][tuple(idx)] = picked
        # sklearn sees the slab of slices that hold truth: outside it both volumes are empty (only true
        # negatives, which F1 and Jaccard ignore), and it keeps the 12-Mvoxel lung CT affordable.
        other = tuple(a for a in range(3) if a != axis)
        ks = np.flatnonzero(truth.any(axis=other))
        assert not any(np.take(p, np.setdiff1d(np.arange(volume.n_slices), ks), axis=axis).any() for p in preds.values())
        y_true = np.take(truth, ks, axis=axis).ravel()
        for h, pred in preds.items():
            row = next(r for r in rows if r["target"] == target.name and r["heuristic"] == h)
            y_pred = np.take(pred, ks, axis=axis).ravel()
            f1 = sklearn_metrics.f1_score(y_true, y_pred, zero_division=0.0)
            jac = sklearn_metrics.jaccard_score(y_true, y_pred, zero_division=0.0)
            assert row["dice"] == pytest.approx(f1, abs=1e-9), (target.name, h)
            assert row["iou"] == pytest.approx(jac, abs=1e-9), (target.name, h)
