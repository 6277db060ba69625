"""Generator registry, in the style of segment-anything's ``sam_model_registry``.

Only the SAM adapters import torch and segment-anything, and only when asked for.
"""

from __future__ import annotations

from ..config import SamConfig, SuperpixelConfig
from ..errors import ConfigError
from .base import Generator, Proposals, empty_proposals

SAM_GENERATORS = ("sam-auto", "sam-seeded")
BASELINE_GENERATORS = ("oracle", "superpixels")
GENERATOR_NAMES = BASELINE_GENERATORS + SAM_GENERATORS


def build_baseline(name: str, superpixel: SuperpixelConfig = SuperpixelConfig()) -> Generator:
    """A generator that needs no model weights."""
    if name == "oracle":
        from .oracle import OracleGenerator

        return OracleGenerator()
    if name == "superpixels":
        from .superpixels import SuperpixelGenerator

        return SuperpixelGenerator(superpixel)
    raise ConfigError(f"unknown generator {name!r}; expected one of {', '.join(GENERATOR_NAMES)}")


__all__ = [
    "Generator",
    "Proposals",
    "empty_proposals",
    "build_baseline",
    "SamConfig",
    "SuperpixelConfig",
    "GENERATOR_NAMES",
    "SAM_GENERATORS",
    "BASELINE_GENERATORS",
]
