"""pytest plugin: turns the runner into parametrised benchmark cases.

Fixture-first, like pytest-benchmark: a test asks for ``bench_case`` (one dataset × target ×
generator × heuristic, parametrised here) and ``samrad`` (the session's shared runner and results
document). Options live in the ``samradbench`` group of ``pytest --help``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .config import RANDOM_INIT_ARCHITECTURES, SAM_ARCHITECTURES, SamConfig, SuperpixelConfig, as_jsonable
from .errors import SamradbenchError
from .generators import GENERATOR_NAMES, SAM_GENERATORS, build_baseline
from .results import ResultsDocument, environment, to_jsonable
from .selection import HEURISTICS, get_heuristic

DATA_ROOT_ENV = "SAMRADBENCH_DATA_ROOT"
DEFAULT_RESULTS = Path("results") / "samradbench.json"
DEFAULT_CACHE_DIR = ".samradbench-cache"
NO_SAM_REASON = (
    "no SAM model: pass --sam-checkpoint PATH (real weights), "
    "or --sam-random-init vit_tiny to exercise the architecture with random weights"
)


# ----------------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("samradbench", "samradbench: SAM on radiology volumes")
    g.addoption("--data-root", default=None, metavar="PATH",
                help=f"folder of MSD task folders / paired folders (or one dataset folder); env {DATA_ROOT_ENV}; "
                     "default: the embedded synthetic data in fixtures/default (generated on first use)")
    g.addoption("--generators", default=",".join(GENERATOR_NAMES), metavar="LIST",
                help=f"comma-separated generators to run (default: {','.join(GENERATOR_NAMES)})")
    g.addoption("--heuristics", default=",".join(HEURISTICS), metavar="LIST",
                help="comma-separated selection heuristics (default: all four)")
    g.addoption("--max-volumes", type=int, default=None, metavar="N",
                help="use at most the first N volumes of each dataset (default: all)")
    g.addoption("--results-json", default=None, metavar="PATH",
                help=f"results document, rewritten atomically as volumes finish (default: {DEFAULT_RESULTS} "
                     "in the current directory)")
    g.addoption("--plot", default=None, metavar="PATH.png",
                help="also draw per-volume Dice box plots (one panel per dataset/target) to this PNG; "
                     "needs matplotlib (pip install 'samradbench[plots]')")
    g.addoption("--sam-checkpoint", default=None, metavar="PATH", help="SAM weights (.pth) for sam-auto / sam-seeded")
    g.addoption("--sam-model", default=None, choices=SAM_ARCHITECTURES,
                help="SAM architecture of the checkpoint (default: inferred from the weights)")
    g.addoption("--sam-random-init", default=None, choices=RANDOM_INIT_ARCHITECTURES,
                help="build this SAM architecture with seeded random weights (results labelled random-init; "
                     "quality thresholds default to 0)")
    g.addoption("--sam-seed", type=int, default=0, help="seed of --sam-random-init weights (default 0)")
    g.addoption("--sam-allow-unsafe-pickle", action="store_true",
                help="allow checkpoints that need full pickle loading (weights_only=False); only for files you trust")
    g.addoption("--device", default="auto", help="auto (cuda if present, else cpu), cpu, cuda, cuda:N")
    g.addoption("--points-per-side", type=int, default=32, help="sam-auto point grid (default 32, as the paper)")
    g.addoption("--seed-grid", type=int, default=3, help="sam-seeded n x n seeds (default 3; 4 gives 16 points)")
    g.addoption("--points-per-batch", type=int, default=64, help="SAM prompts decoded per batch (default 64)")
    g.addoption("--precision", default="fp32", choices=("fp32", "bf16"),
                help="SAM image encoder and mask decoder precision (default fp32, as the paper; bf16 = autocast)")
    g.addoption("--compile", action="store_true", help="torch.compile the SAM image encoder (compiled once, before timing)")
    g.addoption("--encoder-batch", type=int, default=1, metavar="N",
                help="encode N slices per image-encoder forward pass (default 1)")
    g.addoption("--pred-iou-thresh", type=float, default=None, help="default 0.88 (0 with --sam-random-init)")
    g.addoption("--stability-score-thresh", type=float, default=None, help="default 0.95 (0 with --sam-random-init)")
    g.addoption("--normalisation", default="volume", choices=("volume", "slice"),
                help="min-max over the volume (default) or each slice")
    g.addoption("--ct-window", default=None, metavar="LEVEL,WIDTH", help="clip to a window before scaling, e.g. 40,400")
    g.addoption("--slice-axis-rule", default="smallest", choices=("smallest", "spacing"),
                help="slice along the smallest axis (default, ties to the last) or the largest spacing")
    g.addoption("--cache-dir", default=None, metavar="PATH",
                help=f"on-disk cache of generator outputs, keyed by weights, configuration, slice content and "
                     f"library versions (default: {DEFAULT_CACHE_DIR} in the current directory)")
    g.addoption("--no-cache", action="store_true", help="neither read nor write the generator-output cache")
    g.addoption("--resume", action="store_true",
                help="keep the finished volumes of an interrupted run in --results-json (same configuration "
                     "and model required) and compute only the rest")
    g.addoption("--no-skip-empty-slices", action="store_true",
                help="run truth-independent generators on slices without ground truth too (metrics are identical)")


def _parse_list(value: str, allowed, what: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    for v in items:
        if v not in allowed:
            raise pytest.UsageError(f"unknown {what} {v!r}; expected some of: {', '.join(allowed)}")
    return items


def _parse_heuristics(value: str) -> tuple[str, ...]:
    """Heuristic names as in the SPEC ('iou>0.5') or as typed in test ids ('iou-gt-0.5')."""
    names = []
    for v in (v.strip() for v in value.split(",") if v.strip()):
        try:
            names.append(get_heuristic(v).name)
        except SamradbenchError:
            raise pytest.UsageError(f"unknown heuristic {v!r}; expected some of: {', '.join(HEURISTICS)} "
                                    "(or iou-gt-0.25, iou-gt-0.5)") from None
    return tuple(names)


def _parse_window(value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        level, width = (float(x) for x in value.split(","))
    except ValueError:
        raise pytest.UsageError(f"--ct-window takes LEVEL,WIDTH (e.g. 40,400), got {value!r}") from None
    if not (math.isfinite(level) and math.isfinite(width)):
        raise pytest.UsageError(f"--ct-window takes finite numbers, got {value!r}")
    if width <= 0:
        raise pytest.UsageError(f"--ct-window width must be positive, got {width}")
    return level, width


def _writable_file(path: Path, option: str, example: str = "samradbench.json") -> Path:
    """The regular file ``path`` names (through a symlink: its target), if one can be written there;
    a UsageError naming ``option`` otherwise — before any volume runs, not a traceback after it.
    Files are replaced by a rename, so a device (``/dev/null``) or other special file is refused."""
    if path.is_symlink():
        path = path.resolve()
    if path.is_dir():
        raise pytest.UsageError(f"{option} {path} is a folder; give a file name such as {path / example}")
    if path.exists() and not path.is_file():
        raise pytest.UsageError(f"{option} {path} is not a regular file (results are written by a rename)")
    if path.parent.exists() and not path.parent.is_dir():
        raise pytest.UsageError(f"{option} {path}: {path.parent} is not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name[:24]}.", suffix=".probe"):
            pass  # what the atomic writer will do: create a file beside it
    except OSError as exc:
        raise pytest.UsageError(f"{option} {path}: cannot write there ({exc.strerror or exc})") from None
    return path


def _positive(opt, name: str) -> None:
    if opt(name) is not None and opt(name) < 1:
        raise pytest.UsageError(f"{name} must be at least 1, got {opt(name)}")


def _fraction(opt, name: str) -> None:
    if opt(name) is not None and not 0.0 <= opt(name) <= 1.0:
        raise pytest.UsageError(f"{name} must lie in [0, 1], got {opt(name)}")


@dataclass(frozen=True)
class Settings:
    """Everything the options say, read once at the edge."""

    data_root: Path | None
    generators: tuple[str, ...]
    heuristics: tuple[str, ...]
    max_volumes: int | None
    results_json: Path
    sam: SamConfig | None
    run: Any  # runner.RunOptions
    allow_unsafe_pickle: bool
    resume: bool
    cache_dir: Path | None

    @classmethod
    def from_config(cls, config: pytest.Config) -> "Settings":
        from .runner import RunOptions

        opt = config.getoption
        root = opt("--data-root") or os.environ.get(DATA_ROOT_ENV) or None
        ckpt, rand = opt("--sam-checkpoint"), opt("--sam-random-init")
        if ckpt and rand:
            raise pytest.UsageError("pass either --sam-checkpoint or --sam-random-init, not both")
        if ckpt and Path(ckpt).is_dir():
            raise pytest.UsageError(f"--sam-checkpoint {ckpt} is a folder; give the .pth file")
        if ckpt and not Path(ckpt).is_file():
            raise pytest.UsageError(f"--sam-checkpoint {ckpt}: no such file")
        if rand and opt("--sam-model"):
            raise pytest.UsageError("--sam-model checks a checkpoint's architecture; with --sam-random-init the "
                                    "architecture is the one it names")
        for name in ("--max-volumes", "--points-per-side", "--seed-grid", "--points-per-batch", "--encoder-batch"):
            _positive(opt, name)
        for name in ("--pred-iou-thresh", "--stability-score-thresh"):
            _fraction(opt, name)
        results_json = _writable_file(Path(opt("--results-json") or DEFAULT_RESULTS).expanduser(), "--results-json")
        bench_json = getattr(config.option, "benchmark_json", None)
        if bench_json is not None and Path(bench_json).expanduser().resolve() == results_json.resolve():
            raise pytest.UsageError(f"--results-json and --benchmark-json both name {results_json}; give them "
                                    "different files")
        if opt("--plot"):
            from .figures import check_plot_path

            try:
                check_plot_path(_writable_file(Path(opt("--plot")).expanduser(), "--plot", "dice.png"))
            except SamradbenchError as exc:
                raise pytest.UsageError(f"--plot {opt('--plot')}: {exc}") from None
        cache_dir = Path(opt("--cache-dir") or DEFAULT_CACHE_DIR).expanduser()
        if not opt("--no-cache") and cache_dir.exists() and not cache_dir.is_dir():
            raise pytest.UsageError(f"--cache-dir {cache_dir} is a file; give a folder (or --no-cache)")
        sam = None
        if ckpt or rand:
            sam = SamConfig(
                checkpoint=Path(ckpt) if ckpt else None,
                model_type=opt("--sam-model"),
                random_init=rand,
                random_seed=opt("--sam-seed"),
                device=opt("--device"),
                points_per_side=opt("--points-per-side"),
                seed_grid=opt("--seed-grid"),
                points_per_batch=opt("--points-per-batch"),
                pred_iou_thresh=opt("--pred-iou-thresh"),
                stability_score_thresh=opt("--stability-score-thresh"),
                precision=opt("--precision"),
                compile=opt("--compile"),
                encoder_batch=opt("--encoder-batch"),
            )
        return cls(
            data_root=Path(root).expanduser().resolve() if root else None,
            generators=_parse_list(opt("--generators"), GENERATOR_NAMES, "generator"),
            heuristics=_parse_heuristics(opt("--heuristics")),
            max_volumes=opt("--max-volumes"),
            results_json=results_json,
            sam=sam,
            run=RunOptions(
                normalisation=opt("--normalisation"),
                ct_window=_parse_window(opt("--ct-window")),
                axis_rule=opt("--slice-axis-rule"),
                skip_empty_slices=not opt("--no-skip-empty-slices"),
            ),
            allow_unsafe_pickle=opt("--sam-allow-unsafe-pickle"),
            resume=opt("--resume"),
            cache_dir=None if opt("--no-cache") else cache_dir,
        )


# ----------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class BenchCase:
    """One benchmark case: a dataset × target × generator × heuristic."""

    dataset: str
    target: str
    generator: str
    heuristic: str

    @property
    def id(self) -> str:
        return f"{self.dataset}/{self.target}-{self.generator}-{HEURISTICS[self.heuristic].test_id}"


@dataclass
class CaseOutcome:
    """What a benchmark case gets back: its per-volume rows, its summary row, the generator's seconds
    per slice, and the volumes that failed (with reasons) or lacked the target."""

    case: BenchCase
    rows: list[dict]
    summary: dict | None
    slice_seconds: list[float]
    failures: list[dict]
    absent: list[str]


@dataclass
class _Computed:
    """All rows of one dataset × generator, for every target and heuristic selected this session."""

    rows: list[dict] = field(default_factory=list)
    seconds: dict[str, list[float]] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    absent: dict[str, list[str]] = field(default_factory=dict)


def _finished_rows(doc: ResultsDocument, dataset: str, generator: str, volume: str, targets, heuristics,
                   fingerprint: dict | None):
    """Rows (and absent targets) already in ``doc`` for this volume, if they cover every wanted
    target × heuristic and were computed from the same image and label files (``fingerprint``);
    None when the volume still needs computing."""
    mine = [r for r in doc.cases if r["dataset"] == dataset and r["generator"] == generator and r["volume"] == volume]
    found = [a for a in doc.absent if a["dataset"] == dataset and a["generator"] == generator and a["volume"] == volume]
    if not mine and not found:
        return None
    if fingerprint is None or any(r.get("volume_info", {}).get("inputs_sha256") != fingerprint for r in mine) \
            or any(a.get("inputs_sha256") != fingerprint for a in found):
        return None  # a file changed since (or cannot be read): compute it again
    absent = {a["target"] for a in found}
    have = {(r["target"], r["heuristic"]) for r in mine}
    for t in targets:
        if t.name not in absent and any((t.name, h) not in have for h in heuristics):
            return None
    wanted = {t.name for t in targets}
    rows = [r for r in mine if r["target"] in wanted and r["heuristic"] in heuristics]
    return rows, sorted(absent & wanted)


def model_label(model: dict) -> str:
    """Short, honest model name for tables: random weights always say so."""
    if model.get("weights") == "random-init":
        return f"random-init {model.get('architecture')} seed {model.get('seed')}"
    if model.get("checkpoint"):
        return f"{model.get('architecture')} {model['checkpoint']}"
    return str(model.get("weights") or model.get("architecture"))


class BenchSession:
    """The session's shared state: settings, datasets, generators (built once), the results document."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.settings = Settings.from_config(config)
        self._datasets = None
        self._sam: dict | None = None
        self._baselines: dict = {}
        self._computed: dict[tuple[str, str], _Computed] = {}
        self._wanted: dict[tuple[str, str], tuple[set, set]] = {}
        self.document: ResultsDocument | None = None
        self._writing = False  # whether the document has been written to disk this session
        self._fingerprints: dict[tuple[str, str], dict | None] = {}  # (dataset, volume) → case_fingerprint
        self.cache = None
        if self.settings.cache_dir is not None:
            from .cache import GenerationCache

            self.cache = GenerationCache(self.settings.cache_dir)

    # -- data
    def data_root(self) -> Path:
        if self.settings.data_root is not None:
            return self.settings.data_root
        from .synthetic import write_default_data

        return write_default_data(Path(self.config.rootpath) / "fixtures" / "default")

    def datasets(self) -> dict:
        if self._datasets is None:
            from .datasets import discover_datasets

            root = self.data_root()
            try:
                found = discover_datasets(root)
            except SamradbenchError as exc:
                raise pytest.UsageError(f"--data-root {root}: {exc}") from None
            self._datasets = {d.name: d for d in found}
        return self._datasets

    def all_cases(self) -> list[BenchCase]:
        return [
            BenchCase(d.name, t.name, g, h)
            for d in self.datasets().values()
            for t in d.targets
            for g in self.settings.generators
            for h in self.settings.heuristics
        ]

    def want(self, cases: list[BenchCase]) -> None:
        """Record which targets and heuristics the selected cases need, per dataset × generator."""
        for c in cases:
            targets, heuristics = self._wanted.setdefault((c.dataset, c.generator), (set(), set()))
            targets.add(c.target)
            heuristics.add(c.heuristic)

    # -- generators
    def generator(self, name: str):
        if name not in SAM_GENERATORS:
            if name not in self._baselines:
                self._baselines[name] = build_baseline(name, SuperpixelConfig())
            return self._baselines[name]
        if self.settings.sam is None:
            pytest.skip(NO_SAM_REASON)
        return self.build_sam()[name]

    def build_sam(self) -> dict:
        """The SAM adapters of this session, sharing one model loaded once (SamradbenchError if not)."""
        if self._sam is None:
            from .generators.sam import build_sam_generators

            self._sam = build_sam_generators(
                self.settings.sam, tuple(g for g in self.settings.generators if g in SAM_GENERATORS),
                allow_unsafe_pickle=self.settings.allow_unsafe_pickle,
            )
        return self._sam

    # -- results
    def open_document(self) -> ResultsDocument:
        """The session's results document, created (or, with --resume, read back) on first use."""
        if self.document is None:
            s = self.settings
            device, device_name = "cpu", None  # the baselines run on the CPU (numpy, scikit-image)
            if self._sam:
                model = next(iter(self._sam.values())).describe()["model"]
                device, device_name = model.get("device"), model.get("device_name")
            make = ResultsDocument.resume if s.resume else ResultsDocument
            self.document = doc = make(
                s.results_json,
                environment(device, device_name, cwd=Path(self.config.rootpath)),
                {
                    "data_root": str(self.data_root()),
                    "generators": list(s.generators),
                    "heuristics": list(s.heuristics),
                    "max_volumes": s.max_volumes,
                    "sam": as_jsonable(s.sam) if s.sam else None,
                    "run": as_jsonable(s.run),
                    "cache_dir": str(s.cache_dir) if s.cache_dir else None,
                    "generator_descriptions": {},
                },
            )
            if s.resume:
                self._progress(f"resume: {doc.resume_note}")
        return self.document

    def start_writing(self) -> ResultsDocument:
        """The results document, written to disk from now on. The first call (when the first volume is
        about to be computed, so a session that scores nothing leaves the file alone) moves a file
        that a fresh run replaces to ``*.previous.json``."""
        doc = self.open_document()
        if not self._writing:
            path = self.settings.results_json
            if not self.settings.resume and path.is_file():
                previous = path.with_name(f"{path.stem}.previous{path.suffix}")
                os.replace(path, previous)
                self._progress(f"results: {path} starts afresh; the earlier one is now {previous}")
            doc.flush()
            self._writing = True
        return doc

    def _progress(self, text: str) -> None:
        capman = self.config.pluginmanager.getplugin("capturemanager")
        tr = self.config.pluginmanager.getplugin("terminalreporter")
        if tr is None:
            return
        if capman is not None:
            with capman.global_and_fixture_disabled():
                tr.write_line(f"[samradbench] {text}")
        else:
            tr.write_line(f"[samradbench] {text}")

    def _compute(self, dataset_name: str, generator_name: str) -> _Computed:
        from .datasets import case_fingerprint
        from .runner import prepare_volume, run_volume

        dataset = self.datasets()[dataset_name]
        generator = self.generator(generator_name)
        targets_wanted, heuristics_wanted = self._wanted.get((dataset_name, generator_name), (set(), set()))
        targets = [t for t in dataset.targets if t.name in targets_wanted]
        heuristics = [h for h in HEURISTICS if h in heuristics_wanted]
        doc = self.start_writing()
        description = to_jsonable(generator.describe())
        if doc.config["generator_descriptions"].get(generator_name) != description:
            # a different model or configuration under the same name: earlier rows are not ours
            if any(r["generator"] == generator_name for r in doc.cases):
                self._progress(f"{generator_name}: the earlier rows came from another model, device or "
                               "configuration; computing them again")
            doc.cases = [r for r in doc.cases if r["generator"] != generator_name]
            doc.absent = [a for a in doc.absent if a["generator"] != generator_name]
        doc.config["generator_descriptions"][generator_name] = description
        model = description["model"]
        label = model_label(model)
        out = _Computed(seconds={t.name: [] for t in targets}, absent={t.name: [] for t in targets})
        refs = dataset.cases[: self.settings.max_volumes] if self.settings.max_volumes else dataset.cases
        for i, ref in enumerate(refs, 1):
            t0 = time.perf_counter()
            key = (dataset_name, ref.case_id)
            if key not in self._fingerprints:  # hashed once per session, not once per generator
                self._fingerprints[key] = case_fingerprint(dataset, ref)
            fingerprint = self._fingerprints[key]
            reused = _finished_rows(doc, dataset_name, generator_name, ref.case_id, targets, heuristics, fingerprint)
            if reused is not None:
                rows, absent = reused
                out.rows.extend(rows)
                for t in absent:
                    out.absent[t].append(ref.case_id)
                self._progress(f"{dataset_name} · {generator_name} · {ref.case_id} ({i}/{len(refs)}): "
                               "reused from the earlier run (--resume)")
                continue
            try:
                volume = prepare_volume(dataset, ref, self.settings.run)
                calls_before = self.cache.model_calls if self.cache else None
                if self.cache:
                    result = run_volume(volume, targets, generator, heuristics, self.settings.run,
                                        generate=self.cache.generate, is_cached=self.cache.has)
                else:
                    result = run_volume(volume, targets, generator, heuristics, self.settings.run)
            except (SamradbenchError, ValueError, OSError, RuntimeError, MemoryError) as exc:
                failure = {"dataset": dataset_name, "volume": ref.case_id, "generator": generator_name,
                           "reason": f"{type(exc).__name__}: {exc}"}
                out.failures.append(failure)
                doc.add_failure(**failure)
                self._progress(f"{dataset_name} · {generator_name} · {ref.case_id} ({i}/{len(refs)}): FAILED {failure['reason']}")
                continue
            volume_meta = {k: volume.meta.get(k) for k in (
                "slice_axis", "slice_axis_rule", "normalisation", "ct_window", "intensity_min", "intensity_max",
                "nonfinite_voxels", "channel", "channel_name", "original_shape", "shape", "orientation",
                "label_values", "label_scaling", "spacing", "warnings")}
            volume_meta["inputs_sha256"] = fingerprint
            rows = [
                {"dataset": dataset_name, "volume": ref.case_id, "generator": generator_name,
                 "model": model, "model_label": label, **row, "volume_info": volume_meta}
                for row in result.rows
            ]
            doc.add_volume(rows, [{"dataset": dataset_name, "target": t, "generator": generator_name,
                                   "volume": ref.case_id, "inputs_sha256": fingerprint} for t in result.absent_targets])
            out.rows.extend(rows)
            for t, secs in result.slice_seconds.items():
                out.seconds[t].extend(secs)
            for t in result.absent_targets:
                out.absent[t].append(ref.case_id)
            if generator.uses_truth:
                calls = sum(len(s) for s in result.slice_seconds.values())
                what = f"{calls} generator calls over {len(result.slice_seconds)} target(s)"
            else:
                calls = max((len(s) for s in result.slice_seconds.values()), default=0)
                what = f"generator ran on {calls}"
            cached = f" ({calls - (self.cache.model_calls - calls_before)} from cache)" if self.cache else ""
            warned = "".join(f"; WARNING {w}" for w in volume.meta.get("warnings", []))
            self._progress(
                f"{dataset_name} · {generator_name} · {ref.case_id} ({i}/{len(refs)}): "
                f"{volume.n_slices} slices, {what}{cached}, {time.perf_counter() - t0:.1f} s{warned}"
            )
        return out

    def outcome(self, case: BenchCase) -> CaseOutcome:
        """The case's results, computing its dataset × generator once for all selected cases."""
        key = (case.dataset, case.generator)
        if key not in self._wanted:
            self.want([case])
        if key not in self._computed:
            self._computed[key] = self._compute(*key)
        comp = self._computed[key]
        rows = [r for r in comp.rows if r["target"] == case.target and r["heuristic"] == case.heuristic]
        from .results import summarise

        absent = [{"dataset": case.dataset, "target": case.target, "generator": case.generator, "volume": v}
                  for v in comp.absent.get(case.target, [])]
        summary = summarise(rows, absent)
        return CaseOutcome(case, rows, summary[0] if summary else None, comp.seconds.get(case.target, []),
                           comp.failures, comp.absent.get(case.target, []))


# ----------------------------------------------------------------------------- hooks

_SESSION_KEY = pytest.StashKey[BenchSession]()


def _session(config: pytest.Config) -> BenchSession:
    if _SESSION_KEY not in config.stash:
        config.stash[_SESSION_KEY] = BenchSession(config)
    return config.stash[_SESSION_KEY]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "bench_case" in metafunc.fixturenames:
        cases = _session(metafunc.config).all_cases()
        metafunc.parametrize("bench_case", cases, ids=[c.id for c in cases])


def pytest_configure(config: pytest.Config) -> None:
    """Read and check the options once, before collection: a bad option or data root is one
    ``ERROR:`` line, not a collection traceback."""
    bench = _session(config)
    if bench.settings.data_root is not None:
        bench.datasets()
    _stop_on_sigterm(config)
    if not config.pluginmanager.hasplugin("benchmark"):  # pytest-benchmark switched off (-p no:benchmark)
        config.pluginmanager.register(_NoBenchmark(), "samradbench-no-benchmark")


class _NoBenchmark:
    """Stands in for pytest-benchmark's ``benchmark`` fixture when that plugin is switched off."""

    @pytest.fixture
    def benchmark(self):
        return None


_SIGTERM_KEY = pytest.StashKey[Any]()


def _stop_on_sigterm(config: pytest.Config) -> None:
    """SIGTERM (``kill``, ``timeout``, a batch scheduler) ends the session like Ctrl-C: the results
    document is marked ``interrupted`` and the summary printed, instead of a silent death that leaves
    it ``running``. Only where nobody else handles SIGTERM; the old handler comes back at the end."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    config.stash[_SIGTERM_KEY] = signal.signal(signal.SIGTERM, interrupt)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SIGTERM_KEY in config.stash:
        import signal

        signal.signal(signal.SIGTERM, config.stash[_SIGTERM_KEY])


def pytest_collection_finish(session: pytest.Session) -> None:
    cases = [item.callspec.params["bench_case"] for item in session.items
             if hasattr(item, "callspec") and "bench_case" in item.callspec.params]
    if not cases:
        return
    bench = _session(session.config)
    bench.want(cases)
    if session.config.option.collectonly:
        return
    # build the model and open the results document now: a wrong checkpoint or device, or a --resume
    # that cannot reuse the file it was given, is one ERROR line before anything runs
    if bench.settings.sam is not None and any(c.generator in SAM_GENERATORS for c in cases):
        try:
            bench.build_sam()
        except SamradbenchError as exc:
            raise pytest.UsageError(f"SAM model could not be built: {exc}") from None
    try:
        bench.open_document()
    except SamradbenchError as exc:
        raise pytest.UsageError(f"--resume: {exc}; pass another --results-json, or drop --resume to start "
                                "afresh (the earlier file is then kept as *.previous.json)") from None


#: Skip reason of tests that need real volumes when no data root is configured.
NO_REAL_DATA = (
    "real volumes: pass --data-root (e.g. --data-root ../shared/data, the MSD-layout shared data) "
    "or set SAMRADBENCH_DATA_ROOT"
)


def configured_data_root(config: pytest.Config) -> Path | None:
    """The data root the user configured (``--data-root``, else ``$SAMRADBENCH_DATA_ROOT``); None when
    neither is set and the benchmarks use the embedded default data."""
    return _session(config).settings.data_root


@pytest.fixture(scope="session")
def samrad(request: pytest.FixtureRequest) -> BenchSession:
    """The session's benchmark runner: ``samrad.outcome(bench_case)`` gives a case's results."""
    return _session(request.config)


def claim_benchmark(benchmark) -> None:
    """Tell pytest-benchmark the fixture is in use (its rounds are recorded by
    :func:`record_generator_seconds`), so a case that skips or fails early raises no "fixture was not
    used" warning."""
    if benchmark is not None:
        benchmark._mode = "samradbench: generator seconds per slice"


def record_generator_seconds(benchmark, seconds: list[float]) -> None:
    """Put the generator's measured seconds per slice into pytest-benchmark's stats, one round per slice.

    The generator ran once per slice for every heuristic case at once, so its clock readings are
    recorded here rather than re-running it under ``benchmark(...)``. Uses pytest-benchmark's
    ``_make_stats`` (tested against the bounded pytest-benchmark version in tests/test_plugin.py).
    """
    if benchmark is None:
        return
    claim_benchmark(benchmark)
    if getattr(benchmark, "disabled", False) or not seconds:
        return
    stats = benchmark._make_stats(1)
    for s in seconds:
        stats.update(s)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if _SESSION_KEY not in config.stash:
        return
    bench = config.stash[_SESSION_KEY]
    doc = bench.document
    if doc is None or not bench._writing:
        if doc is not None:
            terminalreporter.write_line(f"samradbench: no volume was scored; {bench.settings.results_json} "
                                        "left as it was")
        return
    from .report import summary_table

    if bench.cache is not None:
        doc.config["cache_stats"] = bench.cache.stats()
    doc.status = "interrupted" if exitstatus == pytest.ExitCode.INTERRUPTED else "complete"
    doc.flush()
    tr = terminalreporter
    tr.section("samradbench summary")
    summary = doc.as_dict()["summary"]
    tr.write_line(summary_table(summary) if summary else "no volume was scored")
    if any(r.get("model", {}).get("weights") == "random-init" for r in doc.cases):
        tr.write_line("NOTE: random-init rows use untrained SAM weights; they check the pipeline, "
                      "not SAM's segmentation quality.")
    for f in doc.failures:
        tr.write_line(f"FAILED volume {f['dataset']}/{f['volume']} ({f['generator']}): {f['reason']}")
    tr.write_line(f"results: {doc.path}")
    plot = config.getoption("--plot")
    if plot:
        from .figures import dice_boxplots

        try:
            tr.write_line(f"plot: {dice_boxplots(doc.cases, Path(plot))}")
        except (SamradbenchError, ValueError) as exc:
            tr.write_line(f"plot not written: {exc}", yellow=True)
