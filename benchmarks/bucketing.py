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
``speechkit prepare synthetic``; tokens = characters of the transcript). Not here: the samples/second of the data
pipeline (issue 5 item 5), which needs the data module.

    python benchmarks/bucketing.py --json bucketing.json [--corpus lognormal fsdd] [--cuts synth=cuts_train.jsonl.gz]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
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
    default_data = os.environ.get("SPEECHKIT_DATA", str(Path(__file__).resolve().parents[2] / "shared/data"))
    parser.add_argument("--data-dir", default=default_data, help="shared data folder (holds fsdd/)")
    args = parser.parse_args(argv)
    results = {}
    for corpus in args.corpus:
        cuts = lognormal_corpus(args.num_cuts, args.seed) if corpus == "lognormal" else fsdd_corpus(Path(args.data_dir))
        results[corpus] = measure(cuts, args.batch_size, args.num_buckets, args.num_subbuckets, args.seed)
    for named in args.cuts:
        name, _, path = named.partition("=")
        if not name or not path:
            parser.error(f"--cuts {named!r}: expected NAME=PATH")
        results[name] = measure(manifest_corpus(path), args.batch_size, args.num_buckets, args.num_subbuckets,
                                args.seed)
    settings = {k: getattr(args, k) for k in ("batch_size", "num_buckets", "num_subbuckets", "num_cuts", "seed")}
    Path(args.json).write_text(json.dumps({"settings": settings, "results": results}, indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
