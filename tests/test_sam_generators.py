"""sam-auto / sam-seeded on real SAM architectures with seeded random weights (no checkpoint here).

Failure cases B11 (seed grid construction and orientation), B13 (mask shape), B14 (CUDA OOM
fallback), B17/B18 (loading through load_sam) from shared/cases/failure-cases.md. The ``vit_tiny``
model runs the whole SamAutomaticMaskGenerator path in a fraction of a second per slice.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import segment_anything
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor

from samradbench.config import SamConfig
from samradbench.errors import CheckpointError, ConfigError
from samradbench.generators import Generator
from samradbench.generators import sam as sam_module
from samradbench.generators.sam import (
    SamAutoGenerator,
    SamSeededGenerator,
    build_sam_generators,
    load_sam,
    resolve_device,
)
from samradbench.seeds import seed_pixels

H, W = 64, 80
TINY = SamConfig(random_init="vit_tiny", device="cpu", points_per_side=4)


def _slice() -> tuple[np.ndarray, np.ndarray]:
    """A smooth synthetic 64×80 slice (gradient plus a bright disc) and the disc as ground truth."""
    rr, cc = np.indices((H, W))
    disc = (rr - 30) ** 2 + (cc - 40) ** 2 <= 12**2
    grey = (cc * 2 + disc * 120).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2)), disc


@pytest.fixture(scope="module")
def tiny():
    return load_sam(TINY)


@pytest.fixture
def record_amg_init(monkeypatch):
    """Record the keyword arguments of every SamAutomaticMaskGenerator construction."""
    calls: list[dict] = []
    real_init = SamAutomaticMaskGenerator.__init__

    def init(self, model, **kwargs):
        calls.append(kwargs)
        real_init(self, model, **kwargs)

    monkeypatch.setattr(SamAutomaticMaskGenerator, "__init__", init)
    return calls


# ------------------------------------------------------------------------------------- sam-auto


def test_sam_auto_tiny_returns_full_resolution_bool_stack(tiny):
    rgb, truth = _slice()
    gen = SamAutoGenerator(tiny, TINY)
    assert isinstance(gen, Generator) and gen.name == "sam-auto" and gen.uses_truth is False
    p = gen.generate(rgb, np.zeros_like(truth))
    assert p.masks.dtype == np.bool_
    assert p.masks.ndim == 3 and p.masks.shape[1:] == (H, W) and p.masks.shape[0] >= 1
    assert isinstance(p.encode_seconds, float) and p.encode_seconds > 0
    assert set(p.info) == {"peak_memory_bytes"} and p.info["peak_memory_bytes"] > 0


def test_random_init_is_deterministic_per_seed_and_leaves_global_rng_alone():
    rgb, truth = _slice()
    rng_before = torch.get_rng_state()
    a = SamAutoGenerator(load_sam(TINY), TINY).generate(rgb, truth).masks
    b = SamAutoGenerator(load_sam(TINY), TINY).generate(rgb, truth).masks
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert np.array_equal(a, b)
    w0 = load_sam(TINY).model.state_dict()
    w1 = load_sam(SamConfig(random_init="vit_tiny", random_seed=1, device="cpu")).model.state_dict()
    assert not all(torch.equal(w0[k], w1[k]) for k in w0)


def test_describe_labels_random_init_and_effective_thresholds(tiny):
    d = SamAutoGenerator(tiny, TINY).describe()
    assert d["generator"] == "sam-auto"
    assert d["model"] == {
        "architecture": "vit_tiny",
        "checkpoint": None,
        "sha256": None,
        "weights": "random-init",
        "seed": 0,
        "image_size": 256,
        "device": "cpu",
        "device_name": d["model"]["device_name"],
    }
    assert isinstance(d["model"]["device_name"], str) and d["model"]["device_name"]
    cfg = d["config"]
    assert cfg["random_init"] == "vit_tiny" and cfg["points_per_side"] == 4
    assert cfg["effective_pred_iou_thresh"] == 0.0 and cfg["effective_stability_score_thresh"] == 0.0
    json.dumps(d, allow_nan=False)  # strict-JSON ready


def test_sam_auto_passes_configuration_to_the_amg(tiny, record_amg_init):
    cfg = SamConfig(
        random_init="vit_tiny", device="cpu", points_per_side=3, points_per_batch=5,
        pred_iou_thresh=0.1, stability_score_thresh=0.2, box_nms_thresh=0.5,
    )
    rgb, truth = _slice()
    SamAutoGenerator(tiny, cfg).generate(rgb, truth)
    (kw,) = record_amg_init
    assert kw["points_per_side"] == 3 and kw["point_grids"] is None
    assert kw["points_per_batch"] == 5
    assert (kw["pred_iou_thresh"], kw["stability_score_thresh"], kw["box_nms_thresh"]) == (0.1, 0.2, 0.5)
    assert kw["crop_n_layers"] == 0 and kw["output_mode"] == "binary_mask"


def test_sam_auto_crop_layer_encodes_the_slice_and_its_four_crops(tiny, monkeypatch):
    """crop_n_layers=1: one full-slice crop plus a 2×2 layer of crops, each encoded once."""
    encoded_shapes = []
    real_set_image = SamPredictor.set_image

    def counting_set_image(self, image, image_format="RGB"):
        encoded_shapes.append(image.shape[:2])
        real_set_image(self, image, image_format)

    monkeypatch.setattr(SamPredictor, "set_image", counting_set_image)
    cfg = SamConfig(random_init="vit_tiny", device="cpu", points_per_side=2, crop_n_layers=1)
    rgb, truth = _slice()
    p = SamAutoGenerator(tiny, cfg).generate(rgb, truth)
    assert len(encoded_shapes) == 5 and encoded_shapes[0] == (H, W)
    assert all(h < H and w < W for h, w in encoded_shapes[1:])
    assert p.masks.shape[1:] == (H, W)


# ----------------------------------------------------------------------------------- sam-seeded


def test_b11_seed_grid_is_normalised_x_col_y_row(tiny, record_amg_init, disc_mask):
    h, w = 100, 50
    truth = disc_mask((h, w), (70, 10), 5)
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[truth] = 200
    gen = SamSeededGenerator(tiny, SamConfig(random_init="vit_tiny", device="cpu"))
    assert gen.name == "sam-seeded" and gen.uses_truth is True
    p = gen.generate(rgb, truth)

    (kw,) = record_amg_init
    assert kw["points_per_side"] is None
    assert len(kw["point_grids"]) == 1
    grid = kw["point_grids"][0]
    rows_cols = seed_pixels(truth, 3)
    expected = np.column_stack([rows_cols[:, 1] / w, rows_cols[:, 0] / h])
    np.testing.assert_allclose(grid, expected)
    assert any(np.allclose(pt, (0.2, 0.7)) for pt in grid)  # the disc centre (row 70, col 10)
    assert grid.min() >= 0 and grid.max() <= 1
    # mapped back the way SAM does (x·W, y·H), every seed lands on the object
    cols, rows = (grid[:, 0] * w).round().astype(int), (grid[:, 1] * h).round().astype(int)
    assert truth[rows, cols].all()
    assert p.info["n_seeds"] == len(rows_cols)
    assert p.masks.dtype == np.bool_ and p.masks.shape[1:] == (h, w)


def test_b11_empty_truth_makes_no_model_call(tiny, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the model must not run on a slice without ground truth")

    monkeypatch.setattr(SamAutomaticMaskGenerator, "generate", forbidden)
    monkeypatch.setattr(SamPredictor, "set_image", forbidden)
    p = SamSeededGenerator(tiny, TINY).generate(np.zeros((100, 50, 3), np.uint8), np.zeros((100, 50), bool))
    assert p.masks.shape == (0, 100, 50) and p.masks.dtype == np.bool_
    assert p.info.keys() == {"n_seeds", "peak_memory_bytes"} and p.info["n_seeds"] == 0


def test_b11_seeded_refuses_crop_layers_before_loading_a_model(tiny, monkeypatch):
    cfg = SamConfig(random_init="vit_tiny", device="cpu", crop_n_layers=1)
    with pytest.raises(ConfigError, match=r"sam-seeded does not support crop_n_layers=1"):
        SamSeededGenerator(tiny, cfg)
    monkeypatch.setattr(sam_module, "load_sam", lambda *a, **k: pytest.fail("model loaded before the check"))
    with pytest.raises(ConfigError, match="crop_n_layers=1"):
        build_sam_generators(cfg, ("sam-auto", "sam-seeded"))


def test_seeded_truth_shape_must_match_the_slice(tiny):
    rgb, truth = _slice()
    with pytest.raises(ValueError, match=r"\(80, 64\).*\(64, 80\)"):
        SamSeededGenerator(tiny, TINY).generate(rgb, truth.T)


# ------------------------------------------------------------------------------ input and output


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((H, W, 3), np.int16),
        np.zeros((H, W), np.uint8),
        np.zeros((H, W, 4), np.uint8),
        np.zeros((H, W, 3), np.float32),
    ],
    ids=["int16", "2-D", "4-channel", "float32"],
)
def test_wrong_input_is_a_clear_config_error(tiny, bad):
    for gen in (SamAutoGenerator(tiny, TINY), SamSeededGenerator(tiny, TINY)):
        expected = f"{gen.name} needs an H×W×3 uint8 slice, got shape {bad.shape} dtype {bad.dtype}"
        with pytest.raises(ConfigError, match=re.escape(expected)):
            gen.generate(bad, np.ones((H, W), bool))


def test_b13_masks_of_another_shape_raise_with_both_shapes(tiny, monkeypatch):
    monkeypatch.setattr(
        SamAutomaticMaskGenerator, "generate", lambda self, image: [{"segmentation": np.ones((256, 256), bool)}]
    )
    rgb, truth = _slice()
    with pytest.raises(ValueError, match=r"\(256, 256\).*\(64, 80\)"):
        SamAutoGenerator(tiny, TINY).generate(rgb, truth)


def test_no_segments_is_an_empty_stack(tiny, monkeypatch):
    monkeypatch.setattr(SamAutomaticMaskGenerator, "generate", lambda self, image: [])
    rgb, truth = _slice()
    p = SamAutoGenerator(tiny, TINY).generate(rgb, truth)
    assert p.masks.shape == (0, H, W) and p.masks.dtype == np.bool_


# ---------------------------------------------------------------------------------- B14: CUDA OOM


@pytest.fixture
def oom_above_16(monkeypatch):
    """AMG stub: CUDA OOM whenever points_per_batch > 16, else the real generator. Returns
    (batch sizes tried, number of torch.cuda.empty_cache calls)."""
    tried: list[int] = []
    emptied = [0]
    real_generate = SamAutomaticMaskGenerator.generate

    def generate(self, image):
        tried.append(self.points_per_batch)
        if self.points_per_batch > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (stub)")
        return real_generate(self, image)

    monkeypatch.setattr(SamAutomaticMaskGenerator, "generate", generate)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.__setitem__(0, emptied[0] + 1))
    return tried, emptied


@pytest.mark.parametrize(
    ("start", "tried", "worked"), [(64, [64, 32, 16], 16), (48, [48, 24, 12], 12), (16, [16], None)]
)
def test_b14_oom_halves_points_per_batch_and_records_it(tiny, oom_above_16, start, tried, worked):
    cfg = SamConfig(random_init="vit_tiny", device="cpu", points_per_side=4, points_per_batch=start)
    rgb, truth = _slice()
    for gen in (SamAutoGenerator(tiny, cfg), SamSeededGenerator(tiny, cfg)):
        oom_above_16[0].clear()
        oom_above_16[1][0] = 0
        p = gen.generate(rgb, truth)
        assert oom_above_16[0] == tried
        assert oom_above_16[1][0] == len(tried) - 1  # cache freed after each OOM
        assert p.info.get("points_per_batch") == worked
        assert p.masks.shape[1:] == (H, W)
    assert p.info["n_seeds"] == 9


def test_b14_the_points_per_batch_that_worked_is_in_the_results_row(tiny, oom_above_16, tmp_path):
    """B14 end to end: a 6-slice volume with truth in every slice, points_per_batch 64, OOM above 16:
    every slice is retried 64 → 32 → 16 and each row lists, per slice, the 16 that worked."""
    from samradbench.datasets import discover_datasets
    from samradbench.runner import RunOptions, prepare_volume, run_volume
    from samradbench.synthetic import SyntheticCase, write_msd_dataset

    grey, disc = _slice()
    image = np.repeat(grey[:, :, :1], 6, axis=2).astype(np.float32)
    label = np.repeat(disc[:, :, None], 6, axis=2).astype(np.uint8)
    write_msd_dataset(tmp_path / "Task97_Oom", [SyntheticCase("c0", image, label)], {"0": "background", "1": "disc"},
                      {"0": "MRI"})
    (ds,) = discover_datasets(tmp_path / "Task97_Oom")
    vol = prepare_volume(ds, ds.cases[0], RunOptions())
    rows = run_volume(vol, ds.targets, SamAutoGenerator(tiny, SamConfig(random_init="vit_tiny", device="cpu",
                      points_per_side=4, points_per_batch=64)), ("all", "best"), RunOptions()).rows
    assert oom_above_16[0] == [64, 32, 16] * 6
    for row in rows:
        assert row["points_per_batch_fallbacks"] == [{"slice": k, "points_per_batch": 16} for k in range(6)]
        json.dumps(row)


def test_b14_oom_at_one_point_per_batch_names_the_parameter(tiny, monkeypatch):
    tried = []

    def always_oom(self, image):
        tried.append(self.points_per_batch)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (stub)")

    monkeypatch.setattr(SamAutomaticMaskGenerator, "generate", always_oom)
    rgb, truth = _slice()
    with pytest.raises(ConfigError, match=r"points_per_batch=1 \(configured 64\)"):
        SamAutoGenerator(tiny, SamConfig(random_init="vit_tiny", device="cpu")).generate(rgb, truth)
    assert tried == [64, 32, 16, 8, 4, 2, 1]


# ------------------------------------------------------------------------------ devices, loading


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ConfigError, match=r"device 'cuda' requested but torch sees no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(ConfigError, match="sees 1 CUDA device"):
        resolve_device("cuda:1")


def test_synchronize_is_a_no_op_on_cpu(tiny, monkeypatch):
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: pytest.fail("synchronised a CPU run"))
    SamAutoGenerator(tiny, TINY).synchronize()


@pytest.mark.parametrize(
    "cfg",
    [SamConfig(), SamConfig(checkpoint=Path("x.pth"), random_init="vit_tiny")],
    ids=["neither", "both"],
)
def test_exactly_one_weight_source(cfg):
    with pytest.raises(ConfigError, match="exactly one"):
        load_sam(cfg)


def test_unknown_random_init_and_generator_names():
    with pytest.raises(ConfigError, match="unknown random_init 'vit_s'"):
        load_sam(SamConfig(random_init="vit_s", device="cpu"))
    with pytest.raises(ConfigError, match=r"unknown SAM generator\(s\) \['oracle'\]"):
        build_sam_generators(TINY, ("oracle",))


def _small_vit_b(checkpoint=None):
    """A 768-wide (vit_b-shaped patch embedding) but one-block SAM, standing in for the registry's."""
    assert checkpoint is None, "segment-anything's builder must not load the file itself (B17)"
    from segment_anything.build_sam import _build_sam

    return _build_sam(encoder_embed_dim=768, encoder_depth=1, encoder_num_heads=12, encoder_global_attn_indexes=[0])


def test_load_sam_from_wrapped_checkpoint_strict_and_described(tmp_path, monkeypatch):
    monkeypatch.setitem(segment_anything.sam_model_registry, "vit_b", _small_vit_b)
    torch.manual_seed(3)
    source = _small_vit_b().state_dict()
    path = tmp_path / "medsam_ft.pth"
    torch.save({"model": {f"module.{k}": v for k, v in source.items()}, "epoch": 7}, path)

    loaded = load_sam(SamConfig(checkpoint=path, device="cpu"))  # architecture inferred: vit_b
    assert loaded.description == {
        "architecture": "vit_b",
        "checkpoint": "medsam_ft.pth",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "weights": "checkpoint",
        "seed": None,
        "image_size": 1024,
        "device": "cpu",
        "device_name": loaded.description["device_name"],
    }
    assert not loaded.model.training
    got = loaded.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in source.items())


def test_b18_load_sam_refuses_mismatch_before_building(tmp_path, monkeypatch):
    monkeypatch.setitem(
        segment_anything.sam_model_registry, "vit_b", lambda checkpoint=None: pytest.fail("built a model")
    )
    path = tmp_path / "sam_vit_h_4b8939.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(1280, 3, 16, 16)}, path)
    with pytest.raises(CheckpointError) as exc:
        load_sam(SamConfig(checkpoint=path, model_type="vit_b", device="cpu"))
    assert str(exc.value) == (
        "checkpoint sam_vit_h_4b8939.pth looks like vit_h (embedding dim 1280), model_type is vit_b"
    )


def test_build_sam_generators_share_one_model(monkeypatch):
    loads = []
    real_load_sam = sam_module.load_sam
    monkeypatch.setattr(sam_module, "load_sam", lambda cfg, **kw: loads.append(cfg) or real_load_sam(cfg, **kw))
    gens = build_sam_generators(TINY)
    assert list(gens) == ["sam-auto", "sam-seeded"] and len(loads) == 1
    assert gens["sam-auto"].loaded.model is gens["sam-seeded"].loaded.model
    assert [g.describe()["generator"] for g in gens.values()] == ["sam-auto", "sam-seeded"]


# ------------------------------------------------------------------------------------------- slow

@pytest.mark.slow
def test_random_init_vit_b_through_sam_auto_on_real_slices(real_dataset):
    """The standard vit_b architecture (random weights) over the full sam-auto path on two MRI slices."""
    import nibabel as nib

    from samradbench.preprocess import normalise, slice_axis, take_slice, to_rgb

    image = real_dataset("Task04_Hippocampus").cases[0].image
    volume = np.asarray(nib.load(image).dataobj)
    axis = slice_axis(volume.shape)
    u8 = normalise(volume).volume
    mid = volume.shape[axis] // 2
    # 8×8 grid (the default 32×32 takes minutes per slice on CPU); 16 prompts per batch keeps the
    # decoder's 1024² upsampled logits to ~200 MB instead of ~800 MB at the default 64.
    cfg = SamConfig(random_init="vit_b", device="cpu", points_per_side=8, points_per_batch=16)
    gen = build_sam_generators(cfg, ("sam-auto",))["sam-auto"]
    assert gen.describe()["model"]["weights"] == "random-init"
    assert gen.describe()["model"]["architecture"] == "vit_b"
    for index in (mid, mid + 1):
        rgb = to_rgb(take_slice(u8, axis, index))
        t0 = time.perf_counter()
        p = gen.generate(rgb, np.zeros(rgb.shape[:2], bool))
        seconds = time.perf_counter() - t0
        assert p.masks.dtype == np.bool_ and p.masks.shape[1:] == rgb.shape[:2]
        assert 0 < p.encode_seconds <= seconds
        print(f"vit_b random-init, {image.name} slice {index} {rgb.shape[:2]}: {seconds:.1f} s "
              f"(encoder {p.encode_seconds:.1f} s), {len(p.masks)} masks")
