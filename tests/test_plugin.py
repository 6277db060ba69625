"""The pytest plugin end to end, run in isolated pytest sessions with ``pytester``.

Each session runs the repository's own benchmark module on the embedded synthetic data (oracle and
superpixels only, so no model weights are needed) and checks what a user sees: ids selectable with
-k, the SAM skip reason, the JSON document, the printed table, pytest-benchmark's JSON.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
# Loaded here, before any in-process pytester run: pytester restores sys.modules after each run,
# and torch cannot be imported a second time into the same interpreter once it was dropped.
import torch  # noqa: F401

from samradbench.results import loads_strict
from samradbench.synthetic import write_default_data

pytest_plugins = ["pytester"]

BENCH_MODULE = Path(__file__).resolve().parents[1] / "benchmarks" / "test_segmentation.py"


@pytest.fixture(scope="module")
def default_data(tmp_path_factory) -> Path:
    return write_default_data(tmp_path_factory.mktemp("default-data"))


@pytest.fixture
def bench(pytester, default_data):
    # a name of its own: benchmarks/test_segmentation.py may already be imported in this process
    pytester.makepyfile(test_bench_copy=BENCH_MODULE.read_text())

    def run(*args, data_root=default_data):
        return pytester.runpytest("-p", "no:cacheprovider", "--data-root", str(data_root),
                                  "--results-json", "r.json", *args)

    return run


def _table_rows(stdout: str) -> list[dict[str, str]]:
    """The printed summary table as {column header: cell} rows."""
    lines = stdout.split("samradbench summary", 1)[1].splitlines()
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines if line.startswith("|")]
    header = rows[0]
    return [dict(zip(header, r)) for r in rows[1:] if not set(r[0]) <= {"-", ":"}]  # drop the rule


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def test_k_selects_dataset_target_generator_heuristic(bench, pytester):
    result = bench("--generators", "oracle,superpixels", "-k", "prostate and pz and oracle and best", "-q")
    result.assert_outcomes(passed=1)
    doc = loads_strict((pytester.path / "r.json").read_text())
    assert {(r["dataset"], r["target"], r["generator"], r["heuristic"]) for r in doc["cases"]} == {
        ("prostate", "pz", "oracle", "best")
    }
    assert len(doc["cases"]) == 3  # the three synthetic prostate volumes


def test_sam_cases_skip_naming_the_option(bench):
    result = bench("--generators", "sam-auto,sam-seeded", "-k", "spleen", "-rs")
    result.assert_outcomes(skipped=8)
    assert "--sam-checkpoint" in result.stdout.str()


def test_json_summary_equals_printed_table_and_benchmark_json(bench, pytester):
    result = bench("--generators", "oracle,superpixels", "--benchmark-json", "bench.json")
    result.assert_outcomes(passed=2 * 4 * (3 + 1))  # (prostate pz, tz, gland + spleen) × 2 gens × 4 heuristics
    doc = loads_strict((pytester.path / "r.json").read_text())
    assert set(doc) >= {"schema_version", "environment", "config", "cases", "summary", "failures"}
    table = _table_rows(result.stdout.str())
    assert len(table) == len(doc["summary"])
    by_key = {(r["dataset"], r["target"], r["generator"], r["heuristic"]): r for r in table}
    for s in doc["summary"]:
        row = by_key[(s["dataset"], s["target"], s["generator"], s["heuristic"])]
        assert row["model"] == s["model_label"]
        assert (row["n"], row["null"], row["absent"]) == (str(s["n_volumes"]), str(s["n_null"]), str(s["n_absent"]))
        assert row["Dice mean"] == _fmt(s["dice_mean"], ".3f")
        assert row["Dice median"] == _fmt(s["dice_median"], ".3f")
        assert row["Dice IQR"] == f"{_fmt(s['dice_q1'], '.3f')}–{_fmt(s['dice_q3'], '.3f')}"
        assert row["Dice_pos median"] == _fmt(s["dice_pos_median"], ".3f")
        assert row["detected median"] == _fmt(s["fraction_detected_median"], ".3f")
        assert row["s/slice"] == _fmt(s["seconds_per_slice"], ".3g")
    oracle_all = [s for s in doc["summary"] if s["generator"] == "oracle" and s["heuristic"] == "all"]
    assert oracle_all and all(s["dice_mean"] == 1.0 for s in oracle_all)

    bench_json = json.loads((pytester.path / "bench.json").read_text())
    entry = next(b for b in bench_json["benchmarks"] if b["param"] == "spleen/spleen-superpixels-all")
    case_rows = [r for r in doc["cases"] if r["dataset"] == "spleen" and r["generator"] == "superpixels"
                 and r["heuristic"] == "all"]
    assert entry["stats"]["rounds"] == sum(r["n_slices_generated"] for r in case_rows)
    assert entry["extra_info"]["dice_mean"] == pytest.approx(
        sum(r["dice"] for r in case_rows) / len(case_rows))


def test_corrupt_volume_is_recorded_and_others_survive(bench, pytester, default_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(default_data / "Task09_Spleen", root / "Task09_Spleen")
    victim = sorted((root / "Task09_Spleen" / "imagesTr").glob("*.nii.gz"))[0]
    victim.write_bytes(b"<html>not a volume</html>")
    result = bench("--generators", "oracle", "-k", "all", data_root=root)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert victim.name.split(".")[0] in out and "could not be processed" in out
    doc = loads_strict((pytester.path / "r.json").read_text())
    assert len(doc["failures"]) == 1 and victim.name in doc["failures"][0]["reason"]
    assert len(doc["cases"]) == 1 and doc["cases"][0]["dice"] == 1.0


def test_bad_data_root_is_one_usage_error(bench, tmp_path):
    result = bench(data_root=tmp_path / "nowhere")
    assert result.ret != 0
    assert re.search(r"--data-root .*nowhere", result.stderr.str() + result.stdout.str())


def test_ids_never_contain_characters_k_cannot_type(bench):
    result = bench("--generators", "oracle", "--collect-only", "-q")
    ids = [line for line in result.stdout.lines if "test_segmentation[" in line]
    assert ids and all(">" not in i and " " not in i.split("[", 1)[1] for i in ids)


def test_second_run_and_added_heuristic_are_served_from_the_cache(bench, pytester):
    first = bench("--generators", "superpixels", "-k", "spleen and best")
    first.assert_outcomes(passed=1)
    stats1 = loads_strict((pytester.path / "r.json").read_text())["config"]["cache_stats"]
    assert stats1["model_calls"] > 0 and stats1["hits"] == 0
    second = bench("--generators", "superpixels", "-k", "spleen")  # adds three heuristics
    second.assert_outcomes(passed=4)
    doc = loads_strict((pytester.path / "r.json").read_text())
    assert doc["config"]["cache_stats"]["model_calls"] == 0
    assert doc["config"]["cache_stats"]["hits"] == stats1["model_calls"]
    best1 = [r["dice"] for r in loads_strict((pytester.path / "r.json").read_text())["cases"] if r["heuristic"] == "best"]
    assert len(best1) == 2
    third = bench("--generators", "superpixels", "-k", "spleen and best", "--no-cache")
    third.assert_outcomes(passed=1)
    assert loads_strict((pytester.path / "r.json").read_text())["config"].get("cache_stats") is None


def test_device_options_reach_the_results_config(bench, pytester):
    """--precision, --encoder-batch and --points-per-batch flow into SamConfig and every result's config,
    on CPU, through the tiny random-init SAM."""
    pytest.importorskip("segment_anything")
    result = bench("--generators", "sam-auto", "-k", "spleen and best", "--sam-random-init", "vit_tiny",
                   "--points-per-side", "2", "--precision", "bf16", "--encoder-batch", "4",
                   "--points-per-batch", "2")
    result.assert_outcomes(passed=1)
    doc = loads_strict((pytester.path / "r.json").read_text())
    sam = doc["config"]["sam"]
    assert (sam["precision"], sam["encoder_batch"], sam["points_per_batch"], sam["compile"]) == ("bf16", 4, 2, False)
    described = doc["config"]["generator_descriptions"]["sam-auto"]
    assert described["config"]["precision"] == "bf16" and described["model"]["weights"] == "random-init"
    assert all(r["model_label"].startswith("random-init") for r in doc["cases"])
    assert all(r["peak_memory_bytes"] and r["peak_memory_bytes"] > 0 for r in doc["cases"])
    assert "random-init rows use untrained SAM weights" in result.stdout.str()


def test_plot_option_draws_a_png(bench, pytester):
    pytest.importorskip("matplotlib")
    result = bench("--generators", "oracle,superpixels", "--plot", "dice.png")
    result.assert_outcomes(passed=32)
    png = (pytester.path / "dice.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "plot: dice.png" in result.stdout.str()


def test_plot_without_matplotlib_is_refused_before_the_run(bench, pytester, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = bench("--generators", "oracle", "-k", "spleen and all", "--plot", "dice.png")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ERROR: --plot dice.png: plots need matplotlib: pip install 'samradbench[plots]'" in result.stderr.str()
    assert not (pytester.path / "dice.png").exists() and not (pytester.path / "r.json").exists()


@pytest.mark.parametrize("args, message", [
    (("--generators", "foo"), "unknown generator 'foo'"),
    (("--heuristics", "bar"), "unknown heuristic 'bar'"),
    (("--max-volumes", "0"), "--max-volumes must be at least 1"),
    (("--ct-window", "40"), "--ct-window takes LEVEL,WIDTH"),
    (("--sam-checkpoint", "missing.pth"), "--sam-checkpoint missing.pth: no such file"),
    (("--points-per-side", "0"), "--points-per-side must be at least 1, got 0"),
    (("--seed-grid", "-1"), "--seed-grid must be at least 1, got -1"),
    (("--encoder-batch", "0"), "--encoder-batch must be at least 1, got 0"),
    (("--pred-iou-thresh", "1.5"), "--pred-iou-thresh must lie in [0, 1], got 1.5"),
    (("--results-json", "."), "--results-json . is a folder; give a file name such as samradbench.json"),
    (("--results-json", "/proc/nope/r.json"), "--results-json /proc/nope/r.json: cannot write there"),
    (("--results-json", "/proc/r.json"), "--results-json /proc/r.json: cannot write there"),
    pytest.param(("--plot", "dice.txt"), "--plot dice.txt: cannot draw a plot as 'dice.txt': use one of the suffixes",
                 marks=pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")),
    (("--ct-window", "nan,400"), "--ct-window takes finite numbers, got 'nan,400'"),
    (("--ct-window", "40,inf"), "--ct-window takes finite numbers"),
    (("--results-json", "/dev/null"), "--results-json /dev/null is not a regular file"),
    (("--results-json", "r.json", "--benchmark-json", "r.json"), "--results-json and --benchmark-json both name"),
    (("--sam-random-init", "vit_tiny", "--sam-model", "vit_h"), "--sam-model checks a checkpoint's architecture"),
    (("--sam-checkpoint", "."), "--sam-checkpoint . is a folder"),
    (("--cache-dir", "test_bench_copy.py"), "--cache-dir test_bench_copy.py is a file"),
])
def test_bad_options_are_one_error_line_without_traceback(bench, args, message):
    result = bench(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"ERROR: {message}" in err and "Traceback" not in err and "plugin.py" not in err


def test_a_broken_checkpoint_stops_the_run_once_before_anything_runs(bench, pytester):
    (pytester.path / "sam_vit_h_4b8939.pth").write_text("<html><body>Sign in</body></html>")
    result = bench("--sam-checkpoint", "sam_vit_h_4b8939.pth")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err, out = result.stderr.str(), result.stdout.str()
    assert err.count("ERROR: SAM model could not be built: checkpoint") == 1 and "HTML" in err
    assert "Traceback" not in err + out and " passed" not in out and "PASSED" not in out
    assert not (pytester.path / "r.json").exists()


def test_resume_says_what_it_reused(bench, pytester):
    first = bench("--generators", "oracle", "-k", "spleen", "--resume").stdout.str()
    assert "resume: nothing to resume" in first
    assert first.index("resume: nothing to resume") < first.index("test_bench_copy.py")  # before any case
    again = bench("--generators", "oracle", "-k", "spleen", "--resume").stdout.str()
    assert "resume: 2 finished volume(s)" in again and again.count("reused from the earlier run (--resume)") == 2


def test_resume_refuses_another_configuration_and_keeps_the_file(bench, pytester):
    bench("--generators", "oracle", "-k", "spleen").assert_outcomes(passed=4)
    kept = (pytester.path / "r.json").read_text()
    other = bench("--generators", "oracle", "-k", "spleen", "--resume", "--heuristics", "best",
                  "--seed-grid", "4")
    assert other.ret == pytest.ExitCode.USAGE_ERROR
    err = other.stderr.str()
    assert "ERROR: --resume: r.json was made with another configuration: " in err
    assert 'heuristics: ["all", "best", "iou>0.25", "iou>0.5"] → ["best"]' in err
    assert "Traceback" not in err
    assert (pytester.path / "r.json").read_text() == kept  # the earlier results are untouched
    (pytester.path / "list.json").write_text("[1, 2]")
    not_ours = bench("--generators", "oracle", "--resume", "--results-json", "list.json")
    assert not_ours.ret == pytest.ExitCode.USAGE_ERROR
    assert "list.json is JSON but not a samradbench results document" in not_ours.stderr.str()


def test_resume_recomputes_a_volume_whose_files_changed(bench, pytester, default_data, tmp_path):
    import nibabel as nib
    import numpy as np

    root = tmp_path / "data"
    shutil.copytree(default_data / "Task09_Spleen", root / "Task09_Spleen")
    bench("--generators", "oracle", "-k", "all", data_root=root).assert_outcomes(passed=1)
    before = {r["volume"]: r for r in loads_strict((pytester.path / "r.json").read_text())["cases"]}
    label_path = sorted((root / "Task09_Spleen" / "labelsTr").glob("*.nii.gz"))[0]
    img = nib.load(label_path)
    data = np.asarray(img.dataobj).copy()
    spleen = np.flatnonzero(data)
    data.flat[spleen[: spleen.size // 2]] = 0  # half of the spleen gone
    nib.save(nib.Nifti1Image(data, img.affine), label_path)
    again = bench("--generators", "oracle", "-k", "all", "--resume", data_root=root)
    again.assert_outcomes(passed=1)
    assert again.stdout.str().count("reused from the earlier run") == 1  # only the unchanged volume
    after = {r["volume"]: r for r in loads_strict((pytester.path / "r.json").read_text())["cases"]}
    changed = label_path.name.split(".")[0]
    assert after[changed]["truth_voxels"] == int(np.count_nonzero(data)) < before[changed]["truth_voxels"]
    assert after[changed]["volume_info"]["inputs_sha256"] != before[changed]["volume_info"]["inputs_sha256"]


def test_a_new_run_keeps_the_previous_results_beside_it(bench, pytester):
    bench("--generators", "oracle", "-k", "spleen and best").assert_outcomes(passed=1)
    first = (pytester.path / "r.json").read_text()
    out = bench("--generators", "oracle", "-k", "spleen and all").stdout.str()
    assert "the earlier one is now r.previous.json" in out
    assert (pytester.path / "r.previous.json").read_text() == first
    assert {r["heuristic"] for r in loads_strict((pytester.path / "r.json").read_text())["cases"]} == {"all"}


def test_blank_images_are_warned_about_and_ct_window_skips_mri(bench, pytester, default_data, tmp_path):
    import nibabel as nib
    import numpy as np

    root = tmp_path / "data"
    shutil.copytree(default_data / "Task05_Prostate", root / "Task05_Prostate")
    first = sorted((root / "Task05_Prostate" / "imagesTr").glob("*.nii.gz"))[0]
    img = nib.load(first)
    nib.save(nib.Nifti1Image(np.full(img.shape, np.nan, np.float32), img.affine), first)
    result = bench("--generators", "oracle", "-k", "pz and all", "--ct-window", "40,400", data_root=root)
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "WARNING" in out and "NaN/inf voxels set to 0" in out and "the image is blank" in out
    assert "--ct-window not applied to a T2 image" in out
    doc = loads_strict((pytester.path / "r.json").read_text())
    assert doc["status"] == "complete"
    assert all(r["volume_info"]["ct_window"] is None for r in doc["cases"])


CASE_ROW_KEYS = {
    "dataset", "target", "target_labels", "generator", "heuristic", "volume", "model", "model_label", "dice",
    "iou", "dice_pos", "fraction_detected", "tp", "fp", "fn", "truth_voxels", "n_slices", "n_slices_truth",
    "n_slices_selected", "n_slices_generated", "n_slices_not_generated", "n_segments", "subset_violations",
    "generator_seconds", "encode_seconds", "seconds_per_slice", "peak_memory_bytes",
    "points_per_batch_fallbacks", "slices", "volume_info",
}
SUMMARY_ROW_KEYS = {
    "dataset", "target", "generator", "heuristic", "model", "model_label", "n_volumes", "n_null", "dice_mean",
    "dice_median", "dice_q1", "dice_q3", "dice_pos_median", "fraction_detected_median", "n_absent",
    "n_slices_generated", "seconds_per_slice", "encode_seconds_per_slice", "peak_memory_bytes",
}


def test_results_schema_and_what_each_volume_records(bench, pytester, default_data):
    """SPEC §6 keys of the document, its environment, a cases row and a summary row (as the README
    lists them); and, read back from the JSON, what B03, B22, B24 and B26 ask to see per volume —
    compared with the NIfTI files themselves, read here with nibabel."""
    import nibabel as nib
    import numpy as np

    bench("--generators", "oracle", "-k", "prostate and all").assert_outcomes(passed=3)
    doc = loads_strict((pytester.path / "r.json").read_text())
    assert set(doc) == {"schema_version", "status", "environment", "config", "cases", "summary", "failures",
                        "absent"}
    env = doc["environment"]
    assert {"python", "torch", "torchvision", "segment_anything", "device", "device_name", "git_commit"} <= set(env)
    assert env["device"] == "cpu" and env["device_name"]  # the baselines ran on the CPU
    assert all(set(r) == CASE_ROW_KEYS for r in doc["cases"])
    assert all(set(s) == SUMMARY_ROW_KEYS for s in doc["summary"])
    for s in doc["summary"]:  # the full model identity, as in the rows it summarises
        assert s["model"] == next(r["model"] for r in doc["cases"] if r["target"] == s["target"])

    images = sorted((default_data / "Task05_Prostate" / "imagesTr").glob("*.nii.gz"))
    labels = sorted((default_data / "Task05_Prostate" / "labelsTr").glob("*.nii.gz"))
    for image, label in zip(images, labels):
        row = next(r for r in doc["cases"] if r["volume"] == image.name.split(".")[0] and r["target"] == "gland")
        info = row["volume_info"]
        img = nib.load(image)
        t2 = np.asarray(img.dataobj)[..., 0]  # modality {"0": "T2", "1": "ADC"}
        assert info["original_shape"] == list(img.shape) == [96, 96, 14, 2]  # B22: the shape as stored
        assert info["shape"] == [96, 96, 14] and info["slice_axis"] == 2  # B24: smallest axis, 14 slices
        assert info["channel"] == 0 and info["channel_name"] == "T2"
        assert (info["intensity_min"], info["intensity_max"]) == (float(t2.min()), float(t2.max()))  # B03
        stored = np.unique(np.asarray(nib.load(label).dataobj))
        assert info["label_values"] == [int(v) for v in stored] == [0, 1, 2]  # B26
        assert row["target_labels"] == [1, 2]  # gland = PZ ∪ TZ
        assert info["orientation"] == "".join(nib.aff2axcodes(img.affine)) == "LPS"  # as stored


def test_absent_targets_are_counted_in_the_summary_and_the_benchmark_json(bench, pytester, tmp_path):
    """A volume without a TZ is left out of prostate/tz and counted: n_absent 1 in the results summary
    and in pytest-benchmark's extra_info alike; its PZ is scored."""
    import numpy as np

    from samradbench.synthetic import SyntheticCase, write_msd_dataset

    label = np.zeros((24, 24, 4), np.uint8)
    label[5:10, 5:10, 1:3] = 1
    with_tz = label.copy()
    with_tz[12:18, 5:10, 1:3] = 2
    image = np.random.default_rng(0).normal(size=(24, 24, 4)).astype(np.float32)
    write_msd_dataset(tmp_path / "data" / "Task05_Prostate",
                      [SyntheticCase("p0", image, with_tz), SyntheticCase("p1", image, label)],
                      {"0": "background", "1": "PZ", "2": "TZ"}, {"0": "T2"})
    result = bench("--generators", "oracle", "-k", "all", "--benchmark-json", "bench.json",
                   data_root=tmp_path / "data")
    result.assert_outcomes(passed=3)
    doc = loads_strict((pytester.path / "r.json").read_text())
    by_target = {s["target"]: s for s in doc["summary"]}
    assert (by_target["tz"]["n_volumes"], by_target["tz"]["n_absent"]) == (1, 1)
    assert (by_target["pz"]["n_volumes"], by_target["pz"]["n_absent"]) == (2, 0)
    assert [{k: a[k] for k in ("dataset", "target", "generator", "volume")} for a in doc["absent"]] == [
        {"dataset": "prostate", "target": "tz", "generator": "oracle", "volume": "p1"}]
    table = {r["target"]: r for r in _table_rows(result.stdout.str())}
    assert (table["tz"]["n"], table["tz"]["absent"]) == ("1", "1")  # on screen too
    bench_json = json.loads((pytester.path / "bench.json").read_text())
    extra = {b["param"]: b["extra_info"] for b in bench_json["benchmarks"]}
    assert extra["prostate/tz-oracle-all"]["n_absent"] == 1 and extra["prostate/pz-oracle-all"]["n_absent"] == 0


def test_a_symlinked_results_file_is_written_through(bench, pytester):
    (pytester.path / "store").mkdir()
    (pytester.path / "link.json").symlink_to(pytester.path / "store" / "real.json")
    bench("--generators", "oracle", "-k", "spleen and all", "--results-json", "link.json").assert_outcomes(passed=1)
    assert (pytester.path / "link.json").is_symlink()
    assert loads_strict((pytester.path / "store" / "real.json").read_text())["status"] == "complete"


def test_benchmark_only_runs_the_cases(bench, pytester):
    result = bench("--generators", "oracle", "-k", "spleen", "--benchmark-only")
    result.assert_outcomes(passed=4)
    assert len(loads_strict((pytester.path / "r.json").read_text())["cases"]) == 4 * 2


def test_a_session_that_scores_nothing_leaves_the_results_file_alone(bench, pytester):
    bench("--generators", "oracle", "-k", "spleen and all").assert_outcomes(passed=1)
    before = (pytester.path / "r.json").read_text()
    result = bench("--generators", "sam-auto", "-k", "spleen")  # every case skips: no SAM model
    result.assert_outcomes(skipped=4)
    assert "no volume was scored; r.json left as it was" in result.stdout.str()
    assert (pytester.path / "r.json").read_text() == before and not (pytester.path / "r.previous.json").exists()


def test_resume_recomputes_when_dataset_json_reads_the_labels_differently(bench, pytester, default_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(default_data / "Task05_Prostate", root / "Task05_Prostate")
    bench("--generators", "oracle", "-k", "pz and all", "--max-volumes", "1", data_root=root).assert_outcomes(passed=1)
    before = loads_strict((pytester.path / "r.json").read_text())["cases"][0]
    spec_path = root / "Task05_Prostate" / "dataset.json"
    spec = json.loads(spec_path.read_text())
    spec["labels"] = {"0": "background", "1": "TZ", "2": "PZ"}  # the labels swapped
    spec_path.write_text(json.dumps(spec))
    # a longer run (another --max-volumes) of the same configuration may resume; the changed reading
    # of the labels is recomputed, not reused
    again = bench("--generators", "oracle", "-k", "pz and all", "--resume", "--max-volumes", "2", data_root=root)
    again.assert_outcomes(passed=1)
    assert "reused from the earlier run" not in again.stdout.str()
    after = loads_strict((pytester.path / "r.json").read_text())["cases"]
    assert len(after) == 2
    first = next(r for r in after if r["volume"] == before["volume"])
    assert (before["target_labels"], first["target_labels"]) == ([1], [2])
    assert first["truth_voxels"] != before["truth_voxels"]


def test_resume_does_not_mind_how_the_data_root_is_spelled_or_where_the_cache_is(bench, pytester, default_data):
    bench("--generators", "oracle", "-k", "spleen and all").assert_outcomes(passed=1)
    spelled = default_data.parent / ".." / default_data.parent.name / default_data.name
    again = bench("--generators", "oracle", "-k", "spleen and all", "--resume", "--cache-dir", "elsewhere",
                  data_root=spelled)
    again.assert_outcomes(passed=1)
    assert again.stdout.str().count("reused from the earlier run") == 2
