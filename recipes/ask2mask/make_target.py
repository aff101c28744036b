"""The mismatched target domain of the Ask2Mask recipe: other eSpeak voices with noise at 5-10 dB SNR.

``python recipes/ask2mask/make_target.py OUT CLEAN_DIR [CLEAN_DIR ...]`` reads ``cuts_{train,dev,test}.jsonl.gz``
of each clean corpus (``speechkit prepare synthetic`` folders), writes four noise recordings under ``OUT/noise``
(white, pink, brown and amplitude-modulated pink noise, 30 s each at 16 kHz, drawn from a fixed seed: there is no
noise corpus in ``../shared/data``), and writes ``OUT/cuts_{split}.jsonl.gz``: every clean cut mixed with a random
stretch of one noise at an SNR drawn uniformly in [5, 10] dB (Lhotse ``MixedCut`` with id ``<corpus folder>-<cut
id>``, as corpora reuse ids; the mix is
computed when the audio is loaded). Draws depend on the seed and the cut id only. Manifests are written to a
temporary name and renamed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import CutSet, Recording

SAMPLE_RATE = 16000
NOISE_SECONDS = 30.0
SNR_RANGE = (5.0, 10.0)
SPLITS = ("train", "dev", "test")


def colored_noise(kind: str, rng: np.random.Generator, samples: int) -> np.ndarray:
    """White, pink (1/f), brown (1/f^2) or pink noise under a 0.5-4 Hz amplitude modulation, peak 0.5."""
    white = rng.standard_normal(samples)
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(samples, 1 / SAMPLE_RATE)
    freqs[0] = freqs[1]
    power = {"white": 0.0, "pink": 1.0, "brown": 2.0, "modulated": 1.0}[kind]
    noise = np.fft.irfft(spectrum / freqs ** (power / 2), n=samples)
    if kind == "modulated":
        t = np.arange(samples) / SAMPLE_RATE
        rate = rng.uniform(0.5, 4.0)
        noise *= 0.6 + 0.4 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    return (0.5 * noise / np.abs(noise).max()).astype(np.float32)


def noise_cuts(out: Path, seed: int) -> list:
    """Write the four noise recordings (once) and return them as cuts."""
    folder = out / "noise"
    folder.mkdir(parents=True, exist_ok=True)
    cuts = []
    for index, kind in enumerate(("white", "pink", "brown", "modulated")):
        path = folder / f"{kind}.flac"
        if not path.is_file():
            audio = colored_noise(kind, np.random.default_rng(seed * 10 + index), int(NOISE_SECONDS * SAMPLE_RATE))
            partial = path.with_suffix(".partial.flac")
            sf.write(partial, audio, SAMPLE_RATE, subtype="PCM_16")
            os.replace(partial, path)
        cuts.append(Recording.from_file(path, recording_id=f"noise_{kind}").to_cut())
    return cuts


def noisy(cut, noises: list, seed: int):
    """``cut`` mixed with a stretch of one noise at 5-10 dB, drawn from (seed, cut id)."""
    rng = random.Random(int(hashlib.sha256(f"{seed}:{cut.id}".encode()).hexdigest()[:12], 16))
    noise = rng.choice(noises)
    offset = rng.uniform(0, noise.duration - cut.duration)
    return cut.mix(noise.truncate(offset=offset, duration=cut.duration), snr=rng.uniform(*SNR_RANGE),
                   preserve_id="left")


def write_atomic(cuts: CutSet, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}.jsonl.gz")
    cuts.to_file(temporary)
    os.replace(temporary, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("clean", type=Path, nargs="+", help="clean corpus folders (speechkit prepare synthetic)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    noises = noise_cuts(args.out, args.seed)
    for split in SPLITS:
        clean = [cut.with_id(f"{folder.name}-{cut.id}") for folder in args.clean  # corpora reuse ids
                 for cut in CutSet.from_file(folder / f"cuts_{split}.jsonl.gz")]
        longest = max(cut.duration for cut in clean)
        if longest >= NOISE_SECONDS:
            raise SystemExit(f"{split}: a cut of {longest:.1f} s is longer than the {NOISE_SECONDS:.0f} s noises")
        write_atomic(CutSet.from_cuts(noisy(cut, noises, args.seed) for cut in clean),
                     args.out / f"cuts_{split}.jsonl.gz")
        print(f"{split}: {len(clean)} cuts mixed with noise at {SNR_RANGE[0]:g}-{SNR_RANGE[1]:g} dB -> "
              f"{args.out / f'cuts_{split}.jsonl.gz'}")


if __name__ == "__main__":
    main()
