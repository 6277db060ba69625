"""The runner with stub generators: failure cases from the field that concern the joined pipeline."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from samradbench.datasets import discover_datasets
from samradbench.generators.base import Proposals
from samradbench.runner import RunOptions, prepare_volume, run_volume
from samradbench.selection import HEURISTICS
from samradbench.synthetic import SyntheticCase, write_msd_dataset

ALL = tuple(HEURISTICS)


class Stub:
    """A generator that returns fixed masks and records what it was given."""

    name = "stub"

    def __init__(self, masks_for=lambda rgb, truth: np.zeros((0, *rgb.shape[:2]), bool), uses_truth=False):
        self.masks_for = masks_for
        self.uses_truth = uses_truth
        self.calls: list[np.ndarray] = []

    def describe(self):
        return {"generator": self.name, "model": {"weights": "stub"}, "config": {}}

    def generate(self, rgb, truth):
        self.calls.append(rgb.copy())
        return Proposals(self.masks_for(rgb, truth))

    def synchronize(self):
        pass


def _dataset(tmp_path: Path, image: np.ndarray, label: np.ndarray, labels=None):
    labels = labels or {"0": "background", "1": "organ"}
    write_msd_dataset(tmp_path / "Task99_Stub", [SyntheticCase("c0", image, label.astype(np.uint8))], labels, {"0": "CT"})
    (ds,) = discover_datasets(tmp_path / "Task99_Stub")
    return ds


def _run(ds, generator, options=RunOptions(), heuristics=ALL):
    vol = prepare_volume(ds, ds.cases[0], options)
    return vol, run_volume(vol, ds.targets, generator, heuristics, options)


def test_b01_int16_ct_reaches_the_generator_as_uint8_rgb(tmp_path):
    """B01: int16 HU in [-1024, 3071]; every slice given to SAM is (64, 64, 3) uint8 with equal channels,
    -1024 maps to 0 and 3071 to 255."""
    rng = np.random.default_rng(0)
    vol = rng.integers(-1024, 3072, size=(64, 64, 8), dtype=np.int16)
    vol[0, 0, 0], vol[5, 6, 7] = -1024, 3071
    label = np.zeros((64, 64, 8), np.uint8)
    label[20:30, 20:30, 3:5] = 1
    stub = Stub()
    _run(_dataset(tmp_path, vol, label), stub, RunOptions(skip_empty_slices=False))
    assert len(stub.calls) == 8
    for rgb in stub.calls:
        assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3)
        assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    assert min(c.min() for c in stub.calls) == 0 and max(c.max() for c in stub.calls) == 255
    assert stub.calls[0][0, 0, 0] == 0 and stub.calls[7][5, 6, 0] == 255


def test_b04_constant_volume_no_warning_no_nan(tmp_path):
    """B04(a): an all-zero volume with an all-zero label runs under warnings-as-errors; the target is
    absent, so the volume is left out for it and counted (SPEC §1), not scored."""
    vol = np.zeros((16, 16, 4), np.float32)
    ds = _dataset(tmp_path, vol, np.zeros((16, 16, 4), np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepared, result = _run(ds, Stub(), RunOptions(skip_empty_slices=False))
    assert prepared.image_u8.dtype == np.uint8 and not prepared.image_u8.any()
    assert result.rows == [] and result.absent_targets == ["organ"]


def _square_case(tmp_path, shape=(32, 32, 4), rows=slice(10, 16), cols=slice(10, 16), slices=(1, 2)):
    rng = np.random.default_rng(1)
    vol = rng.normal(size=shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    for k in slices:
        label[rows, cols, k] = 1
    return _dataset(tmp_path, vol, label)


def test_b07_no_segments_every_heuristic_selects_nothing(tmp_path):
    """B07: generate() returns no segments on every slice: Dice 0, fraction 0, Dice_pos null."""
    _, result = _run(_square_case(tmp_path), Stub())
    assert {r["heuristic"] for r in result.rows} == set(ALL)
    for r in result.rows:
        assert r["dice"] == 0.0 and r["fraction_detected"] == 0.0
        assert r["dice_pos"] is None and r["n_slices_selected"] == 0
        assert r["tp"] == 0 and r["fn"] == 72  # 6 × 6 × 2 truth voxels


@pytest.mark.parametrize("mode", ["coco_rle", "uncompressed_rle"])
def test_b09_rle_records_are_refused_with_a_clear_error(tmp_path, mode):
    """B09: a non-square 48×80 slice, truth rows 5–14 × cols 50–69. The stub returns SAM's record
    form of exactly that mask. Uncompressed COCO RLE runs column-major: 50 empty columns and 5 rows
    (50·48 + 5 = 2405 zeros), 10 ones, then 19 × (33 + 5 = 38 zeros, 10 ones), then 33 + 10·48 = 513
    zeros (sum 3840 = 48·80). The harness takes only binary masks (the SAM adapters ask for
    output_mode='binary_mask'), so records are refused by name — never decoded row-major into a
    transposed or scrambled mask."""
    shape = (48, 80, 4)
    label = np.zeros(shape, np.uint8)
    label[5:15, 50:70, 1:3] = 1
    ds = _dataset(tmp_path, np.random.default_rng(0).normal(size=shape).astype(np.float32), label)
    counts = [2405, 10] + [38, 10] * 19 + [513]
    assert sum(counts) == 48 * 80
    record = {"size": [48, 80], "counts": counts if mode == "uncompressed_rle" else "Ub`0:a0..."}
    with pytest.raises(ValueError, match=r"binary_mask.*RLE/record dicts"):
        _run(ds, Stub(lambda rgb, truth: [record]))


def test_b12_best_picks_the_truth_mask_and_records_its_index(tmp_path):
    """B12: m0 = a 2×2 part of the truth, m1 = the 6×6 truth, m2 = the whole frame; IoUs 4/36, 1, 36/1024.
    best → m1 (index 1), Dice 1."""
    ds = _square_case(tmp_path)

    def three(rgb, truth):
        m0 = np.zeros((32, 32), bool)
        m0[10:12, 10:12] = True
        m1 = np.zeros((32, 32), bool)
        m1[10:16, 10:16] = True
        return np.stack([m0, m1, np.ones((32, 32), bool)])

    _, result = _run(ds, Stub(three), heuristics=("best", "all"))
    best = next(r for r in result.rows if r["heuristic"] == "best")
    assert best["dice"] == 1.0 and best["slices"]["best_index"] == [1, 1]
    every = next(r for r in result.rows if r["heuristic"] == "all")
    assert every["dice"] == pytest.approx(2 * 72 / (72 + 2 * 1024))  # the full frame on 2 slices


def test_b13_low_resolution_masks_are_refused_not_resized(tmp_path):
    ds = _square_case(tmp_path, shape=(64, 52, 3), slices=(1,))
    with pytest.raises(ValueError, match=r"\(16, 16\).*\(64, 52\)"):
        _run(ds, Stub(lambda rgb, truth: np.ones((1, 16, 16), bool)))


def test_b15_generator_runs_once_per_slice_for_all_targets_and_heuristics(tmp_path):
    """Two targets × four heuristics, truth in slices 1-2 of 4: two calls (skip on), four (skip off)."""
    shape = (32, 32, 4)
    label = np.zeros(shape, np.uint8)
    label[4:10, 4:10, 1] = 1
    label[20:26, 20:26, 2] = 2
    ds = _dataset(tmp_path, np.random.default_rng(2).normal(size=shape).astype(np.float32), label,
                  {"0": "background", "1": "a", "2": "b"})
    stub = Stub(lambda rgb, truth: np.ones((1, 32, 32), bool))
    _, result = _run(ds, stub)
    assert len(stub.calls) == 2 and len(result.rows) == 2 * 4
    stub_all = Stub(lambda rgb, truth: np.ones((1, 32, 32), bool))
    _, result_all = _run(ds, stub_all, RunOptions(skip_empty_slices=False))
    assert len(stub_all.calls) == 4


def test_truth_generators_run_once_per_slice_with_truth_per_target(tmp_path):
    shape = (32, 32, 4)
    label = np.zeros(shape, np.uint8)
    label[4:10, 4:10, 1] = 1
    label[20:26, 20:26, 1:3] = 2
    ds = _dataset(tmp_path, np.zeros(shape, np.float32), label, {"0": "background", "1": "a", "2": "b"})
    stub = Stub(lambda rgb, truth: truth[None], uses_truth=True)
    _, result = _run(ds, stub)
    assert len(stub.calls) == 1 + 2  # target a: slice 1; target b: slices 1, 2
    assert all(r["dice"] == 1.0 for r in result.rows)


METRIC_KEYS = ("dice", "iou", "dice_pos", "fraction_detected", "tp", "fp", "fn", "truth_voxels",
               "n_slices", "n_slices_truth", "n_slices_selected", "slices")


@pytest.mark.parametrize("folder", ["Task04_Hippocampus", "ProstateX_T2W_Zones", "Task09_Spleen"])
def test_skipping_empty_slices_leaves_metrics_identical_on_real_volumes(folder, real_dataset):
    """Issue 4 item 1: superpixels (truth-independent) with and without the empty-slice skip."""
    from samradbench.generators import build_baseline

    ds = real_dataset(folder)
    gen = build_baseline("superpixels")
    for ref in ds.cases[:2]:
        runs = []
        for skip in (True, False):
            opts = RunOptions(skip_empty_slices=skip)
            vol = prepare_volume(ds, ref, opts)
            runs.append(run_volume(vol, ds.targets, gen, ALL, opts))
        with_skip, without = runs
        assert [{k: r[k] for k in METRIC_KEYS} for r in with_skip.rows] == \
               [{k: r[k] for k in METRIC_KEYS} for r in without.rows]
        assert with_skip.rows[0]["n_slices_generated"] < without.rows[0]["n_slices_generated"]


def test_b03_volume_range_is_recorded_and_a_ct_window_restores_contrast(tmp_path):
    """B03: background -1024 HU, a 12×12 organ ramping 20..60 HU, one voxel at 3071.
    Full min-max: grey = ⌊255·(v + 1024)/4095⌋, so 20 HU → 65 and 60 HU → 67 (3 levels).
    Window L40/W400 clips to [-160, 240]: grey = ⌊255·(v + 160)/400⌋, 20 → 114, 60 → 140."""
    vol = np.full((32, 32, 4), -1024, np.int16)
    ramp = np.linspace(20, 60, 12).round().astype(np.int16)
    vol[10:22, 10:22, :] = ramp[None, :, None]
    vol[0, 0, 0] = 3071
    label = np.zeros(vol.shape, np.uint8)
    label[10:22, 10:22, :] = 1
    ds = _dataset(tmp_path, vol, label)
    plain = prepare_volume(ds, ds.cases[0], RunOptions())
    assert (plain.meta["intensity_min"], plain.meta["intensity_max"]) == (-1024, 3071)
    organ = plain.image_u8[10:22, 10:22, :]
    assert (organ.min(), organ.max()) == (65, 67)
    windowed = prepare_volume(ds, ds.cases[0], RunOptions(ct_window=(40, 400)))
    organ_w = windowed.image_u8[10:22, 10:22, :]
    assert (organ_w.min(), organ_w.max()) == (114, 140)
    assert windowed.meta["ct_window"] == [40, 400]
    assert (windowed.meta["intensity_min"], windowed.meta["intensity_max"]) == (-1024, 3071)


def test_a_generator_failure_names_the_slice(tmp_path):
    """B14's last resort: when a generator gives up on a slice, the error says which one."""
    from samradbench.errors import GenerationError

    def fail(rgb, truth):
        raise RuntimeError("CUDA out of memory even at points_per_batch=1")

    with pytest.raises(GenerationError, match=r"slice 1 along axis 2.*points_per_batch=1"):
        _run(_square_case(tmp_path), Stub(fail))


def test_b14_slices_finished_before_a_failure_stay_on_disk(tmp_path):
    """B14: a generator that gives up on slice 3 (of truth slices 0–5) fails the volume, but the
    outputs of slices 0–2 are already in the on-disk cache: the rerun calls the model 3 times, not 6."""
    from samradbench.cache import GenerationCache
    from samradbench.errors import GenerationError

    ds = _square_case(tmp_path, shape=(32, 32, 6), slices=range(6))
    calls: list[int] = []
    give_up = [True]

    def masks_for(rgb, truth):
        k = len(calls)
        calls.append(k)
        if give_up[0] and k == 3:
            raise RuntimeError("CUDA out of memory even at points_per_batch=1")
        return np.ones((1, *rgb.shape[:2]), bool)

    stub = Stub(masks_for)
    cache = GenerationCache(tmp_path / "cache")
    vol = prepare_volume(ds, ds.cases[0], RunOptions())
    with pytest.raises(GenerationError, match="slice 3 along axis 2"):
        run_volume(vol, ds.targets, stub, ALL, RunOptions(), generate=cache.generate)
    assert cache.model_calls == 4  # slices 0, 1, 2 stored; slice 3 failed
    give_up[0] = False
    rerun = GenerationCache(tmp_path / "cache")
    rows = run_volume(vol, ds.targets, stub, ALL, RunOptions(), generate=rerun.generate).rows
    assert (rerun.hits, rerun.model_calls) == (3, 3)
    assert all(r["n_slices_generated"] == 6 for r in rows)


def test_b26_one_union_segment_scored_per_zone(tmp_path):
    """B26 end to end: label 1 (PZ) rows 5–10 × cols 5–20, label 2 (TZ) rows 11–20 × cols 5–20, slices
    1–2: |PZ| = 6·16·2 = 192, |TZ| = 10·16·2 = 320. The generator returns exactly the union (512 voxels).
    pz under `all`: TP 192, FP 320 → 2·192/(2·192 + 320) = 384/704 = 0.5454…;
    tz: 640/(640 + 192) = 0.7692…. Under iou>0.5 the union's IoU with PZ, 192/512 = 0.375, is too low
    (Dice 0) and with TZ, 320/512 = 0.625, enough. The label values {1, 2} are recorded."""
    label = np.zeros((32, 32, 4), np.uint8)
    label[5:11, 5:21, 1:3] = 1
    label[11:21, 5:21, 1:3] = 2
    image = (label > 0).astype(np.float32) * 100
    ds = _dataset(tmp_path, image, label, {"0": "background", "1": "PZ", "2": "TZ"})
    union = Stub(lambda rgb, truth: (rgb[..., 0] > 0)[None])
    vol, result = _run(ds, union)
    dice = {(r["target"], r["heuristic"]): r["dice"] for r in result.rows}
    assert dice[("pz", "all")] == pytest.approx(384 / 704, rel=1e-15)
    assert dice[("tz", "all")] == pytest.approx(640 / 832, rel=1e-15)
    assert dice[("pz", "iou>0.5")] == 0.0 and dice[("tz", "iou>0.5")] == pytest.approx(640 / 832, rel=1e-15)
    assert vol.meta["label_values"] == (0, 1, 2)


class PrefetchStub(Stub):
    """A stub with SAM's optional batching surface: prefetch(rgbs) in chunks of prefetch_size."""

    def __init__(self, size):
        super().__init__(lambda rgb, truth: np.ones((1, *rgb.shape[:2]), bool))
        self.prefetch_size = size
        self.batches: list[int] = []

    def prefetch(self, rgbs):
        self.batches.append(len(rgbs))


def test_prefetch_batches_only_the_slices_the_generator_will_see(tmp_path):
    """Truth in slices 1, 2 (of 4) with the empty-slice skip: one batch of 2; without the skip and a
    batch size of 3: batches of 3 and 1. Slices a cache already holds are not encoded again."""
    ds = _square_case(tmp_path)
    stub = PrefetchStub(4)
    _run(ds, stub)
    assert stub.batches == [2] and len(stub.calls) == 2
    stub3 = PrefetchStub(3)
    _run(ds, stub3, RunOptions(skip_empty_slices=False))
    assert stub3.batches == [3, 1] and len(stub3.calls) == 4
    cached = PrefetchStub(4)
    vol = prepare_volume(ds, ds.cases[0], RunOptions())
    from samradbench.runner import _timed_generate

    run_volume(vol, ds.targets, cached, ALL, RunOptions(), generate=_timed_generate,
               is_cached=lambda g, rgb, truth: True)
    assert cached.batches == [] and len(cached.calls) == 2


def test_peak_memory_does_not_grow_with_the_number_of_volumes(tmp_path):
    """Issue 4 item 5: masks live for one slice; a run of 4 volumes peaks no higher than a run of 1
    (tracemalloc, with a stub returning 40 full-size masks per slice)."""
    import tracemalloc

    rng = np.random.default_rng(3)
    cases = []
    for i in range(4):
        label = np.zeros((64, 64, 8), np.uint8)
        label[10:40, 10:40, 1:7] = 1
        cases.append(SyntheticCase(f"c{i}", rng.normal(size=(64, 64, 8)).astype(np.float32), label))
    write_msd_dataset(tmp_path / "Task98_Mem", cases, {"0": "background", "1": "organ"}, {"0": "MRI"})
    (ds,) = discover_datasets(tmp_path / "Task98_Mem")
    stub = Stub(lambda rgb, truth: rng.random((40, *rgb.shape[:2])) > 0.5)

    def peak(n_volumes: int) -> int:
        rows = []
        tracemalloc.start()
        for ref in ds.cases[:n_volumes]:
            vol = prepare_volume(ds, ref, RunOptions())
            rows += run_volume(vol, ds.targets, stub, ALL, RunOptions()).rows
            del vol
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    one, four = peak(1), peak(4)
    assert four < 1.2 * one, (one, four)
