"""The multi30k_st recipe's table and plot: BLEU and chrF on Multi30k test 2016 of each row over its seeds.

``python recipes/multi30k_st/summarize.py OUT [--png OUT/results.png]`` reads ``OUT/<run>_seed<k>/predictions.jsonl``
(written by ``speechkit test``), scores each with ``speechkit.metrics.bleu.score_bleu`` (sacrebleu corpus BLEU, 13a,
and chrF) and counts the distinct hypotheses (a model that ignores its input says one sentence to all), adds the wall times of ``OUT/times.tsv`` and writes ``OUT/results.json``, ``OUT/results.md`` and the PNG.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from speechkit.inference.writers import write_text_atomic
from speechkit.metrics.bleu import score_bleu
from speechkit.metrics.io import read_predictions

ROWS = {
    "st_scratch": "ST from scratch (no pretraining)",
    "st_ctc": "ST, encoder from CTC pretraining, decoder from MT",
    "st_ctc_ot": "ST, encoder from CTC + OT pretraining, decoder from MT",
    "mt": "reference: text MT (English text in, not speech)",
}
PAPER = ("Le et al., ICML 2023 (authors' README, MuST-C tst-COMMON BLEU, average of 8 pairs): medium CTC 27.6, "
         "Siamese CTC + OT 27.8 (CE pretraining 26.4); large CTC 29.2, CTC + OT 29.8; en-de large CTC + OT 27.9.")


def collect(out: Path) -> dict[str, dict[str, dict[str, float]]]:
    """``{row: {"seed0": {"bleu", "chrf", "segments"}}}`` of the rows that have predictions."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    for row in ROWS:
        for path in sorted(out.glob(f"{row}_seed*/predictions.jsonl")):
            seed = path.parent.name[len(row) + 1:]
            if not re.fullmatch(r"seed\d+", seed):
                continue
            rows = read_predictions(path)
            scores = score_bleu([r.ref for r in rows], [r.hyp for r in rows])
            results.setdefault(row, {})[seed] = {"bleu": scores["bleu"], "chrf": scores["chrf"],
                                                 "segments": scores["segments"], "signature": scores["signature"],
                                                 "distinct_hypotheses": len({r.hyp for r in rows})}
    return results


def times(out: Path) -> dict[str, int]:
    """Seconds per stage from ``OUT/times.tsv`` (the last entry of a stage wins)."""
    found: dict[str, int] = {}
    path = out / "times.tsv"
    for line in path.read_text().splitlines() if path.is_file() else []:
        name, seconds = line.split("\t")
        found[name] = int(seconds)
    return found


def mean_std(values: list[float]) -> str:
    return f"{values[0]:.2f}" if len(values) == 1 else f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}"


def table(results: dict, seconds: dict[str, int]) -> str:
    stages = defaultdict(list)
    for name, value in seconds.items():
        stages[re.sub(r"_seed\d+$", "", name)].append(value)
    lines = ["| row | test 2016 BLEU | chrF | distinct hypotheses | seeds | fit wall s (mean) |",
             "|---|---|---|---|---|---|"]
    for row, label in ROWS.items():
        if row not in results:
            continue
        seeds = results[row]
        wall = stages.get(f"fit_{row}")
        lines.append(f"| {label} | {mean_std([s['bleu'] for s in seeds.values()])} | "
                     f"{mean_std([s['chrf'] for s in seeds.values()])} | "
                     f"{mean_std([s['distinct_hypotheses'] for s in seeds.values()])} of "
                     f"{next(iter(seeds.values()))['segments']} | {len(seeds)} | "
                     f"{statistics.mean(wall) if wall else '-'} |")
    for stage in ("fit_ctc", "fit_ctc_ot"):
        if stages.get(stage):
            lines.append(f"\npretraining `{stage[4:]}`: {statistics.mean(stages[stage]):.0f} s wall (mean over seeds)")
    return "\n".join(lines) + f"\n\nPaper: {PAPER}\n"


def plot(results: dict, png: Path) -> None:
    rows = [row for row in ROWS if row in results]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for axis, metric in zip(axes, ("bleu", "chrf")):
        for x, row in enumerate(rows):
            values = [s[metric] for s in results[row].values()]
            axis.bar(x, statistics.mean(values), color="tab:gray" if row == "mt" else "tab:blue", alpha=0.7)
            axis.scatter([x] * len(values), values, color="black", s=12, zorder=3)
        axis.set_xticks(range(len(rows)), [row.replace("st_", "ST ").replace("_", "+") for row in rows])
        axis.set_ylabel(f"test 2016 {metric.upper() if metric == 'bleu' else 'chrF'}")
    figure.suptitle("Multi30k En->De speech translation (synthesized speech), CPU-sized")
    figure.tight_layout()
    figure.savefig(png, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--png", type=Path, default=None)
    args = parser.parse_args()
    results = collect(args.out)
    report = {"results": results, "times": times(args.out), "paper": PAPER}
    write_text_atomic(args.out / "results.json", json.dumps(report, indent=2) + "\n")
    text = table(results, report["times"])
    write_text_atomic(args.out / "results.md", text)
    if results:
        plot(results, args.png or args.out / "results.png")
    print(text)


if __name__ == "__main__":
    main()
