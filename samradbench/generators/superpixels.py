"""``superpixels``: SLIC over-segmentation (scikit-image), a model-free baseline.

It shows how much of a score the oracle selection heuristics produce on their own: any image cut
into small regions scores well under ``all`` once regions touching the truth are unioned.
"""

from __future__ import annotations

import numpy as np

from ..config import SuperpixelConfig, as_jsonable
from .base import Proposals


class SuperpixelGenerator:
    name = "superpixels"
    uses_truth = False

    def __init__(self, config: SuperpixelConfig = SuperpixelConfig()):
        self.config = config

    def describe(self) -> dict:
        import skimage

        return {
            "generator": self.name,
            "model": {"architecture": "slic", "checkpoint": None, "weights": f"scikit-image {skimage.__version__}"},
            "config": as_jsonable(self.config),
        }

    def generate(self, rgb: np.ndarray, truth: np.ndarray) -> Proposals:
        from skimage.segmentation import slic

        gray = np.asarray(rgb)[..., 0]
        labels = slic(
            gray,
            n_segments=self.config.n_segments,
            compactness=self.config.compactness,
            sigma=self.config.sigma,
            channel_axis=None,
            start_label=0,
        )
        ids = np.unique(labels)
        return Proposals(labels[None, :, :] == ids[:, None, None])

    def synchronize(self) -> None:
        pass
