"""Seeded SAM on real volumes: every seed handed to SamAutomaticMaskGenerator lies inside the
ground truth of its slice (issue 2 acceptance), checked on the shared ProstateX zones,
hippocampus and spleen volumes with the tiny random-init SAM running for real."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("segment_anything")

from samradbench.config import SamConfig  # noqa: E402
from samradbench.generators import sam as sam_module  # noqa: E402
from samradbench.runner import RunOptions, prepare_volume, run_volume  # noqa: E402


@pytest.mark.parametrize("folder", ["ProstateX_T2W_Zones", "Task04_Hippocampus", "Task09_Spleen"])
def test_every_seed_given_to_sam_lies_inside_its_slice_truth(folder, monkeypatch, real_dataset):
    ds = real_dataset(folder)
    gen = sam_module.build_sam_generators(SamConfig(random_init="vit_tiny", seed_grid=3), ("sam-seeded",))["sam-seeded"]
    seen: list[tuple[np.ndarray, np.ndarray]] = []  # (truth slice, point grid given to the AMG)
    truths: list[np.ndarray] = []
    real_generate, real_make_amg = gen.generate, gen._make_amg

    def generate(rgb, truth):
        truths.append(np.asarray(truth, bool))
        return real_generate(rgb, truth)

    def make_amg(points_per_batch, point_grids):
        assert point_grids is not None and len(point_grids) == 1
        seen.append((truths[-1], np.asarray(point_grids[0])))
        return real_make_amg(points_per_batch, point_grids)

    monkeypatch.setattr(gen, "generate", generate)
    monkeypatch.setattr(gen, "_make_amg", make_amg)
    for ref in ds.cases[:1]:
        volume = prepare_volume(ds, ref, RunOptions())
        run_volume(volume, ds.targets, gen, ("best",), RunOptions())
    assert len(seen) >= 10
    for truth, grid in seen:
        H, W = truth.shape
        assert 1 <= len(grid) <= 9
        assert ((grid >= 0) & (grid <= 1)).all()
        cols = np.rint(grid[:, 0] * W).astype(int)  # x = col / W
        rows = np.rint(grid[:, 1] * H).astype(int)  # y = row / H
        assert truth[rows, cols].all(), "a seed outside the ground truth of its slice"
