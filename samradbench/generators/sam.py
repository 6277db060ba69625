"""SPEC §3 ``sam-auto`` and ``sam-seeded``: segment-anything's ``SamAutomaticMaskGenerator`` as generators.

The model is loaded once (:func:`load_sam`) and shared by both adapters. A checkpoint is read by
:mod:`samradbench.checkpoints` (CPU map, unwrapped, architecture-checked, strict) into a model that
segment-anything's registry builds without a checkpoint — its own ``torch.load`` has no
``map_location``. ``random_init`` builds the same architectures (or the small ``vit_tiny``) with
seeded random weights for tests and smoke runs; such results are always labelled ``random-init``.

Device options (all work on CPU too, all recorded in ``SamConfig`` and so in every result's config):

* ``precision="bf16"``: ``torch.autocast(bfloat16)`` around the image encoder and the mask decoder;
  the image embedding and the decoder's outputs are cast back to float32 before segment-anything's
  upscaling, thresholding and scoring, so masks stay full-resolution bool arrays.
* ``compile=True``: ``torch.compile`` of the image encoder, once, in :func:`load_sam`, with a
  warm-up call there; if torch cannot compile it the load fails with a :class:`ConfigError`
  (there is no silent fallback to eager mode).
* ``encoder_batch=N``: :meth:`_SamAmgGenerator.prefetch` encodes up to N slices per forward pass;
  the AMG's ``set_image`` on a prefetched slice installs the stored embedding instead of encoding.
* ``points_per_batch``: prompts per mask-decoder call (halved on CUDA out-of-memory, B14).
* every ``generate`` records ``info["peak_memory_bytes"]`` (see :func:`_peak_memory_bytes`).

torch and segment-anything are imported inside functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import RANDOM_INIT_ARCHITECTURES, SAM_ARCHITECTURES, SamConfig, as_jsonable
from ..errors import ConfigError, MissingDependencyError
from ..fileio import sha256_file
from ..seeds import seed_pixels, to_sam_points
from .base import Generator, Proposals, cpu_name, empty_proposals

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


#: ``SamConfig.precision`` values: ``fp32`` (the paper's) or ``bf16`` autocast.
PRECISIONS = ("fp32", "bf16")


def check_device_options(cfg: SamConfig) -> None:
    """:class:`ConfigError` for an unknown precision or a non-positive batch size (before any loading)."""
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {cfg.precision!r}; expected one of {', '.join(PRECISIONS)}")
    if not isinstance(cfg.compile, bool):
        raise ConfigError(f"compile must be True or False, got {cfg.compile!r}")
    if cfg.points_per_batch < 1:
        raise ConfigError(f"points_per_batch must be ≥ 1, got {cfg.points_per_batch}")
    if cfg.encoder_batch < 1:
        raise ConfigError(f"encoder_batch must be ≥ 1, got {cfg.encoder_batch}")


def autocast(device: str, precision: str):
    """The context the model runs in: bf16 autocast on the device's type, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)


def _reset_peak_memory(device: str) -> None:
    """Start a new CUDA peak-memory window (nothing to reset on CPU: the RSS peak is process-wide)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory_bytes(device: str) -> int | None:
    """Peak memory since the last :func:`_reset_peak_memory`, in bytes.

    CUDA: ``torch.cuda.max_memory_allocated`` (tensors allocated by torch on that GPU). CPU: the
    process's peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``; KiB on Linux, bytes on
    macOS) — process-wide and never reset, so it is the largest RSS the whole run has reached so far,
    not this call's own. None where ``resource`` is unavailable (Windows).
    """
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.max_memory_allocated(device))
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


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
    return cpu_name()


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
    ``cfg.compile``: the image encoder is replaced by ``torch.compile(image_encoder)`` and called
    once here (batch 1, and batch ``encoder_batch`` when larger, under ``cfg.precision``) so that
    compilation is neither timed as encoding nor able to fail later; a :class:`ConfigError` says
    so when torch cannot compile it.
    """
    import torch

    from .. import checkpoints

    if (cfg.checkpoint is None) == (cfg.random_init is None):
        raise ConfigError("set exactly one of a SAM checkpoint or random_init (an architecture name)")
    check_device_options(cfg)
    device = resolve_device(cfg.device)
    if cfg.precision == "bf16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"precision bf16 requested but {_device_name(device)} does not support bfloat16; use fp32")
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
            "sha256": sha256_file(cfg.checkpoint),
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
    if cfg.compile:
        model.image_encoder = _compile_encoder(model.image_encoder, device, cfg)
    description = {
        "architecture": arch,
        **identity,
        "image_size": int(model.image_encoder.img_size),
        "device": device,
        "device_name": _device_name(device),
    }
    return LoadedSam(model, device, description)


def _compile_encoder(encoder: torch.nn.Module, device: str, cfg: SamConfig) -> torch.nn.Module:
    """``torch.compile(encoder)``, warmed up; :class:`ConfigError` if torch cannot compile it."""
    import torch

    hint = "run without compile (--compile off)"
    if not hasattr(torch, "compile"):
        raise ConfigError(f"compile=True but torch {torch.__version__} has no torch.compile; {hint}")
    try:
        compiled = torch.compile(encoder)
    except Exception as exc:  # e.g. an unsupported Python version
        raise ConfigError(f"compile=True: torch.compile is unavailable here ({_one_line(exc)}); {hint}") from exc
    side = int(encoder.img_size)
    for batch in sorted({1, cfg.encoder_batch}):
        try:
            with torch.no_grad(), autocast(device, cfg.precision):
                compiled(torch.zeros(batch, 3, side, side, device=device))
        except Exception as exc:  # inductor needs a C++ compiler (CPU) or Triton (CUDA), among others
            raise ConfigError(
                f"compile=True: torch.compile of the image encoder failed at its first call "
                f"(batch {batch}, {cfg.precision} on {device}): {_one_line(exc)}; {hint}"
            ) from exc
    return compiled


def _one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (torch's compile errors run to pages)."""
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__


def image_key(rgb: np.ndarray) -> tuple:
    """The key of a prefetched slice: shape, dtype and a BLAKE2 hash of its bytes."""
    data = np.ascontiguousarray(rgb)
    return data.shape, data.dtype.str, hashlib.blake2b(data.data, digest_size=16).hexdigest()


@dataclass
class _Prefetched:
    """One slice's image embedding from a batched encoder pass, ready for ``SamPredictor``."""

    features: torch.Tensor  # (1, C, h, w) float32 on the model's device
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    seconds: float  # its share of the batch's encoding time (batch time / slices in the batch)
    batch_size: int
    peak_memory_bytes: int | None  # the batch's peak (see _peak_memory_bytes)
    charged: bool = False  # its seconds were already reported by one generate() call


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
        self._prefetched: dict[tuple, _Prefetched] = {}

    @classmethod
    def check_config(cls, cfg: SamConfig) -> None:
        """Raise before any model is loaded if this adapter cannot run ``cfg``."""
        check_device_options(cfg)
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

    @property
    def prefetch_size(self) -> int:
        """How many slices the runner should hand to :meth:`prefetch` at a time."""
        return self.cfg.encoder_batch

    def prefetch(self, rgbs: list[np.ndarray]) -> None:
        """Encode ``rgbs`` ahead of their ``generate`` calls, ``cfg.encoder_batch`` slices per forward pass.

        Each slice is prepared as ``SamPredictor.set_image`` does (``ResizeLongestSide`` to the
        encoder's size, ``model.preprocess`` normalisation and padding), the batch is stacked and
        encoded once, and each embedding is stored under :func:`image_key` of its slice. When the
        AMG then calls ``set_image`` on a stored slice, its embedding, original and input sizes are
        installed instead of encoding again (the AMG's first crop is the whole slice; crop layers
        other than that are encoded as usual). The store holds the slices of the latest call only:
        each call replaces it (``prefetch([])`` empties it).

        Timing: the batch's wall time (preparation and encoder, device synchronised) divided by the
        number of slices in it is each slice's ``encode_seconds``, reported by the first
        ``generate`` that uses it; later calls on the same slice (sam-seeded, one per target) report
        0, as no encoder ran for them. So the sum of ``encode_seconds`` over a run is the encoder
        time actually spent. These seconds are spent in ``prefetch``, outside ``generate``'s wall time.
        """
        import torch

        self._prefetched = {}
        unique: dict[tuple, np.ndarray] = {}
        for rgb in rgbs:
            self._check_rgb(rgb, self.name)
            unique.setdefault(image_key(rgb), rgb)
        items = list(unique.items())
        model, device = self.loaded.model, self.loaded.device
        transform = _resize_transform(model)
        step = self.cfg.encoder_batch
        for start in range(0, len(items), step):
            chunk = items[start : start + step]
            _reset_peak_memory(device)
            self.synchronize()
            t0 = time.perf_counter()
            inputs, sizes = [], []
            for _, rgb in chunk:
                image = rgb if model.image_format == "RGB" else rgb[..., ::-1]
                resized = torch.as_tensor(transform.apply_image(image), device=device)
                resized = resized.permute(2, 0, 1).contiguous()[None, :, :, :]
                sizes.append(((int(rgb.shape[0]), int(rgb.shape[1])), tuple(int(s) for s in resized.shape[-2:])))
                inputs.append(model.preprocess(resized))
            with torch.no_grad(), autocast(device, self.cfg.precision):
                features = model.image_encoder(torch.cat(inputs))
            features = features.float()
            self.synchronize()
            share = (time.perf_counter() - t0) / len(chunk)
            peak = _peak_memory_bytes(device)
            for i, ((key, _), (original_size, input_size)) in enumerate(zip(chunk, sizes)):
                self._prefetched[key] = _Prefetched(
                    features[i : i + 1], original_size, input_size, share, len(chunk), peak
                )

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

    def _timed_generate(self, amg, rgb: np.ndarray, info: dict[str, Any]) -> tuple[list[dict[str, Any]], float]:
        """The AMG's records and the seconds spent in its predictor's ``set_image`` (image encoding),
        with the device synchronised before each clock read.

        ``set_image`` on a prefetched slice installs the stored embedding and counts its share of
        the batch's time (see :meth:`prefetch`); ``info`` gets ``encoder_batch`` (the slices encoded
        with it) and the batch's peak memory as ``prefetch_peak_memory_bytes``. Other images are
        encoded by segment-anything under ``cfg.precision``, the embedding cast to float32.
        """
        encode = [0.0]
        predictor = amg.predictor
        set_image = predictor.set_image
        precision, device = self.cfg.precision, self.loaded.device

        def timed_set_image(image: np.ndarray, image_format: str = "RGB") -> None:
            self.synchronize()
            t0 = time.perf_counter()
            entry = self._prefetched.get(image_key(image)) if image_format == "RGB" else None
            if entry is not None:
                predictor.reset_image()
                predictor.original_size = entry.original_size
                predictor.input_size = entry.input_size
                predictor.features = entry.features
                predictor.is_image_set = True
                encode[0] += 0.0 if entry.charged else entry.seconds
                entry.charged = True
                info["encoder_batch"] = entry.batch_size
                info["prefetch_peak_memory_bytes"] = entry.peak_memory_bytes
                return
            with autocast(device, precision):
                set_image(image, image_format)
            if predictor.features.dtype != _float32():
                predictor.features = predictor.features.float()
            self.synchronize()
            encode[0] += time.perf_counter() - t0

        predictor.set_image = timed_set_image
        if precision != "fp32":
            predictor.predict_torch = partial(_predict_torch_autocast, predictor, precision)
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
                records, encode_seconds = self._timed_generate(self._make_amg(ppb, point_grids), rgb, info)
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
            masks = np.zeros((0, H, W), dtype=bool)
        else:
            masks = np.stack([np.asarray(r["segmentation"], dtype=bool) for r in records])
        if masks.shape[1:] != (H, W):
            raise ValueError(f"{self.name}: masks of shape {masks.shape[1:]} for a slice of shape {(H, W)}")
        info["peak_memory_bytes"] = _peak_memory_bytes(self.loaded.device)
        return Proposals(masks, encode_seconds, info)


class SamAutoGenerator(_SamAmgGenerator):
    """``sam-auto``: SAM's regular ``points_per_side`` grid over the whole slice (ignores the truth)."""

    name = "sam-auto"
    uses_truth = False

    def generate(self, rgb: np.ndarray, truth: np.ndarray) -> Proposals:
        """All segments the AMG keeps for the slice, as a bool (N, H, W) stack in its order.

        ``info["peak_memory_bytes"]``: this call's peak (CUDA), or the process's peak RSS (CPU).
        """
        self._check_rgb(rgb, self.name)
        _reset_peak_memory(self.loaded.device)
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
        segments. ``info["n_seeds"]`` is the number of distinct seeds; ``info["peak_memory_bytes"]``
        as for sam-auto.
        """
        H, W = self._check_rgb(rgb, self.name)
        _reset_peak_memory(self.loaded.device)
        truth = np.asarray(truth)
        if truth.shape != (H, W):
            raise ValueError(f"{self.name}: ground truth of shape {truth.shape} for a slice of shape {(H, W)}")
        pixels = seed_pixels(truth, self.cfg.seed_grid)
        if len(pixels) == 0:
            return empty_proposals((H, W), n_seeds=0, peak_memory_bytes=_peak_memory_bytes(self.loaded.device))
        return self._run(rgb, [to_sam_points(pixels, (H, W))], n_seeds=len(pixels))


def _float32():
    import torch

    return torch.float32


def _resize_transform(model: torch.nn.Module):
    """segment-anything's ``ResizeLongestSide`` to the model's encoder input size (as SamPredictor)."""
    from segment_anything.utils.transforms import ResizeLongestSide

    return ResizeLongestSide(model.image_encoder.img_size)


def _predict_torch_autocast(
    predictor,
    precision: str,
    point_coords,
    point_labels,
    boxes=None,
    mask_input=None,
    multimask_output: bool = True,
    return_logits: bool = False,
):
    """``SamPredictor.predict_torch`` with the mask decoder under ``precision`` autocast.

    The same steps as segment-anything's (prompt encoder, mask decoder, ``postprocess_masks``,
    threshold); the prompt encoder stays float32 (cheap, and its sin/cos positional encoding is
    precision-sensitive), and the decoder's low-resolution logits and IoU predictions are cast to
    float32 before the upscaling, so everything downstream (stability score, thresholds, NMS) sees
    float32 as with ``fp32``.
    """
    import torch

    if not predictor.is_image_set:
        raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
    model = predictor.model
    points = (point_coords, point_labels) if point_coords is not None else None
    with torch.no_grad():
        sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        image_pe = model.prompt_encoder.get_dense_pe()
        with autocast(str(predictor.device), precision):
            low_res_masks, iou_predictions = model.mask_decoder(
                image_embeddings=predictor.features,
                image_pe=image_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
        low_res_masks, iou_predictions = low_res_masks.float(), iou_predictions.float()
        masks = model.postprocess_masks(low_res_masks, predictor.input_size, predictor.original_size)
    if not return_logits:
        masks = masks > model.mask_threshold
    return masks, iou_predictions, low_res_masks


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
