"""Compare the fine-tuning strategies of *Fine-tuning Whisper for Pashto ASR: strategies and scale* (Rahman 2026).

Runs ``full``, ``lora``, ``frozen_encoder`` and ``multistage`` on the same target data and the same total step
budget (multistage: half the steps on a related language, half on the target), each as ``speechkit fit`` runs of
``WhisperFinetune`` through the multistage runner, and reports per strategy the dev WER/CER (raw and normalized)
at the best checkpoint, the trainable parameters and the wall time: a table like the paper's Table of strategies,
a JSON file and a PNG bar chart. With ``--seeds`` every strategy runs once per seed (``<out_dir>/seed<k>/<strategy>``)
and a second table gives each strategy's mean and standard deviation over the seeds; with ``--test`` each run's best
checkpoint also transcribes a held-out test set (e.g. unseen speakers and texts), scored raw and normalized with the
language's normalizer, with error classes (word substitutions / deletions / insertions, letter substitutions by
(ref, hyp) pair, letter deletions and insertions); ``--related_max_dev_wer`` gates multistage's second stage on the
related language's dev WER (a run that fails its gate is reported as such, never as a target-language result).

``speechkit compare-strategies -c conf/whisper/new_language.yaml --train T --dev D --language ky
--new_language_init_from kk --related_train RT --related_dev RD --related_language kk --max_steps 60 --out_dir OUT``
(also ``python tools/compare_strategies.py``, with the same options).
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence, get_args

from speechkit.commands import command
from speechkit.config import FitArgs, resolve_fit_config
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
    seed: Optional[int] = None
    gate_passed: bool = True
    test: Optional[dict] = None  # score_test_set() of the best checkpoint on the test cuts


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
    related_max_dev_wer: Optional[float] = None,
) -> Plan:
    """The runner plan of one strategy: one stage, or two (related language, then target) for ``multistage``, the
    target stage starting only when the related stage's best dev WER is at most ``related_max_dev_wer``."""
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
    first = Stage("related", related.train_cuts, related.dev_cuts, related.language, max_steps // 2,
                  max_dev_wer=related_max_dev_wer)
    return Plan(config, [first, Stage(**target, max_steps=max_steps - max_steps // 2)], str(out_dir / strategy),
                overrides)


def summarize(strategy: str, results: list[StageResult], out_dir: Path) -> StrategyResult:
    """The row of a finished strategy: metrics of its last stage's best checkpoint, total wall time.

    A multistage run stopped by its gate has no target-language result: its error rates are NaN and
    ``gate_passed`` is false (the related stage's dev WER is in ``<out_dir>/<strategy>/multistage.json``).
    """
    last = results[-1]
    trainable, total = parameter_counts(last.best_checkpoint)
    wall = sum(r.wall_s for r in results)
    if not last.passed:
        return StrategyResult(strategy, *(math.nan for _ in _METRICS), -1, trainable, total, wall, last.best_checkpoint,
                              gate_passed=False)
    row = best_row(out_dir / strategy / last.name / "metrics.csv")
    return StrategyResult(strategy, *(row[m] for m in _METRICS), row["step"], trainable, total, wall,
                          last.best_checkpoint)


def score_test_set(checkpoint: str, test_cuts: str, language: str, out_file: Path, max_new_tokens: int = 224) -> dict:
    """Transcribe ``test_cuts`` with a checkpoint (greedy, no fallback guards, ``max_new_tokens``: as validation
    decodes) and score it.

    Returns:
        ``{"wer", "wer_raw", "cer", "cer_raw"}`` (fractions), the word ``substitutions`` / ``deletions`` /
        ``insertions`` / ``ref_words`` of the normalized text, ``"letters"``: ``metrics.analysis.letter_errors`` of
        the normalized text, and ``"utterances"``. The transcripts are in ``out_file`` (JSON lines).
    """
    from lhotse import load_manifest

    from speechkit.inference.transcribe import transcribe
    from speechkit.metrics.analysis import letter_errors
    from speechkit.metrics.wer import score_wer
    from speechkit.models.whisper_seq2seq import metric_language
    from speechkit.text.normalizers import get_normalizer

    transcribe(checkpoint, [test_cuts], out=str(out_file), language=language, guards=False, progress=False,
               max_new_tokens=max_new_tokens)
    hyps = {row["id"]: row["text"] for row in map(json.loads, out_file.read_text(encoding="utf-8").splitlines())}
    refs = {cut.id: " ".join(s.text for s in cut.supervisions if s.text) for cut in load_manifest(test_cuts)}
    missing = sorted(set(refs) - set(hyps))
    if missing:
        raise SpeechkitError(f"{out_file}: no transcript for {len(missing)} of {len(refs)} cuts of {test_cuts} "
                             f"(first: {missing[0]})")
    ids = sorted(refs)
    scored_as = metric_language(language)  # as validation scores: "mul" for a language Whisper lacks (ky)
    report = score_wer([refs[i] for i in ids], [hyps[i] for i in ids], scored_as)
    normalize = get_normalizer(scored_as)
    letters = letter_errors([normalize(refs[i]) for i in ids], [normalize(hyps[i]) for i in ids])
    words = report.words
    return {**{m: getattr(report, m) for m in _METRICS}, "substitutions": words.substitutions,
            "deletions": words.deletions, "insertions": words.insertions, "ref_words": words.ref_len,
            "letters": letters, "utterances": report.utterances}


def format_table(rows: Sequence[StrategyResult]) -> str:
    """Markdown table: WER/CER in %, the WER difference to ``full`` (the paper's "+x pp"), parameters, time."""
    full = next((r.wer for r in rows if r.strategy == "full"), math.nan)
    lines = ["| strategy | dev WER % | dev CER % | WER raw % | CER raw % | vs full (pp) | trainable params | wall s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if not r.gate_passed:
            lines.append(f"| {r.strategy} | stopped by its gate | | | | | {r.trainable_params:,} | {r.wall_s:.0f} |")
            continue
        delta = "" if r.strategy == "full" or math.isnan(full) else f"{100 * (r.wer - full):+.2f}"
        lines.append(f"| {r.strategy} | {100 * r.wer:.2f} | {100 * r.cer:.2f} | {100 * r.wer_raw:.2f} | "
                     f"{100 * r.cer_raw:.2f} | {delta} | {r.trainable_params:,} ({r.trainable_params / r.total_params:.1%})"
                     f" | {r.wall_s:.0f} |")
    return "\n".join(lines)


def compare_strategies(
    config: str, train_cuts: str, dev_cuts: str, language: str, max_steps: int, out_dir: str | Path,
    strategies: Sequence[str] = STRATEGIES, new_language_init_from: Optional[str] = None,
    related: Optional[Related] = None, lr: Optional[dict[str, float]] = None, extra: Sequence[str] = (),
    seeds: Optional[Sequence[int]] = None, test_cuts: Optional[str] = None,
    related_max_dev_wer: Optional[float] = None,
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
        seeds: run every strategy once per seed (``--seed_everything`` and the sampler's
            ``--data.init_args.config.seed``: initialisation, dropout and batch order; runs under
            ``<out_dir>/seed<k>``); None: once, with the config's seeds.
        test_cuts: a held-out test manifest each run's best checkpoint transcribes (``StrategyResult.test``).
        related_max_dev_wer: multistage's gate on the related stage's best dev WER (None: no gate).
    """
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise SpeechkitError(f"strategies {unknown}: expected some of {list(STRATEGIES)}")
    if test_cuts is not None and not Path(test_cuts).is_file():
        raise SpeechkitError(f"test cuts {test_cuts} do not exist")
    out_dir = Path(out_dir)
    max_new_tokens = resolve_fit_config(["-c", config, *extra]).get("model.init_args.max_new_tokens") or 224
    rows = []
    for seed in seeds if seeds is not None else [None]:
        run_dir = out_dir if seed is None else out_dir / f"seed{seed}"
        seeded = list(extra) if seed is None else [  # the seed of the weights' randomness and of the batch order
            *extra, "--seed_everything", str(seed), "--data.init_args.config.seed", str(seed)]
        for strategy in strategies:
            plan = strategy_plan(strategy, config, train_cuts, dev_cuts, language, max_steps, new_language_init_from,
                                 related, (lr or {}).get(strategy), run_dir, related_max_dev_wer)
            row = summarize(strategy, run_plan(plan, seeded), run_dir)
            row.seed = seed
            if test_cuts is not None and row.gate_passed:
                row.test = score_test_set(row.best_checkpoint, test_cuts, language, run_dir / strategy / "test.jsonl",
                                          max_new_tokens)
            rows.append(row)
        write_outputs([r for r in rows if r.seed == seed], run_dir, max_steps)
    if seeds is not None:
        write_summary(rows, out_dir, max_steps)
    return rows


def write_outputs(rows: Sequence[StrategyResult], out_dir: Path, max_steps: int) -> None:
    """``strategies.json`` (every row) and ``strategies.png`` (WER/CER bars per strategy)."""
    from speechkit.metrics.plots import plot_wer

    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"max_steps": max_steps, "rows": [asdict(r) for r in rows]}
    (out_dir / "strategies.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    groups = {r.strategy: {m: getattr(r, m) for m in _METRICS} for r in rows}
    plot_wer(groups, out_dir / "strategies.png", title=f"dev WER / CER by strategy ({max_steps} steps)")


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    mean = sum(finite) / len(finite)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in finite) / max(len(finite) - 1, 1))


def _cell(values: Sequence[float]) -> str:
    mean, sd = _mean_sd(values)
    if math.isnan(mean):
        return "n/a"
    return f"{100 * mean:.2f}" + (f" ± {100 * sd:.2f}" if len(values) > 1 else "")


def summary_rows(rows: Sequence[StrategyResult]) -> list[dict]:
    """One dict per strategy (in order of first appearance): per-metric lists over its seeds, dev and test, error
    counts summed over seeds, runs that failed their gate, parameters and mean wall time."""
    out: dict[str, dict] = {}
    for r in rows:
        agg = out.setdefault(r.strategy, {"strategy": r.strategy, "seeds": [], "gate_failed": 0, "wall_s": [],
                                          "trainable_params": r.trainable_params, "total_params": r.total_params,
                                          **{f"dev_{m}": [] for m in _METRICS}, **{f"test_{m}": [] for m in _METRICS},
                                          "substitutions": 0, "deletions": 0, "insertions": 0, "ref_words": 0,
                                          "letter_pairs": Counter(), "letter_substitutions": 0,
                                          "letter_deletions": 0, "letter_insertions": 0, "scored": 0})
        agg["seeds"].append(r.seed)
        agg["wall_s"].append(r.wall_s)
        agg["gate_failed"] += not r.gate_passed
        for m in _METRICS:
            agg[f"dev_{m}"].append(getattr(r, m))
            agg[f"test_{m}"].append(r.test[m] if r.test else math.nan)
        if r.test:
            for key in ("substitutions", "deletions", "insertions", "ref_words"):
                agg[key] += r.test[key]
            agg["letter_pairs"].update({(a, b): n for a, b, n in r.test["letters"]["top_substitutions"]})
            for kind in ("substitutions", "deletions", "insertions"):
                agg[f"letter_{kind}"] += r.test["letters"][kind]
            agg["scored"] += 1
    return list(out.values())


def format_summary(rows: Sequence[StrategyResult], top: int = 3) -> str:
    """Markdown tables over seeds: error rates as mean ± sd (%), the test WER difference to ``full``, parameters,
    wall time; then the test set's error classes summed over seeds (normalized text)."""
    groups = summary_rows(rows)
    full = next((_mean_sd(g["test_wer"])[0] for g in groups if g["strategy"] == "full"), math.nan)
    if math.isnan(full):
        full = next((_mean_sd(g["dev_wer"])[0] for g in groups if g["strategy"] == "full"), math.nan)
    lines = ["| strategy | seeds | dev WER % | test WER % | test CER % | test WER raw % | test CER raw % "
             "| vs full (pp) | trainable params | wall s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for g in groups:
        test = _mean_sd(g["test_wer"])[0]
        ref = test if not math.isnan(test) else _mean_sd(g["dev_wer"])[0]
        delta = "" if g["strategy"] == "full" or math.isnan(full) or math.isnan(ref) else f"{100 * (ref - full):+.2f}"
        seeds = ",".join(str(s) for s in g["seeds"]) + (f" ({g['gate_failed']} stopped by the gate)"
                                                         if g["gate_failed"] else "")
        lines.append(f"| {g['strategy']} | {seeds} | {_cell(g['dev_wer'])} | {_cell(g['test_wer'])} | "
                     f"{_cell(g['test_cer'])} | {_cell(g['test_wer_raw'])} | {_cell(g['test_cer_raw'])} | {delta} | "
                     f"{g['trainable_params']:,} ({g['trainable_params'] / g['total_params']:.1%}) | "
                     f"{sum(g['wall_s']) / len(g['wall_s']):.0f} |")
    lines += ["", "| strategy | test runs | test words S / D / I (of N) | letters S / D / I | top letter substitutions "
              "(ref→hyp) |", "|---|---:|---|---|---|"]
    for g in groups:
        pairs = ", ".join(f"{a}→{b} {n}" for (a, b), n in g["letter_pairs"].most_common(top))
        lines.append(f"| {g['strategy']} | {g['scored']} | {g['substitutions']} / {g['deletions']} / {g['insertions']} "
                     f"(of {g['ref_words']}) | {g['letter_substitutions']} / {g['letter_deletions']} / "
                     f"{g['letter_insertions']} | {pairs} |")
    return "\n".join(lines)


def write_summary(rows: Sequence[StrategyResult], out_dir: Path, max_steps: int) -> None:
    """``summary.json`` (every run), ``summary.md`` (``format_summary``) and ``summary.png`` (mean test, else dev,
    WER/CER per strategy, with the word error classes of the test sets)."""
    from speechkit.metrics.plots import plot_wer

    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"max_steps": max_steps, "rows": [asdict(r) for r in rows]}
    (out_dir / "summary.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / "summary.md").write_text(format_summary(rows) + "\n", encoding="utf-8")
    groups, classes, splits = {}, {}, set()
    for g in summary_rows(rows):
        split = "test" if any(math.isfinite(v) for v in g["test_wer"]) else "dev"
        splits.add(split)
        groups[g["strategy"]] = {m: _mean_sd(g[f"{split}_{m}"])[0] for m in _METRICS}
        for key in ("substitutions", "deletions", "insertions"):
            classes[f"{g['strategy']} {key[:3]}."] = g[key]
    plot_wer(groups, out_dir / "summary.png", classes if any(classes.values()) else None,
             title=f"{' / '.join(sorted(splits, reverse=True))} WER / CER by strategy, mean over seeds "
                   f"({max_steps} steps)")


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
    seeds: Optional[tuple[int, ...]] = None,
    test: Optional[str] = None,
    related_max_dev_wer: Optional[float] = None,
) -> int:
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
        seeds: run each strategy once per seed (``--seed_everything`` and the sampler's seed; runs under
            ``OUT/seed<k>``) and write
            ``summary.md`` / ``summary.json`` / ``summary.png`` (mean ± sd over seeds); default: once.
        test: held-out test cuts (e.g. unseen speakers) each best checkpoint transcribes, scored raw and normalized
            with error classes.
        related_max_dev_wer: multistage's gate: the target stage starts only when the related stage's best dev WER
            is at most this (a fraction).

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
                              related, dict(_lr_option(text) for text in lr), extra, seeds, test, related_max_dev_wer)
    print(format_table(rows))
    if seeds is not None:
        print(format_summary(rows))
        print(f"wrote {Path(out_dir) / 'summary.md'}, summary.json and summary.png (and seed<k>/strategies.*)")
    else:
        print(f"wrote {Path(out_dir) / 'strategies.json'} and {Path(out_dir) / 'strategies.png'}")
    return 0


def _base_and_overrides(config: FitArgs) -> tuple[str, list[str]]:
    """The first ``-c`` file (every run's base config) and the arguments after it (overrides for every run)."""
    args = list(config.args)
    for index, token in enumerate(args):
        if token in ("-c", "--config") and index + 1 < len(args):
            return args[index + 1], args[:index] + args[index + 2:]
        if token.startswith("--config="):
            return token.split("=", 1)[1], args[:index] + args[index + 1:]
    raise SpeechkitError("--config: expected the base `speechkit fit` config (-c CONFIG.yaml)")
