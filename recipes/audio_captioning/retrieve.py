"""recipes/audio_captioning/retrieve.py OUT: the retrieval table of the captioner and the dual encoder on the test
scenes (every audio against every caption; T2A and A2T, raw and per-caption normalised), the captioner's captioning
metrics from its predictions.jsonl, chance levels and how concentrated each A2T top-1 is. Writes OUT/results.json,
OUT/results.md, OUT/results.png and the loss matrices OUT/{captioner,dual_encoder}_losses.pt.
Library calls only: speechkit.tasks.caption_retrieval, speechkit.tasks.dual_encoder_retrieval, speechkit.metrics.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections import Counter
from pathlib import Path

import torch
from lhotse import CutSet

from speechkit.checkpoints import load_task, save_atomic
from speechkit.data.captions import caption_pairs
from speechkit.data.config import DataConfig
from speechkit.metrics.captioning import captioning_metrics
from speechkit.metrics.caption_retrieval import retrieval_scores
from speechkit.tasks.caption_retrieval import captioner_retrieval
from speechkit.tasks.dual_encoder_retrieval import dual_encoder_retrieval

METRICS = ("R@1", "R@5", "R@10", "mAP@10")


def chance(num_audios: int, per_audio: int) -> dict[str, dict[str, float]]:
    """Expected R@k of a random ranking: T2A one relevant audio of A, A2T ``per_audio`` relevant captions of C."""
    captions = num_audios * per_audio
    t2a = {f"R@{k}": min(k, num_audios) / num_audios for k in (1, 5, 10)}
    a2t = {f"R@{k}": 1 - math.comb(captions - per_audio, k) / math.comb(captions, k) for k in (1, 5, 10)}
    return {"t2a": t2a, "a2t": a2t}


def top1_concentration(loss: torch.Tensor, normalize: bool) -> dict[str, float]:
    """A2T: how many distinct captions are some audio's top-1, and the share of audios the commonest one tops."""
    top = Counter(retrieval_scores(loss, "a2t", normalize=normalize).argmax(1).tolist())
    return {"distinct_top1": len(top), "commonest_top1_share": top.most_common(1)[0][1] / loss.shape[0]}


def last_checkpoint(run: Path) -> Path:
    """The run's ``last.ckpt`` (Lightning puts it under the logger's version folder)."""
    found = sorted(run.rglob("last.ckpt"))
    if not found:
        raise SystemExit(f"{run}: no last.ckpt; train it first (run.sh)")
    return found[-1]


def write_text(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def markdown(results: dict) -> str:
    lines = ["| model | direction | scores | " + " | ".join(METRICS) + " |", "|---|---|---|" + "---|" * len(METRICS)]
    for model in ("captioner", "dual_encoder"):
        for row, values in results[model]["retrieval"].items():
            direction, scores = row.split()
            lines.append(f"| {model} | {direction.upper()} | {scores} | "
                         + " | ".join(f"{values[m]:.3f}" for m in METRICS) + " |")
    for direction, values in results["chance"].items():
        lines.append(f"| chance | {direction.upper()} | random | "
                     + " | ".join(f"{values[m]:.3f}" if m in values else "" for m in METRICS) + " |")
    caption = results["captioner"]["captioning"]
    lines += ["", f"Captioning (test, {results['audios']} scenes, beam {results['beam_size']}): CIDEr-D "
              f"{caption['cider_d']:.3f}, BLEU-4 {caption['bleu4']:.2f}", ""]
    for model in ("captioner", "dual_encoder"):
        for kind, values in results[model]["a2t_top1"].items():
            lines.append(f"- {model} A2T {kind}: {values['distinct_top1']} distinct top-1 captions over "
                         f"{results['audios']} audios; the commonest tops {values['commonest_top1_share']:.1%} of them")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(m, r) for m in ("captioner", "dual_encoder") for r in results[m]["retrieval"]]
    figure, axes = plt.subplots(1, len(METRICS), figsize=(14, 3.5), sharey=True)
    for axis, metric in zip(axes, METRICS):
        values = [results[m]["retrieval"][r][metric] for m, r in rows]
        axis.barh([f"{m} {r}" for m, r in rows], values, color=["C0" if m == "captioner" else "C1" for m, _ in rows])
        axis.set_title(metric)
        axis.set_xlim(0, 1)
    figure.suptitle(f"Test scenes: {results['audios']} audios x {results['captions']} captions")
    figure.tight_layout()
    partial = path.with_name(f".{path.name}.partial.png")
    figure.savefig(partial, dpi=100)
    os.replace(partial, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the recipe's output folder (run.sh OUT)")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cuts = CutSet.from_file(args.out / "scenes" / f"cuts_{args.split}.jsonl.gz").to_eager()
    audio_ids, captions, owner = caption_pairs(cuts)
    captioner = load_task(last_checkpoint(args.out / "captioner"))
    dual = load_task(last_checkpoint(args.out / "dual_encoder"))
    data = DataConfig(input="fbank", num_mel_bins=captioner.hparams.encoder["num_mel_bins"])
    results: dict = {"audios": len(audio_ids), "captions": len(captions), "beam_size": captioner.hparams.beam_size,
                     "chance": chance(len(audio_ids), len(captions) // len(audio_ids))}
    for name, task, run in (("captioner", captioner, captioner_retrieval), ("dual_encoder", dual,
                                                                          dual_encoder_retrieval)):
        start = time.perf_counter()
        loss, table = run(task, cuts, data)
        results[name] = {"retrieval": table, "seconds": round(time.perf_counter() - start, 1),
                         "a2t_top1": {kind: top1_concentration(loss, kind == "normalised")
                                      for kind in ("raw", "normalised")}}
        save_atomic(loss, args.out / f"{name}_losses.pt")
        print(f"{name}: {results[name]['seconds']} s", flush=True)
    rows = [json.loads(line) for line in (args.out / "captioner" / "predictions.jsonl").read_text().splitlines()]
    results["captioner"]["captioning"] = captioning_metrics([r["hyp"] for r in rows], [r["refs"] for r in rows])
    write_text(args.out / "results.json", json.dumps(results, indent=1) + "\n")
    write_text(args.out / "results.md", markdown(results))
    plot(results, args.out / "results.png")


if __name__ == "__main__":
    main()
