"""SPEC §6: the results document — row schema, summaries, strict JSON written atomically.

One JSON document per run. It is rewritten (temporary file + fsync + rename) every time a volume
finishes, so an interrupted run keeps every finished volume and a reader never sees half a file.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .errors import ConfigError
from .fileio import atomic_open
from .generators.base import cpu_name

SCHEMA_VERSION = 1

# The keys that identify a summary row; a cases row adds "volume".
SUMMARY_KEYS = ("dataset", "target", "generator", "heuristic", "model_label")


def to_jsonable(obj: Any) -> Any:
    """Native JSON types only: numpy scalars/arrays → Python, NaN/±inf → None, Path → str."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"cannot write {type(obj).__name__} to the results JSON: {obj!r}")


def dumps_strict(doc: Any) -> str:
    """Strict JSON text (no NaN/Infinity tokens; they were turned into null first)."""
    return json.dumps(to_jsonable(doc), allow_nan=False, indent=1, sort_keys=False) + "\n"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-strict JSON constant {name} in results")


def loads_strict(text: str) -> Any:
    """Parse results JSON, refusing NaN/Infinity the way strict parsers do."""
    return json.loads(text, parse_constant=_reject_constant)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a mix."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str = "cpu", device_name: str | None = None, cwd: Path | None = None) -> dict:
    """What produced the numbers: versions, device (``cpu`` unless a model runs elsewhere) and its
    name, git commit, host."""
    if device_name is None and device == "cpu":
        device_name = cpu_name()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "samradbench": _version("samradbench"),
        "numpy": np.__version__,
        "torch": _version("torch"),
        "torchvision": _version("torchvision"),
        "segment_anything": _version("segment-anything"),
        "scikit_image": _version("scikit-image"),
        "nibabel": _version("nibabel"),
        "device": device,
        "device_name": device_name,
        "git_commit": _git_commit(cwd),
        "started_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"dice_mean": None, "dice_median": None, "dice_q1": None, "dice_q3": None}
    a = np.asarray(values, dtype=np.float64)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {"dice_mean": float(a.mean()), "dice_median": float(med), "dice_q1": float(q1), "dice_q3": float(q3)}


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def summarise(cases: Iterable[dict], absent: Iterable[dict] = ()) -> list[dict]:
    """One summary row per dataset × target × generator × heuristic (× model label).

    Null metrics (undefined) are left out of the averages and counted in ``n_null``; volumes that
    lack the target are counted in ``n_absent``. Seconds per slice is the generator's total wall
    time over the slices it ran on.
    """
    n_absent: dict[tuple, int] = {}
    for a in absent:
        k = (a["dataset"], a["target"], a["generator"])
        n_absent[k] = n_absent.get(k, 0) + 1
    groups: dict[tuple, list[dict]] = {}
    for row in cases:
        groups.setdefault(tuple(row[k] for k in SUMMARY_KEYS), []).append(row)
    out = []
    for key, rows in groups.items():
        dice = [r["dice"] for r in rows if r["dice"] is not None]
        gen_seconds = sum(r["generator_seconds"] for r in rows)
        gen_slices = sum(r["n_slices_generated"] for r in rows)
        enc = [r["encode_seconds"] for r in rows if r.get("encode_seconds") is not None]
        summary = dict(zip(SUMMARY_KEYS, key))
        summary.update(
            model=rows[0].get("model"),  # the full identity behind model_label (one per group)
            n_volumes=len(rows),
            n_null=len(rows) - len(dice),
            n_absent=n_absent.get((summary["dataset"], summary["target"], summary["generator"]), 0),
            **_quantiles(dice),
            dice_pos_median=_median([r["dice_pos"] for r in rows if r["dice_pos"] is not None]),
            fraction_detected_median=_median(
                [r["fraction_detected"] for r in rows if r["fraction_detected"] is not None]
            ),
            n_slices_generated=gen_slices,
            seconds_per_slice=(gen_seconds / gen_slices) if gen_slices else None,
            encode_seconds_per_slice=(sum(enc) / gen_slices) if (enc and gen_slices) else None,
            peak_memory_bytes=max((r["peak_memory_bytes"] for r in rows if r.get("peak_memory_bytes") is not None),
                                  default=None),
        )
        out.append(summary)
    return out


# config entries that do not decide whether a run can be resumed: filled in while a run works, or
# checked volume by volume instead (which volumes, the resolved device through each generator's
# description), or without effect on any number (the cache)
VOLATILE_CONFIG_KEYS = ("generator_descriptions", "cache_stats", "cache_dir", "max_volumes")


def _resume_relevant(config: dict) -> dict:
    """The part of a run's configuration that an earlier run must share to be resumed."""
    out = {k: v for k, v in to_jsonable(config).items() if k not in VOLATILE_CONFIG_KEYS}
    if isinstance(out.get("sam"), dict):
        out["sam"] = {k: v for k, v in out["sam"].items() if k != "device"}
    return out


def _row_key(row: dict) -> tuple:
    return (row["dataset"], row["generator"], row["volume"], row["target"], row["heuristic"])


@dataclass
class ResultsDocument:
    """The run's JSON document, flushed to ``path`` after every change."""

    path: Path
    environment: dict
    config: dict
    cases: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    absent: list[dict] = field(default_factory=list)  # {dataset, target, generator, volume}: target not in volume
    status: str = "running"  # 'running' while volumes are added; 'complete' or 'interrupted' at the end
    resume_note: str = ""  # what --resume found (set by resume())

    def as_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "status": self.status,
            "environment": self.environment,
            "config": self.config,
            "cases": self.cases,
            "summary": summarise(self.cases, self.absent),
            "failures": self.failures,
            "absent": self.absent,
        }

    def add_volume(self, rows: list[dict], absent: list[dict] = ()) -> None:
        """Record one finished volume (its rows and the targets it lacks) and flush; rows it replaces
        (same dataset, generator, volume, target and heuristic, e.g. from a resumed run) go."""
        new = to_jsonable(list(rows))
        keys = {_row_key(r) for r in new}
        self.cases = [r for r in self.cases if _row_key(r) not in keys] + new
        gone = {(a["dataset"], a["generator"], a["volume"], a["target"]) for a in absent}
        self.absent = [a for a in self.absent if (a["dataset"], a["generator"], a["volume"], a["target"]) not in gone]
        self.absent.extend(to_jsonable(list(absent)))
        self.flush()

    def add_failure(self, **failure: Any) -> None:
        self.failures.append(to_jsonable(failure))
        self.flush()

    def flush(self) -> None:
        write_atomic(self.path, dumps_strict(self.as_dict()))

    @classmethod
    def resume(cls, path: Path, environment: dict, config: dict) -> "ResultsDocument":
        """A document that keeps the finished rows of an earlier run at ``path``, which must have had
        the same configuration; a fresh one when ``path`` does not exist yet. Anything else — an
        unreadable file, another schema, another configuration — is a :class:`ConfigError` that says
        what differs, so the earlier results are never silently replaced. Earlier failures are not
        kept: they are retried."""
        doc = cls(Path(path), environment, config)
        try:
            old = loads_strict(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            doc.resume_note = f"nothing to resume: {path} does not exist; starting afresh"
            return doc
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path} is not a readable results document ({exc})") from None
        if not isinstance(old, dict) or "cases" not in old or not isinstance(old.get("config"), dict):
            raise ConfigError(f"{path} is JSON but not a samradbench results document")
        if old.get("schema_version") != SCHEMA_VERSION:
            raise ConfigError(f"{path} has results schema {old.get('schema_version')}, this samradbench writes "
                              f"{SCHEMA_VERSION}")
        differ = config_differences(_resume_relevant(old.get("config") or {}), _resume_relevant(config))
        if differ:
            raise ConfigError(f"{path} was made with another configuration: {'; '.join(differ)}")
        descriptions = (old.get("config") or {}).get("generator_descriptions") or {}
        doc.config["generator_descriptions"] = dict(descriptions)
        doc.cases = list(old.get("cases") or [])
        doc.absent = list(old.get("absent") or [])
        volumes = {(r["dataset"], r["generator"], r["volume"]) for r in doc.cases}
        doc.resume_note = (f"{len(volumes)} finished volume(s) × generator in {path} can be reused "
                           "(each only if its image and label files are unchanged)")
        return doc


def config_differences(old: Any, new: Any, where: str = "") -> list[str]:
    """``'sam.points_per_side: 4 → 8'`` for every leaf where two configurations differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(old.keys() | new.keys()):
            out += config_differences(old.get(k), new.get(k), f"{where}.{k}" if where else str(k))
        return out
    return [] if old == new else [f"{where}: {json.dumps(old)} → {json.dumps(new)}"]
