"""Padding waste of random batches, 1-D duration bucketing and 2-D (duration x tokens) bucketing.

*Training and Inference Efficiency of Encoder-Decoder Speech Models* (speech.md section 2): padding fractions
``1 - sum(lengths) / sum(batch_size * max_length)`` of the input (seconds of audio) and of the output (tokens),
for the same corpus, batch size and seed, batched four ways:

- ``random_30s``: the Hugging Face Whisper recipe's data path: random batches, every input padded to 30 s;
- ``random``: random batches padded to the batch's longest input;
- ``bucket_1d``: Lhotse ``DynamicBucketingSampler`` over ``num_buckets`` bins of equal total duration;
- ``bucket_2d``: the same sampler over ``num_buckets x num_subbuckets`` (duration, tokens) bins, strict.

Corpora: ``lognormal`` (synthetic, Common-Voice-shaped: log-normal durations with median 4.5 s clipped to 1-20 s,
tokens ~ Poisson(rate x duration) with a per-speaker rate around 14 characters/s) and ``fsdd`` (the real FSDD
train split, durations read from the WAV headers by ``speechkit.data.corpora.fsdd``; tokens = characters of
the digit word); and any prepared cut manifest given with ``--cuts NAME=PATH`` (e.g. a corpus synthesized by
``speechkit prepare synthetic``; tokens = characters of the transcript).

With ``--pipeline``: the throughput of the data pipeline alone (issue 5 item 5) on every corpus with audio (``fsdd``
and the ``--cuts`` manifests): ``SpeechDataModule(config=DataConfig(...)).train_dataloader()`` with the 2-D bins,
batch sizes from ``--pipeline-max-duration`` and the Whisper tokenizer of ``ct2:tiny.en``, i.e. reading and
resampling audio to 16 kHz, Whisper log-mel features, tokenizing and collating, with 0, 1 and 2 workers; samples and
audio seconds delivered per wall second over ``--pipeline-batches`` batches after the first one (worker start-up
left out). PyTorch gives each worker one thread; ``--pipeline-threads`` sets the main process's (0 workers). Compare
with the audio seconds per second training consumes (``benchmarks/whisper_training_throughput.py``).

    python benchmarks/bucketing.py --json bucketing.json [--corpus lognormal fsdd] [--cuts synth=cuts_train.jsonl.gz]
        [--pipeline [--pipeline-workers 0 1 2] [--pipeline-batches 20] [--pipeline-max-duration 30]
        [--pipeline-threads 1]]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from lhotse import CutSet
from lhotse.cut import MonoCut
from lhotse.supervision import SupervisionSegment

from speechkit.data.sampling import (
    build_constraint,
    char_token_counter,
    estimate_bucket_bins,
    fixed_batch_sampler,
    padding_report,
    with_num_tokens,
)

WHISPER_INPUT_S = 30.0


def lognormal_corpus(num_cuts: int, seed: int) -> CutSet:
    """Synthetic Common-Voice-shaped corpus (no audio): durations and token counts only."""
    rng = np.random.default_rng(seed)
    durations = np.clip(rng.lognormal(np.log(4.5), 0.45, num_cuts), 1.0, 20.0)
    rates = rng.lognormal(np.log(14.0), 0.3, 200)[rng.integers(0, 200, num_cuts)]  # per-speaker chars/s
    tokens = rng.poisson(rates * durations)
    cuts = []
    for i, (duration, n) in enumerate(zip(durations, tokens)):
        sup = SupervisionSegment(id=f"s{i}", recording_id=f"r{i}", start=0.0, duration=float(duration), text="a" * n)
        cuts.append(MonoCut(id=f"c{i}", start=0.0, duration=float(duration), channel=0, supervisions=[sup],
                            custom={"num_tokens": int(n)}))
    return CutSet.from_cuts(cuts)


def fsdd_corpus(data_dir: Path) -> CutSet:
    """The FSDD train split through the project's importer (manifests written to a temporary folder)."""
    from speechkit.data.corpora.fsdd import prepare

    with tempfile.TemporaryDirectory() as out:
        cuts = prepare(data_dir / "fsdd", out)["train"].to_eager()
    return with_num_tokens(cuts, char_token_counter).to_eager()


def manifest_corpus(path: str) -> CutSet:
    """A prepared cut manifest with character token counts."""
    return with_num_tokens(CutSet.from_file(path), char_token_counter).to_eager()


def sampled_batches(cuts: CutSet, bins: list, batch_size: int, max_tps: list | None, seed: int) -> tuple[list, int]:
    """Every batch of one epoch of ``DynamicBucketingSampler`` with a fixed batch size; and the cuts dropped."""
    constraint = build_constraint(bins, [batch_size] * len(bins), strict=True, max_tps=max_tps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager CutSet
        sampler = fixed_batch_sampler(cuts, constraint, shuffle=True, seed=seed, buffer_size=20000, world_size=1,
                                      rank=0)
    return list(sampler), sampler.bucket_filter.num_dropped


def measure(cuts: CutSet, batch_size: int, num_buckets: int, num_subbuckets: int, seed: int) -> dict:
    """Padding report of each batching strategy on one corpus."""
    cut_list = list(cuts)
    order = list(range(len(cut_list)))
    random.Random(seed).shuffle(order)
    random_batches = [[cut_list[i] for i in order[k:k + batch_size]] for k in range(0, len(order), batch_size)]
    results = {"random": {**padding_report(random_batches), "dropped": 0}}
    padded_30s = [[(WHISPER_INPUT_S, c.custom["num_tokens"]) for c in batch] for batch in random_batches]
    real_30s = sum(c.duration for c in cut_list) / (len(cut_list) * WHISPER_INPUT_S)
    results["random_30s"] = {**padding_report(padded_30s), "padding_in": 1.0 - real_30s, "dropped": 0}
    for name, subbuckets in (("bucket_1d", None), ("bucket_2d", num_subbuckets)):
        bins = estimate_bucket_bins(cut_list, num_buckets, subbuckets)
        batches, dropped = sampled_batches(cuts, bins.bins, batch_size, bins.max_tps, seed)
        results[name] = {**padding_report(batches), "dropped": dropped, "num_bins": len(bins.bins)}
    return results


class WhisperTokenize:
    """``text -> ids`` of a Whisper tokenizer, prompt included (as ``WhisperFinetune.tokenize`` for the data module)."""

    def __init__(self, model: str = "ct2:tiny.en") -> None:
        from speechkit.models.pretrained import load_whisper

        self.tokenizer = load_whisper(model).tokenizer

    def __call__(self, text: str) -> list[int]:
        return self.tokenizer(text).input_ids


def pipeline_throughput(cuts: CutSet, workers: int, num_buckets: int, num_subbuckets: int, max_duration: float,
                        max_batches: int, seed: int, tokenize: WhisperTokenize) -> dict:
    """Samples and audio seconds per second of the ``SpeechDataModule`` train loader alone (no model)."""
    from speechkit.data import DataConfig, SpeechDataModule

    bins = estimate_bucket_bins(cuts, num_buckets, num_subbuckets)
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "cuts.jsonl.gz")
        cuts.to_file(path)
        config = DataConfig(train_cuts=path, bucket_duration_bins=[list(b) for b in bins.bins],
                            bucket_max_tps=bins.max_tps, max_duration=max_duration, num_workers=workers, seed=seed)
        dm = SpeechDataModule(config=config)
        dm.tokenizer = tokenize
        start = time.perf_counter()
        iterator = iter(dm.train_dataloader())
        next(iterator)  # the first batch pays for worker start-up
        first = time.perf_counter()
        samples = audio = batches = 0
        for batch in iterator:
            samples, audio, batches = samples + len(batch), audio + float(batch.durations.sum()), batches + 1
            if batches == max_batches:
                break
        wall = time.perf_counter() - first
        del iterator
    return {"workers": workers, "batches": batches, "samples_per_s": samples / wall, "audio_s_per_s": audio / wall,
            "first_batch_s": first - start, "mean_batch_size": samples / max(1, batches)}


def pipeline_table(pipeline: dict) -> str:
    """Markdown table: corpus x workers."""
    lines = ["| corpus | workers | samples / s | audio s / s | mean batch | batches | first batch s |",
             "|---|---|---|---|---|---|---|"]
    for corpus, runs in pipeline.items():
        for r in runs:
            lines.append(f"| {corpus} | {r['workers']} | {r['samples_per_s']:.1f} | {r['audio_s_per_s']:.1f} | "
                         f"{r['mean_batch_size']:.1f} | {r['batches']} | {r['first_batch_s']:.1f} |")
    return "\n".join(lines)


def table(results: dict) -> str:
    """Markdown table: corpus x strategy."""
    lines = ["| corpus | batching | input padding | output padding | mean batch | batches | dropped |",
             "|---|---|---|---|---|---|---|"]
    for corpus, strategies in results.items():
        for name, r in strategies.items():
            lines.append(f"| {corpus} | {name} | {r['padding_in']:.3f} | {r['padding_out']:.3f} | "
                         f"{r['mean_batch_size']:.1f} | {r['num_batches']} | {r['dropped']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, help="output JSON path")
    parser.add_argument("--corpus", nargs="+", choices=["lognormal", "fsdd"], default=["lognormal", "fsdd"])
    parser.add_argument("--cuts", nargs="*", default=[], metavar="NAME=PATH", help="extra cut manifests")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-buckets", type=int, default=10)
    parser.add_argument("--num-subbuckets", type=int, default=3)
    parser.add_argument("--num-cuts", type=int, default=20000, help="size of the lognormal corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pipeline", action="store_true", help="also measure the data pipeline's throughput")
    parser.add_argument("--pipeline-workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pipeline-batches", type=int, default=20, help="batches timed per worker count")
    parser.add_argument("--pipeline-max-duration", type=float, default=30.0, help="padded seconds per batch")
    parser.add_argument("--pipeline-threads", type=int, default=None,
                        help="torch threads of the main process (workers always use 1); default: torch's")
    default_data = os.environ.get("SPEECHKIT_DATA", str(Path(__file__).resolve().parents[2] / "shared/data"))
    parser.add_argument("--data-dir", default=default_data, help="shared data folder (holds fsdd/)")
    args = parser.parse_args(argv)
    results, with_audio = {}, {}
    for corpus in args.corpus:
        cuts = lognormal_corpus(args.num_cuts, args.seed) if corpus == "lognormal" else fsdd_corpus(Path(args.data_dir))
        results[corpus] = measure(cuts, args.batch_size, args.num_buckets, args.num_subbuckets, args.seed)
        if corpus == "fsdd":
            with_audio[corpus] = cuts
    for named in args.cuts:
        name, _, path = named.partition("=")
        if not name or not path:
            parser.error(f"--cuts {named!r}: expected NAME=PATH")
        with_audio[name] = manifest_corpus(path)
        results[name] = measure(with_audio[name], args.batch_size, args.num_buckets, args.num_subbuckets, args.seed)
    pipeline = {}
    if args.pipeline:
        if args.pipeline_threads:
            import torch

            torch.set_num_threads(args.pipeline_threads)
        tokenize = WhisperTokenize()
        pipeline = {name: [pipeline_throughput(cuts, workers, args.num_buckets, args.num_subbuckets,
                                               args.pipeline_max_duration, args.pipeline_batches, args.seed, tokenize)
                           for workers in args.pipeline_workers] for name, cuts in with_audio.items()}
    keys = ("batch_size", "num_buckets", "num_subbuckets", "num_cuts", "seed", "pipeline_max_duration",
            "pipeline_batches", "pipeline_threads")
    settings = {k: getattr(args, k) for k in keys} | {"load_average": os.getloadavg(), "cpu_count": os.cpu_count()}
    Path(args.json).write_text(json.dumps({"settings": settings, "results": results, "pipeline": pipeline}, indent=2))
    print(table(results))
    if pipeline:
        print(pipeline_table(pipeline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
