"""Time to WER: the Hugging Face recipe's data path against speechkit, each trained for the same budget of time.

*Training and Inference Efficiency of Encoder-Decoder Speech Models* (Żelasko et al., arXiv 2503.05931) reports the
time to reach a given quality, not throughput alone. Both systems train the same real whisper tiny.en
(``ct2:tiny.en``) from the same start, with AdamW at the same peak learning rate (linear warm-up over
``--warmup-steps`` optimizer steps, then a linear decay to 0 over the last ``--decay-fraction`` of the budget's time,
by default all of it: :class:`speechkit.optim.TimeBudgetDecay`), on the same pool, for the same budget of
``--minutes``:

- ``baseline``: the data path of the HF ``Seq2SeqTrainer`` Whisper recipe as ``whisper_training_throughput.py``
  reproduces it: random fixed-size batches (``--baseline-batch-size``), every input padded to 30 s, one optimizer
  step per batch, batch-mean loss; a new shuffle every pass over the pool.
- ``speechkit``: ``speechkit fit`` in-process: ``SpeechDataModule`` with 2-D duration x token buckets
  (``estimate_bucket_bins``) and per-bucket batch sizes, ``WhisperFinetune(pad_to_30s=False)`` (variable-length
  encoder input) and the token-sized optimizer steps of ``speechkit.optim.token_steps`` (``--tokens-per-step``,
  ``--loss-normalization``, ``--lr-scaling``; the reference of the lr rule is the baseline's mean target tokens per
  step, so at equal tokens both take the same lr), and an EMA of the weights (``--ema-decay``,
  ``--ema-warmup-offset``: :class:`speechkit.optim.WarmupEMA`), whose average is what its snapshots hold. Its
  per-bucket batch sizes: ``floor(--max-duration / bucket duration)``, or the OOMptimizer search under a CPU
  memory budget (``--batch-sizes search``).

The clock (``--clock``): ``wall`` (perf_counter of the training process) or ``cpu`` (its CPU time; with
``--threads 1`` this is the wall time the run would take on an idle core, and much less sensitive to other jobs on
a shared machine). Only training counts: data loading, features, forward, backward and optimizer step. At
``--evals`` evenly spaced clock times each system saves its weights (the clock is stopped meanwhile); after both
trainings every snapshot is decoded on the same fixed dev set (``--dev-utterances``, greedy, normalized WER):
baseline snapshots the recipe's way (30 s input, ``generate``), speechkit snapshots variable-length, and the final
speechkit snapshot also the baseline's way (``final_wer_speechkit_30s``: training vs decoding).

JSON: ``curve_baseline`` / ``curve_speechkit`` (``[seconds, wer]``), ``final_wer_baseline``,
``final_wer_speechkit``, ``seconds_to_baseline_final_wer_speechkit`` (the first speechkit snapshot at or below the
baseline's final WER, ``null`` if none), steps and audio trained, the settings and the load average; a PNG of WER
against training time.

    python benchmarks/time_to_wer.py --corpus sentences --minutes 10 --json sentences_ttw.json --threads 1
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from whisper_training_throughput import (  # noqa: E402  (the sibling benchmark's corpora, batches and decoding)
    REPO, _threads, bucket_batch_sizes, default_data_dir, dev_wer, hf_batches, pool_and_dev, prepare_corpus)

SYSTEMS = ("baseline", "speechkit")


@dataclass
class Settings:
    """One system's run (passed to a fresh process)."""

    pool: str
    budget_s: float
    evals: int
    clock: str
    snapshots: str
    model: str
    lr: float
    warmup_steps: int
    seed: int
    threads: Optional[int]
    baseline_batch_size: int
    bins: list = field(default_factory=list)
    max_tps: list = field(default_factory=list)
    batch_sizes: list = field(default_factory=list)
    tokens_per_step: Optional[int] = None
    loss_normalization: str = "batch_mean"
    lr_scaling: str = "none"
    reference_tokens: Optional[int] = None
    decay_fraction: float = 1.0  # the defaults of --decay-fraction, --ema-decay and --ema-warmup-offset
    ema_decay: Optional[float] = 0.999  # 0 or None: snapshot the live weights
    ema_warmup_offset: float = 4.0


class Clock:
    """Training time of this process (wall or CPU), stoppable while snapshots are written; fires at ``evals``
    evenly spaced times up to the budget."""

    def __init__(self, settings: Settings) -> None:
        self.read = time.perf_counter if settings.clock == "wall" else time.process_time
        self.budget, self.points = settings.budget_s, [settings.budget_s * (k + 1) / settings.evals
                                                       for k in range(settings.evals)]
        self.start, self.paused, self.snapshots = self.read(), 0.0, []
        self.folder = Path(settings.snapshots)
        self.folder.mkdir(parents=True, exist_ok=True)

    def elapsed(self) -> float:
        return self.read() - self.start - self.paused

    def tick(self, model, steps: int, audio_s: float) -> bool:
        """After a step: snapshot when a point is passed; ``True`` once the budget is spent."""
        import torch

        now = self.elapsed()
        while self.points and now >= self.points[0]:
            self.points.pop(0)
            stop = self.read()
            path = self.folder / f"snapshot_{len(self.snapshots)}.pt"
            torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, path)
            self.snapshots.append({"seconds": now, "path": str(path), "steps": steps, "audio_s": audio_s})
            print(f"  snapshot at {now:.0f} s: {steps} steps, {audio_s:.0f} s of audio", flush=True)
            self.paused += self.read() - stop
        return now >= self.budget


def schedule(settings: Settings, elapsed):
    """The lr schedule both systems use: warm-up then constant (``decay_fraction`` 0), or
    :class:`speechkit.optim.TimeBudgetDecay` (a linear decay to 0 over the last ``decay_fraction`` of the budget,
    on the benchmark's own clock ``elapsed``)."""
    import torch
    from speechkit.optim import TimeBudgetDecay

    if settings.decay_fraction == 0.0:
        return lambda optimizer: torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / max(1, settings.warmup_steps)))
    return lambda optimizer: TimeBudgetDecay(optimizer, settings.budget_s, settings.warmup_steps,
                                             settings.decay_fraction, shape="linear", clock=elapsed)


# ------------------------------------------------------------------------------------------------ the two systems


def train_baseline(settings: Settings) -> dict[str, Any]:
    import torch
    from lhotse import CutSet
    from speechkit.tasks.whisper_finetune import WhisperFinetune

    _threads(settings.threads)
    torch.manual_seed(settings.seed)
    module = WhisperFinetune(settings.model, pad_to_30s=True).train()
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=settings.lr)
    cuts = list(CutSet.from_file(settings.pool))
    clock, steps, audio, epoch, done = Clock(settings), 0, 0.0, 0, False
    lr_schedule = schedule(settings, clock.elapsed)(optimizer)
    while not done:
        for batch in hf_batches(cuts, settings.baseline_batch_size, settings.seed + epoch, module.feature_extractor,
                                module.tokenizer):
            optimizer.zero_grad(set_to_none=True)
            module.model(input_features=batch["input_features"], labels=batch["labels"]).loss.backward()
            optimizer.step()
            lr_schedule.step()
            steps, audio = steps + 1, audio + batch["audio_s"]
            if clock.tick(module.model, steps, audio):
                done = True
                break
        epoch += 1
    return {"snapshots": clock.snapshots, "steps": steps, "audio_s_trained": audio, "epochs": epoch}


def train_speechkit(settings: Settings) -> dict[str, Any]:
    import lightning as L
    import torch
    from speechkit.data import DataConfig, SpeechDataModule
    from speechkit.optim import WarmupEMA
    from speechkit.tasks.whisper_finetune import WhisperFinetune

    _threads(settings.threads)
    torch.manual_seed(settings.seed)
    clock: list[Clock] = []  # started when training starts (after configure_optimizers builds the schedule)
    module = WhisperFinetune(settings.model, pad_to_30s=False, lr=settings.lr,
                             scheduler=schedule(settings, lambda: clock[0].elapsed() if clock else 0.0),
                             tokens_per_step=settings.tokens_per_step,
                             loss_normalization=settings.loss_normalization, lr_scaling=settings.lr_scaling,
                             reference_tokens=settings.reference_tokens)
    data = SpeechDataModule(DataConfig(train_cuts=settings.pool, bucket_duration_bins=settings.bins,
                                       bucket_batch_size=settings.batch_sizes, bucket_max_tps=settings.max_tps,
                                       seed=settings.seed))

    ema = (WarmupEMA(settings.ema_decay, warmup_offset=settings.ema_warmup_offset) if settings.ema_decay
           else None)  # listed before Budget: updated first

    class Budget(L.Callback):
        def __init__(self) -> None:
            self.audio = 0.0

        def on_train_start(self, trainer, pl_module) -> None:
            clock.append(Clock(settings))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.audio += float(batch.durations.sum())
            model = ema.averaged_module.model if ema else pl_module.model
            if clock[0].tick(model, trainer.global_step, self.audio):
                trainer.should_stop = True

    budget = Budget()
    trainer = L.Trainer(max_epochs=-1, max_steps=-1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, use_distributed_sampler=False,
                        callbacks=[ema, budget] if ema else [budget])
    trainer.fit(module, data)
    return {"snapshots": clock[0].snapshots, "steps": trainer.global_step, "audio_s_trained": budget.audio,
            "epochs": trainer.current_epoch}


def evaluate(system: str, model: str, snapshots: list[dict], dev: str, threads: Optional[int],
             also_30s_last: bool) -> list[dict]:
    """Dev WER of each snapshot, decoded as the system decodes (and the last one the baseline's way too)."""
    import torch
    from speechkit.tasks.whisper_finetune import WhisperFinetune

    _threads(threads)
    module = WhisperFinetune(model, pad_to_30s=system == "baseline")
    rows = []
    for k, snap in enumerate(snapshots):
        module.model.load_state_dict(torch.load(snap["path"], weights_only=True))
        row = {**snap, "wer": dev_wer(module, dev, hf=system == "baseline")["wer"]}
        if also_30s_last and k == len(snapshots) - 1:
            row["wer_30s"] = dev_wer(module, dev, hf=True)["wer"]
        print(f"  {system} at {snap['seconds']:.0f} s: dev WER {row['wer']:.3f}", flush=True)
        rows.append(row)
    return rows


def in_fresh_process(function, *args):
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


# ------------------------------------------------------------------------------------------------ report


def seconds_to_reach(curve: list[list[float]], target: float) -> Optional[float]:
    """The first time a curve's WER is at or below ``target`` (``None`` if never)."""
    return next((seconds for seconds, wer in curve if wer <= target + 1e-12), None)


def report(results: dict[str, dict], settings: dict[str, Any]) -> dict[str, Any]:
    curves = {s: [[row["seconds"], row["wer"]] for row in results[s]["evals"]] for s in SYSTEMS}
    out: dict[str, Any] = {"curve_baseline": curves["baseline"], "curve_speechkit": curves["speechkit"],
                           "final_wer_baseline": curves["baseline"][-1][1],
                           "final_wer_speechkit": curves["speechkit"][-1][1],
                           "final_wer_speechkit_30s": results["speechkit"]["evals"][-1].get("wer_30s")}
    out["seconds_to_baseline_final_wer_speechkit"] = seconds_to_reach(curves["speechkit"], out["final_wer_baseline"])
    for s in SYSTEMS:
        out[f"steps_{s}"] = results[s]["steps"]
        out[f"audio_s_trained_{s}"] = results[s]["audio_s_trained"]
    out["settings"] = settings
    return out


def plot(out: dict[str, Any], title: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for system, color in (("baseline", "tab:gray"), ("speechkit", "tab:blue")):
        curve = out[f"curve_{system}"]
        ax.plot([c[0] / 60 for c in curve], [c[1] for c in curve], "o-", color=color, label=system)
    ax.axhline(out["final_wer_baseline"], color="tab:gray", linestyle=":", linewidth=1)
    ax.set_xlabel(f"training time ({out['settings']['clock']} clock), minutes")
    ax.set_ylabel("dev WER (normalized)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _tokens_per_step(value: str) -> int | str:
    if value == "baseline":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of tokens or 'baseline', got {value!r}") from None


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=["fsdd", "sentences"], required=True)
    parser.add_argument("--minutes", type=float, required=True, help="training budget of each system")
    parser.add_argument("--json", required=True)
    parser.add_argument("--png", default=None, help="default: the JSON path with .png")
    parser.add_argument("--evals", type=int, default=5, help="snapshots (dev WER points) per system")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--pool-seconds", type=float, default=None,
                        help="training pool (default sentences 12000 s, fsdd 1000 s)")
    parser.add_argument("--dev-utterances", type=int, default=150)
    parser.add_argument("--baseline-batch-size", type=int, default=8)
    parser.add_argument("--batch-sizes", choices=["max-duration", "search"], default="max-duration",
                        help="speechkit's per-bucket batch sizes: floor(--max-duration / bucket duration), or the "
                             "OOMptimizer search (speechkit.data.batch_size_search) under --memory-budget-gb")
    parser.add_argument("--max-duration", type=float, default=60.0,
                        help="speechkit: padded audio seconds per batch, floor(S / bucket duration) per bucket")
    parser.add_argument("--memory-budget-gb", type=float, default=1.75, help="CPU peak-RSS budget of the search")
    parser.add_argument("--num-buckets", type=int, default=4)
    parser.add_argument("--num-subbuckets", type=int, default=2)
    parser.add_argument("--tokens-per-step", type=_tokens_per_step, default=None,
                        help="speechkit: accumulate buckets into steps of this many target tokens; 'baseline': the "
                             "baseline's mean target tokens per step")
    parser.add_argument("--loss-normalization", choices=["batch_mean", "tokens"], default="tokens")
    parser.add_argument("--lr-scaling", choices=["none", "sqrt", "linear"], default="none")
    parser.add_argument("--ema-decay", type=float, default=Settings.ema_decay,
                        help="speechkit: snapshot an EMA of the weights with this decay cap (speechkit.optim.WarmupEMA; "
                             "0: the live weights)")
    parser.add_argument("--ema-warmup-offset", type=float, default=Settings.ema_warmup_offset,
                        help="speechkit: the EMA's decay warms up as (1 + n) / (c + n): it averages about the last "
                             "1 / (c - 1) of the steps")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--decay-fraction", type=float, default=Settings.decay_fraction,
                        help="both systems: decay the lr linearly to 0 over this last share of the budget "
                             "(speechkit.optim.TimeBudgetDecay; 1: over the whole budget); 0: constant after "
                             "warm-up")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--model", default="ct2:tiny.en")
    parser.add_argument("--reuse-baseline", default=None,
                        help="take the baseline's curve from this earlier JSON (same corpus, budget, clock) and "
                             "train only speechkit: for comparing speechkit's options")
    parser.add_argument("--data-dir", default=str(default_data_dir()))
    parser.add_argument("--work-dir", default=None, help="default exp/benchmarks/time_to_wer_<corpus>")
    args = parser.parse_args(argv)
    if args.pool_seconds is None:
        args.pool_seconds = 12000.0 if args.corpus == "sentences" else 1000.0  # speechkit: < 2 passes in 10 min
    return args


def main(argv: Optional[list[str]] = None) -> int:
    from speechkit.data.sampling import TaskTokenCounter, estimate_bucket_bins
    from speechkit.tasks.whisper_finetune import WhisperFinetune

    args = parse_args(argv)
    work = Path(args.work_dir or REPO / "exp" / "benchmarks" / f"time_to_wer_{args.corpus}")
    work.mkdir(parents=True, exist_ok=True)
    train, dev = prepare_corpus(args.corpus, Path(args.data_dir), work, args.pool_seconds, args.dev_utterances,
                                args.seed)
    core = WhisperFinetune(args.model, pad_to_30s=False).core
    tokenize = core.tokenize
    pool, dev_subset = pool_and_dev(train, dev, args.pool_seconds, args.dev_utterances, args.seed,
                                    TaskTokenCounter(tokenize))
    pool.to_file(work / "pool.jsonl.gz")
    dev_subset.to_file(work / "dev_subset.jsonl.gz")
    bins = estimate_bucket_bins(pool, args.num_buckets, args.num_subbuckets)
    sizes, how = bucket_batch_sizes(args, bins.bins, {"threads": args.threads, "model": args.model, "lr": args.lr})
    mean_tokens = sum(c.custom["num_tokens"] - len(core.prompt) for c in pool) / len(pool)  # as target_tokens
    reference = round(args.baseline_batch_size * mean_tokens)  # the baseline's mean target tokens per step
    tokens_per_step = reference if args.tokens_per_step == "baseline" else args.tokens_per_step
    print(f"{len(pool)} training cuts ({sum(c.duration for c in pool):.0f} s), {len(dev_subset)} dev cuts; "
          f"bins {bins.bins}, batch sizes {sizes} ({how}); baseline mean {reference} target tokens per step",
          flush=True)
    common = dict(pool=str(work / "pool.jsonl.gz"), budget_s=60 * args.minutes, evals=args.evals, clock=args.clock,
                  model=args.model, lr=args.lr, warmup_steps=args.warmup_steps, seed=args.seed, threads=args.threads,
                  baseline_batch_size=args.baseline_batch_size, decay_fraction=args.decay_fraction)
    settings = {
        "baseline": Settings(snapshots=str(work / "snapshots_baseline"), **common),
        "speechkit": Settings(snapshots=str(work / "snapshots_speechkit"), bins=[list(b) for b in bins.bins],
                              max_tps=bins.max_tps, batch_sizes=list(sizes), tokens_per_step=tokens_per_step,
                              loss_normalization=args.loss_normalization, lr_scaling=args.lr_scaling,
                              reference_tokens=reference, ema_decay=args.ema_decay,
                              ema_warmup_offset=args.ema_warmup_offset, **common),
    }
    results, loads = {}, {}
    if args.reuse_baseline:  # an earlier run's baseline (same corpus, budget and clock): only speechkit trains
        earlier = json.loads(Path(args.reuse_baseline).read_text())
        results["baseline"] = {"evals": [{"seconds": t, "wer": w} for t, w in earlier["curve_baseline"]],
                               "steps": earlier["steps_baseline"], "audio_s_trained": earlier["audio_s_trained_baseline"],
                               "epochs": earlier["settings"]["epochs"]["baseline"]}
    for system, train_fn in (("baseline", train_baseline), ("speechkit", train_speechkit)):
        if system in results:
            continue
        print(f"{system}: training {args.minutes:g} min ({args.clock} clock)", flush=True)
        loads[f"{system}_before"] = os.getloadavg()
        results[system] = in_fresh_process(train_fn, settings[system])
        loads[f"{system}_after"] = os.getloadavg()
    for system in [s for s in SYSTEMS if "evals" not in results[s]]:
        results[system]["evals"] = in_fresh_process(evaluate, system, args.model, results[system]["snapshots"],
                                                    str(work / "dev_subset.jsonl.gz"), args.threads,
                                                    system == "speechkit")
    out = report(results, {**{k: v for k, v in vars(args).items()}, "reference_tokens": reference,
                           "bucket_batch_size": list(sizes), "batch_sizes_from": how,
                           "tokens_per_step_resolved": tokens_per_step, "bins": [list(b) for b in bins.bins],
                           "load_average": loads, "cpu_count": os.cpu_count(),
                           "epochs": {s: results[s]["epochs"] for s in SYSTEMS}})
    Path(args.json).write_text(json.dumps(out, indent=2, default=float))
    plot(out, f"whisper tiny.en on {args.corpus}: {args.minutes:g} min each", args.png or
         str(Path(args.json).with_suffix(".png")))
    to = out["seconds_to_baseline_final_wer_speechkit"]
    print(f"final dev WER: baseline {out['final_wer_baseline']:.3f}, speechkit {out['final_wer_speechkit']:.3f} "
          f"(decoded the baseline's way {out['final_wer_speechkit_30s']:.3f}); speechkit reached the baseline's "
          f"final WER after {'never' if to is None else f'{to:.0f} s'} of {60 * args.minutes:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
