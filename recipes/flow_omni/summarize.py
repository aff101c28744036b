"""``python recipes/flow_omni/summarize.py OUT``: the results table of ``run.sh`` (OUT/results.md, OUT/results.json).

One row per speech head and prompt condition: WER of the spoken answers (normalized and raw), mel distance, length
ratio (from ``OUT/<head>/eval/scores.json``), WER of the answers' text stream (from ``answers.jsonl``), each stage's
last training losses (``OUT/<head>/stage<k>/metrics.csv``) and the wall times of ``OUT/times.tsv``.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from speechkit.checkpoints import save_atomic
from speechkit.metrics.wer import score_wer


def last_losses(metrics: Path) -> dict[str, float]:
    """The last logged training and validation losses of one ``metrics.csv``."""
    found: dict[str, float] = {}
    with open(metrics, encoding="utf-8") as file:
        for row in csv.DictReader(file):
            found.update({k: float(v) for k, v in row.items() if v and k.startswith(("train_", "val_"))})
    return found


def text_wer(answers: Path) -> dict[str, float]:
    """Normalized WER of the generated answer text against the reference, per condition."""
    rows = [json.loads(line) for line in answers.read_text().splitlines() if line.strip()]
    return {c: score_wer([r["ref"] for r in rows if r["condition"] == c], [r["text"] for r in rows
                                                                         if r["condition"] == c], "en").wer
            for c in dict.fromkeys(r["condition"] for r in rows)}


def summarize(out: Path) -> dict:
    times = dict(line.split("\t") for line in (out / "times.tsv").read_text().splitlines() if line.strip())
    results = {}
    for scores in sorted(out.glob("*/eval/scores.json")):
        head = scores.parent.parent.name
        text = text_wer(scores.parent / "answers.jsonl")
        results[head] = {"scores": [row | {"text_wer": text[row["condition"]]}
                                    for row in json.loads(scores.read_text())["scores"]],
                         "stages": {s: last_losses(out / head / s / "metrics.csv") for s in ("stage1", "stage2")},
                         "seconds": {k: int(v) for k, v in times.items() if k.endswith(f"_{head}") or f"_{head}_" in k}}
    return {"results": results, "times": {k: int(v) for k, v in times.items()}}


def table(report: dict) -> str:
    lines = ["| speech head | prompts | answers | speech WER % (raw) | text-stream WER % | mel distance | length ratio "
             "| stage 2 val text CE / speech loss | train s (stage 1 + 2) |", "|---|---|---|---|---|---|---|---|---|"]
    for head, result in report["results"].items():
        stage2, seconds = result["stages"]["stage2"], result["seconds"]
        train = seconds.get(f"fit_{head}_stage1", 0) + seconds.get(f"fit_{head}_stage2", 0)
        for row in result["scores"]:
            lines.append(f"| {head} | {row['condition']} | {row['answers']} | {100 * row['wer']:.1f} "
                         f"({100 * row['wer_raw']:.1f}) | {100 * row['text_wer']:.1f} | {row['mel_distance']:.3f} | "
                         f"{row['length_ratio']:.2f} | "
                         f"{stage2.get('val_text', float('nan')):.3f} / {stage2.get('val_speech', float('nan')):.3f} | "
                         f"{train} |")
    return "\n".join(lines) + "\n"


def main(out: str) -> None:
    folder = Path(out)
    report = summarize(folder)
    save_atomic(json.dumps(report, indent=1) + "\n", folder / "results.json",
                save=lambda text, file: file.write(text.encode("utf-8")))
    save_atomic(table(report), folder / "results.md", save=lambda text, file: file.write(text.encode("utf-8")))
    print(table(report))


if __name__ == "__main__":
    main(sys.argv[1])
