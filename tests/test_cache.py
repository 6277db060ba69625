"""The on-disk generator cache (issue 4 item 2): hits make no model call, every key part matters,
corrupt entries are misses that get replaced, masks round-trip exactly, and a rerun through the
runner gives identical rows without touching the model."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import samradbench.cache as cache_mod
from samradbench.cache import (
    GenerationCache,
    cache_key,
    generator_code_digest,
    library_versions,
    read_entry,
    write_entry,
)
from samradbench.datasets import discover_datasets
from samradbench.generators.base import Proposals
from samradbench.runner import RunOptions, prepare_volume, run_volume
from samradbench.selection import HEURISTICS
from samradbench.synthetic import ellipsoid, make_case, write_msd_dataset


class CountingStub:
    """A deterministic generator that counts its calls: masks are intensity bands of the slice (and,
    for ``uses_truth``, the truth itself first)."""

    name = "stub"

    def __init__(self, uses_truth: bool = False, config: dict | None = None, n_bands: int = 3):
        self.uses_truth = uses_truth
        self.config = dict(config or {"bands": n_bands})
        self.n_bands = n_bands
        self.calls = 0

    def describe(self):
        return {"generator": self.name, "model": {"weights": "stub", "sha256": "ab" * 32}, "config": dict(self.config)}

    def generate(self, rgb, truth):
        self.calls += 1
        g = rgb[..., 0].astype(np.int32)
        edges = np.linspace(0, 256, self.n_bands + 1)
        masks = [(g >= lo) & (g < hi) for lo, hi in zip(edges[:-1], edges[1:])]
        if self.uses_truth:
            masks.insert(0, np.asarray(truth, bool))
        return Proposals(np.stack(masks), encode_seconds=0.125, info={"n_bands": self.n_bands})

    def synchronize(self):
        pass


def _rgb(seed=0, shape=(12, 17)):
    g = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=2))


def _truth(shape=(12, 17)):
    t = np.zeros(shape, bool)
    t[3:8, 4:11] = True
    return t


# ----------------------------------------------------------------------------- hit / miss


def test_miss_then_hit_returns_the_stored_masks_seconds_and_info(tmp_path):
    stub, cache = CountingStub(), GenerationCache(tmp_path)
    rgb = _rgb()
    first, s1 = cache.generate(stub, rgb, None)
    assert stub.calls == 1 and (cache.model_calls, cache.hits, cache.misses, cache.corrupt) == (1, 0, 1, 0)
    assert first.info == {"n_bands": 3, "cache": "miss"}
    second, s2 = cache.generate(stub, rgb, None)
    assert stub.calls == 1 and (cache.model_calls, cache.hits, cache.misses) == (1, 1, 1)
    assert second.info == {"n_bands": 3, "cache": "hit"}
    assert second.masks.dtype == bool and np.array_equal(second.masks, first.masks)
    assert s2 == s1 and second.encode_seconds == 0.125  # the generator's own cost, not the lookup's
    # persisted: a new cache object on the same folder hits too
    other = GenerationCache(tmp_path)
    third, s3 = other(stub, rgb, None)
    assert stub.calls == 1 and other.hits == 1 and other.model_calls == 0 and s3 == s1
    assert np.array_equal(third.masks, first.masks)
    assert other.stats()["hits"] == 1 and cache.stats()["saved_seconds"] == s1
    entries = list(tmp_path.rglob("*"))
    assert [p.suffix for p in entries if p.is_file()] == [".npz"]  # no temporary file left behind


def test_encode_seconds_none_round_trips(tmp_path):
    class NoEncode(CountingStub):
        def generate(self, rgb, truth):
            p = super().generate(rgb, truth)
            return Proposals(p.masks, None, {})

    stub, cache = NoEncode(), GenerationCache(tmp_path)
    cache.generate(stub, _rgb(), None)
    hit, _ = cache.generate(stub, _rgb(), None)
    assert cache.hits == 1 and hit.encode_seconds is None and hit.info == {"cache": "hit"}


def test_truth_generators_are_keyed_by_their_truth_and_others_are_not(tmp_path):
    rgb, t1 = _rgb(), _truth()
    t2 = t1.copy()
    t2[0, 0] = True
    seeded, cache = CountingStub(uses_truth=True), GenerationCache(tmp_path / "a")
    a, _ = cache.generate(seeded, rgb, t1)
    b, _ = cache.generate(seeded, rgb, t2)
    assert seeded.calls == 2 and np.array_equal(a.masks[0], t1) and np.array_equal(b.masks[0], t2)
    cache.generate(seeded, rgb, t1.copy())
    assert seeded.calls == 2 and cache.hits == 1
    auto, cache2 = CountingStub(), GenerationCache(tmp_path / "b")
    cache2.generate(auto, rgb, t1)
    cache2.generate(auto, rgb, t2)
    cache2.generate(auto, rgb, None)
    assert auto.calls == 1 and cache2.hits == 2


def test_generator_errors_are_not_cached(tmp_path):
    class Rle(CountingStub):
        def generate(self, rgb, truth):
            self.calls += 1
            return Proposals([{"size": [12, 17], "counts": "abc"}])

    class LowRes(CountingStub):
        def generate(self, rgb, truth):
            self.calls += 1
            return Proposals(np.ones((1, 4, 4), bool))

    cache = GenerationCache(tmp_path)
    with pytest.raises(ValueError, match="binary_mask"):
        cache.generate(Rle(), _rgb(), None)
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(12, 17\)"):
        cache.generate(LowRes(), _rgb(), None)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


# ----------------------------------------------------------------------------- key parts


DESC = {"generator": "sam-auto", "model": {"architecture": "vit_b", "sha256": "00" * 32, "weights": "checkpoint",
                                         "seed": None}, "config": {"points_per_side": 32, "pred_iou_thresh": 0.88}}


def _key(desc=DESC, rgb=None, truth=None, uses_truth=False, **kw):
    return cache_key(desc, _rgb() if rgb is None else rgb, truth, uses_truth, **kw)


def test_key_is_deterministic_and_canonical():
    reordered = {"config": dict(reversed(list(DESC["config"].items()))), "model": DESC["model"], "generator": "sam-auto"}
    assert _key() == _key() == _key(reordered)
    assert len(_key()) == 64 and int(_key(), 16) >= 0
    tupled = {**DESC, "config": {**DESC["config"], "grid": (1, 2)}}
    listed = {**DESC, "config": {**DESC["config"], "grid": [1, 2]}}
    assert _key(tupled) == _key(listed)


def test_every_key_part_matters(monkeypatch):
    base = _key()
    changed = {}
    changed["model sha256"] = _key({**DESC, "model": {**DESC["model"], "sha256": "01" * 32}})
    changed["random-init seed"] = _key({**DESC, "model": {**DESC["model"], "weights": "random-init", "seed": 1}})
    changed["config field"] = _key({**DESC, "config": {**DESC["config"], "points_per_side": 16}})
    changed["config float"] = _key({**DESC, "config": {**DESC["config"], "pred_iou_thresh": 0.880001}})
    changed["generator name"] = _key(name="sam-seeded")
    changed["code"] = _key(code="0" * 64)
    rgb = _rgb()
    one_pixel = rgb.copy()
    one_pixel[5, 9, 1] ^= 1
    changed["one pixel"] = _key(rgb=one_pixel)
    changed["shape, same bytes"] = _key(rgb=rgb.reshape(17, 12, 3))
    changed["dtype"] = _key(rgb=rgb.astype(np.uint16))
    changed["uses_truth flag"] = _key(truth=_truth(), uses_truth=True)
    versions = library_versions()
    for lib in versions:
        changed[f"version {lib}"] = _key(versions={**versions, lib: "999.0"})
    changed["library absent"] = _key(versions={**versions, "segment-anything": None})
    monkeypatch.setattr(cache_mod, "library_versions", lambda: {**versions, "torch": "0.0.1"})
    changed["library_versions() patched"] = _key()
    monkeypatch.undo()
    assert _key() == base
    assert all(k != base for k in changed.values()), [n for n, k in changed.items() if k == base]
    assert len(set(changed.values())) == len(changed)


def test_truth_enters_the_key_only_for_truth_generators():
    t = _truth()
    t2 = t.copy()
    t2[11, 16] = True
    assert _key(truth=t, uses_truth=True) != _key(truth=t2, uses_truth=True)
    assert _key(truth=t, uses_truth=True) == _key(truth=t.astype(np.uint8) * 255, uses_truth=True)  # nonzero = inside
    assert _key(truth=t, uses_truth=True) != _key(truth=t.reshape(17, 12), uses_truth=True)
    assert _key(truth=t, uses_truth=False) == _key(truth=t2, uses_truth=False) == _key(truth=None, uses_truth=False)


def test_the_cache_uses_versions_config_and_code(tmp_path, monkeypatch):
    stub, cache, rgb = CountingStub(), GenerationCache(tmp_path), _rgb()
    cache.generate(stub, rgb, None)
    stub.config["bands"] = 4  # same outputs here, but a new configuration must not reuse them
    cache.generate(stub, rgb, None)
    assert stub.calls == 2
    monkeypatch.setattr(cache_mod, "library_versions", lambda: {**library_versions(), "numpy": "1.0.0"})
    cache.generate(stub, rgb, None)
    assert stub.calls == 3
    monkeypatch.setattr(cache_mod, "generator_code_digest", lambda g: "f" * 64)
    cache.generate(stub, rgb, None)
    assert stub.calls == 4 and cache.hits == 0
    monkeypatch.undo()
    cache.generate(stub, rgb, None)  # back to the second entry's key
    assert stub.calls == 4 and cache.hits == 1


def test_code_digest_covers_the_generator_sources(tmp_path):
    d = generator_code_digest(CountingStub())
    assert d == generator_code_digest(CountingStub()) and len(d) == 64
    from samradbench.generators import build_baseline

    assert generator_code_digest(build_baseline("oracle")) != d  # the stub's module is part of its digest


# ----------------------------------------------------------------------------- corrupt entries


def _corrupt_truncate(path: Path, key: str):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_garbage(path: Path, key: str):
    path.write_bytes(b"\x00garbage" * 37)


def _corrupt_empty(path: Path, key: str):
    path.write_bytes(b"")


def _corrupt_wrong_shape(path: Path, key: str):
    write_entry(path, key, np.ones((2, 5, 5), bool), 1.0, None, {})


def _corrupt_wrong_key(path: Path, key: str):
    write_entry(path, "0" * 64, np.zeros((1, 12, 17), bool), 1.0, None, {})


def _corrupt_bit_count(path: Path, key: str):
    fields = dict(np.load(path, allow_pickle=False))
    fields["masks"] = fields["masks"][:-1]
    with open(path, "wb") as fh:
        np.savez(fh, **fields)


def _rewrite_meta(path: Path, change) -> None:
    fields = dict(np.load(path, allow_pickle=False))
    meta = json.loads(str(fields["meta"]))
    change(meta)
    fields["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as fh:
        np.savez(fh, **fields)


def _corrupt_missing_field(path: Path, key: str):
    _rewrite_meta(path, lambda m: m.pop("seconds"))


def _corrupt_negative_seconds(path: Path, key: str):
    _rewrite_meta(path, lambda m: m.update(seconds=-1.0))


def _corrupt_old_format(path: Path, key: str):
    _rewrite_meta(path, lambda m: m.update(format=0))


def _corrupt_shape_in_meta(path: Path, key: str):
    _rewrite_meta(path, lambda m: m.update(shape=[m["shape"][0], m["shape"][2], m["shape"][1]]))


def _corrupt_masks_missing(path: Path, key: str):
    fields = dict(np.load(path, allow_pickle=False))
    del fields["masks"]
    with open(path, "wb") as fh:
        np.savez(fh, **fields)


def _corrupt_pickled(path: Path, key: str):
    fields = dict(np.load(path, allow_pickle=False))
    fields["meta"] = np.array([{"x": 1}], dtype=object)
    with open(path, "wb") as fh:
        np.savez(fh, **fields)


def _corrupt_directory(path: Path, key: str):
    path.unlink()
    path.mkdir()


CORRUPTIONS = [_corrupt_truncate, _corrupt_garbage, _corrupt_empty, _corrupt_wrong_shape, _corrupt_wrong_key,
               _corrupt_bit_count, _corrupt_missing_field, _corrupt_negative_seconds, _corrupt_old_format,
               _corrupt_shape_in_meta, _corrupt_masks_missing, _corrupt_pickled]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__.removeprefix("_corrupt_"))
def test_corrupt_entry_is_a_miss_then_replaced(tmp_path, corrupt):
    stub, cache, rgb = CountingStub(), GenerationCache(tmp_path), _rgb()
    good, s = cache.generate(stub, rgb, None)
    key = cache.key_for(stub, rgb, None)
    path = cache.path_for(key)
    assert path.is_file()
    corrupt(path, key)
    again, _ = cache.generate(stub, rgb, None)
    assert stub.calls == 2 and cache.corrupt == 1 and cache.misses == 2 and cache.hits == 0
    assert cache.last_error and str(path) in cache.last_error
    assert again.info["cache"] == "miss" and np.array_equal(again.masks, good.masks)
    third, _ = cache.generate(stub, rgb, None)  # the entry was rewritten correctly
    assert stub.calls == 2 and cache.hits == 1 and np.array_equal(third.masks, good.masks)


def test_entry_that_cannot_be_read_or_replaced_is_a_miss_and_the_run_goes_on(tmp_path):
    stub, cache, rgb = CountingStub(), GenerationCache(tmp_path), _rgb()
    good, _ = cache.generate(stub, rgb, None)
    path = cache.path_for(cache.key_for(stub, rgb, None))
    _corrupt_directory(path, "")  # a directory where the entry should be: unreadable and unreplaceable
    with pytest.warns(RuntimeWarning, match="could not store"):
        again, _ = cache.generate(stub, rgb, None)
    assert np.array_equal(again.masks, good.masks) and again.info["cache"] == "miss"
    assert cache.corrupt == 1 and cache.write_errors == 1 and stub.calls == 2
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_info_without_a_json_form_is_stored_as_text(tmp_path):
    class Odd(CountingStub):
        def generate(self, rgb, truth):
            p = super().generate(rgb, truth)
            return Proposals(p.masks, None, {"n": np.int64(3), "obj": Opaque()})

    class Opaque:
        def __repr__(self):
            return "<opaque>"


    stub, cache = Odd(), GenerationCache(tmp_path)
    cache.generate(stub, _rgb(), None)
    hit, _ = cache.generate(stub, _rgb(), None)
    assert cache.hits == 1 and hit.info == {"n": 3, "obj": "<opaque>", "cache": "hit"}


def test_description_without_a_json_form_is_refused():
    with pytest.raises(TypeError, match="canonical JSON"):
        _key({**DESC, "config": {"thing": object()}})


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("shape", [(0, 12, 17), (1, 1, 1), (3, 5, 7), (2, 9, 13), (4, 8, 8), (1, 3, 1)])
def test_masks_round_trip_exactly(tmp_path, shape):
    masks = np.random.default_rng(sum(shape)).random(shape) < 0.5
    path = tmp_path / "e.npz"
    write_entry(path, "k", masks, 0.5, 0.25, {"a": [1, 2]})
    (p, seconds) = read_entry(path, "k", shape[1:])
    assert p.masks.dtype == bool and p.masks.shape == shape and np.array_equal(p.masks, masks)
    assert seconds == 0.5 and p.encode_seconds == 0.25 and p.info == {"a": [1, 2]}


def test_entries_are_compact(tmp_path):
    """Packed bits: random masks take ~1 bit a pixel, smooth ones far less (deflate), plus < 1 KB framing."""
    rng = np.random.default_rng(0)
    noisy = rng.random((20, 256, 256)) < 0.5
    write_entry(tmp_path / "noisy.npz", "k", noisy, 1.0, None, {})
    assert (tmp_path / "noisy.npz").stat().st_size < noisy.size / 8 * 1.01 + 1024
    rr, cc = np.indices((256, 256))
    discs = np.stack([(rr - 8 * i) ** 2 + (cc - 128) ** 2 < (10 + i) ** 2 for i in range(20)])
    write_entry(tmp_path / "discs.npz", "k", discs, 1.0, None, {})
    assert (tmp_path / "discs.npz").stat().st_size < discs.size / 8 / 10


def test_zero_segments_through_the_cache(tmp_path):
    class Empty(CountingStub):
        def generate(self, rgb, truth):
            self.calls += 1
            return Proposals([])  # SAM's generate() returns [] when it keeps nothing

    stub, cache = Empty(), GenerationCache(tmp_path)
    a, _ = cache.generate(stub, _rgb(), None)
    b, _ = cache.generate(stub, _rgb(), None)
    assert stub.calls == 1 and a.masks.shape == b.masks.shape == (0, 12, 17) and b.masks.dtype == bool


@given(n=st.integers(0, 4), h=st.integers(1, 19), w=st.integers(1, 19), seed=st.integers(0, 2**32 - 1),
       p=st.sampled_from([0.0, 0.1, 0.5, 1.0]))
def test_store_then_load_gives_identical_arrays(n, h, w, seed, p):
    masks = np.random.default_rng(seed).random((n, h, w)) < p
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x" / "e.npz"
        write_entry(path, "key", masks, 1.5, None, {})
        loaded, seconds = read_entry(path, "key", (h, w))
        assert os.listdir(path.parent) == ["e.npz"]
    assert loaded.masks.dtype == bool and loaded.masks.shape == masks.shape
    assert np.array_equal(loaded.masks, masks) and seconds == 1.5 and loaded.encode_seconds is None


# ----------------------------------------------------------------------------- through the runner


@pytest.fixture
def two_target_dataset(tmp_path):
    shape = (40, 36, 10)
    regions = {1: ellipsoid(shape, (14, 15, 4), (6, 8, 3)), 2: ellipsoid(shape, (27, 20, 5), (5, 6, 2.5))}
    case = make_case(shape, regions, {1: 60.0, 2: 140.0}, background=10.0, noise=15.0, seed=3, case_id="c0")
    folder = write_msd_dataset(tmp_path / "Task98_Cache", [case], {"0": "background", "1": "a", "2": "b"}, {"0": "MRI"})
    (ds,) = discover_datasets(folder)
    return ds


@pytest.mark.parametrize("uses_truth", [False, True], ids=["auto-like", "seeded-like"])
def test_rerun_through_the_cache_gives_identical_rows_without_model_calls(tmp_path, two_target_dataset, uses_truth):
    ds, opts = two_target_dataset, RunOptions()
    vol = prepare_volume(ds, ds.cases[0], opts)
    stub = CountingStub(uses_truth=uses_truth)
    cache = GenerationCache(tmp_path / "cache")
    first = run_volume(vol, ds.targets, stub, ("all", "best"), opts, generate=cache.generate)
    calls = stub.calls
    assert calls > 0 and cache.model_calls == calls and cache.hits == 0
    # uncached reference: the cache changes no metric
    plain = run_volume(vol, ds.targets, CountingStub(uses_truth=uses_truth), ("all", "best"), opts)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("generator_seconds", "encode_seconds",
                                                                   "seconds_per_slice")} for r in rows]
    assert strip(first.rows) == strip(plain.rows)

    rerun = GenerationCache(tmp_path / "cache")
    second = run_volume(vol, ds.targets, stub, ("all", "best"), opts, generate=rerun.generate)
    assert stub.calls == calls and rerun.model_calls == 0 and rerun.hits == calls
    # stored seconds are served on a hit, so even the timing fields are the same
    assert second.rows == first.rows and second.slice_seconds == first.slice_seconds

    more = GenerationCache(tmp_path / "cache")  # a run that adds heuristics
    third = run_volume(vol, ds.targets, stub, tuple(HEURISTICS), opts, generate=more.generate)
    assert stub.calls == calls and more.model_calls == 0
    assert [r for r in third.rows if r["heuristic"] in ("all", "best")] == first.rows
    assert {r["heuristic"] for r in third.rows} == set(HEURISTICS)

    if not uses_truth:  # one target alone reuses the slices computed for both
        (a,) = [t for t in ds.targets if t.name == "a"]
        alone = GenerationCache(tmp_path / "cache")
        run_volume(vol, [a], stub, ("all",), opts, generate=alone.generate)
        assert stub.calls == calls and alone.model_calls == 0
