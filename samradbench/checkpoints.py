"""Reading SAM checkpoints safely: CPU-first, unwrapped, architecture-checked, loaded strictly.

segment-anything's own ``build_sam_*(checkpoint=...)`` calls ``torch.load`` without ``map_location``
(a GPU-saved file fails on a CPU machine, B17) and loads whatever the file holds. Here a checkpoint
is read once with ``weights_only=True`` onto the CPU, unwrapped from training containers
(``{"model": ...}``, ``"module."`` prefixes, B20), checked against the requested architecture before
any model is built (B18), and loaded with ``strict=True`` — never silently onto random weights.
Every failure is one :class:`CheckpointError` line naming the file and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError

if TYPE_CHECKING:  # torch is imported lazily: reading this module must stay cheap
    import torch

#: ``image_encoder.patch_embed.proj.weight`` has shape (embed_dim, 3, 16, 16); its width names the ViT.
PATCH_EMBED_KEY = "image_encoder.patch_embed.proj.weight"
ARCHITECTURE_BY_WIDTH = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
#: Keys under which training scripts keep the weights, tried in this order.
CONTAINER_KEYS = ("state_dict", "model", "model_state_dict")
UNSAFE_PICKLE_HINT = "allow_unsafe_pickle=True (command line: --sam-allow-unsafe-pickle)"
_SHOW_KEYS = 5


def load_state_dict(path: str | Path, *, allow_unsafe_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The checkpoint's weights as a flat ``{name: CPU tensor}`` dict ready for ``strict=True`` loading.

    Reads with ``map_location="cpu"`` so a file saved from CUDA loads on any machine (B17), and with
    ``weights_only=True`` unless ``allow_unsafe_pickle`` (full unpickling can run arbitrary code).
    Unwraps the container keys of :data:`CONTAINER_KEYS` (at most two levels, e.g.
    ``{"model": {"state_dict": ...}}``) and strips a DataParallel ``"module."`` prefix (B20).
    Raises :class:`CheckpointError` for a missing, empty, truncated or non-PyTorch file (an HTML page
    saved as ``.pth``), a file that needs unsafe unpickling, or contents that are not a state dict.
    """
    import torch
    from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found (expected a SAM .pth file)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not allow_unsafe_pickle)
    except Exception as exc:  # torch raises RuntimeError/EOFError/UnpicklingError/...: one line instead
        raise CheckpointError(_explain_load_failure(path, exc)) from None
    state = _unwrap(obj, path)
    state = dict(state)  # a plain, mutable copy; the prefix is stripped in place
    consume_prefix_in_state_dict_if_present(state, "module.")
    return state


def _explain_load_failure(path: Path, exc: BaseException) -> str:
    """One line saying why ``torch.load`` could not read ``path``: HTML page, unsafe pickle, or corrupt."""
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")):
        return (
            f"checkpoint {path.name} is an HTML/XML page, not a PyTorch file "
            "(a failed or login-walled download?); expected a SAM .pth state dict"
        )
    text = str(exc)
    unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if unsafe:
        return (
            f"checkpoint {path.name} holds Python objects beyond tensors ({unsafe.group(1)}); "
            f"loading it needs full unpickling, which can run arbitrary code. If you trust the file, "
            f"pass {UNSAFE_PICKLE_HINT}"
        )
    if not head:
        return f"checkpoint {path.name} is empty (0 bytes); expected a SAM .pth state dict"
    first_line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    first_sentence = first_line.split(". ")[0].rstrip(".")[:200]
    reason = f"{type(exc).__name__}: {first_sentence}" if first_sentence else type(exc).__name__
    return f"checkpoint {path.name} cannot be read by torch.load (truncated or corrupt?): {reason}"


def _unwrap(obj: Any, path: Path) -> Mapping[str, Any]:
    """The state dict inside ``obj``: itself if every value is a tensor, else a container key's value."""
    import torch

    for _ in range(3):  # the object itself, then up to two nested containers
        if isinstance(obj, torch.nn.Module):  # only reachable with allow_unsafe_pickle
            obj = obj.state_dict()
        if not isinstance(obj, Mapping):
            raise CheckpointError(
                f"checkpoint {path.name} holds a {type(obj).__name__}, expected a dict of tensors (a state dict)"
            )
        if not obj:
            raise CheckpointError(f"checkpoint {path.name} holds an empty dict, expected a state dict of tensors")
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        inner = next((obj[k] for k in CONTAINER_KEYS if k in obj), None)
        if inner is None:
            non_tensor = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)][:_SHOW_KEYS]
            raise CheckpointError(
                f"checkpoint {path.name} is not a state dict: entries {non_tensor} are not tensors "
                f"and none of the container keys {list(CONTAINER_KEYS)} is present"
            )
        obj = inner
    raise CheckpointError(f"checkpoint {path.name}: no state dict found within {list(CONTAINER_KEYS)} nesting")


def embedding_width(state_dict: Mapping[str, Any]) -> int | None:
    """The image encoder's embedding width (patch-embedding output channels), or None if absent."""
    w = state_dict.get(PATCH_EMBED_KEY)
    return None if w is None or getattr(w, "ndim", 0) < 1 else int(w.shape[0])


def infer_architecture(state_dict: Mapping[str, Any], source: str | Path | None = None) -> str:
    """``vit_b`` / ``vit_l`` / ``vit_h`` from the patch-embedding width (768 / 1024 / 1280).

    Raises :class:`CheckpointError` when the key is absent (not a SAM image encoder) or the width
    belongs to no SAM architecture.
    """
    name = f"checkpoint {Path(source).name}" if source is not None else "state dict"
    width = embedding_width(state_dict)
    if width is None:
        first = list(state_dict)[:_SHOW_KEYS]
        raise CheckpointError(f"{name} has no {PATCH_EMBED_KEY} (not a SAM checkpoint?); first keys: {first}")
    if width not in ARCHITECTURE_BY_WIDTH:
        known = ", ".join(f"{w}→{a}" for w, a in ARCHITECTURE_BY_WIDTH.items())
        raise CheckpointError(f"{name} has embedding dim {width}, which matches no SAM architecture ({known})")
    return ARCHITECTURE_BY_WIDTH[width]


def check_architecture(state_dict: Mapping[str, Any], model_type: str, path: str | Path) -> None:
    """Raise a one-line :class:`CheckpointError` when the weights are not ``model_type``'s (B18).

    Checked before a model is built, instead of hundreds of "size mismatch" lines from torch.
    """
    found = infer_architecture(state_dict, path)
    if found != model_type:
        raise CheckpointError(
            f"checkpoint {Path(path).name} looks like {found} (embedding dim {embedding_width(state_dict)}), "
            f"model_type is {model_type}"
        )


def load_weights_strict(model: torch.nn.Module, state_dict: Mapping[str, Any], source: str | Path) -> None:
    """Load ``state_dict`` into ``model`` with ``strict=True``, or fail listing what differs (B20).

    Missing and unexpected keys, then shape mismatches, are reported (first few of each, with
    counts) before torch would raise its own multi-page message; a model is never left on partly
    random weights.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    name = Path(source).name
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {name} does not match the model's parameters: "
            f"{len(missing)} missing (e.g. {missing[:_SHOW_KEYS]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:_SHOW_KEYS]})"
        )
    mismatched = [
        f"{k}: {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if mismatched:
        raise CheckpointError(
            f"checkpoint {name} has {len(mismatched)} tensors of the wrong shape, e.g. {mismatched[:_SHOW_KEYS]}"
        )
    model.load_state_dict(state_dict, strict=True)
