"""Compare the fine-tuning strategies of *Fine-tuning Whisper for Pashto ASR: strategies and scale* (Rahman 2026).

Runs ``full``, ``lora``, ``frozen_encoder`` and ``multistage`` on the same target data and the same total step
budget (multistage: half the steps on a related language, half on the target), each as ``speechkit fit`` runs of
``WhisperFinetune`` through the multistage runner, and reports per strategy the dev WER/CER (raw and normalized)
at the best checkpoint, the trainable parameters and the wall time: a table like the paper's Table of strategies,
a JSON file and a PNG bar chart.

``python tools/compare_strategies.py --config conf/whisper/new_language.yaml --train T --dev D --language ky
--new-language-init-from kk --related-train RT --related-dev RD --related-language kk --max-steps 60 --out-dir OUT``
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

from speechkit.errors import SpeechkitError
from speechkit.drivers.multistage import Plan, Stage, StageResult, run_plan

STRATEGIES = ("full", "lora", "frozen_encoder", "multistage")
_METRICS = ("wer", "wer_raw", "cer", "cer_raw")


@dataclass
class StrategyResult:
    """One row of the comparison: dev error rates (fractions) at the best checkpoint, size and cost."""

    strategy: str
    wer: float
    wer_raw: float
    cer: float
    cer_raw: float
    best_step: int
    trainable_params: int
    total_params: int
    wall_s: float
    best_checkpoint: str


@dataclass
class Related:
    """The related-language corpus of multistage's first stage."""

    train_cuts: str
    dev_cuts: str
    language: str


def best_row(metrics_csv: str | Path) -> dict[str, float]:
    """The validation row of a CSVLogger ``metrics.csv`` with the lowest ``val_wer`` (the first on ties, as
    ``ModelCheckpoint(mode="min")`` keeps it): ``{"wer", "wer_raw", "cer", "cer_raw", "step"}``."""
    path = Path(metrics_csv)
    if not path.is_file():
        raise SpeechkitError(f"{path}: no metrics file (the run needs a CSVLogger)")
    with path.open(newline="", encoding="utf-8") as stream:
        rows = [row for row in csv.DictReader(stream) if row.get("val_wer")]
    if not rows:
        raise SpeechkitError(f"{path}: no val_wer row: validation never ran")
    best = min(rows, key=lambda row: float(row["val_wer"]))  # min() returns the first of equal rows
    return {**{m: float(best.get(f"val_{m}") or math.nan) for m in _METRICS}, "step": int(best["step"])}


def parameter_counts(checkpoint: str | Path) -> tuple[int, int]:
    """(trainable, total) parameters of the model a checkpoint was trained as, rebuilt from its hyper-parameters."""
    from speechkit.checkpoints import load_task
    from speechkit.models.adaptation import count_trainable
    from speechkit.tasks.whisper_finetune import WhisperFinetune

    module = load_task(checkpoint, default_class=WhisperFinetune, init_checkpoint=None)
    return count_trainable(module.model), sum(p.numel() for p in module.model.parameters())


def strategy_plan(
    strategy: str, config: str, train_cuts: str, dev_cuts: str, language: str, max_steps: int,
    init_from: Optional[str], related: Optional[Related], lr: Optional[float], out_dir: Path,
) -> Plan:
    """The runner plan of one strategy: one stage, or two (related language, then target) for ``multistage``."""
    overrides = ["--model.init_args.strategy", "full" if strategy == "multistage" else strategy]
    if lr is not None:
        overrides += ["--model.init_args.lr", str(lr)]
    target = dict(name="target", train_cuts=train_cuts, dev_cuts=dev_cuts, language=language,
                  new_language_init_from=init_from)
    if strategy != "multistage":
        return Plan(config, [Stage(**target, max_steps=max_steps)], str(out_dir / strategy), overrides)
    if related is None:
        raise SpeechkitError("strategy multistage needs a related corpus (--related-train, --related-dev, "
                             "--related-language)")
    if max_steps < 2:
        raise SpeechkitError(f"max_steps={max_steps}: multistage splits the budget over two stages; give >= 2")
    first = Stage("related", related.train_cuts, related.dev_cuts, related.language, max_steps // 2)
    return Plan(config, [first, Stage(**target, max_steps=max_steps - max_steps // 2)], str(out_dir / strategy),
                overrides)


def summarize(strategy: str, results: list[StageResult], out_dir: Path) -> StrategyResult:
    """The row of a finished strategy: metrics of its last stage's best checkpoint, total wall time."""
    last = results[-1]
    row = best_row(out_dir / strategy / last.name / "metrics.csv")
    trainable, total = parameter_counts(last.best_checkpoint)
    return StrategyResult(strategy, *(row[m] for m in _METRICS), row["step"], trainable, total,
                          sum(r.wall_s for r in results), last.best_checkpoint)


def format_table(rows: Sequence[StrategyResult]) -> str:
    """Markdown table: WER/CER in %, the WER difference to ``full`` (the paper's "+x pp"), parameters, time."""
    full = next((r.wer for r in rows if r.strategy == "full"), math.nan)
    lines = ["| strategy | dev WER % | dev CER % | WER raw % | CER raw % | vs full (pp) | trainable params | wall s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        delta = "" if r.strategy == "full" or math.isnan(full) else f"{100 * (r.wer - full):+.2f}"
        lines.append(f"| {r.strategy} | {100 * r.wer:.2f} | {100 * r.cer:.2f} | {100 * r.wer_raw:.2f} | "
                     f"{100 * r.cer_raw:.2f} | {delta} | {r.trainable_params:,} ({r.trainable_params / r.total_params:.1%})"
                     f" | {r.wall_s:.0f} |")
    return "\n".join(lines)


def compare_strategies(
    config: str, train_cuts: str, dev_cuts: str, language: str, max_steps: int, out_dir: str | Path,
    strategies: Sequence[str] = STRATEGIES, new_language_init_from: Optional[str] = None,
    related: Optional[Related] = None, lr: Optional[dict[str, float]] = None, extra: Sequence[str] = (),
) -> list[StrategyResult]:
    """Run each strategy on the same data and step budget; write ``strategies.json`` and ``strategies.png``.

    Args:
        config: base ``speechkit fit`` config (needs a ModelCheckpoint on ``val_wer``).
        train_cuts: target-language training manifest.
        dev_cuts: target-language dev manifest (the reported WER/CER).
        language: target language code.
        max_steps: optimizer steps per strategy (multistage: split over its two stages).
        out_dir: runs go to ``<out_dir>/<strategy>``.
        strategies: which of ``STRATEGIES`` to run, in order.
        new_language_init_from: for a target language Whisper lacks (see ``WhisperFinetune``).
        related: multistage's first-stage corpus.
        lr: peak learning rate per strategy (the config's when absent).
        extra: ``speechkit fit`` overrides for every run.
    """
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise SpeechkitError(f"strategies {unknown}: expected some of {list(STRATEGIES)}")
    out_dir = Path(out_dir)
    rows = []
    for strategy in strategies:
        plan = strategy_plan(strategy, config, train_cuts, dev_cuts, language, max_steps, new_language_init_from,
                             related, (lr or {}).get(strategy), out_dir)
        rows.append(summarize(strategy, run_plan(plan, extra), out_dir))
    write_outputs(rows, out_dir, max_steps)
    return rows


def write_outputs(rows: Sequence[StrategyResult], out_dir: Path, max_steps: int) -> None:
    """``strategies.json`` (every row) and ``strategies.png`` (WER/CER bars per strategy)."""
    from speechkit.metrics.plots import plot_wer

    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"max_steps": max_steps, "rows": [asdict(r) for r in rows]}
    (out_dir / "strategies.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    groups = {r.strategy: {m: getattr(r, m) for m in _METRICS} for r in rows}
    plot_wer(groups, out_dir / "strategies.png", title=f"dev WER / CER by strategy ({max_steps} steps)")


def _lr_option(text: str) -> tuple[str, float]:
    strategy, _, value = text.partition("=")
    if strategy not in STRATEGIES or not value:
        raise argparse.ArgumentTypeError(f"--lr {text!r}: expected STRATEGY=VALUE with STRATEGY in {STRATEGIES}")
    return strategy, float(value)


def main(argv: Sequence[str] | None = None) -> int:
    """``tools/compare_strategies.py``: run the strategies, print the table, write JSON and PNG."""
    parser = argparse.ArgumentParser(prog="compare_strategies", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="base `speechkit fit` config")
    parser.add_argument("--train", required=True, help="target training cuts")
    parser.add_argument("--dev", required=True, help="target dev cuts")
    parser.add_argument("--language", required=True, help="target language code")
    parser.add_argument("--new-language-init-from", default=None, help="for a language Whisper lacks")
    parser.add_argument("--related-train", default=None, help="multistage stage-1 training cuts")
    parser.add_argument("--related-dev", default=None, help="multistage stage-1 dev cuts")
    parser.add_argument("--related-language", default=None, help="multistage stage-1 language code")
    parser.add_argument("--max-steps", type=int, required=True, help="steps per strategy")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), help=f"subset of {STRATEGIES}")
    parser.add_argument("--lr", type=_lr_option, action="append", default=[], help="STRATEGY=LR, repeatable")
    parser.add_argument("--out-dir", required=True, help="runs, strategies.json and strategies.png")
    args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    related_args = (args.related_train, args.related_dev, args.related_language)
    related = Related(*related_args) if all(related_args) else None
    rows = compare_strategies(
        args.config, args.train, args.dev, args.language, args.max_steps, args.out_dir, args.strategies,
        args.new_language_init_from, related, dict(args.lr), extra,
    )
    print(format_table(rows))
    print(f"wrote {Path(args.out_dir) / 'strategies.json'} and {Path(args.out_dir) / 'strategies.png'}")
    return 0
