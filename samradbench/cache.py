"""On-disk cache of generator outputs (issue 4 item 2): a rerun, or a run that adds a heuristic or a
target, makes no model call for a slice it has seen.

Use :meth:`GenerationCache.generate` as :func:`samradbench.runner.run_volume`'s ``generate``
argument::

    cache = GenerationCache(Path(".samradbench-cache"))
    run_volume(volume, targets, generator, heuristics, options, generate=cache.generate)

**Key.** SHA-256 (:func:`cache_key`) over, length-framed so no two parts can run into each other:

- :data:`CACHE_FORMAT_VERSION`;
- the generator's ``describe()`` as canonical JSON (sorted keys) — its model (architecture, weights'
  SHA-256 or ``random-init`` seed, device) and its full configuration;
- its ``name`` and ``uses_truth``;
- the installed versions of :data:`KEY_LIBRARIES` (:func:`library_versions`; ``None`` if absent);
- a digest of the generator's own source: the modules under ``samradbench/generators/``, plus
  ``seeds.py`` and ``config.py``, plus the module that defines the generator's class
  (:func:`generator_code_digest`). An editable install keeps its version number while its code
  changes; this keeps an edited adapter from being served its old outputs;
- the preprocessed slice exactly as the generator receives it: the RGB array's shape, dtype and bytes;
- only for generators with ``uses_truth``: the truth slice (shape and packed bits). For the others
  the truth is not part of the key: the same slice scored against another target is a hit.

Change any part and the key changes, so a stale entry is never looked up, let alone served.

**Entries.** ``<root>/<key[:2]>/<key>.npz`` (zip-deflated ``.npz``, no pickles) of two arrays:
``masks``, the ``(N, H, W)`` boolean stack flattened and ``np.packbits``-packed (8 pixels a byte,
then deflated), and ``meta``, a JSON string with the format version, the key itself, the stack's
shape, the generator's wall ``seconds`` and ``encode_seconds`` of the original call, and its
``info``. An entry is written to a temporary file in the same folder and moved into place with
``os.replace``, so a reader sees a whole entry or none (concurrent writers of one key write the same
content). It is not fsynced: a torn entry after a power cut is just a corrupt entry. A result that
cannot be stored (full disk, read-only folder) is counted in ``write_errors`` and the run goes on.

**Reading.** An entry that cannot be read (truncated, garbage, wrong fields, a key or format that
does not match, masks whose shape differs from the slice's) counts in ``corrupt``, is treated as a
miss, and is overwritten by the fresh result — never a crash, never a wrong answer.

**Timings on a hit.** A hit returns the *stored* seconds of the call that produced the masks, not
the microseconds of the lookup: a generator's cost is a property of the generator (and of the
device that ran it — the device is part of ``describe()``, hence of the key), and the results'
per-slice timings keep describing the model, whether or not this run paid for it. ``proposals.info["cache"]`` says ``"hit"`` or ``"miss"``; the counters
(``model_calls``, ``hits``, ``misses``, ``corrupt``, and :meth:`GenerationCache.stats`) say what
this run actually did.

The cache never evicts; delete the folder to empty it.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import io
import json
import math
import os
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .fileio import atomic_open
from .generators.base import Generator, Proposals
from .selection import as_segment_stack

#: Bumped whenever the key recipe or the entry layout changes: old entries then simply miss.
CACHE_FORMAT_VERSION = 1

#: Distributions whose versions are part of every key.
KEY_LIBRARIES = ("samradbench", "numpy", "torch", "torchvision", "segment-anything", "scikit-image")

#: Default cache folder name, relative to the pytest rootdir (what ``--cache-dir`` should default to).
DEFAULT_CACHE_DIR = ".samradbench-cache"

_PACKAGE_DIR = Path(__file__).resolve().parent
_GENERATOR_SOURCES = ("generators/*.py", "seeds.py", "config.py")

GenerateFn = Callable[[Generator, np.ndarray, "np.ndarray | None"], "tuple[Proposals, float]"]


# ----------------------------------------------------------------------------- key


@functools.lru_cache(maxsize=1)
def _installed_versions() -> tuple[tuple[str, str | None], ...]:
    out = []
    for name in KEY_LIBRARIES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, None))
    return tuple(out)


def library_versions() -> dict[str, str | None]:
    """``{distribution: version or None}`` for :data:`KEY_LIBRARIES` (read once per process)."""
    return dict(_installed_versions())


def _digest_files(paths) -> str:
    h = hashlib.sha256()
    for p in sorted({Path(p).resolve() for p in paths}):
        try:
            data = p.read_bytes()
        except OSError:
            data = b"<unreadable>"
        name = os.fsencode(p.name)
        h.update(len(name).to_bytes(8, "little") + name + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _code_digest_for(extra: str | None) -> str:
    files = [p for pattern in _GENERATOR_SOURCES for p in _PACKAGE_DIR.glob(pattern)]
    if extra:
        files.append(Path(extra))
    return _digest_files(files)


def generator_code_digest(generator: Any) -> str:
    """SHA-256 of the source that turns a slice into proposals (see the module docstring)."""
    try:
        extra = inspect.getsourcefile(type(generator))
    except (TypeError, OSError):
        extra = None
    return _code_digest_for(extra)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    raise TypeError(f"generator description holds a {type(obj).__name__}, which has no canonical JSON form: {obj!r}")


def _lenient_default(obj: Any) -> Any:
    """For ``info`` only (not part of any key): anything without a JSON form is stored as its repr."""
    try:
        return _json_default(obj)
    except TypeError:
        return repr(obj)


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, tuples as lists, Paths as strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default, ensure_ascii=True)


def _framed(h: "hashlib._Hash", data: bytes | memoryview) -> None:
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def cache_key(
    generator_description: dict,
    rgb: np.ndarray,
    truth: np.ndarray | None,
    uses_truth: bool,
    *,
    versions: dict[str, str | None] | None = None,
    code: str | None = None,
    name: str | None = None,
) -> str:
    """The hex SHA-256 key of one generator call (see the module docstring for what enters it).

    ``versions`` defaults to :func:`library_versions`; ``code`` (a source digest, see
    :func:`generator_code_digest`) and ``name`` are optional parts that :class:`GenerationCache`
    always supplies. ``truth`` enters the key only when ``uses_truth`` is true.
    """
    rgb = np.ascontiguousarray(rgb)
    header = {
        "format": CACHE_FORMAT_VERSION,
        "generator": generator_description,
        "name": name,
        "uses_truth": bool(uses_truth),
        "libraries": library_versions() if versions is None else versions,
        "code": code,
        "rgb": {"shape": list(rgb.shape), "dtype": rgb.dtype.str},
    }
    truth_bits = b""
    if uses_truth:
        if truth is None:
            header["truth"] = None
        else:
            t = np.asarray(truth) != 0
            header["truth"] = {"shape": list(t.shape)}
            truth_bits = np.packbits(t, axis=None).tobytes()
    h = hashlib.sha256()
    _framed(h, canonical_json(header).encode("ascii"))
    _framed(h, memoryview(rgb).cast("B") if rgb.size else b"")
    _framed(h, truth_bits)
    return h.hexdigest()


# ----------------------------------------------------------------------------- entries


class CorruptEntry(Exception):
    """An entry that exists but cannot be trusted; the cache treats it as a miss."""


def pack_masks(masks: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A boolean (N, H, W) stack as (flat ``np.packbits`` bytes, shape); the last byte is zero-padded."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be an (N, H, W) stack, got shape {masks.shape}")
    return np.packbits(masks, axis=None), tuple(int(s) for s in masks.shape)


def unpack_masks(packed: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`pack_masks`; :class:`CorruptEntry` when the byte count does not fit ``shape``."""
    n = int(np.prod(shape, dtype=np.int64))
    if packed.dtype != np.uint8 or packed.ndim != 1 or packed.size != (n + 7) // 8:
        raise CorruptEntry(f"{packed.size} packed bytes ({packed.dtype}) do not hold masks of shape {shape}")
    return np.unpackbits(packed, count=n).astype(bool).reshape(shape)


def write_entry(path: Path, key: str, masks: np.ndarray, seconds: float, encode_seconds: float | None,
                info: dict) -> None:
    """Store one call's outputs at ``path`` atomically (temporary file in the same folder + os.replace)."""
    packed, shape = pack_masks(masks)
    meta = {
        "format": CACHE_FORMAT_VERSION,
        "key": key,
        "shape": list(shape),
        "seconds": float(seconds),
        "encode_seconds": None if encode_seconds is None else float(encode_seconds),
        "info": info,
    }
    fields = {"masks": packed, "meta": np.array(json.dumps(meta, sort_keys=True, default=_lenient_default))}
    with atomic_open(path, "wb", fsync=False) as fh:  # a torn entry is merely corrupt: a miss
        np.savez_compressed(fh, **fields)


def _is_seconds(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def read_entry(path: Path, key: str, slice_shape: tuple[int, int]) -> tuple[Proposals, float]:
    """The stored ``(Proposals, seconds)`` at ``path``, checked against ``key`` and the slice's (H, W).

    Raises FileNotFoundError when there is no entry, :class:`CorruptEntry` for anything untrustworthy.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CorruptEntry(f"unreadable: {exc}") from exc
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            f = {name: z[name] for name in z.files}
    except Exception as exc:  # any way a damaged zip/npy can fail to parse (BadZipFile, ValueError, zlib.error, EOFError, ...)
        raise CorruptEntry(f"not a readable entry: {type(exc).__name__}: {exc}") from exc
    try:
        meta = json.loads(str(f["meta"]))
        if not isinstance(meta, dict):
            raise CorruptEntry("stored meta is not a JSON object")
        if meta["format"] != CACHE_FORMAT_VERSION:
            raise CorruptEntry(f"format {meta['format']!r}, expected {CACHE_FORMAT_VERSION}")
        if meta["key"] != key:
            raise CorruptEntry("stored key differs from the file name's key")
        shape = meta["shape"]
        if not (isinstance(shape, list) and len(shape) == 3
                and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
            raise CorruptEntry(f"bad stored shape {shape!r}")
        shape = tuple(shape)
        if shape[1:] != tuple(slice_shape):
            raise CorruptEntry(f"stored masks of shape {shape[1:]} for a slice of shape {tuple(slice_shape)}")
        masks = unpack_masks(f["masks"], shape)
        seconds, encode, info = meta["seconds"], meta["encode_seconds"], meta["info"]
        if not _is_seconds(seconds) or not (encode is None or _is_seconds(encode)):
            raise CorruptEntry(f"bad stored seconds {seconds!r} / encode_seconds {encode!r}")
        if not isinstance(info, dict):
            raise CorruptEntry("stored info is not a JSON object")
    except CorruptEntry:
        raise
    except (KeyError, ValueError, TypeError) as exc:
        raise CorruptEntry(f"bad fields: {type(exc).__name__}: {exc}") from exc
    return Proposals(masks, encode, info), seconds


# ----------------------------------------------------------------------------- cache


def _default_generate(generator: Generator, rgb: np.ndarray, truth: np.ndarray | None) -> tuple[Proposals, float]:
    from .runner import _timed_generate

    return _timed_generate(generator, rgb, truth)


class GenerationCache:
    """A folder of generator outputs keyed by everything that determines them.

    ``generate`` (also the instance's ``__call__``) has run_volume's ``generate`` signature.
    ``inner`` is the call made on a miss (default: the runner's timed ``generator.generate`` with the
    device synchronised around the clock reads).

    Counters: ``model_calls`` (calls of ``inner``), ``hits``, ``misses`` (every call that was not a
    hit, corrupt ones included), ``corrupt`` (entries found damaged and replaced), ``write_errors``
    (results that could not be stored: the run goes on, with one RuntimeWarning), ``generator_seconds``
    (seconds ``inner`` reported this run) and ``saved_seconds`` (stored seconds served by hits).
    """

    def __init__(self, root: Path | str, inner: GenerateFn | None = None):
        self.root = Path(root)
        self.inner = inner or _default_generate
        self.model_calls = 0
        self.hits = 0
        self.misses = 0
        self.corrupt = 0
        self.generator_seconds = 0.0
        self.saved_seconds = 0.0
        self.write_errors = 0
        self.last_error: str | None = None  # why the latest corrupt entry was rejected or write failed

    def path_for(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def key_for(self, generator: Generator, rgb: np.ndarray, truth: np.ndarray | None) -> str:
        return cache_key(
            generator.describe(), rgb, truth, generator.uses_truth,
            code=generator_code_digest(generator), name=generator.name,
        )

    def has(self, generator: Generator, rgb: np.ndarray, truth: np.ndarray | None) -> bool:
        """Whether an entry exists for this call (it may still prove corrupt when read)."""
        return self.path_for(self.key_for(generator, np.asarray(rgb), truth)).is_file()

    def generate(self, generator: Generator, rgb: np.ndarray, truth: np.ndarray | None) -> tuple[Proposals, float]:
        rgb = np.asarray(rgb)
        slice_shape = tuple(rgb.shape[:2])
        key = self.key_for(generator, rgb, truth)
        path = self.path_for(key)
        try:
            hit, seconds = read_entry(path, key, slice_shape)
        except FileNotFoundError:
            pass
        except CorruptEntry as exc:
            self.corrupt += 1
            self.last_error = f"{path}: {exc}"
        else:
            self.hits += 1
            self.saved_seconds += seconds
            hit.info["cache"] = "hit"
            return hit, seconds

        self.misses += 1
        self.model_calls += 1
        proposals, seconds = self.inner(generator, rgb, truth)
        self.generator_seconds += seconds
        # the same normalisation (and the same errors: RLE records, wrong shapes) as run_volume's
        masks = as_segment_stack(proposals.masks, slice_shape)
        info = {k: v for k, v in dict(proposals.info).items() if k != "cache"}
        try:
            write_entry(path, key, masks, seconds, proposals.encode_seconds, info)
        except OSError as exc:  # full disk, read-only folder, a directory in the way: the run goes on
            self.write_errors += 1
            self.last_error = f"{path}: could not store: {exc}"
            if self.write_errors == 1:
                warnings.warn(f"samradbench cache: {self.last_error} (further write errors are only counted)",
                              RuntimeWarning, stacklevel=2)
        return Proposals(masks, proposals.encode_seconds, {**info, "cache": "miss"}), seconds

    __call__ = generate

    def stats(self) -> dict[str, Any]:
        """JSON-ready counters, e.g. for the results' config or a progress line."""
        return {
            "cache_dir": str(self.root),
            "model_calls": self.model_calls,
            "hits": self.hits,
            "misses": self.misses,
            "corrupt": self.corrupt,
            "write_errors": self.write_errors,
            "generator_seconds": self.generator_seconds,
            "saved_seconds": self.saved_seconds,
        }


__all__ = [
    "CACHE_FORMAT_VERSION",
    "DEFAULT_CACHE_DIR",
    "KEY_LIBRARIES",
    "CorruptEntry",
    "GenerationCache",
    "cache_key",
    "canonical_json",
    "generator_code_digest",
    "library_versions",
    "pack_masks",
    "read_entry",
    "unpack_masks",
    "write_entry",
]
