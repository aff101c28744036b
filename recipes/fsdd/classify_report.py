"""Table and loss-curve PNG for the FSDD classification runs of recipes/fsdd/classify_heads.sh.

    python recipes/fsdd/classify_report.py table RUN_DIR...          # markdown table: accuracy, weight norm, time

A RUN_DIR with ``seed_*`` sub-directories (classify_heads.sh with SEEDS) is one row: mean +- sample standard
deviation (n - 1) over its seeds, the per-seed test accuracies in brackets.
    python recipes/fsdd/classify_report.py plot OUT.png RUN_DIR...   # train loss (smoothed), lr and dev loss per run
    python recipes/fsdd/classify_report.py devcurve RUN_DIR...       # dev accuracy at every validation (seed mean)
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import numpy as np


def metrics(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every column of the run's CSVLogger metrics.csv as (step, value) pairs."""
    (path,) = sorted(run.glob("lightning_logs/version_*/metrics.csv"))[-1:]
    columns: dict[str, list[tuple[int, float]]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                if key not in ("step", "epoch") and value not in ("", None):
                    columns.setdefault(key, []).append((int(row["step"]), float(value)))
    return columns


def test_accuracy(run: Path) -> float:
    match = re.search(r"test_acc\W+([0-9.]+)", (run / "test.log").read_text())
    return float(match.group(1)) if match else float("nan")


def summary(run: Path) -> dict[str, float]:
    """One run's test accuracy, last dev accuracy, head weight norm at the first/last step and fit times."""
    columns = metrics(run)
    norms = columns["head_weight_norm"]
    wall, user, system = (float(x) for x in (run / "fit_time.txt").read_text().split()[-3:])
    return {"test": test_accuracy(run), "dev": columns["val_acc"][-1][1], "norm0": norms[0][1],
            "norm": norms[-1][1], "growth": norms[-1][1] / norms[0][1], "wall": wall, "cpu": user + system}


def mean_std(values: list[float], digits: int) -> str:
    """``mean +- std`` (sample std, n - 1) or the single value."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def table(runs: list[Path]) -> None:
    print("| config | seeds | test acc | final dev acc | head weight norm: step 0 -> last (x growth) | fit wall s "
          "| fit CPU s |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        seeds = sorted(run.glob("seed_*")) or [run]
        rows = [summary(seed) for seed in seeds]
        values = {key: [row[key] for row in rows] for key in rows[0]}
        tests = " (" + ", ".join(f"{v:.3f}" for v in values["test"]) + ")" if len(rows) > 1 else ""
        print(f"| {run.name} | {len(rows)} | {mean_std(values['test'], 3)}{tests} | {mean_std(values['dev'], 3)} | "
              f"{np.mean(values['norm0']):.2f} -> {mean_std(values['norm'], 2)} (x{mean_std(values['growth'], 2)}) | "
              f"{np.mean(values['wall']):.0f} | {mean_std(values['cpu'], 0)} |")


def devcurve(runs: list[Path]) -> None:
    """Dev accuracy at each validation step, averaged over a run's seeds."""
    for run in runs:
        curves = [dict(metrics(seed)["val_acc"]) for seed in (sorted(run.glob("seed_*")) or [run])]
        steps = sorted(set.intersection(*(set(curve) for curve in curves)))
        means = "/".join(f"{np.mean([curve[step] for curve in curves]):.3f}" for step in steps)
        labels = "/".join(str(step + 1) for step in steps)
        print(f"{run.name}: dev acc at steps {labels}: {means} ({len(curves)} seeds)")


def plot(out: Path, runs: list[Path], window: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, lr_axis) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, height_ratios=[3, 1])
    for run in runs:
        columns = metrics(run)
        steps, losses = np.array(columns["train_loss"]).T
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        line = loss_axis.plot(steps[window - 1:], smooth, label=f"{run.name} train (mean of {window})")[0]
        dev_steps, dev_losses = np.array(columns["val_loss"]).T
        loss_axis.plot(dev_steps, dev_losses, "o--", color=line.get_color(), label=f"{run.name} dev")
        lr_columns = [key for key in columns if key.startswith("lr-")]
        for key in lr_columns:
            lr_axis.plot(*np.array(columns[key]).T, color=line.get_color())
    loss_axis.set_ylabel("loss")
    loss_axis.set_yscale("log")
    loss_axis.legend(fontsize=8)
    lr_axis.set_ylabel("lr")
    lr_axis.set_xlabel("step")
    figure.tight_layout()
    figure.savefig(out, dpi=80)
    print(f"plot: {out}")


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "table":
        table([Path(p) for p in rest])
    elif command == "devcurve":
        devcurve([Path(p) for p in rest])
    else:
        plot(Path(rest[0]), [Path(p) for p in rest[1:]])
