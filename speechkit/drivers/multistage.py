"""Multistage transfer: a chain of ``WhisperFinetune`` runs, each gated on the previous stage's dev WER.

*Fine-tuning Whisper for Pashto ASR: strategies and scale* (Rahman 2026), strategy 4: fine-tune on a related
language (Urdu), then continue on the target (Pashto). The paper traces the failure of its transfer to "an
unverified intermediate checkpoint", so here stage k+1 starts from stage k's best checkpoint (by dev WER) only
when that WER is at most stage k's ``max_dev_wer``; otherwise the run stops with a message and exit status 1.

``speechkit multistage STAGES.yaml [--out_dir DIR] [--dry_run] [fit overrides for every stage ...]``::

    base_config: conf/whisper/multistage.yaml   # a `speechkit fit` config; needs a ModelCheckpoint on val_wer
    out_dir: exp/multistage                     # stage k runs in <out_dir>/<name>
    overrides: []                               # fit arguments for every stage
    stages:
      - {name: ur, train_cuts: ..., dev_cuts: ..., language: ur, max_steps: 2000, max_dev_wer: 0.6}
      - {name: ps, train_cuts: ..., dev_cuts: ..., language: ps, max_steps: 3000}

Relative paths are relative to the current directory, as for ``speechkit fit -c``. A language token added in a
stage (``new_language_init_from``: a language Whisper lacks) can follow a stage on a language Whisper has: the
runner appends the new embedding row to the previous stage's checkpoint, copied from the *trained* row of
``new_language_init_from``. Dropping or replacing an added token between stages is refused before any training.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import sys
import time
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import yaml

from speechkit.checkpoints import checkpoint_state_dict, load_checkpoint, save_atomic
from speechkit.commands import command
from speechkit.config import FitArgs, resolve_fit_config
from speechkit.errors import SpeechkitError

log = logging.getLogger(__name__)

GATE_METRIC = "val_wer"
_VOCAB_KEYS = ("embed_tokens.weight", "proj_out.weight")  # the (V, D) tables that grow with a new token


@dataclass
class Stage:
    """One stage of the chain.

    Args:
        name: folder name of the stage under ``out_dir``.
        train_cuts: training manifest.
        dev_cuts: dev manifest (the gate's WER).
        language: language code of the stage's data.
        max_steps: optimizer steps of the stage.
        max_dev_wer: gate: the next stage starts only when this stage's best dev WER is at most this (a
            fraction, 0.3 = 30 %); ``None`` = no gate.
        new_language_init_from: for a language Whisper lacks: the related language (or ``mean``) that
            initialises its new token.
        overrides: extra ``speechkit fit`` arguments for this stage only (e.g. ``["--model.init_args.lr", "1e-4"]``).
    """

    name: str
    train_cuts: str
    dev_cuts: str
    language: str
    max_steps: int
    max_dev_wer: Optional[float] = None
    new_language_init_from: Optional[str] = None
    overrides: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """A multistage run: the base fit config and its stages."""

    base_config: str
    stages: list[Stage]
    out_dir: str = "exp/multistage"
    overrides: list[str] = field(default_factory=list)


@dataclass
class StageResult:
    """What a finished stage left: its best checkpoint and best dev WER, and whether it passed its gate."""

    name: str
    best_checkpoint: str
    best_dev_wer: float
    passed: bool
    wall_s: float


def _check_keys(mapping: Any, cls: type, where: str) -> dict:
    """``mapping`` when its keys are fields of ``cls`` and every required field is there; else a named error."""
    if not isinstance(mapping, dict):
        raise SpeechkitError(f"{where}: expected a mapping, got {type(mapping).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise SpeechkitError(f"{where}: unknown keys {unknown}; expected some of {sorted(known)}")
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in mapping]
    if missing:
        raise SpeechkitError(f"{where}: missing keys {missing}")
    return mapping


def read_plan(path: str | Path) -> Plan:
    """Parse and check a stage file (unknown or missing keys, duplicate names, steps and gates are errors)."""
    path = Path(path)
    if not path.is_file():
        raise SpeechkitError(f"multistage: stage file {path} does not exist")
    raw = _check_keys(yaml.safe_load(path.read_text(encoding="utf-8")), Plan, str(path))
    if not isinstance(raw["stages"], list) or not raw["stages"]:
        raise SpeechkitError(f"{path}: 'stages' must be a non-empty list")
    stages = [Stage(**_check_keys(s, Stage, f"{path}: stages[{i}]")) for i, s in enumerate(raw["stages"])]
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise SpeechkitError(f"{path}: stage names must be distinct, got {names}")
    for stage in stages:
        if stage.max_steps < 1:
            raise SpeechkitError(f"{path}: stage {stage.name!r}: max_steps must be >= 1, got {stage.max_steps}")
        if stage.max_dev_wer is not None and stage.max_dev_wer < 0:
            raise SpeechkitError(f"{path}: stage {stage.name!r}: max_dev_wer must be >= 0, got {stage.max_dev_wer}")
    return Plan(**{**raw, "stages": stages})


# ------------------------------------------------------------------ vocabulary across stages
def added_languages(plan: Plan, has_language) -> list[Optional[str]]:
    """The language token each stage adds (``None`` where Whisper has the stage's language).

    Args:
        plan: the stages.
        has_language: ``code -> bool``, whether the base tokenizer has ``<|code|>``.

    Raises:
        SpeechkitError: a stage drops or replaces a token an earlier stage added (its checkpoint would not load),
            or a new language has no ``new_language_init_from``.
    """
    added: list[Optional[str]] = []
    for index, stage in enumerate(plan.stages):
        new = None if has_language(stage.language) else stage.language
        if new and stage.new_language_init_from is None:
            raise SpeechkitError(f"stage {stage.name!r}: Whisper has no <|{new}|>; set new_language_init_from")
        previous = added[-1] if added else None
        if previous is not None and new != previous:
            raise SpeechkitError(
                f"stage {stage.name!r} (language {stage.language!r}) follows stage {plan.stages[index - 1].name!r}, "
                f"which added <|{previous}|>: its checkpoint has one more embedding row than this stage's model. "
                "Put the languages Whisper has first and the added language last."
            )
        added.append(new)
    return added


def grow_vocabulary(checkpoint: str | Path, out: str | Path, init_row: int) -> Path:
    """Write ``checkpoint``'s weights with one more vocabulary row, a copy of row ``init_row``.

    The new row is the one ``add_language`` appends (id = old vocabulary size), so the next stage's model, which
    adds the token itself, loads these weights strictly; the row starts from the previous stage's *trained*
    related-language row. Only ``state_dict`` is written (``init_checkpoint`` reads nothing else).
    """
    state = checkpoint_state_dict(load_checkpoint(checkpoint), checkpoint)
    tables = [k for k in state if k.endswith(_VOCAB_KEYS)]
    if not tables:
        raise SpeechkitError(f"{checkpoint}: no {' / '.join(_VOCAB_KEYS)} tensor: not a WhisperFinetune checkpoint")
    grown = dict(state)
    for key in tables:
        table = state[key]  # (V, D)
        grown[key] = torch.cat([table, table[init_row : init_row + 1]], dim=0)  # (V + 1, D)
    save_atomic({"state_dict": grown}, out)
    return Path(out)


# ------------------------------------------------------------------ gate
def best_from_checkpoints(stage_dir: str | Path, since: float = 0.0) -> tuple[str, float]:
    """Best checkpoint path and dev WER of a run, from its ``ModelCheckpoint`` state (monitor ``val_wer``).

    Reads the newest ``*.ckpt`` under ``stage_dir`` written after ``since`` (memory-mapped, ``weights_only``: only
    the callback state is touched); that file's ``ModelCheckpoint`` state holds the run's best path and score.
    """
    ckpts = [p for p in Path(stage_dir).rglob("*.ckpt") if p.stat().st_mtime >= since]
    if not ckpts:
        raise SpeechkitError(
            f"{stage_dir}: the stage wrote no checkpoint: the base config needs a ModelCheckpoint with monitor "
            f"{GATE_METRIC!r}, and validation must run (val_check_interval <= max_steps)"
        )
    newest = max(ckpts, key=lambda p: p.stat().st_mtime_ns)
    callbacks = load_checkpoint(newest).get("callbacks") or {}
    for state in callbacks.values():
        if state.get("monitor") == GATE_METRIC and state.get("best_model_path"):
            return state["best_model_path"], float(state["best_model_score"])
    raise SpeechkitError(f"{newest}: no ModelCheckpoint state with monitor {GATE_METRIC!r} and a best checkpoint")


def gate_message(stage: Stage, wer: float, next_stage: Optional[Stage]) -> str:
    """One line: the stage's best dev WER against its gate and what happens next."""
    if stage.max_dev_wer is None:
        return f"stage {stage.name!r}: best dev WER {wer:.4f} (no gate)"
    verdict = "passes" if wer <= stage.max_dev_wer else "FAILS"
    line = f"stage {stage.name!r}: best dev WER {wer:.4f} {verdict} its gate max_dev_wer={stage.max_dev_wer:.4f}"
    if verdict == "FAILS" and next_stage is not None:
        line += f"; stage {next_stage.name!r} does not start (its starting checkpoint is not verified)"
    return line


# ------------------------------------------------------------------ running
def stage_args(plan: Plan, stage: Stage, stage_dir: Path, init_checkpoint: Optional[str], extra: Sequence[str]) -> list[str]:
    """The ``speechkit fit`` arguments of one stage (later arguments win: plan, stage, stage overrides, extra), and
    ``--trainer.val_check_interval <max_steps>`` last when the resolved run validates less often than the stage
    trains (a stage that never validates has no best checkpoint to gate on)."""
    logger = {"class_path": "speechkit.loggers.CSVTensorBoardLogger",
              "init_args": {"save_dir": str(stage_dir), "name": "", "version": ""}}
    args = [
        "-c", plan.base_config, *plan.overrides,
        "--model.init_args.language", stage.language,
        "--model.init_args.new_language_init_from", stage.new_language_init_from or "null",
        "--model.init_args.init_checkpoint", init_checkpoint or "null",
        "--data.init_args.config.train_cuts", stage.train_cuts,
        "--data.init_args.config.dev_cuts", stage.dev_cuts,
        "--data.init_args.config.test_cuts", "[]",  # a stage only fits, not on the config's test set ("null": "None")
        "--trainer.max_steps", str(stage.max_steps),
        "--trainer.default_root_dir", str(stage_dir),
        "--trainer.logger", json.dumps(logger),
        *stage.overrides, *extra,
    ]
    interval = resolve_fit_config(args).get("trainer.val_check_interval")
    validate = ["--trainer.val_check_interval", str(stage.max_steps)] if (
        isinstance(interval, int) and interval > stage.max_steps) else []
    return ["fit", *args, *validate]


def _base_tokenizer(plan: Plan, extra: Sequence[str]):
    """The tokenizer of the resolved ``model_name_or_path`` (base config, plan overrides and ``extra``)."""
    from speechkit.models.pretrained import load_whisper

    name = resolve_fit_config(["-c", plan.base_config, *plan.overrides, *extra]).get(
        "model.init_args.model_name_or_path")
    return load_whisper(name).tokenizer


def run_plan(plan: Plan, extra: Sequence[str] = (), out_dir: Optional[str] = None) -> list[StageResult]:
    """Run the stages in order; stop after the first stage whose best dev WER is above its gate.

    Returns:
        One result per stage that ran; the last one has ``passed=False`` when a gate stopped the chain.
    """
    from speechkit.cli import run_lightning_cli
    from speechkit.models.whisper_language import has_language

    if not Path(plan.base_config).is_file():
        raise SpeechkitError(f"multistage: base_config {plan.base_config} does not exist")
    tokenizer = _base_tokenizer(plan, extra)
    added = added_languages(plan, lambda code: has_language(tokenizer, code))
    root = Path(out_dir or plan.out_dir)
    results: list[StageResult] = []
    init: Optional[str] = None
    for index, stage in enumerate(plan.stages):
        stage_dir = root / stage.name
        stage_dir.mkdir(parents=True, exist_ok=True)
        if init is not None and added[index] and not added[index - 1]:
            row = tokenizer.convert_tokens_to_ids(f"<|{stage.new_language_init_from}|>")
            init = str(grow_vocabulary(init, stage_dir / "init_grown.ckpt", row))
        print(f"=== stage {index + 1}/{len(plan.stages)} {stage.name!r}: language {stage.language}, "
              f"{stage.max_steps} steps, from {init or 'the base model'}", flush=True)
        start = time.time()
        run_lightning_cli(stage_args(plan, stage, stage_dir, init, extra))
        best, wer = best_from_checkpoints(stage_dir, since=start)
        passed = stage.max_dev_wer is None or (math.isfinite(wer) and wer <= stage.max_dev_wer)
        results.append(StageResult(stage.name, best, wer, passed, time.time() - start))
        next_stage = plan.stages[index + 1] if index + 1 < len(plan.stages) else None
        print(gate_message(stage, wer, next_stage), flush=True)
        if not passed:
            break
        init = best
    _write_summary(root, results)
    return results


def _write_summary(root: Path, results: list[StageResult]) -> None:
    rows = [vars(r) for r in results]
    (root / "multistage.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


@command(fit_config=True)
def multistage(
    stages: str, *, config: FitArgs = FitArgs(), out_dir: Optional[str] = None, dry_run: bool = False
) -> int:
    """Run multistage Whisper transfer: a chain of ``speechkit fit`` runs, each gated on the previous stage's dev WER.

    Stage k+1 starts from stage k's best checkpoint only when its dev WER passes stage k's ``max_dev_wer``;
    otherwise the run stops and the exit status is 1. The stage file is described in
    ``speechkit.drivers.multistage``; ``-c`` files and ``--trainer.*`` / ``--model.*`` / ``--data.*`` overrides
    apply to every stage, after the stage file's own.

    Args:
        stages: stage file (YAML: base_config, out_dir, overrides, stages).
        config: ``speechkit fit`` arguments for every stage.
        out_dir: replaces the stage file's out_dir.
        dry_run: print each stage's ``speechkit fit`` command and stop.

    Examples:
        speechkit multistage recipes/new_language/multistage.yaml --dry_run
        speechkit multistage recipes/commonvoice_pashto/multistage.yaml --out_dir exp/ps --trainer.precision=32
    """
    extra = list(config.args)
    plan = read_plan(stages)
    if dry_run:
        root = Path(out_dir or plan.out_dir)
        for i, stage in enumerate(plan.stages):
            init = "<best of previous stage>" if i else None
            print("speechkit " + shlex.join(stage_args(plan, stage, root / stage.name, init, extra)))
        return 0
    results = run_plan(plan, extra, out_dir)
    if not results[-1].passed:
        print(f"multistage: stopped at stage {results[-1].name!r}: dev WER above its gate", file=sys.stderr)
        return 1
    return 0
