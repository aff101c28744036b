"""The Ask2Mask recipe's table and plot: test WER of each row over its seeds, mean +- std, beside the paper's claim.

``python recipes/ask2mask/summarize.py OUT [--png recipes/ask2mask/results.png]`` reads
``OUT/runs/finetune_<row>/seed<k>/predictions.jsonl`` (written by ``speechkit test``), scores them with
``speechkit.metrics.score_wer`` (basic normalizer: lower-case, no punctuation, number words kept as words), and writes
``OUT/results.json``, ``OUT/results.md`` and the PNG (mean and each seed per row). ``OUT/times.tsv`` gives the wall
time of each stage. A row with fewer seeds than the others is marked partial.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from speechkit.inference.writers import write_text_atomic  # noqa: E402
from speechkit.metrics.io import read_predictions  # noqa: E402
from speechkit.metrics.wer import score_wer  # noqa: E402

ROWS = {
    "none": "no pretraining",
    "random": "random masking (wav2vec2 spans)",
    "ask2mask": "Ask2Mask masking",
    "ask2mask_uw": "Ask2Mask masking + utterance weighting",
}
PAPER = ("Baskar et al. 2022 (abstract): Ask2Mask improves over random-masking MSM under mismatched fine-tuning data "
         "by up to 11.6 % relative WER over published results and up to 4.46 % relative over their internal "
         "baseline; modest gains when matched.")


def wer_of(predictions: Path) -> float:
    """Test WER (%) of a predictions file, basic normalizer."""
    rows = read_predictions(predictions)
    return 100 * score_wer([r.ref for r in rows], [r.hyp for r in rows], "en", "basic").wer


def collect(out: Path) -> dict[str, dict[str, float]]:
    """``{row: {"seed0": wer, ...}}`` for the rows that have results."""
    results = {}
    for row in ROWS:
        seeds = {p.parent.name: wer_of(p) for p in sorted((out / "runs" / f"finetune_{row}").glob("seed*/predictions.jsonl"))}
        if seeds:
            results[row] = seeds
    return results


def table(results: dict[str, dict[str, float]]) -> str:
    """Markdown: row, seeds, mean +- std, relative change against random masking and against no pretraining."""
    most = max(len(v) for v in results.values())
    means = {row: statistics.mean(v.values()) for row, v in results.items()}
    lines = ["| row | test WER % (mean +- std) | seeds | per seed | vs random masking | vs no pretraining |",
             "|---|---|---|---|---|---|"]
    for row, seeds in results.items():
        values = list(seeds.values())
        std = statistics.stdev(values) if len(values) > 1 else float("nan")
        rel = {base: (f"{100 * (means[row] - means[base]) / means[base]:+.1f} %" if base in means and base != row
                      else "") for base in ("random", "none")}
        partial = "" if len(values) == most else " (partial)"
        per_seed = ", ".join(f"{k}: {v:.2f}" for k, v in seeds.items())
        lines.append(f"| {ROWS[row]} | {means[row]:.2f} +- {std:.2f} | {len(values)}{partial} | {per_seed} | "
                     f"{rel['random']} | {rel['none']} |")
    return "\n".join(lines)


def plot(results: dict[str, dict[str, float]], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for index, (row, seeds) in enumerate(results.items()):
        values = list(seeds.values())
        mean = statistics.mean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        axis.bar(index, mean, yerr=std, capsize=6, color="C0" if row in ("none", "random") else "C1", alpha=0.7)
        axis.scatter([index] * len(values), values, color="k", s=12, zorder=3)
        axis.text(index, 0.2, f"{mean:.2f} +- {std:.2f}", ha="center", va="bottom", fontsize=9)
    axis.set_xticks(range(len(results)), [ROWS[r].replace(" (", "\n(").replace(" + ", "\n+ ") for r in results],
                    fontsize=8)
    axis.set_ylabel("test WER % (mismatched: other voices + noise 5-10 dB)")
    axis.set_title("Ask2Mask recipe: CTC fine-tuning on little mismatched data (bars: mean +- std, dots: seeds)",
                   fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--png", type=Path, default=None, help="default: OUT/results.png")
    args = parser.parse_args()
    results = collect(args.out)
    if not results:
        raise SystemExit(f"{args.out}: no runs/finetune_*/seed*/predictions.jsonl yet")
    extra = {}
    for name, file in (("scorer_source_test_wer", "predictions.jsonl"),
                       ("scorer_target_test_wer", "target_predictions.jsonl")):
        if (args.out / "runs" / "scorer" / file).is_file():
            extra[name] = wer_of(args.out / "runs" / "scorer" / file)
    times = args.out / "times.tsv"
    stage_times = dict(line.split("\t") for line in times.read_text().splitlines()) if times.is_file() else {}
    report = {"test_wer": results, **extra, "stage_seconds": {k: int(v) for k, v in stage_times.items()},
              "paper": PAPER}
    write_text_atomic(args.out / "results.json", json.dumps(report, indent=2) + "\n")
    text = table(results)
    if extra:
        text += ("\n\nScorer (CTC from scratch on the labelled clean source data), test WER: " + ", ".join(
            f"{name.split('_')[1]} {value:.2f} %" for name, value in extra.items()))
    write_text_atomic(args.out / "results.md", text + "\n\n" + PAPER + "\n")
    plot(results, args.png or args.out / "results.png")
    print(text)


if __name__ == "__main__":
    main()
