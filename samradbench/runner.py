"""The one place that joins the pipeline: a volume goes through preprocessing, a generator, the
selection heuristics and the metrics, and comes out as result rows.

A generator runs once per slice per configuration: its segments are scored by every heuristic and,
when the generator does not read the ground truth, by every target too. Slices whose ground truth is
empty for every requested target cannot receive a selected segment under the oracle heuristics, so
by default the generator is not run there (``RunOptions.skip_empty_slices``); their counts are zero
by definition and the metrics are identical either way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .datasets import CaseRef, Dataset, Target, load_case, target_mask
from .errors import GenerationError
from .generators.base import Generator, Proposals
from .metrics import SliceCounts, slice_counts, volume_metrics
from .preprocess import normalise, slice_axis, to_rgb
from .selection import HEURISTICS, Heuristic, as_segment_stack, segment_ious, selected_indices, union_of


@dataclass(frozen=True)
class RunOptions:
    """Preprocessing and scheduling choices; written into the results' config."""

    normalisation: str = "volume"  # 'volume' | 'slice'
    ct_window: tuple[float, float] | None = None  # (level, width)
    axis_rule: str = "smallest"  # 'smallest' | 'spacing'
    skip_empty_slices: bool = True


@dataclass
class PreparedVolume:
    """A loaded case ready for slicing: uint8 intensities, integer labels, the slice axis."""

    ref: CaseRef
    image_u8: np.ndarray
    label: np.ndarray
    axis: int
    meta: dict

    @property
    def n_slices(self) -> int:
        return int(self.image_u8.shape[self.axis])


def prepare_volume(dataset: Dataset, ref: CaseRef, options: RunOptions) -> PreparedVolume:
    """Load ``ref`` (SPEC §1) and preprocess it (SPEC §2). Raises DataError on bad input."""
    case = load_case(dataset, ref)
    axis = slice_axis(case.image.shape, case.spacing, options.axis_rule)
    # a CT window means Hounsfield units: it applies to CT channels only, never to MRI
    window = options.ct_window if dataset.channel_name.strip().upper() == "CT" else None
    norm = normalise(case.image, options.normalisation, window, axis=axis)
    warnings = []
    if norm.nonfinite_voxels:
        warnings.append(f"{norm.nonfinite_voxels} NaN/inf voxels set to 0")
    if norm.min is None:
        warnings.append("no finite voxel: the image is blank")
    elif norm.min == norm.max:
        warnings.append(f"constant image ({norm.min:g}): the image is blank")
    if case.meta.get("label_scaling"):
        slope, inter = case.meta["label_scaling"]
        warnings.append(f"label header scale factors ignored (scl_slope={slope:g}, scl_inter={inter:g}): "
                        "the stored values are the labels")
    if options.ct_window and window is None:
        warnings.append(f"--ct-window not applied to a {dataset.channel_name} image")
    meta = dict(case.meta)
    meta.update(
        slice_axis=axis,
        slice_axis_rule=options.axis_rule,
        normalisation=options.normalisation,
        ct_window=list(window) if window else None,
        intensity_min=norm.min,
        intensity_max=norm.max,
        nonfinite_voxels=norm.nonfinite_voxels,
        warnings=warnings,
    )
    return PreparedVolume(ref, norm.volume, case.label, axis, meta)


@dataclass
class _TargetTally:
    """Per-slice records of one target under every heuristic, filled slice by slice."""

    counts: dict[str, list[SliceCounts]] = field(default_factory=dict)
    slices: dict[str, dict[str, list]] = field(default_factory=dict)
    n_segments: int = 0
    subset_violations: int = 0
    call_seconds: list[float] = field(default_factory=list)  # the generator's wall time per call
    encode_seconds: float | None = None
    peak_memory_bytes: int | None = None
    # slices where SAM fell back to fewer prompts per batch after CUDA out-of-memory (B14)
    points_per_batch_fallbacks: list[dict] = field(default_factory=list)

    def add_call(self, k: int, proposals: Proposals, seconds: float) -> None:
        self.call_seconds.append(seconds)
        fallback = proposals.info.get("points_per_batch")
        if fallback is not None:
            self.points_per_batch_fallbacks.append({"slice": k, "points_per_batch": int(fallback)})
        peak = proposals.info.get("peak_memory_bytes")
        if peak is not None:
            self.peak_memory_bytes = max(int(peak), self.peak_memory_bytes or 0)
        if proposals.encode_seconds is not None:
            self.encode_seconds = (self.encode_seconds or 0.0) + proposals.encode_seconds


def _check_subsets(selected: dict[str, np.ndarray]) -> bool:
    """SPEC §4 invariants on one slice's real selections."""
    ok = True
    if {"iou>0.5", "iou>0.25"} <= selected.keys():
        ok &= not np.any(selected["iou>0.5"] & ~selected["iou>0.25"])
    if {"iou>0.25", "all"} <= selected.keys():
        ok &= not np.any(selected["iou>0.25"] & ~selected["all"])
    if {"best", "all"} <= selected.keys():
        ok &= not np.any(selected["best"] & ~selected["all"])
    return bool(ok)


def _timed_generate(generator: Generator, rgb: np.ndarray, truth: np.ndarray | None) -> tuple[Proposals, float]:
    """The generator's proposals and its wall seconds, the device synchronised before each clock read."""
    generator.synchronize()
    t0 = time.perf_counter()
    proposals = generator.generate(rgb, truth)
    generator.synchronize()
    return proposals, time.perf_counter() - t0


def _generate_slice(generate, generator: Generator, rgb, truth, k: int, axis: int, target: str | None):
    """``generate`` for slice ``k``; a failure becomes one GenerationError naming the slice."""
    try:
        return generate(generator, rgb, truth)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        where = f"slice {k} along axis {axis}" + (f", target {target}" if target else "")
        raise GenerationError(f"{generator.name} failed on {where}: {type(exc).__name__}: {exc}") from exc


@dataclass
class VolumeResult:
    rows: list[dict]  # one per requested target × heuristic (targets absent from the volume excluded)
    absent_targets: list[str]
    slice_seconds: dict[str, list[float]]  # per target: the generator's wall time of each call it used


def run_volume(
    volume: PreparedVolume,
    targets: Sequence[Target],
    generator: Generator,
    heuristics: Sequence[str],
    options: RunOptions,
    generate: Callable[[Generator, np.ndarray, np.ndarray | None], tuple[Proposals, float]] = _timed_generate,
    is_cached: Callable[[Generator, np.ndarray, np.ndarray | None], bool] | None = None,
) -> VolumeResult:
    """Run ``generator`` over one volume and score it for every target × heuristic requested.

    ``generate`` is the call that produces a slice's proposals and its wall seconds (the default
    times ``generator.generate`` with the device synchronised around the clock reads); a cache can
    stand in for it. All four heuristics are always evaluated, cheaply, so the subset invariants are
    checked on real outputs; rows are returned only for ``heuristics``.

    A generator with ``prefetch`` and ``prefetch_size`` > 1 (SAM with ``encoder_batch``) is handed the
    slices it will see, that many at a time, to encode them in one batch; slices ``is_cached`` says
    are already cached are left out. The batch's wall time is shared equally by its slices and added
    to each slice's first generator call, so seconds per slice stay the generator's full cost.
    """
    all_heuristics: list[Heuristic] = list(HEURISTICS.values())
    truths = {t.name: target_mask(volume.label, t) for t in targets}
    present = [t for t in targets if truths[t.name].any()]
    absent = [t.name for t in targets if not truths[t.name].any()]
    axis = volume.axis
    other_axes = tuple(a for a in range(3) if a != axis)
    slice_has_truth = {t.name: truths[t.name].any(axis=other_axes) for t in present}
    tallies = {
        t.name: _TargetTally(
            counts={h.name: [] for h in all_heuristics},
            slices={
                h.name: {"index": [], "tp": [], "fp": [], "fn": [], "n_selected": [], "best_index": []}
                for h in all_heuristics
            },
        )
        for t in present
    }
    if not present:
        return VolumeResult([], absent, {})

    any_truth = np.logical_or.reduce(list(slice_has_truth.values()))

    if generator.uses_truth:
        needed = [int(k) for k in np.flatnonzero(any_truth)]
    else:
        needed = [k for k in range(volume.n_slices) if any_truth[k] or not options.skip_empty_slices]
    prefetch = getattr(generator, "prefetch", None)
    batch = int(getattr(generator, "prefetch_size", 1)) if prefetch else 1
    prefetch_share: dict[int, float] = {}  # slice → its share of a prefetch batch's seconds, until used
    position = {k: i for i, k in enumerate(needed)}

    # slices first, contiguous, once per volume: a slice is then a cheap view
    image_slices = np.ascontiguousarray(np.moveaxis(volume.image_u8, axis, 0))
    truth_slices = {t.name: np.ascontiguousarray(np.moveaxis(truths[t.name], axis, 0)) for t in present}
    no_selection = SliceCounts(0, 0, 0, 0, False)

    def rgb_of(k: int) -> np.ndarray:
        return to_rgb(image_slices[k])

    def uncached(k: int) -> bool:
        if is_cached is None:
            return True
        if not generator.uses_truth:
            return not is_cached(generator, rgb_of(k), None)
        return any(not is_cached(generator, rgb_of(k), truth_slices[t.name][k])
                   for t in present if slice_has_truth[t.name][k])

    for k in range(volume.n_slices):
        if batch > 1 and position.get(k, 1) % batch == 0:
            chunk = [j for j in needed[position[k]: position[k] + batch] if uncached(j)]
            if chunk:
                generator.synchronize()
                t0 = time.perf_counter()
                prefetch([rgb_of(j) for j in chunk])
                generator.synchronize()
                share = (time.perf_counter() - t0) / len(chunk)
                prefetch_share.update({j: share for j in chunk})
        rgb = None
        shared: np.ndarray | None = None  # a truth-independent generator's segments of this slice
        if not generator.uses_truth and (any_truth[k] or not options.skip_empty_slices):
            rgb = rgb_of(k)
            proposals, dt = _generate_slice(generate, generator, rgb, None, k, axis, None)
            shared = as_segment_stack(proposals.masks, image_slices.shape[1:])
            dt += prefetch_share.pop(k, 0.0)
            for tally in tallies.values():
                tally.add_call(k, proposals, dt)
        for t in present:
            tally = tallies[t.name]
            if not slice_has_truth[t.name][k]:
                # empty truth: no segment has IoU > 0, so every heuristic selects nothing
                if shared is not None:
                    tally.n_segments += len(shared)
                for h in all_heuristics:
                    tally.counts[h.name].append(no_selection)
                continue
            truth = truth_slices[t.name][k]
            if generator.uses_truth:
                if rgb is None:
                    rgb = rgb_of(k)
                proposals, dt = _generate_slice(generate, generator, rgb, truth, k, axis, t.name)
                tally.add_call(k, proposals, dt + prefetch_share.pop(k, 0.0))
                segs = as_segment_stack(proposals.masks, truth.shape)
            else:
                segs = shared
            tally.n_segments += segs.shape[0]
            ious = segment_ious(segs, truth)
            selected = {}
            for h in all_heuristics:
                idx = selected_indices(ious, h)
                pred = union_of(segs, idx, truth.shape)
                selected[h.name] = pred
                c = slice_counts(pred, truth)
                tally.counts[h.name].append(c)
                if c.truth or c.selected:
                    rec = tally.slices[h.name]
                    rec["index"].append(k)
                    rec["tp"].append(c.tp)
                    rec["fp"].append(c.fp)
                    rec["fn"].append(c.fn)
                    rec["n_selected"].append(len(idx))
                    rec["best_index"].append(int(idx[0]) if (h.single and len(idx)) else None)
            if not _check_subsets(selected):
                tally.subset_violations += 1

    rows = []
    for t in present:
        tally = tallies[t.name]
        generated = len(tally.call_seconds)
        total = float(sum(tally.call_seconds))
        for name in heuristics:
            h = HEURISTICS[name]
            m = volume_metrics(tally.counts[h.name])
            slices = tally.slices[h.name]
            if not h.single:
                slices = {k: v for k, v in slices.items() if k != "best_index"}
            rows.append(
                {
                    "target": t.name,
                    "target_labels": list(t.labels),
                    "heuristic": h.name,
                    **m,
                    "n_slices_generated": generated,
                    "n_slices_not_generated": volume.n_slices - generated,
                    "n_segments": tally.n_segments,
                    "subset_violations": tally.subset_violations,
                    "generator_seconds": total,
                    "encode_seconds": tally.encode_seconds,
                    "seconds_per_slice": (total / generated) if generated else None,
                    "peak_memory_bytes": tally.peak_memory_bytes,
                    "points_per_batch_fallbacks": tally.points_per_batch_fallbacks,
                    "slices": slices,
                }
            )
    return VolumeResult(rows, absent, {t.name: tallies[t.name].call_seconds for t in present})
