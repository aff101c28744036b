"""recipes/slurp_continual/summarize.py OUT: OUT/<method>/seed<k>/accuracy.json -> OUT/results.{md,json,png}.

Average accuracy, last accuracy and forgetting per method, mean +- standard deviation over the seeds found, and
the seed-mean accuracy matrices drawn over time (``speechkit.continual.plot_accuracy_over_time``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from speechkit.continual import plot_accuracy_over_time

ORDER = ("finetune", "replay", "replay_kd", "coconut", "coconut_kd", "joint")
TITLES = {"finetune": "fine-tuning", "replay": "replay (180 cuts)", "replay_kd": "replay + logit KD",
          "coconut": "COCONUT (replay + NSPT + MM)", "coconut_kd": "COCONUT + logit KD",
          "joint": "joint training (one task)"}
METRICS = ("average_accuracy", "last_accuracy", "forgetting")


def load(out: Path) -> dict[str, dict[str, dict]]:
    """``{method: {seed folder: accuracy.json}}`` of the finished runs."""
    runs: dict[str, dict[str, dict]] = {}
    for path in sorted(out.glob("*/seed*/accuracy.json")):
        result = json.loads(path.read_text())
        if "wall_s" in result:
            runs.setdefault(path.parent.parent.name, {})[path.parent.name] = result
    return {m: runs[m] for m in sorted(runs, key=lambda m: ORDER.index(m) if m in ORDER else len(ORDER))}


def mean_matrix(results: list[dict]) -> list[list[float]]:
    size = len(results[0]["matrix"])
    return [[float(np.mean([r["matrix"][t][j] for r in results])) if j <= t else float("nan") for j in range(size)]
            for t in range(size)]


def table(runs: dict[str, dict[str, dict]]) -> tuple[str, dict]:
    lines = ["| method | seeds | average accuracy (%) | last accuracy (%) | forgetting (pp) | wall per run (s) |",
             "|---|---|---|---|---|---|"]
    summary = {}
    for method, seeds in runs.items():
        values = {m: [100 * r[m] for r in seeds.values()] for m in METRICS}
        summary[method] = {m: {"mean": float(np.mean(v)), "std": float(np.std(v)), "per_seed": dict(zip(seeds, v))}
                           for m, v in values.items()}
        cells = [f"{np.mean(v):.1f} ± {np.std(v):.1f}" for v in values.values()]
        wall = np.mean([r["wall_s"] for r in seeds.values()])
        lines.append(f"| {TITLES.get(method, method)} | {len(seeds)} | " + " | ".join(cells) + f" | {wall:.0f} |")
    return "\n".join(lines) + "\n", summary


def main(out: Path) -> None:
    runs = load(out)
    if not runs:
        raise SystemExit(f"summarize: no finished run under {out}")
    text, summary = table(runs)
    (out / "results.md").write_text(text, encoding="utf-8")
    (out / "results.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    streams = {m: seeds for m, seeds in runs.items() if len(next(iter(seeds.values()))["matrix"]) > 1}
    if streams:
        first = next(iter(next(iter(streams.values())).values()))
        plot_accuracy_over_time({TITLES.get(m, m): mean_matrix(list(s.values())) for m, s in streams.items()},
                                out / "results.png", first["test_counts"],
                                title="SLURP-synth scenarios, 6 tasks of 3 (mean over seeds)")
    print(text)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "exp/slurp_continual"))
