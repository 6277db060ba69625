"""SPEC §2 preprocessing: slice axis, min-max normalisation to uint8, the 3-channel stack.

Literal values are worked out by hand (the arithmetic is in each docstring); property tests compare
against an exact rational reference (``fractions.Fraction``) written here, never against the code's
own output. Failure cases: B01 (normalisation part), B03, B04, B24, B34, B35.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from samradbench.errors import ConfigError
from samradbench.preprocess import normalise, slice_axis, take_slice, to_rgb

# ---------------------------------------------------------------------------------------------------
# exact reference


def exact_grey(v, lo, hi) -> int:
    """floor(255 (v − lo) / (hi − lo)) in exact rational arithmetic, clipped to [0, 255]; 0 if hi = lo."""
    lo, hi, v = Fraction(lo), Fraction(hi), Fraction(v)
    if hi <= lo:
        return 0
    return min(255, max(0, math.floor(255 * (v - lo) / (hi - lo))))


def exact_grey_set(v, lo, hi) -> set[int]:
    """Greys acceptable for a float input: the exact truncation, or one more when the exact value lies
    within 1e-8 below a whole number (float rounding of a value that is a whole number in exact
    arithmetic must not lose a grey level; the module forgives that on purpose)."""
    lo, hi, v = Fraction(lo), Fraction(hi), Fraction(v)
    if hi <= lo:
        return {0}
    x = 255 * (v - lo) / (hi - lo)
    f = math.floor(x)
    out = {min(255, max(0, f))}
    if math.ceil(x) - x < Fraction(1, 10**8):
        out.add(min(255, max(0, f + 1)))
    return out


# ---------------------------------------------------------------------------------------------------
# slice axis (B24)


@pytest.mark.parametrize(
    "shape, axis",
    [
        ((20, 64, 64), 0),  # smallest is axis 0
        ((64, 64, 64), 2),  # cube: three-way tie → last
        ((64, 20, 20), 2),  # tie between axes 1 and 2 → last
        ((1, 64, 64), 0),  # one slice
        ((64, 64, 20), 2),  # nibabel (X, Y, Z)
        ((64, 20, 64), 1),
        ((20, 20, 64), 1),  # tie between 0 and 1 → 1
        ((20, 64, 20), 2),  # tie between 0 and 2 → 2
    ],
)
def test_slice_axis_smallest_literals(shape, axis):
    assert slice_axis(shape) == axis


@pytest.mark.parametrize(
    "spacing, axis",
    [
        ((1.0, 1.0, 3.0), 2),
        ((3.0, 1.0, 1.0), 0),
        ((0.5, 4.0, 0.5), 1),
        ((2.0, 2.0, 1.0), 1),  # tie 0/1 → last of the tied
        ((1.0, 1.0, 1.0), 2),  # isotropic → last
        ((2.5, 0.7, 2.5), 2),
    ],
)
def test_slice_axis_spacing_literals(spacing, axis):
    # the shape says otherwise on purpose: the spacing rule must ignore it
    assert slice_axis((10, 200, 300), spacing=spacing, rule="spacing") == axis


def test_slice_axis_errors():
    with pytest.raises(ConfigError):
        slice_axis((64, 64, 20, 1))  # 4-D: squeezing is the loader's job, never pick the singleton
    with pytest.raises(ConfigError):
        slice_axis((64, 64))
    with pytest.raises(ConfigError):
        slice_axis((64, 64, 20), rule="spacing")  # spacing missing
    with pytest.raises(ConfigError):
        slice_axis((64, 64, 20), spacing=(1.0, 1.0), rule="spacing")
    with pytest.raises(ConfigError):
        slice_axis((64, 64, 20), rule="largest")


@given(st.tuples(*(st.integers(1, 64),) * 3))
def test_slice_axis_property_smallest(shape):
    axis = slice_axis(shape)
    assert shape[axis] == min(shape)
    assert all(shape[k] != shape[axis] for k in range(axis + 1, 3))


@given(st.tuples(*(st.sampled_from([0.5, 0.7, 1.0, 1.25, 2.5, 3.0, 5.0]),) * 3))
def test_slice_axis_property_spacing(spacing):
    axis = slice_axis((16, 16, 16), spacing=spacing, rule="spacing")
    assert spacing[axis] == max(spacing)
    assert all(spacing[k] != spacing[axis] for k in range(axis + 1, 3))


# ---------------------------------------------------------------------------------------------------
# normalisation literals


def test_b01_int16_ct_full_range():
    """B01: int16 in [−1024, 3071]; max − min = 4095.

    p' = ⌊255 (p + 1024) / 4095⌋:
      −1024 → 0;  3071 → 255;
      −751  → 255·273/4095 = 17 exactly (4095 = 15·273, 255/15 = 17);
      1706  → 255·2730/4095 = 170 exactly;
      0     → 255·1024/4095 = 63.77 → 63;
      1023  → 255·2047/4095 = 127.47 → 127;
      3070  → 255·4094/4095 = 254.94 → 254.
    """
    rng = np.random.default_rng(1)
    vol = rng.integers(-1024, 3072, size=(64, 64, 8), dtype=np.int16)
    probes = {(0, 0, 0): -1024, (63, 63, 7): 3071, (1, 2, 3): -751, (4, 5, 6): 1706, (7, 8, 1): 0,
              (9, 10, 2): 1023, (11, 12, 4): 3070}
    for idx, v in probes.items():
        vol[idx] = v
    res = normalise(vol)
    out = res.volume
    assert out.dtype == np.uint8 and out.shape == vol.shape
    assert out.min() == 0 and out.max() == 255
    expected = {(0, 0, 0): 0, (63, 63, 7): 255, (1, 2, 3): 17, (4, 5, 6): 170, (7, 8, 1): 63,
                (9, 10, 2): 127, (11, 12, 4): 254}
    for idx, grey in expected.items():
        assert out[idx] == grey, (idx, vol[idx], out[idx], grey)
    assert (res.min, res.max) == (-1024.0, 3071.0)
    assert res.nonfinite_voxels == 0
    # every voxel against the exact reference (integer input: no tolerance)
    lut = np.array([exact_grey(v, -1024, 3071) for v in range(-1024, 3072)], dtype=np.uint8)
    np.testing.assert_array_equal(out, lut[vol.astype(np.int64) + 1024])
    # what SAM receives: (H, W, 3) uint8, three identical channels
    rgb = to_rgb(take_slice(out, 2, 3))
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def _b03_volume() -> tuple[np.ndarray, np.ndarray]:
    vol = np.full((32, 32, 4), -1024, dtype=np.int16)
    ramp = np.array([20 + (40 * k) // 11 for k in range(12)], dtype=np.int16)  # 20, 23, …, 56, 60
    assert ramp[0] == 20 and ramp[-1] == 60
    organ = np.zeros(vol.shape, dtype=bool)
    organ[10:22, 10:22, :] = True
    vol[10:22, 10:22, :] = ramp[None, :, None]
    vol[0, 0, 0] = 3071
    return vol, organ


def test_b03_full_range_minmax_compresses_soft_tissue():
    """B03: min −1024, max 3071, D = 4095.

    Organ 20 HU → ⌊255·1044/4095⌋ = ⌊65.01⌋ = 65;  60 HU → ⌊255·1084/4095⌋ = ⌊67.50⌋ = 67.
    So the whole 40 HU organ sits on greys 65..67 (three levels).
    """
    vol, organ = _b03_volume()
    res = normalise(vol)
    greys = res.volume[organ]
    assert greys.min() == 65 and greys.max() == 67
    assert 65 <= greys.min() and greys.max() <= 68
    assert len(np.unique(greys)) <= 4
    assert (res.min, res.max) == (-1024.0, 3071.0)  # recorded so the compression can be seen


def test_b03_soft_tissue_window_spreads_organ():
    """B03 with window (L 40, W 400) → clip to [−160, 240], D = 400.

    20 HU → ⌊255·180/400⌋ = ⌊114.75⌋ = 114;  60 HU → ⌊255·220/400⌋ = ⌊140.25⌋ = 140: 26 levels ≥ 25.
    Background −1024 clips to −160 → 0;  3071 clips to 240 → 255.
    """
    vol, organ = _b03_volume()
    res = normalise(vol, window=(40, 400))
    out = res.volume
    greys = out[organ]
    assert greys.min() == 114 and greys.max() == 140
    assert greys.max() - greys.min() >= 25
    assert out[0, 1, 0] == 0 and out[0, 0, 0] == 255
    # every organ value against exact arithmetic
    for v in np.unique(vol[organ]):
        assert set(np.unique(out[organ & (vol == v)])) == {exact_grey(int(v), -160, 240)}


def test_window_literal_values():
    """Window (level 0, width 100) → [−50, 50], D = 100: −80 → 0, −50 → 0, 0 → ⌊127.5⌋ = 127,
    10 → ⌊153⌋ = 153, 49 → ⌊252.45⌋ = 252, 50 → 255, 900 → 255."""
    vol = np.array([-80, -50, 0, 10, 49, 50, 900], dtype=np.float32).reshape(1, 1, 7)
    out = normalise(vol, window=(0, 100)).volume.ravel()
    assert out.tolist() == [0, 0, 127, 153, 252, 255, 255]


@pytest.mark.filterwarnings("error")
def test_b04_zero_volume_no_warning_no_nan():
    vol = np.zeros((16, 16, 4), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for mode in ("volume", "slice"):
            res = normalise(vol, mode=mode)
            assert res.volume.dtype == np.uint8
            assert (res.volume == 0).all()
            assert res.nonfinite_voxels == 0
            assert (res.min, res.max) == (0.0, 0.0)


@pytest.mark.filterwarnings("error")
def test_b04_constant_slices():
    """(16, 16, 6): slices 0–1 (axis 2) all 7.0; others integers in [0, 20] with 0 and 20 present.

    Per slice: the constant slices → 0; the other slices each span 0..255.
    Per volume: 7 → ⌊255·7/20⌋ = ⌊89.25⌋ = 89, one valid grey for the whole constant slice.
    """
    rng = np.random.default_rng(4)
    vol = rng.integers(0, 21, size=(16, 16, 6)).astype(np.float32)
    vol[..., 0:2] = 7.0
    for k in range(2, 6):
        vol[0, 0, k], vol[15, 15, k] = 0.0, 20.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        per_slice = normalise(vol, mode="slice", axis=2).volume
        per_volume = normalise(vol, mode="volume").volume
    assert (per_slice[..., 0:2] == 0).all()
    for k in range(2, 6):
        assert per_slice[..., k].min() == 0 and per_slice[..., k].max() == 255
    assert (per_volume[..., 0:2] == 89).all()


@pytest.mark.filterwarnings("error")
def test_nonfinite_voxels_become_zero_and_are_counted():
    """Values 10..25 plus NaN, +inf, −inf, NaN: 4 non-finite voxels; min 10, max 25 over finite.
    25 → 255; 10 → 0; 16 → ⌊255·6/15⌋ = 102."""
    vol = np.arange(10, 26, dtype=np.float64).reshape(4, 2, 2)  # 16 values 10..25
    vol = np.concatenate([vol, np.array([np.nan, np.inf, -np.inf, np.nan]).reshape(1, 2, 2)], axis=0)
    res = normalise(vol)
    assert res.nonfinite_voxels == 4
    assert (res.min, res.max) == (10.0, 25.0)
    assert (res.volume[4] == 0).all()
    assert res.volume[0, 0, 0] == 0 and res.volume[3, 1, 1] == 255
    assert res.volume.ravel()[6] == 102  # value 16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res_w = normalise(vol, window=(20, 10))  # [15, 25]
        res_s = normalise(vol, mode="slice", axis=0)
    assert res_w.nonfinite_voxels == 4 and (res_w.volume[4] == 0).all()
    assert res_s.nonfinite_voxels == 4 and (res_s.volume[4] == 0).all()


def test_all_nonfinite_volume():
    vol = np.full((2, 3, 4), np.nan)
    res = normalise(vol)
    assert (res.volume == 0).all() and res.volume.dtype == np.uint8
    assert res.nonfinite_voxels == 24
    assert res.min is None and res.max is None


def test_normalise_errors():
    vol = np.zeros((2, 2, 2))
    with pytest.raises(ConfigError):
        normalise(vol, mode="global")
    with pytest.raises(ConfigError):
        normalise(vol, window=(40, 0))
    with pytest.raises(ConfigError):
        normalise(vol, window=(40, -400))
    with pytest.raises(ConfigError):
        normalise(np.array([["a"]]))


def test_bool_and_uint8_inputs():
    """A bool volume scales False → 0, True → 255; a uint8 volume with 0 and 255 present is unchanged."""
    b = np.zeros((3, 3, 3), bool)
    b[1, 1, 1] = True
    out = normalise(b).volume
    assert out[1, 1, 1] == 255 and out.sum() == 255
    u = np.arange(256, dtype=np.uint8).reshape(4, 8, 8)
    np.testing.assert_array_equal(normalise(u).volume, u)


# ---------------------------------------------------------------------------------------------------
# normalisation properties (arrays built from a drawn seed with numpy, ≤ 16 per axis)

shapes3 = st.tuples(st.integers(1, 16), st.integers(1, 16), st.integers(1, 8))
int_dtypes = st.sampled_from([np.int16, np.uint8, np.uint16, np.int32])


def _int_volume(seed, shape, dtype, constant):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    lo = int(rng.integers(max(info.min, -5000), min(info.max, 5000)))
    span = int(rng.integers(0, 4000))
    hi = min(lo + span, min(info.max, 5000))
    if constant:
        return np.full(shape, lo, dtype=dtype)
    return rng.integers(lo, hi + 1, size=shape).astype(dtype)


@given(st.integers(0, 2**32 - 1), shapes3, int_dtypes, st.booleans())
def test_normalise_integer_volume_matches_exact_reference(seed, shape, dtype, constant):
    vol = _int_volume(seed, shape, dtype, constant)
    res = normalise(vol)
    out = res.volume
    assert out.dtype == np.uint8 and out.shape == vol.shape
    lo, hi = int(vol.min()), int(vol.max())
    assert (res.min, res.max) == (lo, hi)
    vals = vol.astype(np.int64)
    lut = {int(v): exact_grey(int(v), lo, hi) for v in np.unique(vals)}
    expected = np.vectorize(lut.__getitem__, otypes=[np.int64])(vals)
    np.testing.assert_array_equal(out, expected)
    if lo == hi:
        assert (out == 0).all()
    else:
        assert out.min() == 0 and out.max() == 255


def _float_volume(seed, shape, kind):
    rng = np.random.default_rng(seed)
    if kind == "ct":
        v = rng.uniform(-2000, 4000, size=shape)
    elif kind == "tiny":  # a spread of a few ulps around 1
        v = 1.0 + rng.integers(0, 4, size=shape) * np.finfo(np.float32).eps
    elif kind == "huge":  # near float32's limits
        v = rng.uniform(-3e38, 3e38, size=shape)
    elif kind == "lognormal":
        v = rng.lognormal(0, 5, size=shape)
    else:  # constant
        v = np.full(shape, rng.normal())
    return v.astype(np.float32)


@given(st.integers(0, 2**32 - 1), shapes3, st.sampled_from(["ct", "tiny", "huge", "lognormal", "constant"]))
def test_normalise_float_volume_properties(seed, shape, kind):
    vol = _float_volume(seed, shape, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide/overflow warnings
        res = normalise(vol)
    out = res.volume
    assert out.dtype == np.uint8 and out.shape == vol.shape
    lo, hi = float(vol.min()), float(vol.max())
    assert (res.min, res.max) == (lo, hi)
    if lo == hi:
        assert (out == 0).all()
        return
    assert out.min() == 0 and out.max() == 255
    # order preserved: p < q ⇒ p' ≤ q'; p = q ⇒ p' = q'
    flat, o = vol.ravel(), out.ravel()
    order = np.argsort(flat, kind="stable")
    assert (np.diff(o[order].astype(np.int64)) >= 0).all()
    # against exact arithmetic (a few distinct values are enough)
    for v in np.unique(flat)[:: max(1, flat.size // 40)]:
        got = set(np.unique(o[flat == v]).tolist())
        assert len(got) == 1 and got <= exact_grey_set(float(v), lo, hi), (v, got)


@given(st.integers(0, 2**32 - 1), shapes3, st.integers(1, 12))
def test_normalise_nonfinite_voxels(seed, shape, n_bad):
    rng = np.random.default_rng(seed)
    vol = rng.uniform(-100, 100, size=shape)
    bad = np.zeros(vol.size, bool)
    bad[rng.choice(vol.size, size=min(n_bad, vol.size), replace=False)] = True
    bad = bad.reshape(shape)
    vol[bad] = rng.choice([np.nan, np.inf, -np.inf], size=int(bad.sum()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = normalise(vol)
    assert res.nonfinite_voxels == int(bad.sum())
    assert (res.volume[bad] == 0).all()
    if bad.all():
        assert res.min is None and res.max is None
        return
    lo, hi = float(vol[~bad].min()), float(vol[~bad].max())
    assert (res.min, res.max) == (lo, hi)
    for v, g in zip(vol[~bad][:50], res.volume[~bad][:50]):
        assert int(g) in exact_grey_set(float(v), lo, hi)


@given(st.integers(0, 2**32 - 1), shapes3, st.integers(0, 2), st.booleans())
def test_normalise_per_slice_equals_each_slice_alone(seed, shape, axis, with_constant):
    rng = np.random.default_rng(seed)
    vol = rng.integers(-1024, 3072, size=shape).astype(np.int16)
    if with_constant:
        idx = [slice(None)] * 3
        idx[axis] = 0
        vol[tuple(idx)] = 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normalise(vol, mode="slice", axis=axis).volume
    for k in range(shape[axis]):
        sl = np.take(vol, k, axis=axis).astype(np.int64)
        lo, hi = int(sl.min()), int(sl.max())
        expected = np.vectorize(lambda v: exact_grey(int(v), lo, hi), otypes=[np.int64])(sl)
        np.testing.assert_array_equal(np.take(out, k, axis=axis), expected)
        if lo == hi:
            assert (np.take(out, k, axis=axis) == 0).all()
        else:
            assert np.take(out, k, axis=axis).min() == 0 and np.take(out, k, axis=axis).max() == 255


@given(
    st.integers(0, 2**32 - 1),
    shapes3,
    st.integers(-500, 500),
    st.integers(1, 2000).map(lambda w: 2 * w),  # even width: integer window bounds
    st.sampled_from(["volume", "slice"]),
)
def test_normalise_window_matches_exact_reference(seed, shape, level, width, mode):
    rng = np.random.default_rng(seed)
    vol = rng.integers(-1024, 3072, size=shape).astype(np.int16)
    out = normalise(vol, window=(level, width), mode=mode).volume
    lo, hi = level - width // 2, level + width // 2
    clipped = np.clip(vol.astype(np.int64), lo, hi)
    expected = np.vectorize(lambda v: exact_grey(int(v), lo, hi), otypes=[np.int64])(clipped)
    np.testing.assert_array_equal(out, expected)


# ---------------------------------------------------------------------------------------------------
# channels and slices


@given(st.integers(0, 2**32 - 1), st.integers(1, 32), st.integers(1, 32), st.booleans())
def test_to_rgb_stacks_three_identical_channels(seed, h, w, transposed):
    s = np.random.default_rng(seed).integers(0, 256, size=(w, h) if transposed else (h, w), dtype=np.uint8)
    if transposed:
        s = s.T  # a non-contiguous view
    rgb = to_rgb(s)
    assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], s)


def test_to_rgb_refuses_other_inputs():
    with pytest.raises(ConfigError):
        to_rgb(np.zeros((4, 4), np.int16))
    with pytest.raises(ConfigError):
        to_rgb(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ConfigError):
        to_rgb(np.zeros((4, 4), np.float32))


def test_take_slice_keeps_row_column_order():
    vol = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    s = take_slice(vol, 2, 1)  # vol[:, :, 1]: rows along axis 0, columns along axis 1
    assert s.tolist() == [[1, 5, 9], [13, 17, 21]]
    assert s.flags.c_contiguous
    s[0, 0] = -1
    assert vol[0, 0, 1] == 1  # a copy, not a view
    assert take_slice(vol, 0, 1).tolist() == vol[1].tolist()
    assert take_slice(vol, 1, 2).tolist() == [[8, 9, 10, 11], [20, 21, 22, 23]]
