"""SPEC §3 ``sam-auto`` and ``sam-seeded``: segment-anything's ``SamAutomaticMaskGenerator`` as generators.

The model is loaded once (:func:`load_sam`) and shared by both adapters. A checkpoint is read by
:mod:`samradbench.checkpoints` (CPU map, unwrapped, architecture-checked, strict) into a model that
segment-anything's registry builds without a checkpoint — its own ``torch.load`` has no
``map_location``. ``random_init`` builds the same architectures (or the small ``vit_tiny``) with
seeded random weights for tests and smoke runs; such results are always labelled ``random-init``.

torch and segment-anything are imported inside functions, so importing this module stays cheap.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import RANDOM_INIT_ARCHITECTURES, SAM_ARCHITECTURES, SamConfig, as_jsonable
from ..errors import ConfigError, MissingDependencyError
from ..seeds import seed_pixels, to_sam_points
from .base import Generator, Proposals, empty_proposals

if TYPE_CHECKING:
    import torch

#: ``vit_tiny``: a real SAM (same modules and data flow) small enough for CPU tests — about 0.23 M
#: parameters; on 2 CPU cores one 64×80 slice takes ~0.03 s with a 3×3 grid and ~3 s with 32×32.
TINY_SAM = {
    "img_size": 256,  # 16×16 patches of 16 px
    "encoder_embed_dim": 64,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_window_size": 8,
    "encoder_global_attn_indexes": (1,),  # windowed block, then a global one (as every SAM ends)
    "prompt_embed_dim": 32,
    "decoder_mlp_dim": 128,
    "decoder_num_heads": 2,
}


def resolve_device(name: str) -> str:
    """The torch device to run on: ``auto`` → ``cuda`` when available, else ``cpu``.

    An explicit ``cuda`` (or ``cuda:N``) without a usable GPU is a :class:`ConfigError`, not a crash
    at the first tensor move.
    """
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but torch sees no CUDA GPU; use device cpu or auto (--device)")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ConfigError(f"device {name!r}: torch sees {torch.cuda.device_count()} CUDA device(s)")
        return name
    raise ConfigError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N")


def _device_name(device: str) -> str:
    """Human-readable name of the device (GPU model, or the CPU's)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine() or "cpu"


@dataclass
class LoadedSam:
    """A SAM model on its device, with the identity written into every result (``description``)."""

    model: torch.nn.Module
    device: str
    description: dict[str, Any]


def build_tiny_sam() -> torch.nn.Module:
    """An untrained ``vit_tiny`` SAM built from segment-anything's own modules (see :data:`TINY_SAM`)."""
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    t = TINY_SAM
    patch = 16
    embed_side = t["img_size"] // patch
    dim = t["prompt_embed_dim"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=t["img_size"],
            patch_size=patch,
            embed_dim=t["encoder_embed_dim"],
            depth=t["encoder_depth"],
            num_heads=t["encoder_num_heads"],
            mlp_ratio=4,
            out_chans=dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=t["encoder_window_size"],
            global_attn_indexes=t["encoder_global_attn_indexes"],
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(embed_side, embed_side),
            input_image_size=(t["img_size"], t["img_size"]),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=dim,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=dim, mlp_dim=t["decoder_mlp_dim"], num_heads=t["decoder_num_heads"]
            ),
            num_multimask_outputs=3,
            iou_head_depth=3,
            iou_head_hidden_dim=dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def _build_architecture(arch: str) -> torch.nn.Module:
    """An untrained model of ``arch`` (weights from the current torch RNG state)."""
    if arch == "vit_tiny":
        return build_tiny_sam()
    from segment_anything import sam_model_registry

    return sam_model_registry[arch](checkpoint=None)


def load_sam(cfg: SamConfig, *, allow_unsafe_pickle: bool = False) -> LoadedSam:
    """Build the configured SAM on its device, in eval mode, with a description for the results.

    From ``cfg.checkpoint``: the weights are read and unwrapped on the CPU, their architecture is
    inferred (or checked against ``cfg.model_type``, one-line error on mismatch) before building,
    loaded with ``strict=True``, then moved to the device. ``allow_unsafe_pickle`` permits a
    checkpoint that ``torch.load(weights_only=True)`` refuses (only for files you trust).
    From ``cfg.random_init``: that architecture with weights drawn after ``torch.manual_seed(
    cfg.random_seed)`` in a forked RNG (the caller's RNG state is untouched), identical for a seed.
    """
    import torch

    from .. import checkpoints

    if (cfg.checkpoint is None) == (cfg.random_init is None):
        raise ConfigError("set exactly one of a SAM checkpoint or random_init (an architecture name)")
    device = resolve_device(cfg.device)
    if cfg.checkpoint is not None:
        if cfg.model_type is not None and cfg.model_type not in SAM_ARCHITECTURES:
            raise ConfigError(f"unknown model_type {cfg.model_type!r}; expected one of {', '.join(SAM_ARCHITECTURES)}")
        state = checkpoints.load_state_dict(cfg.checkpoint, allow_unsafe_pickle=allow_unsafe_pickle)
        if cfg.model_type is not None:
            checkpoints.check_architecture(state, cfg.model_type, cfg.checkpoint)
        arch = cfg.model_type or checkpoints.infer_architecture(state, cfg.checkpoint)
        model = _build_architecture(arch)
        checkpoints.load_weights_strict(model, state, cfg.checkpoint)
        del state
        identity = {
            "checkpoint": cfg.checkpoint.name,
            "sha256": checkpoints.sha256_file(cfg.checkpoint),
            "weights": "checkpoint",
            "seed": None,
        }
    else:
        arch = cfg.random_init
        if arch not in RANDOM_INIT_ARCHITECTURES:
            raise ConfigError(f"unknown random_init {arch!r}; expected one of {', '.join(RANDOM_INIT_ARCHITECTURES)}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.random_seed)
            model = _build_architecture(arch)
        identity = {"checkpoint": None, "sha256": None, "weights": "random-init", "seed": cfg.random_seed}
    model = model.to(device).eval()
    description = {
        "architecture": arch,
        **identity,
        "image_size": int(model.image_encoder.img_size),
        "device": device,
        "device_name": _device_name(device),
    }
    return LoadedSam(model, device, description)


def _free_cuda_cache() -> None:
    """Release cached CUDA blocks after an out-of-memory error (no-op without CUDA)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class _SamAmgGenerator:
    """Shared machinery: one ``SamAutomaticMaskGenerator`` call per slice on a shared model."""

    name = "sam"
    uses_truth = False

    def __init__(self, loaded: LoadedSam, cfg: SamConfig):
        self.check_config(cfg)
        self.loaded = loaded
        self.cfg = cfg

    @classmethod
    def check_config(cls, cfg: SamConfig) -> None:
        """Raise before any model is loaded if this adapter cannot run ``cfg``."""
        if cfg.points_per_batch < 1:
            raise ConfigError(f"points_per_batch must be ≥ 1, got {cfg.points_per_batch}")
        if cfg.min_mask_region_area > 0:
            try:
                import cv2  # noqa: F401  (SamAutomaticMaskGenerator needs it for this option)
            except ImportError:
                raise MissingDependencyError(
                    "min_mask_region_area > 0 needs OpenCV (pip install opencv-python-headless)"
                ) from None

    # -- Generator protocol -------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """``{"generator", "model", "config"}``; config includes the thresholds actually used."""
        iou, stability = self.cfg.effective_thresholds()
        config = as_jsonable(self.cfg)
        config.update(effective_pred_iou_thresh=iou, effective_stability_score_thresh=stability)
        return {"generator": self.name, "model": dict(self.loaded.description), "config": config}

    def synchronize(self) -> None:
        """Wait for queued CUDA work so the next clock read is honest; a no-op on CPU."""
        if self.loaded.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.loaded.device)

    # -- shared steps ---------------------------------------------------------------------------
    @staticmethod
    def _check_rgb(rgb: Any, name: str) -> tuple[int, int]:
        """(H, W) of a valid ``H × W × 3`` uint8 slice; :class:`ConfigError` otherwise."""
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            shape, dtype = getattr(rgb, "shape", None), getattr(rgb, "dtype", type(rgb).__name__)
            raise ConfigError(
                f"{name} needs an H×W×3 uint8 slice, got shape {shape} dtype {dtype} "
                "(normalise with samradbench.preprocess.normalise and to_rgb first)"
            )
        return int(rgb.shape[0]), int(rgb.shape[1])

    def _make_amg(self, points_per_batch: int, point_grids: list[np.ndarray] | None):
        """A ``SamAutomaticMaskGenerator`` on the shared model (cheap: it only wraps the model)."""
        from segment_anything import SamAutomaticMaskGenerator

        iou, stability = self.cfg.effective_thresholds()
        return SamAutomaticMaskGenerator(
            self.loaded.model,
            points_per_side=None if point_grids is not None else self.cfg.points_per_side,
            point_grids=point_grids,
            points_per_batch=points_per_batch,
            pred_iou_thresh=iou,
            stability_score_thresh=stability,
            box_nms_thresh=self.cfg.box_nms_thresh,
            crop_n_layers=self.cfg.crop_n_layers,
            min_mask_region_area=self.cfg.min_mask_region_area,
            output_mode="binary_mask",
        )

    def _timed_generate(self, amg, rgb: np.ndarray) -> tuple[list[dict[str, Any]], float]:
        """The AMG's records and the seconds spent in its predictor's ``set_image`` (image encoding),
        with the device synchronised before each clock read."""
        encode = [0.0]
        set_image = amg.predictor.set_image

        def timed_set_image(*args: Any, **kwargs: Any) -> None:
            self.synchronize()
            t0 = time.perf_counter()
            set_image(*args, **kwargs)
            self.synchronize()
            encode[0] += time.perf_counter() - t0

        amg.predictor.set_image = timed_set_image
        records = amg.generate(rgb)
        return records, encode[0]

    def _run(self, rgb: np.ndarray, point_grids: list[np.ndarray] | None, **info: Any) -> Proposals:
        """Run the AMG, halving ``points_per_batch`` on CUDA out-of-memory (B14), and stack its masks.

        ``info["points_per_batch"]`` records the value that worked when it differs from the
        configured one. Raises :class:`ConfigError` naming ``points_per_batch`` if even 1 fails.
        """
        import torch

        H, W = rgb.shape[:2]
        ppb = self.cfg.points_per_batch
        while True:
            try:
                records, encode_seconds = self._timed_generate(self._make_amg(ppb, point_grids), rgb)
                break
            except torch.cuda.OutOfMemoryError as exc:
                _free_cuda_cache()
                if ppb == 1:
                    raise ConfigError(
                        f"{self.name}: CUDA out of memory even with points_per_batch=1 "
                        f"(configured {self.cfg.points_per_batch}); use a smaller model, grid or crop_n_layers"
                    ) from exc
                ppb = max(1, ppb // 2)
        if ppb != self.cfg.points_per_batch:
            info["points_per_batch"] = ppb
        if not records:
            return Proposals(np.zeros((0, H, W), dtype=bool), encode_seconds, info)
        masks = np.stack([np.asarray(r["segmentation"], dtype=bool) for r in records])
        if masks.shape[1:] != (H, W):
            raise ValueError(f"{self.name}: masks of shape {masks.shape[1:]} for a slice of shape {(H, W)}")
        return Proposals(masks, encode_seconds, info)


class SamAutoGenerator(_SamAmgGenerator):
    """``sam-auto``: SAM's regular ``points_per_side`` grid over the whole slice (ignores the truth)."""

    name = "sam-auto"
    uses_truth = False

    def generate(self, rgb: np.ndarray, truth: np.ndarray) -> Proposals:
        """All segments the AMG keeps for the slice, as a bool (N, H, W) stack in its order."""
        self._check_rgb(rgb, self.name)
        return self._run(rgb, None)


class SamSeededGenerator(_SamAmgGenerator):
    """``sam-seeded``: the AMG prompted only at an n × n grid of seeds on the slice's ground truth.

    Crop layers are refused: segment-anything rescales each layer's normalised grid into every crop
    box, so full-slice seed positions would land off the object in all crops.
    """

    name = "sam-seeded"
    uses_truth = True

    @classmethod
    def check_config(cls, cfg: SamConfig) -> None:
        """As the base check, and refuse crop layers (see the class docstring)."""
        super().check_config(cfg)
        if cfg.crop_n_layers != 0:
            raise ConfigError(
                f"sam-seeded does not support crop_n_layers={cfg.crop_n_layers}: the AMG maps each seed "
                "grid into every crop box, so seeds placed on the slice's ground truth would miss it; "
                "use crop_n_layers=0 (crop layers remain available to sam-auto)"
            )

    def generate(self, rgb: np.ndarray, truth: np.ndarray) -> Proposals:
        """Segments from the seeds of ``truth`` (see :func:`samradbench.seeds.seed_pixels`).

        The grid is ``(x = col / W, y = row / H)`` per seed (B11). Empty truth: no model call, no
        segments. ``info["n_seeds"]`` is the number of distinct seeds.
        """
        H, W = self._check_rgb(rgb, self.name)
        truth = np.asarray(truth)
        if truth.shape != (H, W):
            raise ValueError(f"{self.name}: ground truth of shape {truth.shape} for a slice of shape {(H, W)}")
        pixels = seed_pixels(truth, self.cfg.seed_grid)
        if len(pixels) == 0:
            return empty_proposals((H, W), n_seeds=0)
        return self._run(rgb, [to_sam_points(pixels, (H, W))], n_seeds=len(pixels))


_ADAPTERS = {"sam-auto": SamAutoGenerator, "sam-seeded": SamSeededGenerator}


def build_sam_generators(
    cfg: SamConfig,
    names: tuple[str, ...] = ("sam-auto", "sam-seeded"),
    *,
    allow_unsafe_pickle: bool = False,
) -> dict[str, Generator]:
    """The requested SAM adapters by name, sharing one model loaded once by :func:`load_sam`."""
    unknown = [n for n in names if n not in _ADAPTERS]
    if unknown:
        raise ConfigError(f"unknown SAM generator(s) {unknown}; expected {', '.join(_ADAPTERS)}")
    for n in names:  # refuse an unusable configuration before spending time on the weights
        _ADAPTERS[n].check_config(cfg)
    loaded = load_sam(cfg, allow_unsafe_pickle=allow_unsafe_pickle)
    return {n: _ADAPTERS[n](loaded, cfg) for n in names}
