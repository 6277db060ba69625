"""The paper's benchmark: one case per dataset × target × generator × heuristic.

Select with ``-k``: ``-k prostate``, ``-k "hippocampus and sam-seeded and best"``, ``-k iou-gt-0.5``.
Each case checks the SPEC's invariants on its own outputs, records the generator's seconds per slice
in pytest-benchmark and its Dice summary in the benchmark's ``extra_info``.
"""

from __future__ import annotations

import pytest

from samradbench.plugin import claim_benchmark, record_generator_seconds


def test_segmentation(bench_case, samrad, benchmark):
    # ``benchmark`` is pytest-benchmark's fixture (None with ``-p no:benchmark``); the generator's own
    # clock readings become its rounds, so it is claimed before a case can skip
    claim_benchmark(benchmark)
    outcome = samrad.outcome(bench_case)
    record_generator_seconds(benchmark, outcome.slice_seconds)
    if outcome.summary and benchmark is not None:
        benchmark.extra_info.update(outcome.summary)
    failed = [f"{f['volume']}: {f['reason']}" for f in outcome.failures]
    if failed:
        pytest.fail(f"{len(failed)} volume(s) could not be processed: " + "; ".join(failed), pytrace=False)
    if not outcome.rows:
        pytest.skip(f"no volume of {bench_case.dataset} contains target {bench_case.target}")

    for row in outcome.rows:
        where = f"{row['volume']}"
        dice, dice_pos, f = row["dice"], row["dice_pos"], row["fraction_detected"]
        assert row["truth_voxels"] > 0, where
        assert row["subset_violations"] == 0, f"{where}: a heuristic selected outside a looser one"
        assert dice is not None and 0.0 <= dice <= 1.0, where
        assert 0.0 <= f <= 1.0, where
        # Dice ≤ 2f/(1+f): the undetected truth voxels are all false negatives
        assert dice <= 2 * f / (1 + f) + 1e-12, where
        if dice_pos is None:
            assert row["n_slices_selected"] == 0 and dice == 0.0, where
        else:
            assert dice <= dice_pos + 1e-12 and dice_pos <= 1.0, where
        if bench_case.generator == "oracle" and bench_case.heuristic == "all":
            assert dice == 1.0, f"{where}: the oracle's own components must reproduce the truth"
