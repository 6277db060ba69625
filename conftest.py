"""Repository-wide test configuration.

Hypothesis profiles (B34, B35):

- ``dev`` (default): no deadline, a modest number of examples, for quick local runs.
- ``ci``: no deadline, more examples, randomised, and the reproduction blob printed on failure.

Choose with ``HYPOTHESIS_PROFILE=ci`` (or hypothesis' own ``--hypothesis-profile``). Deadlines are off
because the first example of a volume test may pay for imports (scikit-image, scipy) and a loaded CI
runner is slow; a deadline would then report a flaky failure that cannot be reproduced alone (B34).
No health check is suppressed suite-wide: strategies keep arrays small (≤ 32 per axis) or draw a seed
and build the bulk data with numpy's RNG (B35).

Real volumes come through the project's data-root setting (``--data-root`` or
``$SAMRADBENCH_DATA_ROOT``), as for the benchmarks: ``real_data_root`` and ``real_dataset(folder)``
skip, with a reason naming the option, when no root is configured or the folder is not in it.

Fixture factories below are generic (plain numpy; no NIfTI, no model) and session-scoped, so they
can be used inside ``@given`` tests without hypothesis' function-scoped-fixture health check.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from hypothesis import settings

from samradbench.plugin import NO_REAL_DATA, configured_data_root

settings.register_profile("dev", deadline=None, max_examples=40, print_blob=True)
settings.register_profile(
    "ci",
    deadline=None,
    derandomize=False,
    max_examples=150,
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="session")
def box_mask() -> Callable[..., np.ndarray]:
    """``box_mask(shape, rows, cols)``: a bool mask of ``shape`` with the inclusive ranges
    ``rows = (r0, r1)`` and ``cols = (c0, c1)`` set."""

    def make(shape: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        m = np.zeros(shape, dtype=bool)
        m[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = True
        return m

    return make


@pytest.fixture(scope="session")
def disc_mask() -> Callable[..., np.ndarray]:
    """``disc_mask(shape, centre, radius)``: pixels with (r − r_c)² + (c − c_c)² ≤ radius²."""

    def make(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
        rr, cc = np.indices(shape)
        return (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius**2

    return make


@pytest.fixture(scope="session")
def random_volume() -> Callable[..., np.ndarray]:
    """``random_volume(seed, shape, lo, hi, dtype=np.float32)``: uniform values in [lo, hi), from
    numpy's RNG (integers for integer dtypes, with ``hi`` exclusive)."""

    def make(seed: int, shape: tuple[int, ...], lo: float, hi: float, dtype=np.float32) -> np.ndarray:
        rng = np.random.default_rng(seed)
        if np.issubdtype(np.dtype(dtype), np.integer):
            return rng.integers(int(lo), int(hi), size=shape, dtype=dtype)
        return rng.uniform(lo, hi, size=shape).astype(dtype)

    return make


@pytest.fixture(scope="session")
def random_mask() -> Callable[..., np.ndarray]:
    """``random_mask(seed, shape, p)``: a bool mask with each voxel set with probability ``p``."""

    def make(seed: int, shape: tuple[int, ...], p: float = 0.3) -> np.ndarray:
        return np.random.default_rng(seed).random(shape) < p

    return make


@pytest.fixture(scope="session")
def real_data_root(pytestconfig: pytest.Config) -> Path:
    """The configured data root (``--data-root`` / ``$SAMRADBENCH_DATA_ROOT``); skips without one."""
    root = configured_data_root(pytestconfig)
    if root is None:
        pytest.skip(NO_REAL_DATA)
    return root


@pytest.fixture(scope="session")
def real_dataset(real_data_root: Path):
    """``real_dataset(folder)``: the one dataset in ``<data root>/<folder>`` (e.g.
    ``"Task04_Hippocampus"``); skips when the configured root has no such folder."""
    from samradbench.datasets import discover_datasets

    def load(folder: str):
        path = real_data_root / folder
        if not path.is_dir():
            pytest.skip(f"{folder} not in the data root {real_data_root}")
        (ds,) = discover_datasets(path)
        return ds

    return load
