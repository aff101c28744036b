"""Compare the fine-tuning strategies of *Fine-tuning Whisper for Pashto ASR: strategies and scale* (Rahman 2026).

Runs ``full``, ``lora``, ``frozen_encoder`` and ``multistage`` on the same target data and the same total step
budget (multistage: half the steps on a related language, half on the target), each as ``speechkit fit`` runs of
``WhisperFinetune`` through the multistage runner, and reports per strategy the dev WER/CER (raw and normalized)
at the best checkpoint, the trainable parameters and the wall time: a table like the paper's Table of strategies,
a JSON file and a PNG bar chart.

``speechkit compare-strategies -c conf/whisper/new_language.yaml --train T --dev D --language ky
--new_language_init_from kk --related_train RT --related_dev RD --related_language kk --max_steps 60 --out_dir OUT``
(also ``python tools/compare_strategies.py``, with the same options).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence, get_args

from speechkit.commands import command
from speechkit.config import FitArgs
from speechkit.drivers.multistage import Plan, Stage, StageResult, run_plan
from speechkit.errors import SpeechkitError

Strategy = Literal["full", "lora", "frozen_encoder", "multistage"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
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
        raise SpeechkitError("strategy multistage needs a related corpus (--related_train, --related_dev, "
                             "--related_language)")
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
    try:
        if strategy in STRATEGIES and value:
            return strategy, float(value)
    except ValueError:
        pass
    raise SpeechkitError(f"--lr {text!r}: expected STRATEGY=VALUE with STRATEGY in {STRATEGIES}")


@command(fit_config=True)
def compare_command(
    *,
    config: FitArgs = FitArgs(),
    train: str,
    dev: str,
    language: str,
    max_steps: int,
    out_dir: str,
    new_language_init_from: Optional[str] = None,
    related_train: Optional[str] = None,
    related_dev: Optional[str] = None,
    related_language: Optional[str] = None,
    strategies: tuple[Strategy, ...] = STRATEGIES,
    lr: tuple[str, ...] = (),
) -> None:
    """Compare full / LoRA / frozen-encoder / multistage fine-tuning of Whisper on one budget.

    Each strategy trains ``WhisperFinetune`` through the multistage runner on the same target data and steps
    (multistage: half on the related language, then half on the target); prints a table of dev WER/CER at the best
    checkpoint, trainable parameters and wall time, and writes ``strategies.json`` and ``strategies.png``.

    Args:
        config: the base ``speechkit fit`` config (the first ``-c``; needs a ModelCheckpoint on ``val_wer``), then
            overrides for every run.
        train: target training cuts.
        dev: target dev cuts.
        language: target language code.
        max_steps: steps per strategy.
        out_dir: runs, ``strategies.json`` and ``strategies.png``.
        new_language_init_from: for a target language Whisper lacks: the related language of its new token.
        related_train: multistage stage-1 training cuts.
        related_dev: multistage stage-1 dev cuts.
        related_language: multistage stage-1 language code.
        strategies: which strategies to run, in order.
        lr: ``STRATEGY=LR`` peak learning rates (repeatable; the config's lr where absent).

    Examples:
        speechkit compare-strategies -c conf/whisper/new_language.yaml --train T --dev D --language ky \\
            --max_steps 60 --out_dir exp/compare --strategies full lora
        python tools/compare_strategies.py --config conf/whisper/new_language.yaml --train T --dev D --language ky \\
            --new-language-init-from kk --related-train RT --related-dev RD --related-language kk --max-steps 60 \\
            --lr lora=1e-3 --out-dir OUT
    """
    base, extra = _base_and_overrides(config)
    related_args = (related_train, related_dev, related_language)
    related = Related(*related_args) if all(related_args) else None
    rows = compare_strategies(base, train, dev, language, max_steps, out_dir, strategies, new_language_init_from,
                              related, dict(_lr_option(text) for text in lr), extra)
    print(format_table(rows))
    print(f"wrote {Path(out_dir) / 'strategies.json'} and {Path(out_dir) / 'strategies.png'}")


def _base_and_overrides(config: FitArgs) -> tuple[str, list[str]]:
    """The first ``-c`` file (every run's base config) and the arguments after it (overrides for every run)."""
    args = list(config.args)
    for index, token in enumerate(args):
        if token in ("-c", "--config") and index + 1 < len(args):
            return args[index + 1], args[:index] + args[index + 2:]
        if token.startswith("--config="):
            return token.split("=", 1)[1], args[:index] + args[index + 1:]
    raise SpeechkitError("--config: expected the base `speechkit fit` config (-c CONFIG.yaml)")
