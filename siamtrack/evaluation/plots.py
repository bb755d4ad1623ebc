"""Success and precision plots with every tracker on one figure.

Uses matplotlib's Agg backend (selected before pyplot is imported) so benchmarks run on servers
and in worker processes without a display.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend choice, on purpose)
import numpy as np  # noqa: E402

_STYLES = ["-", "--", "-.", ":"]


def _plot(curves: Mapping[str, Sequence[float]], scores: Mapping[str, float], x: np.ndarray,
          path: Path, xlabel: str, ylabel: str, title: str, score_label: str) -> Path:
    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    try:
        order = sorted(curves, key=lambda n: -(scores.get(n) or 0.0))  # best first in the legend
        for i, name in enumerate(order):
            ax.plot(x, curves[name], _STYLES[(i // 10) % len(_STYLES)], linewidth=1.6,
                    label=f"{name} [{score_label} {scores.get(name) or 0.0:.3f}]")
        ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(float(x[0]), float(x[-1])), ylim=(0, 1.01), title=title)
        ax.grid(True, alpha=0.4)
        # outside the axes (as the toolkit does): no curve is ever hidden behind it
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def success_plot(curves: Mapping[str, Sequence[float]], aucs: Mapping[str, float],
                 path: str | os.PathLike[str], title: str = "Success plot") -> Path:
    """Success rate against the IoU threshold (the toolkit's ``linspace(0, 1, len(curve))``)."""
    n = len(next(iter(curves.values())))
    return _plot(curves, aucs, np.linspace(0, 1, n), Path(path), "Overlap threshold",
                 "Success rate", title, "AUC")


def precision_plot(curves: Mapping[str, Sequence[float]], precisions: Mapping[str, float],
                   path: str | os.PathLike[str], title: str = "Precision plot") -> Path:
    """Precision against the centre-error threshold in pixels (0..50, as in OTB)."""
    n = len(next(iter(curves.values())))
    return _plot(curves, precisions, np.arange(n, dtype=float), Path(path),
                 "Location error threshold (px)", "Precision", title, "P@20")
