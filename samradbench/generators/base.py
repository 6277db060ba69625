"""The generator protocol (SPEC §3): one slice in, candidate segments out.

Every generator — SAM adapters, the oracle, classical baselines — has the same small surface, so the
runner treats them alike. Generators that read the ground truth (``uses_truth``) are run per target;
the others once per slice, shared by every target and heuristic.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class Proposals:
    """Candidate segments of one slice.

    ``masks`` is a boolean (N, H, W) stack at the slice's full resolution, in the generator's own
    order (N may be 0: a normal outcome). ``encode_seconds`` is the image-encoder share of the call's
    wall time when the model separates it (None otherwise). ``info`` holds per-slice facts worth
    recording (e.g. the number of seeds, a points_per_batch fallback).
    """

    masks: np.ndarray
    encode_seconds: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Generator(Protocol):
    name: str  # registry name: 'sam-auto', 'sam-seeded', 'oracle', 'superpixels'
    uses_truth: bool  # True when generate() reads the ground truth (its output is per target)

    def describe(self) -> dict[str, Any]:
        """JSON-ready identity: ``{"generator": name, "model": {...}, "config": {...}}``.

        ``model`` names architecture, checkpoint file name and SHA-256, or ``random-init`` with its seed;
        ``config`` is the generator's full configuration. Written into every result row.
        """
        ...

    def generate(self, rgb: np.ndarray, truth: np.ndarray) -> Proposals:
        """Segments for one ``H × W × 3`` uint8 slice. ``truth`` is the target's (H, W) boolean ground
        truth; generators with ``uses_truth = False`` must not read it."""
        ...

    def synchronize(self) -> None:
        """Wait for queued device work (so a clock read after it is honest); a no-op on CPU."""
        ...


def empty_proposals(shape: tuple[int, int], **info: Any) -> Proposals:
    return Proposals(np.zeros((0, *shape), dtype=bool), None, dict(info))


def cpu_name() -> str:
    """The CPU's model name: Linux's ``/proc/cpuinfo`` (where ``platform.processor`` is often empty),
    else what the platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"
