"""``oracle``: the ground truth's own connected components — the pipeline's sanity check.

Under the ``all`` heuristic its union is the ground truth, so Dice is exactly 1 on every volume with
any truth; anything else means the pipeline (slicing, selection, metrics) is broken.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .base import Proposals


class OracleGenerator:
    name = "oracle"
    uses_truth = True

    def describe(self) -> dict:
        return {
            "generator": self.name,
            "model": {"architecture": "oracle", "checkpoint": None, "weights": "ground-truth"},
            "config": {"connectivity": "8-connected (2-D)"},
        }

    def generate(self, rgb: np.ndarray, truth: np.ndarray) -> Proposals:
        t = np.asarray(truth) != 0
        labels, n = ndimage.label(t, structure=np.ones((3, 3), dtype=bool))
        masks = labels[None, :, :] == np.arange(1, n + 1)[:, None, None]
        return Proposals(masks.reshape(n, *t.shape))

    def synchronize(self) -> None:
        pass
