"""PNG plots of evaluation results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)


def plot_wer(
    groups: Mapping[str, Mapping[str, float]],
    path: str | Path,
    error_classes: Mapping[str, float] | None = None,
    title: str = "WER",
) -> Path:
    """Bar chart of raw and normalized WER/CER per system or condition, optionally with error-class counts.

    Args:
        groups: ``{label: {"wer": ..., "wer_raw": ..., "cer": ..., "cer_raw": ...}}`` (fractions; plotted in %).
        path: the PNG to write (parent folders are created).
        error_classes: ``{class name: count}`` (substitutions, deletions, insertions, suffix confusions ...)
            drawn in a second panel.
        title: the figure title.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panels = 2 if error_classes else 1
    figure, axes = plt.subplots(1, panels, figsize=(6 + 1.2 * len(groups) + 4 * (panels - 1), 4.5), squeeze=False)
    _rate_bars(axes[0][0], groups)
    if error_classes:
        _count_bars(axes[0][1], error_classes)
        axes[0][1].set_ylabel("count")
        axes[0][1].set_title("error classes (normalized text)", fontsize=10)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


_SERIES = (("wer_raw", "WER raw"), ("wer", "WER normalized"), ("cer_raw", "CER raw"), ("cer", "CER normalized"))


def _rate_bars(axis: plt.Axes, groups: Mapping[str, Mapping[str, float]]) -> None:
    labels = list(groups)
    width = 0.8 / len(_SERIES)
    highest = 1.0
    for index, (key, name) in enumerate(_SERIES):
        positions = [g + (index - (len(_SERIES) - 1) / 2) * width for g in range(len(labels))]
        values = [100.0 * float(groups[label].get(key, math.nan)) for label in labels]
        highest = max([highest, *(value for value in values if math.isfinite(value))])
        axis.bar_label(axis.bar(positions, values, width, label=name), fmt="%.1f", fontsize=7)
    axis.set_xticks(range(len(labels)), labels, rotation=20 if len(labels) > 3 else 0)
    axis.set_ylabel("error rate (%)")
    axis.set_ylim(0, 1.3 * highest)  # room for the legend above the bars
    axis.legend(fontsize=8, ncols=2, loc="upper right")


def _count_bars(axis: plt.Axes, counts: Mapping[str, float]) -> None:
    bars = axis.bar(list(counts), [float(value) for value in counts.values()], color="tab:gray")
    axis.bar_label(bars, fmt="%.3g", fontsize=7)
    axis.tick_params(axis="x", rotation=30)


def plot_metrics(values: Mapping[str, float], path: str | Path, title: str = "metrics") -> Path:
    """One bar per metric (e.g. ``recall@1 ... mrr@10``), values as given.

    Args:
        values: ``{metric name: value}``.
        path: the PNG to write (parent folders are created).
        title: the figure title.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(2 + 0.8 * len(values), 4))
    _count_bars(axis, values)
    axis.set_title(title)
    axis.set_ylabel("value")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
