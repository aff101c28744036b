"""Whisper fine-tuning throughput: the Hugging Face recipe's data path against speechkit's bucketing.

*Training and Inference Efficiency of Encoder-Decoder Speech Models* (Żelasko et al., arXiv 2503.05931):
padding is wasted compute (``padding = 1 - sum_i x_i / sum_b |b| max x``);
2-D bucketing, per-bucket batch sizes and (for Whisper) variable-length encoder input remove it. This benchmark
trains the same real whisper tiny.en (``ct2:tiny.en``) with the same AdamW, constant learning rate, seed and
training audio three ways, each for one pass over the same pool of training cuts (``--audio-seconds`` of audio):

- ``baseline``: the data path of the Hugging Face ``Seq2SeqTrainer`` Whisper recipe (blog "Fine-Tune Whisper For
  Multilingual ASR with Transformers"), *reproduced* here, not run through ``Seq2SeqTrainer`` itself: random
  batches of a fixed size (``--baseline-batch-size``, shuffled with the seed), audio resampled to 16 kHz,
  ``WhisperFeatureExtractor(audio, sampling_rate=16000)`` (pads every input to 30 s = 3000 frames), labels =
  ``tokenizer(text).input_ids`` padded to the batch maximum by ``tokenizer.pad`` with -100 where the attention
  mask is 0 and the leading ``<|startoftranscript|>`` cut when every row has it
  (``DataCollatorSpeechSeq2SeqWithPadding``), then ``model(input_features=..., labels=...)`` forward + backward +
  AdamW step. Differences from the recipe: features are computed inside the step (the recipe precomputes them with
  ``datasets.map``, so the baseline here also pays for feature extraction: a few per cent of its step); a
  constant learning rate (no warm-up) for all three ways.
- ``speechkit``: ``SpeechDataModule`` with 2-D bins from :func:`estimate_bucket_bins` (token counts of the task's
  own ``tokenize``, ``TaskTokenCounter``, stored in the manifest as ``custom["num_tokens"]``), per-bucket batch
  sizes and ``WhisperFinetune(pad_to_30s=False)`` (variable-length encoder input). Batch sizes: ``--batch-sizes
  max-duration`` (default): ``floor(max_duration / bucket duration)`` (:func:`build_constraint`), i.e. at most
  ``--max-duration`` seconds of padded audio per batch; ``--batch-sizes search``: :func:`find_batch_sizes`
  (OOMptimizer, real training steps) under a CPU byte budget ``--memory-budget-gb`` (slow on CPU: a search step
  costs as much as a training step of the largest batch).
- ``ceiling``: the same sampler, dataset and task, but every batch perfectly packed: each cut cropped to the
  batch's shortest duration and each token sequence to the batch's shortest, so input and output padding are
  zero (measured). Throughput only (the cropped targets no longer match the audio): no WER.

Reported per way: audio seconds trained per wall second, end to end (data loading, features, collation, forward,
backward, optimizer step) over every step after 2 warm-up steps, per wall second and per CPU second of the run's
process (``time.process_time``: on a machine shared with other jobs the wall-clock rate follows their load, the
CPU-time rate much less; with ``--threads 1`` it is the single thread's work); input and output padding
fractions of the batches actually fed (frames and decoder tokens); peak resident memory (``VmHWM`` of a fresh
process per way: model, optimizer state, activations); and dev WER (normalized, fraction) of a fixed dev subset
(``--dev-utterances``) after training, greedy, ``max_new_tokens`` = 2 x the longest dev target + 8: the
baseline decodes as its recipe does (``WhisperFeatureExtractor`` 30 s input, ``model.generate``), speechkit
variable-length (the Whisper core's ``transcribe``); ``wer_speechkit_30s`` decodes the speechkit-trained model the
baseline's way too, to tell training from decoding. ``pipeline_audio_s_per_s_speechkit`` is the audio the data
loader (0 workers, in-line) delivered per second spent waiting for it.

Corpora: ``fsdd`` (real spoken digits, 0.1-2.3 s) and ``sentences`` (Multi30k captions cut to 2-40 words,
log-uniform, synthesized by eSpeak NG with ``speechkit prepare synthetic``-style manifests, kept at 1-15 s).

    python benchmarks/whisper_training_throughput.py --corpus fsdd --json fsdd.json [--audio-seconds 200]
        [--png fsdd.png] [--threads 1] [--baseline-batch-size 8] [--max-duration S] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import gzip
import json
import logging
import math
import multiprocessing
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator


REPO = Path(__file__).resolve().parents[1]
WHISPER_FRAMES = 3000  # 30 s of 10 ms frames
MODES = ("baseline", "speechkit", "ceiling")


@dataclass
class Settings:
    """Everything a training run needs (passed to a fresh process per way)."""

    corpus: str
    pool: str  # manifest of the training pool (cuts with custom num_tokens)
    dev: str  # manifest of the dev subset
    bins: list
    max_tps: list
    batch_sizes: list
    baseline_batch_size: int
    lr: float
    seed: int
    threads: int | None
    model: str
    warmup_steps: int = 2
    check_30s: bool = True


# ------------------------------------------------------------------------------------------------ corpora


def default_data_dir() -> Path:
    return Path(os.environ.get("SPEECHKIT_DATA", str(REPO.parent / "shared/data")))


def sentence_texts(data_dir: Path, count: int, seed: int) -> list[str]:
    """``count`` texts of 2-40 words (log-uniform): runs of consecutive Multi30k English captions, cut."""
    with gzip.open(data_dir / "multi30k" / "train.en.gz", "rt", encoding="utf-8") as f:
        captions = [line.strip() for line in f if line.strip()]
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        words = round(math.exp(rng.uniform(math.log(2), math.log(40))))
        start = rng.randrange(len(captions) - 10)
        run = " ".join(captions[start:start + 10]).split()
        texts.append(" ".join(run[:words]))
    return texts


def prepare_corpus(corpus: str, data_dir: Path, work: Path, audio_seconds: float, dev_size: int, seed: int):
    """``(train, dev)`` CutSets of a corpus, prepared under ``work`` (synthesis is cached there)."""
    if corpus == "fsdd":
        from speechkit.data.corpora.fsdd import prepare

        splits = prepare(data_dir / "fsdd", work, overwrite=True)  # a scratch folder: reruns may change the pool
        return splits["train"].to_eager(), splits["dev"].to_eager()
    from speechkit.data.corpora.synthetic import prepare

    train_lines = math.ceil(1.5 * audio_seconds / 4.0) + 10  # ~4 s a sentence on average
    dev_lines = math.ceil(dev_size / 0.7) + 10  # about 78 % of the drawn sentences last 1-15 s
    total = train_lines + dev_lines
    text_file = work / f"sentences_{total}.txt"
    text_file.write_text("\n".join(sentence_texts(data_dir, total, seed)) + "\n", encoding="utf-8")
    splits = prepare(text_file, work, speakers=4, seed=seed, dev_fraction=dev_lines / total, test_fraction=0.0,
                     overwrite=True)
    return splits["train"].filter(_one_to_15_s).to_eager(), splits["dev"].filter(_one_to_15_s).to_eager()


def _one_to_15_s(cut) -> bool:
    return 1.0 <= cut.duration <= 15.0


def pool_and_dev(train, dev, audio_seconds: float, dev_size: int, seed: int, counter):
    """A seeded random subset of ``train`` holding at least ``audio_seconds`` of audio (with Whisper token counts)
    and ``dev_size`` seeded random dev cuts."""
    from lhotse import CutSet
    from speechkit.errors import SpeechkitError

    cuts = sorted(train, key=lambda c: c.id)
    random.Random(seed).shuffle(cuts)
    total, chosen = 0.0, []
    for cut in cuts:
        if total >= audio_seconds:
            break
        chosen.append(cut.with_custom("num_tokens", counter(cut)))
        total += cut.duration
    if total < audio_seconds:
        raise SpeechkitError(f"--audio-seconds {audio_seconds}: the training split holds only {total:.0f} s")
    dev_cuts = sorted(dev, key=lambda c: c.id)
    if len(dev_cuts) < dev_size:
        raise SpeechkitError(f"--dev-utterances {dev_size}: the dev split holds only {len(dev_cuts)} cuts")
    random.Random(seed).shuffle(dev_cuts)
    return CutSet.from_cuts(chosen), CutSet.from_cuts(dev_cuts[:dev_size])


# ------------------------------------------------------------------------------------------------ batching


def bucket_batch_sizes(args: argparse.Namespace, bins: list, settings_base: dict) -> tuple[list[int], str]:
    """Per-bucket batch sizes and a description of how they were found."""
    from speechkit.data.sampling import build_constraint

    if args.batch_sizes == "max-duration":
        sizes = build_constraint(bins, None, max_duration=args.max_duration).batch_sizes
        return sizes, f"floor({args.max_duration:g} s / bucket duration)"
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        sizes = pool.submit(search_batch_sizes, bins, args.memory_budget_gb, settings_base).result()
    return sizes, f"find_batch_sizes, CPU peak-RSS budget {args.memory_budget_gb:g} GB"


def search_batch_sizes(bins: list, budget_gb: float, base: dict) -> list[int]:
    """OOMptimizer in a fresh process: real AdamW steps of WhisperFinetune(pad_to_30s=False) per bucket shape."""
    import torch
    from speechkit.data.batch_size_search import find_batch_sizes, make_training_step
    from speechkit.tasks.whisper_finetune import WhisperFinetune

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the search's trials, in this spawned process
    _threads(base["threads"])
    module = WhisperFinetune(base["model"], pad_to_30s=False)
    step = make_training_step(module, optimizer_factory=lambda ps: torch.optim.AdamW(ps, lr=base["lr"]))
    return find_batch_sizes(step, [tuple(b) for b in bins], memory_budget=budget_gb * 1e9, start=8)


def _threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def hf_batches(cuts: list, batch_size: int, seed: int, feature_extractor, tokenizer) -> Iterator[dict]:
    """The Hugging Face recipe's batches: random fixed-size batches, 30 s features, -100-padded labels."""
    order = list(range(len(cuts)))
    random.Random(seed).shuffle(order)
    for start in range(0, len(order), batch_size):
        batch = [cuts[i] for i in order[start:start + batch_size]]
        audio = [c.resample(16000).load_audio()[0] for c in batch]
        feats = feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features  # (B, 80, 3000)
        labels_batch = tokenizer.pad({"input_ids": [tokenizer(c.supervisions[0].text).input_ids for c in batch]},
                                     return_tensors="pt")
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)  # (B, U)
        if (labels[:, 0] == tokenizer.convert_tokens_to_ids("<|startoftranscript|>")).all():
            labels = labels[:, 1:]
        yield {"input_features": feats, "labels": labels, "audio_s": sum(c.duration for c in batch),
               "frames": [min(WHISPER_FRAMES, round(100 * c.duration)) for c in batch]}


class PackedDataset:
    """The speechkit dataset with every batch perfectly packed: cuts cropped to the batch's shortest duration,
    token sequences to the shortest (the throughput ceiling; targets no longer match the audio)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __getitem__(self, cuts):
        from lhotse import CutSet

        shortest = min(c.duration for c in cuts)
        batch = self.dataset[CutSet.from_cuts(c.truncate(duration=shortest) for c in cuts)]
        length = int(batch.token_lens.min())
        batch.tokens = batch.tokens[:, :length]  # (B, U_min)
        batch.token_lens = batch.token_lens.clamp(max=length)
        return batch


def speechkit_loader(settings: Settings, module, packed: bool):
    """``SpeechDataModule`` train loader over the pool with the 2-D bins and batch sizes (0 workers)."""
    from speechkit.data import DataConfig, SpeechDataModule
    from torch.utils.data import DataLoader

    config = DataConfig(train_cuts=settings.pool, bucket_duration_bins=settings.bins,
                        bucket_batch_size=settings.batch_sizes, bucket_max_tps=settings.max_tps, seed=settings.seed)
    dm = SpeechDataModule(config=config)
    dm.tokenizer, dm.pad_token_id = module.tokenize, module.pad_token_id  # what setup() takes from the task
    loader = dm.train_dataloader()
    if packed:
        loader = DataLoader(PackedDataset(loader.dataset), sampler=loader.sampler, batch_size=None)
    return loader, dm


# ------------------------------------------------------------------------------------------------ one way


def run_mode(mode: str, settings: Settings) -> dict[str, Any]:
    """Train one way for one pass over the pool in this (fresh) process; time, padding, memory, dev WER."""
    import torch
    from lhotse import CutSet
    from speechkit.data.batch_size_search import high_water_rss_bytes
    from speechkit.tasks.whisper_finetune import WhisperFinetune

    _threads(settings.threads)
    torch.manual_seed(settings.seed)
    module = WhisperFinetune(settings.model, pad_to_30s=mode == "baseline", lr=settings.lr)
    module.train()
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=settings.lr)
    if mode == "baseline":
        batches = hf_batches(list(CutSet.from_file(settings.pool)), settings.baseline_batch_size, settings.seed,
                             module.feature_extractor, module.tokenizer)
        step, measure = _hf_step(module), _hf_lengths
        dropped = 0
    else:
        loader, dm = speechkit_loader(settings, module, packed=mode == "ceiling")
        batches, step, measure = iter(loader), _speechkit_step(module), _speechkit_lengths
    log = train(batches, step, measure, optimizer, settings.warmup_steps)
    if mode != "baseline":
        dropped = dm.train_sampler.bucket_filter.num_dropped
    result = {**summarize(log, settings.warmup_steps), "peak_rss_gb": high_water_rss_bytes() / 1e9,
              "dropped_cuts": dropped}
    if mode != "ceiling":
        result |= dev_wer(module, settings.dev, hf=mode == "baseline")
    if mode == "speechkit" and settings.check_30s:  # the same model decoded the baseline's way: training vs decoding
        result["wer_30s"] = dev_wer(module, settings.dev, hf=True)["wer"]
    return result


def _hf_step(module):
    def step(batch):
        return module.model(input_features=batch["input_features"], labels=batch["labels"]).loss
    return step


def _speechkit_step(module):
    return module.forward


def _hf_lengths(batch) -> tuple[float, list[int], int, list[int], int]:
    """(audio s, real frames, padded frames per row, real labels, padded labels per row)."""
    labels = batch["labels"]
    return batch["audio_s"], batch["frames"], WHISPER_FRAMES, labels.ne(-100).sum(1).tolist(), labels.shape[1]


def _speechkit_lengths(batch) -> tuple[float, list[int], int, list[int], int]:
    return (float(batch.durations.sum()), batch.input_lens.tolist(), batch.inputs.shape[1], batch.token_lens.tolist(),
            batch.tokens.shape[1])


def train(batches, step, measure, optimizer, warmup_steps: int) -> list[dict]:
    """Forward + backward + AdamW step per batch; per step: audio s, lengths, data time, end time."""
    log = []
    start, cpu_start = time.perf_counter(), time.process_time()
    while True:
        before = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            break
        data_time = time.perf_counter() - before
        optimizer.zero_grad(set_to_none=True)
        loss = step(batch)
        loss.backward()
        optimizer.step()
        audio, frames, max_frames, tokens, max_tokens = measure(batch)
        log.append({"audio_s": audio, "frames": frames, "max_frames": max_frames, "tokens": tokens,
                    "max_tokens": max_tokens, "data_s": data_time, "end": time.perf_counter() - start,
                    "cpu": time.process_time() - cpu_start,
                    "loss": float(loss.detach())})
        print(f"  step {len(log)}: {len(frames)} cuts, {audio:.1f} s audio, loss {float(loss.detach()):.3f}, "
              f"{log[-1]['end']:.1f} s", flush=True)
    return log


def summarize(log: list[dict], warmup_steps: int) -> dict[str, Any]:
    """Throughput after the warm-up steps and padding fractions over every step."""
    from speechkit.errors import SpeechkitError

    if len(log) <= warmup_steps:
        raise SpeechkitError(f"only {len(log)} training steps: need more than the {warmup_steps} warm-up steps; "
                             "raise --audio-seconds or lower --max-duration / --baseline-batch-size")
    timed = log[warmup_steps:]
    wall = timed[-1]["end"] - log[warmup_steps - 1]["end"]
    cpu = timed[-1]["cpu"] - log[warmup_steps - 1]["cpu"]
    audio = sum(s["audio_s"] for s in timed)
    real_in = sum(sum(s["frames"]) for s in log)
    padded_in = sum(len(s["frames"]) * s["max_frames"] for s in log)
    real_out = sum(sum(s["tokens"]) for s in log)
    padded_out = sum(len(s["tokens"]) * s["max_tokens"] for s in log)
    return {
        "audio_s_per_s": audio / wall,
        "audio_s_per_cpu_s": audio / cpu,
        "samples_per_s": sum(len(s["frames"]) for s in timed) / wall,
        "pipeline_audio_s_per_s": audio / max(1e-9, sum(s["data_s"] for s in timed)),
        "padding_in": 1.0 - real_in / padded_in,
        "padding_out": 1.0 - real_out / padded_out,
        "steps": len(log),
        "mean_batch_size": sum(len(s["frames"]) for s in log) / len(log),
        "audio_s_trained": sum(s["audio_s"] for s in log),
        "train_wall_s": log[-1]["end"],
        "final_loss": log[-1]["loss"],
    }


def dev_wer(module, dev_path: str, hf: bool, batch_size: int = 10) -> dict[str, Any]:
    """Greedy dev WER: the recipe's 30 s HF features + generate (``hf``) or speechkit's variable-length input."""
    from lhotse import CutSet
    from speechkit.data import DataConfig, SpeechDataset
    from speechkit.metrics import score_wer

    module.eval()
    cuts = list(CutSet.from_file(dev_path).resample(16000))
    longest = max(len(module.tokenize(c.supervisions[0].text)) for c in cuts)
    module.core.max_new_tokens = 2 * longest + 8
    dataset = SpeechDataset(DataConfig(), tokenizer=module.tokenize, pad_token_id=module.pad_token_id)
    refs, hyps, start = [], [], time.perf_counter()
    for k in range(0, len(cuts), batch_size):
        chunk = CutSet.from_cuts(cuts[k:k + batch_size])
        if hf:
            hyps += _hf_transcribe(module, chunk)
            refs += [c.supervisions[0].text for c in chunk]
        else:
            batch = dataset[chunk]
            hyps += module.core.transcribe(batch)
            refs += batch.texts
    report = score_wer(refs, hyps, "en")
    return {"wer": report.wer, "wer_raw": report.wer_raw, "dev_utterances": len(refs),
            "decode_s": time.perf_counter() - start, "examples": list(zip(refs, hyps))[:5]}


def _hf_transcribe(module, cuts) -> list[str]:
    import torch

    audio = [c.load_audio()[0] for c in cuts]
    feats = module.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features  # (B, 80, 3000)
    config = copy.deepcopy(module.generation_config)
    config.update(num_beams=1, max_new_tokens=module.core.max_new_tokens, max_length=None)
    with torch.no_grad():
        ids = module.model.generate(input_features=feats, generation_config=config)
    return [t.strip() for t in module.tokenizer.batch_decode(ids, skip_special_tokens=True)]


def run_in_fresh_process(mode: str, settings: Settings) -> dict[str, Any]:
    """One way in a spawned process, so that its peak RSS is its own."""
    print(f"{mode}:", flush=True)
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_mode, mode, settings).result()


# ------------------------------------------------------------------------------------------------ report


def flat_results(results: dict[str, dict]) -> dict[str, Any]:
    """The issue's keys (fractions) plus the ratios."""
    out: dict[str, Any] = {}
    for mode, r in results.items():
        for key in ("audio_s_per_s", "audio_s_per_cpu_s", "samples_per_s", "padding_in", "padding_out", "peak_rss_gb",
                    "steps", "mean_batch_size", "audio_s_trained"):
            out[f"{key}_{mode}"] = r[key]
        if "wer" in r:
            out[f"wer_{mode}"] = r["wer"]
    if "speechkit" in results:
        out["wer_speechkit_30s"] = results["speechkit"].get("wer_30s")
        out["pipeline_audio_s_per_s_speechkit"] = results["speechkit"]["pipeline_audio_s_per_s"]
    for name, (num, den) in {"speedup_vs_baseline": ("speechkit", "baseline"),
                             "fraction_of_ceiling": ("speechkit", "ceiling")}.items():
        if num in results and den in results:
            out[name] = out[f"audio_s_per_s_{num}"] / out[f"audio_s_per_s_{den}"]
            out[f"{name}_cpu"] = out[f"audio_s_per_cpu_s_{num}"] / out[f"audio_s_per_cpu_s_{den}"]
    return out


def table(flat: dict[str, Any]) -> str:
    """Markdown table: one row per way."""
    lines = ["| way | audio s / s | audio s / CPU s | samples / s | input padding | output padding | peak RSS GB | "
             "steps | mean batch | dev WER |", "|---|---|---|---|---|---|---|---|---|---|"]
    for mode in [m for m in MODES if f"audio_s_per_s_{m}" in flat]:
        wer = flat.get(f"wer_{mode}")
        lines.append(f"| {mode} | {flat[f'audio_s_per_s_{mode}']:.3f} | {flat[f'audio_s_per_cpu_s_{mode}']:.3f} | "
                     f"{flat[f'samples_per_s_{mode}']:.2f} | "
                     f"{flat[f'padding_in_{mode}']:.3f} | {flat[f'padding_out_{mode}']:.3f} | "
                     f"{flat[f'peak_rss_gb_{mode}']:.2f} | {flat[f'steps_{mode}']} | "
                     f"{flat[f'mean_batch_size_{mode}']:.1f} | {'-' if wer is None else f'{wer:.3f}'} |")
    notes = []
    if "speedup_vs_baseline" in flat:
        notes.append(f"speechkit / baseline: {flat['speedup_vs_baseline']:.1f}x wall, "
                     f"{flat['speedup_vs_baseline_cpu']:.1f}x CPU")
    if "fraction_of_ceiling" in flat:
        notes.append(f"speechkit / ceiling: {flat['fraction_of_ceiling']:.2f} wall, "
                     f"{flat['fraction_of_ceiling_cpu']:.2f} CPU")
    if "pipeline_audio_s_per_s_speechkit" in flat:
        notes.append(f"data pipeline (in-line) {flat['pipeline_audio_s_per_s_speechkit']:.1f} audio s/s")
    if flat.get("wer_speechkit_30s") is not None:
        notes.append("speechkit's model decoded with 30 s input as the baseline: dev WER "
                     f"{flat['wer_speechkit_30s']:.3f}")
    lines.append("\n" + "; ".join(notes))
    return "\n".join(lines)


def plot(flat: dict[str, Any], corpus: str, path: str) -> None:
    """Bar chart: audio seconds per second and input padding of each way."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    modes = [m for m in MODES if f"audio_s_per_s_{m}" in flat]
    colors = [{"baseline": "tab:gray", "speechkit": "tab:blue", "ceiling": "tab:green"}[m] for m in modes]
    speeds = [flat[f"audio_s_per_s_{m}"] for m in modes]
    left.bar(modes, speeds, color=colors)
    left.set_yscale("log")
    left.set_ylabel("audio seconds trained / wall second")
    for x, value in enumerate(speeds):
        left.annotate(f"{value:.2f}", (x, value), ha="center", va="bottom")
    right.bar(modes, [flat[f"padding_in_{m}"] for m in modes], color=colors)
    right.set_ylim(0, 1)
    right.set_ylabel("input padding fraction")
    fig.suptitle(f"whisper tiny.en fine-tuning on {corpus}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=["fsdd", "sentences"], required=True)
    parser.add_argument("--json", required=True, help="output JSON path")
    parser.add_argument("--png", default=None, help="bar chart path (default: the JSON path with .png)")
    parser.add_argument("--audio-seconds", type=float, default=None,
                        help="audio in the training pool, trained once by each way (default fsdd 200, sentences 480)")
    parser.add_argument("--ways", nargs="+", choices=MODES, default=list(MODES),
                        help="which ways to run (default all three; the ratios need their two ways)")
    parser.add_argument("--no-check-30s", dest="check_30s", action="store_false",
                        help="skip decoding the speechkit-trained model with 30 s input as well (slow on CPU)")
    parser.add_argument("--baseline-batch-size", type=int, default=8)
    parser.add_argument("--batch-sizes", choices=["max-duration", "search"], default="max-duration")
    parser.add_argument("--max-duration", type=float, default=None,
                        help="padded audio seconds per speechkit batch (default: audio seconds / 8, at most 240 = "
                             "the baseline's 8 x 30 s), so that every way has several steps")
    parser.add_argument("--memory-budget-gb", type=float, default=4.0, help="CPU budget of --batch-sizes search")
    parser.add_argument("--num-buckets", type=int, default=4)
    parser.add_argument("--num-subbuckets", type=int, default=2)
    parser.add_argument("--dev-utterances", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-4,
                        help="constant AdamW learning rate of every way (1e-4: the short budgets converge)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's)")
    parser.add_argument("--model", default="ct2:tiny.en")
    parser.add_argument("--data-dir", default=str(default_data_dir()))
    parser.add_argument("--work-dir", default=None, help="manifests and synthesized audio (default exp/benchmarks)")
    args = parser.parse_args(argv)
    if args.audio_seconds is None:
        args.audio_seconds = 200.0 if args.corpus == "fsdd" else 480.0
    if args.max_duration is None:
        args.max_duration = min(240.0, args.audio_seconds / 8)
    return args


def main(argv: list[str] | None = None) -> int:
    from speechkit.data.sampling import TaskTokenCounter, estimate_bucket_bins
    from speechkit.tasks.whisper_finetune import WhisperFinetune

    args = parse_args(argv)
    work = Path(args.work_dir or REPO / "exp" / "benchmarks" / args.corpus)
    work.mkdir(parents=True, exist_ok=True)
    train, dev = prepare_corpus(args.corpus, Path(args.data_dir), work, args.audio_seconds, args.dev_utterances,
                                args.seed)
    counter = TaskTokenCounter(WhisperFinetune(args.model, pad_to_30s=False).tokenize)  # the tokens training sees
    pool, dev_subset = pool_and_dev(train, dev, args.audio_seconds, args.dev_utterances, args.seed, counter)
    pool.to_file(work / "pool.jsonl.gz")
    dev_subset.to_file(work / "dev_subset.jsonl.gz")
    bins = estimate_bucket_bins(pool, args.num_buckets, args.num_subbuckets)
    base = {"threads": args.threads, "model": args.model, "lr": args.lr}
    sizes, how = bucket_batch_sizes(args, bins.bins, base)
    print(f"{len(pool)} training cuts ({sum(c.duration for c in pool):.0f} s), {len(dev_subset)} dev cuts\n"
          f"{bins.to_config()}\nbucket_batch_size: {sizes} ({how})", flush=True)
    settings = Settings(args.corpus, str(work / "pool.jsonl.gz"), str(work / "dev_subset.jsonl.gz"),
                        [list(b) for b in bins.bins], bins.max_tps, list(sizes), args.baseline_batch_size, args.lr,
                        args.seed, args.threads, args.model, check_30s=args.check_30s)
    results = {mode: run_in_fresh_process(mode, settings) for mode in MODES if mode in args.ways}
    flat = flat_results(results)
    load = os.getloadavg()
    report = {**flat, "settings": {**asdict(settings), "batch_sizes_from": how, "audio_seconds": args.audio_seconds,
                                   "max_duration": args.max_duration, "load_average_at_end": load,
                                   "cpu_count": os.cpu_count()},
              "details": results}
    Path(args.json).write_text(json.dumps(report, indent=2, default=float))
    print(table(flat))
    plot(flat, args.corpus, args.png or str(Path(args.json).with_suffix(".png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
