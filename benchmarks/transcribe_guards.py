"""``speechkit transcribe`` on real FSDD digits with and without Whisper's guards: WER, loops, speed.

Builds, from the FSDD test takes (0-4): a folder of ``--clips`` single-digit clips, and ``--long-files`` files of
``--seconds`` s made by joining shuffled takes with 0.3 s of silence (file k: shuffle seed k). Transcribes each
with the library's ``transcribe`` (default options, then ``guards=False``) and prints, per set: digit WER (digits
spelled as words or numbers made comparable: "Five, 03" -> 5 0 3), the longest back-to-back repeat of any 1-4
token n-gram (a loop), wall seconds and audio seconds per wall second; ``--json`` writes the rows.

    python benchmarks/transcribe_guards.py --model ct2:tiny.en --clips 60 --long-files 8 --json guards.json
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import jiwer
import numpy as np
import soundfile as sf

from speechkit.inference.transcribe import transcribe
from speechkit.testing import digit_tokens, longest_repeat, shared_data_dir


def takes(fsdd: Path, seed: int) -> list[Path]:
    files = sorted(fsdd.glob("*_[0-4].wav"))
    random.Random(seed).shuffle(files)
    return files


def joined(fsdd: Path, out: Path, seconds: float, seed: int) -> str:
    """Write takes joined with 0.3 s of silence until ``seconds``; return the spoken digits."""
    parts, digits, total = [], [], 0.0
    for file in takes(fsdd, seed):
        audio, rate = sf.read(file, dtype="float32")
        parts += [audio, np.zeros(int(0.3 * rate), np.float32)]
        digits.append(file.name[0])
        total += len(audio) / rate + 0.3
        if total >= seconds:
            break
    sf.write(out, np.concatenate(parts), rate)
    return " ".join(digits)


def score(out: Path, refs: dict[str, str]) -> dict[str, float]:
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    hyps = [" ".join(digit_tokens(row["text"])) for row in rows]
    return {"wer": jiwer.wer([refs[row["id"]] for row in rows], hyps),
            "longest_repeat": max(longest_repeat(h.split()) for h in hyps)}


def run(model: str, name: str, inputs: list[str], refs: dict[str, str], work: Path, guards: bool) -> dict:
    out = work / f"{name}_{'guards' if guards else 'none'}.jsonl"
    summary = transcribe(model, inputs, out=str(out), guards=guards, progress=False)
    row = {"set": name, "guards": guards, **score(out, refs), "wall_s": round(summary.wall_seconds, 1),
           "audio_s": round(summary.audio_seconds, 1)}
    row["audio_s_per_wall_s"] = round(summary.audio_seconds / summary.wall_seconds, 2)
    print(f"{name:>10} guards={str(guards):<5} WER {row['wer']:.3f}  longest repeat {row['longest_repeat']:>3}  "
          f"{row['wall_s']:>7.1f} s  {row['audio_s_per_wall_s']:.2f} audio-s/s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ct2:tiny.en")
    parser.add_argument("--fsdd", type=Path, default=shared_data_dir() / "fsdd" / "recordings")
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--long-files", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=51.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clips = takes(args.fsdd, 0)[: args.clips]
        for guards in (True, False):
            rows.append(run(args.model, "clips", [str(f) for f in clips], {f.stem: f.name[0] for f in clips}, work,
                            guards))
        for seed in range(1, args.long_files + 1):
            path = work / f"long{seed}.wav"
            refs = {path.stem: joined(args.fsdd, path, args.seconds, seed)}
            rows += [run(args.model, path.stem, [str(path)], refs, work, guards) for guards in (True, False)]
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
