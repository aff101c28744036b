"""The synthetic AV recipe's table and plot: test WER of ASR / VSR / AVSR by pretraining and SNR.

``python recipes/synthetic_av/summarize.py OUT [--png recipes/synthetic_av/results.png]`` reads
``OUT/runs/ft_<init>_<modalities>/test_<snr>.jsonl`` (written by ``speechkit test``), scores them with
``speechkit.metrics.score_wer`` (basic normalizer), and writes ``OUT/results.json``, ``OUT/results.md`` and the PNG
(WER against SNR, one line per model; lip reading is flat: it hears nothing). ``OUT/times.tsv`` has the wall times.
"""

from __future__ import annotations

import argparse
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


def wer_of(predictions: Path) -> float:
    """Test WER (%) of a predictions file, basic normalizer."""
    rows = read_predictions(predictions)
    return 100 * score_wer([r.ref for r in rows], [r.hyp for r in rows], "en", "basic").wer


def collect(out: Path) -> dict[str, dict[str, float]]:
    """``{"<init>_<modalities>": {snr: wer}}`` for the runs that have results (VSR: clean only, copied to each SNR)."""
    results = {}
    for init in INITS:
        for task in TASKS:
            folder = out / "runs" / f"ft_{init}_{task}"
            found = {snr: wer_of(folder / f"test_{snr}.jsonl") for snr in SNRS if (folder / f"test_{snr}.jsonl").is_file()}
            if task == "video" and "clean" in found:
                found = {snr: found["clean"] for snr in SNRS}
            if found:
                results[f"{init}_{task}"] = found
    return results


def table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| task | pretraining | " + " | ".join(f"WER % {s}{'' if s == 'clean' else ' dB'}" for s in SNRS) + " |",
             "|---|---|" + "---|" * len(SNRS)]
    for task, task_name in TASKS.items():
        for init, init_name in INITS.items():
            row = results.get(f"{init}_{task}")
            if row:
                cells = " | ".join(f"{row[s]:.1f}" if s in row else "" for s in SNRS)
                lines.append(f"| {task_name} | {init_name} | {cells} |")
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
    results = collect(args.out)
    if not results:
        raise SystemExit(f"{args.out}: no runs/ft_*/test_*.jsonl yet")
    write_text_atomic(args.out / "results.json", json.dumps(results, indent=1) + "\n")
    write_text_atomic(args.out / "results.md", table(results) + "\n")
    plot(results, args.png)
    print(table(results))
    print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
