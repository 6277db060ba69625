"""Configuration as explicit, frozen data: hashed into cache keys and written into every result."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAM_ARCHITECTURES = ("vit_b", "vit_l", "vit_h")
RANDOM_INIT_ARCHITECTURES = ("vit_tiny", "vit_b", "vit_l", "vit_h")


@dataclass(frozen=True)
class SamConfig:
    """How to build a SAM model and its automatic mask generator (SPEC §3).

    Exactly one of ``checkpoint`` (the user's weights) or ``random_init`` (an architecture name built
    with seeded random weights, labelled ``random-init`` in every result) is set.
    Threshold fields left as None take segment-anything's defaults (0.88 / 0.95) — except in
    random-init mode, where they default to 0 because random weights pass no quality filter.
    """

    checkpoint: Path | None = None
    model_type: str | None = None  # vit_b | vit_l | vit_h; None: inferred from the checkpoint
    random_init: str | None = None  # vit_tiny | vit_b | vit_l | vit_h
    random_seed: int = 0
    device: str = "auto"  # auto: cuda if available, else cpu
    points_per_side: int = 32  # sam-auto grid (the paper's default)
    seed_grid: int = 3  # sam-seeded: n × n seeds over the truth's bounding box (paper: 3; 4 → 16 points)
    points_per_batch: int = 64
    pred_iou_thresh: float | None = None
    stability_score_thresh: float | None = None
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    min_mask_region_area: int = 0
    precision: str = "fp32"  # fp32 (the paper's) | bf16: autocast of the image encoder and mask decoder
    compile: bool = False  # torch.compile the image encoder once at load (fails loudly, never falls back)
    encoder_batch: int = 1  # slices per image-encoder forward pass when the runner prefetches (> 1)

    def effective_thresholds(self) -> tuple[float, float]:
        """(pred_iou_thresh, stability_score_thresh) actually passed to the generator."""
        default_iou, default_stab = (0.0, 0.0) if self.random_init else (0.88, 0.95)
        return (
            default_iou if self.pred_iou_thresh is None else self.pred_iou_thresh,
            default_stab if self.stability_score_thresh is None else self.stability_score_thresh,
        )


@dataclass(frozen=True)
class SuperpixelConfig:
    """SLIC superpixels (scikit-image) on the uint8 slice: a classical over-segmentation baseline."""

    n_segments: int = 100
    compactness: float = 0.1  # skimage scales the grey image to [0, 1]; 10 would let space dominate intensity
    sigma: float = 1.0


def as_jsonable(cfg: Any) -> dict[str, Any]:
    """A frozen config as a JSON-ready dict (paths as strings)."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = str(v) if isinstance(v, Path) else v
    return out
