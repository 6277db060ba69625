"""Pictures of a results document: per-volume Dice as box plots, one panel per dataset/target.

Reads result rows; never runs a model. matplotlib is optional (``pip install samradbench[plots]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .errors import ConfigError, MissingDependencyError
from .selection import HEURISTICS


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError(
            "plots need matplotlib: pip install 'samradbench[plots]' (or matplotlib)"
        ) from None
    return plt


def check_plot_path(path: Path) -> Path:
    """``path`` if a plot can be written there: matplotlib installed, a format it writes (from the
    suffix). Otherwise MissingDependencyError / ConfigError, so a
    run can refuse ``--plot`` before it starts rather than after its last volume."""
    _pyplot()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    formats = FigureCanvasAgg.get_supported_filetypes()
    suffix = path.suffix.lstrip(".").lower()
    if suffix not in formats:
        raise ConfigError(f"cannot draw a plot as {path.name!r}: use one of the suffixes "
                          f"{', '.join('.' + f for f in sorted(formats))}")
    return path


def dice_boxplots(cases: Iterable[dict], path: Path) -> Path:
    """Write a PNG with one panel per dataset/target: per-volume Dice for every generator × heuristic,
    each volume a dot over its box. Random-init models are marked in the labels. Returns ``path``."""
    plt = _pyplot()
    groups: dict[tuple[str, str], dict[tuple[str, str, str], list[float]]] = {}
    for r in cases:
        if r["dice"] is None:
            continue
        panel = groups.setdefault((r["dataset"], r["target"]), {})
        panel.setdefault((r["generator"], r["heuristic"], r["model_label"]), []).append(r["dice"])
    if not groups:
        raise ValueError("no defined Dice values to plot")
    order = {h: i for i, h in enumerate(HEURISTICS)}
    n = len(groups)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.2 * rows), squeeze=False)
    for ax, ((dataset, target), panel) in zip(axes.flat, sorted(groups.items())):
        keys = sorted(panel, key=lambda k: (k[0], order.get(k[1], 99), k[2]))
        data = [panel[k] for k in keys]
        ax.boxplot(data, orientation="horizontal", widths=0.6, showfliers=False)
        for i, values in enumerate(data, 1):
            ax.plot(values, [i] * len(values), "o", ms=3, alpha=0.6, color="tab:blue")
        labels = [f"{g} · {h}" + (" (random-init)" if m.startswith("random-init") else "") for g, h, m in keys]
        ax.set_yticks(range(1, len(keys) + 1), labels, fontsize=8)
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("Dice per volume")
        ax.set_title(f"{dataset} / {target}", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("samradbench: per-volume Dice (random-init rows check the pipeline, not SAM's quality)",
                 fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
