"""The synthetic AV recipe's table and plot: test WER of ASR / VSR / AVSR by pretraining and SNR.

``python recipes/synthetic_av/summarize.py OUT [--png recipes/synthetic_av/results.png]`` reads
``OUT/runs/ft_<init>_<modalities>/test_<snr>.jsonl`` (written by ``speechkit test``), scores them with
``speechkit.metrics.score_wer`` (basic normalizer; WER and CER), adds each run's best dev WER (its ``metrics.csv``;
dev speakers are training speakers, test speakers are not), and writes ``OUT/results.json``, ``OUT/results.md`` and
the PNG (WER against SNR, one line per model; lip reading is flat: it hears nothing). ``OUT/times.tsv`` has the
wall times.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from speechkit.inference.writers import write_text_atomic  # noqa: E402
from speechkit.metrics.io import read_predictions  # noqa: E402
from speechkit.metrics.wer import score_wer  # noqa: E402

INITS = {"none": "from scratch", "whisper": "KD: Whisper", "two": "KD: Whisper + MSM"}
TASKS = {"audio": "ASR", "video": "VSR", "audio_video": "AVSR"}
SNRS = ["clean", "10", "5", "0", "-5"]


def rates_of(predictions: Path) -> tuple[float, float]:
    """Test WER and CER (%) of a predictions file, basic normalizer."""
    rows = read_predictions(predictions)
    report = score_wer([r.ref for r in rows], [r.hyp for r in rows], "en", "basic")
    return 100 * report.wer, 100 * report.cer


def collect(out: Path, metric: int = 0) -> dict[str, dict[str, float]]:
    """``{"<init>_<modalities>": {snr: wer}}`` (``metric=1``: CER) for the runs that have results (VSR: clean only,
    copied to each SNR)."""
    results = {}
    for init in INITS:
        for task in TASKS:
            folder = out / "runs" / f"ft_{init}_{task}"
            found = {snr: rates_of(folder / f"test_{snr}.jsonl")[metric] for snr in SNRS
                     if (folder / f"test_{snr}.jsonl").is_file()}
            if task == "video" and "clean" in found:
                found = {snr: found["clean"] for snr in SNRS}
            if found:
                results[f"{init}_{task}"] = found
    return results


def best_dev_wer(out: Path) -> dict[str, float]:
    """The best (checkpoint-selecting) clean dev WER % of each fine-tuning run, from its ``metrics.csv``."""
    found = {}
    for path in (out / "runs").glob("ft_*/metrics.csv"):
        with path.open() as file:
            values = [float(row["val_wer"]) for row in csv.DictReader(file) if row.get("val_wer")]
        if values:
            found[path.parent.name[3:]] = 100 * min(values)
    return found


def table(results: dict[str, dict[str, float]], cer: dict[str, dict[str, float]], dev: dict[str, float]) -> str:
    """Markdown: test WER at every SNR, test CER clean and at 0 dB, best dev WER (clean, training speakers)."""
    lines = ["| task | pretraining | " + " | ".join(f"WER % {s}{'' if s == 'clean' else ' dB'}" for s in SNRS)
             + " | CER % clean | CER % 0 dB | dev WER % (seen speakers) |", "|---|---|" + "---|" * (len(SNRS) + 3)]
    for task, task_name in TASKS.items():
        for init, init_name in INITS.items():
            row, chars = results.get(f"{init}_{task}"), cer.get(f"{init}_{task}", {})
            if row:
                cells = " | ".join(f"{row[s]:.1f}" if s in row else "" for s in SNRS)
                extra = " | ".join(f"{chars[s]:.1f}" if s in chars else "" for s in ("clean", "0"))
                best = dev.get(f"{init}_{task}")
                best_cell = "" if best is None else f"{best:.1f}"
                lines.append(f"| {task_name} | {init_name} | {cells} | {extra} | {best_cell} |")
    return "\n".join(lines)


def plot(results: dict[str, dict[str, float]], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(8, 4.8))
    styles = {"none": ":", "whisper": "-", "two": "--"}
    colors = {"audio": "C0", "video": "C2", "audio_video": "C3"}
    for name, row in results.items():
        init, task = name.split("_", 1)
        xs = [s for s in SNRS if s in row]
        axis.plot(range(len(xs)), [row[s] for s in xs], styles[init], marker="o", color=colors[task],
                  label=f"{TASKS[task]}, {INITS[init]}")
    axis.set_xticks(range(len(SNRS)), [s if s == "clean" else f"{s} dB" for s in SNRS])
    axis.set_xlabel("test babble SNR")
    axis.set_ylabel("test WER % (speaker-disjoint)")
    axis.set_title("synthetic AV digits: WER vs SNR")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--png", type=Path, default=Path(__file__).with_name("results.png"))
    args = parser.parse_args()
    results, cer, dev = collect(args.out), collect(args.out, metric=1), best_dev_wer(args.out)
    if not results:
        raise SystemExit(f"{args.out}: no runs/ft_*/test_*.jsonl yet")
    report = {"wer": results, "cer": cer, "dev_wer": dev}
    write_text_atomic(args.out / "results.json", json.dumps(report, indent=1) + "\n")
    write_text_atomic(args.out / "results.md", table(results, cer, dev) + "\n")
    plot(results, args.png)
    print(table(results, cer, dev))
    print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
