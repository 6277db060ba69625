"""Human-readable views of a results document: the summary table printed at the end of a session.

Reads results; never runs a model.
"""

from __future__ import annotations

from typing import Iterable

from tabulate import tabulate

# (column header, summary-row key, format); the table shows exactly these summary fields.
TABLE_COLUMNS = (
    ("dataset", "dataset", None),
    ("target", "target", None),
    ("generator", "generator", None),
    ("heuristic", "heuristic", None),
    ("model", "model_label", None),
    ("n", "n_volumes", None),
    ("null", "n_null", None),
    ("absent", "n_absent", None),
    ("Dice mean", "dice_mean", ".3f"),
    ("Dice median", "dice_median", ".3f"),
    ("Dice IQR", ("dice_q1", "dice_q3"), ".3f"),
    ("Dice_pos median", "dice_pos_median", ".3f"),
    ("detected median", "fraction_detected_median", ".3f"),
    ("s/slice", "seconds_per_slice", ".3g"),
)

NA = "n/a"


def _cell(row: dict, key, fmt: str | None) -> str:
    if isinstance(key, tuple):
        parts = [_cell(row, k, fmt) for k in key]
        return NA if NA in parts else "–".join(parts)
    value = row.get(key)
    if value is None:
        return NA
    return format(value, fmt) if fmt else str(value)


def summary_table(summary: Iterable[dict], tablefmt: str = "github") -> str:
    """The summary rows as a text table; undefined values show as 'n/a'."""
    rows = sorted(summary, key=lambda r: (r["dataset"], r["target"], r["generator"], r["heuristic"]))
    body = [[_cell(r, key, fmt) for _, key, fmt in TABLE_COLUMNS] for r in rows]
    return tabulate(body, headers=[h for h, _, _ in TABLE_COLUMNS], tablefmt=tablefmt, disable_numparse=True)
