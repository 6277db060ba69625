"""SPEC §2: slice axis, intensity normalisation to uint8, and the 3-channel stack SAM expects.

Pure functions on numpy arrays; no I/O, no model code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from .errors import ConfigError

AxisRule = Literal["smallest", "spacing"]
NormalisationMode = Literal["volume", "slice"]


def slice_axis(shape: Sequence[int], spacing: Sequence[float] | None = None, rule: AxisRule = "smallest") -> int:
    """The axis along which a 3-D volume is cut into 2-D slices.

    ``smallest`` (default, paper §3.2): the axis with the smallest size; ties go to the *last* of the
    tied axes, so a cube slices along axis 2 and (64, 20, 20) along axis 2.
    ``spacing``: the axis with the largest voxel spacing, ties again to the last.
    """
    if len(shape) != 3:
        raise ConfigError(f"slice_axis needs a 3-D shape, got {tuple(shape)}")
    if rule == "smallest":
        keys = [int(s) for s in shape]
        best = min(keys)
    elif rule == "spacing":
        if spacing is None or len(spacing) != 3:
            raise ConfigError("slice-axis rule 'spacing' needs the volume's 3 voxel spacings")
        keys = [-float(s) for s in spacing]
        best = min(keys)
    else:
        raise ConfigError(f"unknown slice-axis rule {rule!r}; expected 'smallest' or 'spacing'")
    return max(i for i, k in enumerate(keys) if k == best)


@dataclass(frozen=True)
class Normalised:
    """A volume scaled to uint8, with what the scaling used (recorded in the results)."""

    volume: np.ndarray  # uint8, same shape as the input
    min: float | None  # the volume's finite minimum (before any window); None if no finite voxel
    max: float | None  # the volume's finite maximum
    nonfinite_voxels: int  # NaN/inf voxels, set to 0 in the output


def _scale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """255·(v − lo)/(hi − lo), truncated to uint8; a constant range maps to 0 without dividing."""
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = np.subtract(values, lo, dtype=np.float64)  # one float64 copy, then in place
    scaled *= 255.0
    scaled /= hi - lo
    # Truncate as the paper's uint8 cast does, but forgive float rounding below a whole number
    # (exact arithmetic maps the maximum to 255, float may give 254.99999999999997).
    scaled += 1e-9
    np.clip(scaled, 0.0, 255.0, out=scaled)
    return scaled.astype(np.uint8)


def normalise(
    volume: np.ndarray,
    mode: NormalisationMode = "volume",
    window: tuple[float, float] | None = None,
    axis: int = 2,
) -> Normalised:
    """Min-max scale ``volume`` to uint8: ``p' = 255 (p − min) / (max − min)`` over finite voxels.

    ``mode='volume'`` uses the whole volume's range; ``mode='slice'`` each slice's own (along ``axis``).
    ``window=(level, width)`` clips to [level − width/2, level + width/2] first (a CT window) and then
    scales over the window's bounds. NaN/inf voxels become 0 and are counted. A constant volume (or
    slice) becomes all zeros with no warning.
    """
    if mode not in ("volume", "slice"):
        raise ConfigError(f"unknown normalisation mode {mode!r}; expected 'volume' or 'slice'")
    data = np.asarray(volume)
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        raise ConfigError(f"cannot normalise an array of dtype {data.dtype}")
    if data.dtype.kind in "biu":  # integers are all finite: skip the float copy and the NaN scan
        finite = np.ones(data.shape, dtype=bool) if mode == "slice" else None
        n_bad = 0
    else:
        data = data.astype(np.float64, copy=False)
        finite = np.isfinite(data)
        n_bad = int(data.size - np.count_nonzero(finite))
        if n_bad:
            data = np.where(finite, data, 0.0)
    if window is not None:
        level, width = float(window[0]), float(window[1])
        if not width > 0:
            raise ConfigError(f"CT window width must be positive, got {width}")
        lo_w, hi_w = level - width / 2.0, level + width / 2.0
    if data.size == 0 or (finite is not None and not finite.any()):
        return Normalised(np.zeros(data.shape, np.uint8), None, None, n_bad)

    valid = data if finite is None or not n_bad else data[finite]
    vmin, vmax = float(valid.min()), float(valid.max())
    if window is not None:
        lo, hi = lo_w, hi_w
        data = np.clip(data.astype(np.float64, copy=False), lo_w, hi_w)
    else:
        lo, hi = vmin, vmax
    if mode == "volume":
        out = _scale(data, lo, hi)
    else:
        out = np.zeros(data.shape, np.uint8)
        for k in range(data.shape[axis]):
            sl = np.take(data, k, axis=axis)
            fin = np.take(finite, k, axis=axis)
            if window is not None:
                s_lo, s_hi = lo, hi
            elif fin.any():
                s_lo, s_hi = float(sl[fin].min()), float(sl[fin].max())
            else:
                continue
            idx = [slice(None)] * data.ndim
            idx[axis] = k
            out[tuple(idx)] = _scale(sl, s_lo, s_hi)
    if n_bad:
        out[~finite] = 0
    return Normalised(out, vmin, vmax, n_bad)


def to_rgb(slice_u8: np.ndarray) -> np.ndarray:
    """Stack a 2-D uint8 slice three times into a C-contiguous ``H × W × 3`` uint8 image."""
    s = np.asarray(slice_u8)
    if s.ndim != 2 or s.dtype != np.uint8:
        raise ConfigError(f"to_rgb needs a 2-D uint8 slice, got shape {s.shape} dtype {s.dtype}")
    return np.ascontiguousarray(np.repeat(s[:, :, None], 3, axis=2))


def take_slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` along ``axis``, in the array's own (row, column) order, as a contiguous copy."""
    return np.ascontiguousarray(np.take(volume, index, axis=axis))
