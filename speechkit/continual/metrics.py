"""Accuracy-matrix metrics of class-incremental learning, and the accuracy-over-time PNG.

``R[t][j]`` is the accuracy on task ``j``'s test classes after training task ``t`` (defined for ``j <= t``).
COCONUT (Cappellazzo et al., ACL Findings 2024) reports average accuracy ``(1/T) sum_t A_t``, where ``A_t`` is the
accuracy over all classes seen up to task ``t`` measured after task ``t``, and last accuracy ``A_T``. Forgetting
is Chaudhry et al. 2018 (*Riemannian Walk for Incremental Learning*, eq. 4 averaged over tasks):
``(1/(T-1)) sum_{j<T} max_{t in [j, T-1)} R[t][j] - R[T-1][j]``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from speechkit.errors import SpeechkitError


def check_accuracy_matrix(matrix: Sequence[Sequence[float]]) -> np.ndarray:
    """``(T, T)`` array of a square matrix whose entries on and below the diagonal are accuracies in [0, 1]
    (above it: anything, ignored; set to NaN in the result)."""
    array = np.array(matrix, dtype=float)
    if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] == 0:
        raise SpeechkitError(f"accuracy matrix: expected a square (T, T) matrix, got shape {array.shape}")
    lower = np.tril_indices(array.shape[0])
    values = array[lower]
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
        raise SpeechkitError("accuracy matrix: entries on and below the diagonal must be accuracies in [0, 1], "
                             f"got {values.tolist()}")
    array[np.triu_indices(array.shape[0], k=1)] = math.nan
    return array


def seen_accuracy(matrix: Sequence[Sequence[float]], test_counts: Optional[Sequence[int]] = None) -> list[float]:
    """``A_t`` for every t: the mean of row t over tasks ``0..t``, weighted by each task's number of test cuts
    (``test_counts``; ``None`` = equal weights), i.e. the accuracy over every test cut of the seen classes."""
    array = check_accuracy_matrix(matrix)
    counts = np.ones(len(array)) if test_counts is None else np.asarray(test_counts, dtype=float)
    if counts.shape != (len(array),) or np.any(counts <= 0):
        raise SpeechkitError(f"test_counts: expected {len(array)} positive counts, got {list(test_counts or [])}")
    return [float(np.dot(array[t, : t + 1], counts[: t + 1]) / counts[: t + 1].sum()) for t in range(len(array))]


def average_accuracy(seen: Sequence[float]) -> float:
    """``(1/T) sum_t A_t``."""
    if not len(seen):
        raise SpeechkitError("average_accuracy: no task accuracies given")
    return float(np.mean(seen))


def last_accuracy(seen: Sequence[float]) -> float:
    """``A_T``."""
    if not len(seen):
        raise SpeechkitError("last_accuracy: no task accuracies given")
    return float(seen[-1])


def forgetting(matrix: Sequence[Sequence[float]]) -> float:
    """Average forgetting of the tasks before the last (0 for a single task)."""
    array = check_accuracy_matrix(matrix)
    last = len(array) - 1
    if last == 0:
        return 0.0
    drops = [array[j:last, j].max() - array[last, j] for j in range(last)]
    return float(np.mean(drops))


def plot_accuracy_over_time(
    runs: Mapping[str, Sequence[Sequence[float]]],
    path: str | Path,
    test_counts: Optional[Sequence[int]] = None,
    title: str = "class-incremental accuracy",
) -> Path:
    """PNG: ``A_t`` of every run after each task (first panel), then one panel per run with each task's accuracy
    over time (three panels a row).

    Args:
        runs: ``{name: accuracy matrix}``.
        path: the PNG to write (parent folders are created; written under a temporary name, then renamed).
        test_counts: test cuts per task, as for :func:`seen_accuracy`.
        title: the figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = min(3, 1 + len(runs))
    rows = -(-(1 + len(runs)) // columns)
    figure, grid = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.8 * rows), squeeze=False)
    axes = grid.ravel()
    for name, matrix in runs.items():
        seen = seen_accuracy(matrix, test_counts)
        axes[0].plot(range(1, len(seen) + 1), [100 * a for a in seen], marker="o", label=name)
    axes[0].set(xlabel="after task", ylabel="accuracy on seen classes (%)", ylim=(0, 100), title="A_t")
    axes[0].legend(fontsize=7)
    for axis in axes[1 + len(runs):]:
        axis.set_axis_off()
    for axis, (name, matrix) in zip(axes[1:], runs.items()):
        array = check_accuracy_matrix(matrix)
        for j in range(len(array)):
            axis.plot(range(j + 1, len(array) + 1), 100 * array[j:, j], marker=".", label=f"task {j + 1}")
        axis.set(xlabel="after task", ylim=(0, 100), title=f"{name}: per task")
        axis.legend(fontsize=6, ncols=2)
    figure.suptitle(title)
    figure.tight_layout()
    temporary = path.with_name(f".{path.name}.tmp")
    figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)
    temporary.replace(path)
    return path
