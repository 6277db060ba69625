"""SPEC §3 model-free generators: ``oracle`` (the ground truth's connected components, the pipeline's
sanity check: its ``all`` heuristic scores Dice 1) and ``superpixels`` (SLIC, a partition of the slice).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from samradbench.config import SuperpixelConfig
from samradbench.errors import ConfigError
from samradbench.generators import Generator, Proposals, build_baseline, empty_proposals
from samradbench.generators.oracle import OracleGenerator
from samradbench.generators.superpixels import SuperpixelGenerator
from samradbench.metrics import slice_counts, volume_metrics
from samradbench.preprocess import to_rgb
from samradbench.selection import select

NAMES = ["all", "best", "iou>0.25", "iou>0.5"]


@pytest.fixture(scope="module")
def oracle():
    return build_baseline("oracle")


@pytest.fixture(scope="module")
def superpixels():
    gen = build_baseline("superpixels", SuperpixelConfig(n_segments=16, compactness=10.0, sigma=1.0))
    gen.generate(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool))  # pay for the skimage import here (B34)
    return gen


class _Untouchable:
    """A stand-in truth that fails on any use: generators with uses_truth = False must not read it."""

    def __array__(self, *a, **k):
        raise AssertionError("generator read the ground truth")

    def __getattr__(self, name):
        raise AssertionError(f"generator read the ground truth ({name})")


def test_registry_and_protocol(oracle, superpixels):
    assert isinstance(oracle, OracleGenerator) and isinstance(superpixels, SuperpixelGenerator)
    for gen, name, uses_truth in ((oracle, "oracle", True), (superpixels, "superpixels", False)):
        assert isinstance(gen, Generator)
        assert gen.name == name and gen.uses_truth is uses_truth
        d = gen.describe()
        assert d["generator"] == name and {"model", "config"} <= set(d)
        json.loads(json.dumps(d, allow_nan=False))  # strict-JSON ready
        gen.synchronize()
    with pytest.raises(ConfigError):
        build_baseline("sam-auto")
    with pytest.raises(ConfigError):
        build_baseline("watershed")


def test_empty_proposals():
    p = empty_proposals((5, 7), seeds=0)
    assert isinstance(p, Proposals)
    assert p.masks.shape == (0, 5, 7) and p.masks.dtype == bool and p.info == {"seeds": 0}


# ---------------------------------------------------------------------------------------------------
# oracle


def test_oracle_two_blobs(oracle, box_mask):
    """Two separate blobs → two masks, each exactly one blob, in row-major label order; 'all' → Dice 1;
    'best' → the larger blob (IoU 12/16 vs 4/16) → TP 12, FN 4 → Dice 24/28."""
    a = box_mask((16, 16), (1, 3), (1, 4))  # 12 px
    b = box_mask((16, 16), (10, 11), (10, 11))  # 4 px
    truth = a | b
    rgb = to_rgb(np.zeros((16, 16), np.uint8))
    masks = oracle.generate(rgb, truth).masks
    assert masks.shape == (2, 16, 16) and masks.dtype == bool
    assert (masks[0] == a).all() and (masks[1] == b).all()
    m_all = volume_metrics([slice_counts(select(masks, truth, "all"), truth)])
    assert m_all["dice"] == 1.0
    m_best = volume_metrics([slice_counts(select(masks, truth, "best"), truth)])
    assert m_best["dice"] == pytest.approx(24 / 28, rel=1e-15)


def test_oracle_diagonal_pixels_are_one_component(oracle):
    """8-connectivity (as documented): (2, 2) and (3, 3) touch at a corner → one component;
    (2, 6) is separate → two masks."""
    truth = np.zeros((8, 8), bool)
    truth[2, 2] = truth[3, 3] = truth[2, 6] = True
    masks = oracle.generate(to_rgb(np.zeros((8, 8), np.uint8)), truth).masks
    assert masks.shape == (2, 8, 8)
    assert sorted(int(m.sum()) for m in masks) == [1, 2]


def test_oracle_empty_truth(oracle):
    masks = oracle.generate(to_rgb(np.zeros((6, 9), np.uint8)), np.zeros((6, 9), bool)).masks
    assert masks.shape == (0, 6, 9) and masks.dtype == bool
    for name in NAMES:
        assert not select(masks, np.zeros((6, 9), bool), name).any()


def test_oracle_uint8_truth(oracle, box_mask):
    truth = box_mask((10, 10), (2, 5), (3, 6))
    masks = oracle.generate(to_rgb(np.zeros((10, 10), np.uint8)), truth.astype(np.uint8) * 255).masks
    assert masks.shape == (1, 10, 10) and (masks[0] == truth).all()


@given(st.integers(1, 32), st.integers(1, 32), st.integers(0, 2**32 - 1), st.floats(0.0, 0.6))
def test_oracle_properties(h, w, seed, density):
    """Components are non-empty, disjoint and cover the truth exactly; 'all' scores Dice 1 whenever the
    truth is non-empty; components are not 8-adjacent to each other."""
    rng = np.random.default_rng(seed)
    truth = rng.random((h, w)) < density
    masks = OracleGenerator().generate(to_rgb(np.zeros((h, w), np.uint8)), truth).masks
    assert masks.dtype == bool and masks.shape[1:] == (h, w)
    assert (masks.sum(axis=0) == truth.astype(int)).all()  # disjoint and covering the truth
    assert all(m.any() for m in masks)
    for i, m in enumerate(masks):  # grow each component by one pixel (8-neighbourhood): touches no other
        grown = m.copy()
        padded = np.pad(m, 1)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                grown |= padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
        others = masks.sum(axis=0).astype(bool) & ~m
        assert not (grown & others).any()
    m = volume_metrics([slice_counts(select(masks, truth, "all"), truth)])
    if truth.any():
        assert m["dice"] == 1.0 and m["fraction_detected"] == 1.0
    else:
        assert m["dice"] is None


def test_oracle_volume_all_dice_one(oracle):
    """The sanity check over a whole volume: two blobs in some slices, nothing in others → Dice 1."""
    truth = np.zeros((20, 20, 5), bool)
    truth[2:6, 3:9, 1:4] = True
    truth[12:18, 12:15, 2:5] = True
    counts = []
    for k in range(truth.shape[2]):
        g = truth[..., k]
        counts.append(slice_counts(select(oracle.generate(to_rgb(np.zeros((20, 20), np.uint8)), g).masks, g, "all"), g))
    m = volume_metrics(counts)
    assert m["dice"] == 1.0 and m["iou"] == 1.0 and m["dice_pos"] == 1.0 and m["fraction_detected"] == 1.0
    assert (m["n_slices"], m["n_slices_truth"], m["n_slices_selected"]) == (5, 4, 4)


# ---------------------------------------------------------------------------------------------------
# superpixels


def _assert_partition(masks, shape):
    assert masks.dtype == bool and masks.ndim == 3 and masks.shape[1:] == shape
    assert masks.shape[0] >= 1
    cover = masks.sum(axis=0)
    assert (cover == 1).all()  # disjoint and covering every pixel
    assert all(m.any() for m in masks)


def test_superpixels_partition_literal_image(superpixels):
    """A 32 × 32 image, left half 40, right half 200: the superpixels partition the slice.

    (Whether they follow the edge depends on ``compactness``; at the default 10 on a grey image that
    skimage scales to [0, 1] the spatial term dominates and some cross it — a configuration matter,
    not part of the SPEC, so it is not asserted here.)"""
    img = np.full((32, 32), 40, np.uint8)
    img[:, 16:] = 200
    masks = superpixels.generate(to_rgb(img), _Untouchable()).masks
    _assert_partition(masks, (32, 32))
    assert len(masks) >= 2


def test_superpixels_constant_image(superpixels):
    masks = superpixels.generate(to_rgb(np.zeros((12, 20), np.uint8)), _Untouchable()).masks
    _assert_partition(masks, (12, 20))


@given(st.integers(2, 32), st.integers(2, 32), st.integers(0, 2**32 - 1))
def test_superpixels_partition_property(superpixels, h, w, seed):
    img = np.random.default_rng(seed).integers(0, 256, size=(h, w), dtype=np.uint8)
    masks = superpixels.generate(to_rgb(img), _Untouchable()).masks
    _assert_partition(masks, (h, w))
    # 'all' against any truth is then the union of the superpixels touching it: it covers the truth
    truth = np.random.default_rng(seed + 1).random((h, w)) < 0.2
    pred = select(masks, truth, "all")
    assert not (truth & ~pred).any()
