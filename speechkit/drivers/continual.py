"""``speechkit continual CONFIG``: train a ``CoconutTask`` over a class-incremental stream, write the accuracy matrix.

*Continual Contrastive Spoken Language Understanding* (COCONUT; Cappellazzo et al., ACL Findings 2024). The
config (``conf/coconut/*.yaml``) has three sections::

    seed: 0
    stream:   # StreamConfig: manifests, the class split, steps per task, the replay buffer, the optimizer
      train_cuts: out/slurp_synth/cuts_train.jsonl.gz
      test_cuts: out/slurp_synth/cuts_test.jsonl.gz
      label_field: scenario
      first_task: 3
      increment: 3
      steps_per_task: 100
      buffer_size: 180
    model:    # CoconutTask arguments, labels excepted (the scenario's classes): kd_weight, nspt_weight, mm_weight ...
      hidden: 128
    data:     # DataConfig fields, manifests excepted (the runner writes each task's training manifest)
      input: fbank
      num_mel_bins: 40

For every task ``t``: the task's training cuts plus the buffer are written to ``OUT/task<t>/cuts_train.jsonl.gz``
and trained for ``steps_per_task`` steps (``SpeechDataModule``, a fresh optimizer, per-step losses in
``OUT/task<t>/``); the model then predicts every test cut of the classes seen so far (row ``t`` of the accuracy
matrix, one entry per task seen), and the task's cuts enter the buffer. ``OUT/accuracy.json`` (matrix, ``A_t``,
average and last accuracy, forgetting, wall times), ``OUT/accuracy.png`` and ``OUT/last.ckpt`` are written at the
end, each atomically; ``accuracy.json`` is also rewritten after every task.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

import lightning as L
import numpy as np
import torch
import yaml
from lhotse import CutSet

from speechkit.checkpoints import AtomicCheckpointIO, save_atomic
from speechkit.commands import command
from speechkit.continual import (
    ClassIncrementalScenario,
    ReplayBuffer,
    average_accuracy,
    cut_label,
    forgetting,
    last_accuracy,
    plot_accuracy_over_time,
    seen_accuracy,
)
from speechkit.continual.buffer import Selection
from speechkit.data import DataConfig, SpeechDataModule, SpeechDataset, load_cuts
from speechkit.data.manifests import write_cuts_atomic
from speechkit.errors import SpeechkitError
from speechkit.progress import progress_bar
from speechkit.tasks.coconut import CoconutTask

log = logging.getLogger(__name__)


@dataclass
class StreamConfig:
    """The stream: data, class split, training length, replay buffer, optimizer.

    Args:
        train_cuts: training manifest (every task's cuts).
        test_cuts: test manifest (scored after every task on the classes seen so far).
        label_field: ``text`` or the ``supervision.custom`` key with the class.
        first_task: classes in the first task.
        increment: classes in each further task.
        order_seed: shuffles the class order (``null``: sorted).
        tasks: explicit class lists per task instead of ``first_task`` / ``increment`` / ``order_seed``.
        steps_per_task: optimizer steps of every task.
        buffer_size: replay buffer capacity in cuts (0 = no replay: fine-tuning).
        buffer_selection: ``random`` or ``herding``.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        eval_batch_cuts: cuts per evaluation batch.
    """

    train_cuts: str
    test_cuts: str
    label_field: str = "intent"
    first_task: int = 3
    increment: int = 3
    order_seed: Optional[int] = 0
    tasks: Optional[list[list[str]]] = None
    steps_per_task: int = 200
    buffer_size: int = 0
    buffer_selection: Selection = "random"
    lr: float = 2e-3
    weight_decay: float = 0.01
    eval_batch_cuts: int = 64

    def __post_init__(self) -> None:
        if self.steps_per_task < 1 or self.buffer_size < 0 or self.eval_batch_cuts < 1:
            raise SpeechkitError(f"stream: steps_per_task and eval_batch_cuts must be >= 1 and buffer_size >= 0, got "
                                 f"{self.steps_per_task}, {self.eval_batch_cuts}, {self.buffer_size}")
        if self.buffer_selection not in ("random", "herding"):
            raise SpeechkitError(f"stream: buffer_selection must be 'random' or 'herding', got "
                                 f"{self.buffer_selection!r}")


@dataclass
class ContinualConfig:
    """A parsed config: the stream, ``CoconutTask`` arguments (without ``labels``), the data options."""

    stream: StreamConfig
    model: dict[str, Any]
    data: DataConfig
    seed: int = 0


MODEL_KEYS_SET_BY_RUNNER = ("labels", "optimizer", "scheduler")
DATA_KEYS_SET_BY_RUNNER = ("train_cuts", "dev_cuts", "test_cuts")


def _section(raw: dict, key: str, path: Path) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise SpeechkitError(f"{path}: '{key}' must be a mapping, got {type(value).__name__}")
    return value


def _known(mapping: dict, allowed: set[str], forbidden: tuple[str, ...], where: str) -> dict:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise SpeechkitError(f"{where}: unknown keys {unknown}; expected some of {sorted(allowed - set(forbidden))}")
    taken = sorted(set(mapping) & set(forbidden))
    if taken:
        raise SpeechkitError(f"{where}: {taken} are set by the runner; remove them")
    return mapping


def read_continual_config(path: str | Path) -> ContinualConfig:
    """Parse and check a ``speechkit continual`` config (unknown keys in any section are errors naming them)."""
    path = Path(path)
    if not path.is_file():
        raise SpeechkitError(f"continual: config {path} does not exist")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise SpeechkitError(f"{path}: expected a mapping with stream, model, data")
    _known(raw, {"seed", "stream", "model", "data"}, (), str(path))
    stream_raw = _known(_section(raw, "stream", path), {f.name for f in fields(StreamConfig)}, (), f"{path}: stream")
    missing = [key for key in ("train_cuts", "test_cuts") if key not in stream_raw]
    if missing:
        raise SpeechkitError(f"{path}: stream: missing keys {missing}")
    import inspect

    model_keys = set(inspect.signature(CoconutTask).parameters)
    model = _known(_section(raw, "model", path), model_keys, MODEL_KEYS_SET_BY_RUNNER, f"{path}: model")
    data_raw = _known(_section(raw, "data", path), {f.name for f in fields(DataConfig)}, DATA_KEYS_SET_BY_RUNNER,
                      f"{path}: data")
    return ContinualConfig(StreamConfig(**stream_raw), model, DataConfig(**data_raw), int(raw.get("seed", 0)))


def build_scenario(stream: StreamConfig, train: CutSet, test: CutSet) -> ClassIncrementalScenario:
    """The configured scenario, checked to cover every training and test cut."""
    if stream.tasks is not None:
        scenario = ClassIncrementalScenario.from_lists(stream.tasks)
    else:
        scenario = ClassIncrementalScenario.from_cuts(train, stream.label_field, stream.first_task, stream.increment,
                                                      stream.order_seed)
    scenario.check_covers(train, stream.label_field, "train_cuts")
    scenario.check_covers(test, stream.label_field, "test_cuts")
    return scenario


def build_task(config: ContinualConfig, scenario: ClassIncrementalScenario) -> CoconutTask:
    """The task over the scenario's classes, with AdamW at the stream's learning rate."""
    optimizer = functools.partial(torch.optim.AdamW, lr=config.stream.lr, weight_decay=config.stream.weight_decay)
    model = dict(config.model)
    model.setdefault("label_field", config.stream.label_field)
    model.setdefault("num_mel_bins", config.data.num_mel_bins)
    return CoconutTask(labels=scenario.classes, optimizer=optimizer, **model)


def batches(dataset: SpeechDataset, cuts: CutSet, size: int, desc: str) -> Any:
    """Evaluation batches of ``size`` cuts, in manifest order, with a progress bar."""
    ids = list(cuts.ids)
    for start in progress_bar(range(0, len(ids), size), desc=desc, unit="batch"):
        yield dataset[cuts.subset(cut_ids=ids[start:start + size])]


class ScoredTestSet:
    """The test cuts' features, computed once and kept in memory, and their classes."""

    def __init__(self, cuts: CutSet, data: DataConfig, model: CoconutTask, size: int) -> None:
        self.batches = []
        for batch in batches(SpeechDataset(data), cuts, size, "continual: test features"):
            self.batches.append((batch.inputs, batch.input_lens, model.targets(batch)))

    @torch.no_grad()
    def row(self, model: CoconutTask, scenario: ClassIncrementalScenario, task: int) -> tuple[list[float], list[int]]:
        """Accuracy on each task ``0..task``'s test cuts (predictions among the seen classes), and their counts."""
        model.eval()
        owner = torch.tensor([scenario.task_of(name) for name in model.labels])
        correct, counts = np.zeros(task + 1), np.zeros(task + 1, dtype=int)
        for inputs, lens, targets in self.batches:
            hit = model.predict_classes(inputs, lens) == targets
            tasks = owner[targets]
            for j in range(task + 1):
                correct[j] += int(hit[tasks == j].sum())
                counts[j] += int((tasks == j).sum())
        if counts.min() == 0:
            raise SpeechkitError(f"test_cuts: task(s) {np.flatnonzero(counts == 0).tolist()} have no test cut")
        return (correct / counts).tolist(), counts.tolist()


def train_task(model: CoconutTask, manifest: Path, data: DataConfig, steps: int, seed: int) -> L.Trainer:
    """``steps`` optimizer steps on ``manifest``; losses logged to a CSV beside it."""
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, limit_val_batches=0, use_distributed_sampler=False,
        enable_checkpointing=False, enable_model_summary=False, log_every_n_steps=10, num_sanity_val_steps=0,
        logger=L.pytorch.loggers.CSVLogger(manifest.parent, name="log", version=""),
        plugins=[AtomicCheckpointIO()],
    )
    module = SpeechDataModule(dataclasses.replace(data, train_cuts=str(manifest), seed=seed))
    model.train()  # evaluation after the previous task left it in eval mode
    trainer.fit(model, datamodule=module)
    return trainer


@torch.no_grad()
def pooled_features(model: CoconutTask, cuts: CutSet, data: DataConfig, size: int) -> np.ndarray:
    """``(N, D)`` pooled encoder features of ``cuts`` in their order (herding)."""
    model.eval()
    index = {cut_id: i for i, cut_id in enumerate(cuts.ids)}
    out = np.zeros((len(index), model.hparams.hidden), dtype=np.float32)
    for batch in batches(SpeechDataset(data), cuts, size, "continual: herding features"):
        out[[index[cut_id] for cut_id in batch.cut_ids]] = model.features(batch.inputs, batch.input_lens).numpy()
    return out


def _write_json(result: dict, path: Path) -> None:
    save_atomic(result, path, save=lambda obj, file: file.write(json.dumps(obj, indent=1).encode("utf-8")))


def summarize(matrix: list[list[float]], counts: list[int]) -> dict[str, Any]:
    """``A_t``, average and last accuracy, forgetting of the rows so far (padded with NaN above the diagonal)."""
    size = len(matrix)
    square = [row + [float("nan")] * (size - len(row)) for row in matrix]
    seen = seen_accuracy(square, counts[:size])
    return {"seen_accuracy": seen, "average_accuracy": average_accuracy(seen), "last_accuracy": last_accuracy(seen),
            "forgetting": forgetting(square)}


@command(positional=("config",))
def continual(config: str, *, out_dir: str = "exp/continual", seed: Optional[int] = None,
              steps_per_task: Optional[int] = None, train_cuts: Optional[str] = None,
              test_cuts: Optional[str] = None, name: Optional[str] = None) -> None:
    """Train a CoconutTask over a class-incremental stream; write the accuracy matrix (JSON) and its PNG.

    Args:
        config: a ``conf/coconut/*.yaml`` file (stream, model, data).
        out_dir: folder of the run (task manifests and logs, ``accuracy.json``, ``accuracy.png``, ``last.ckpt``).
        seed: replaces the config's seed (weights, sampling, buffer; not the class order, ``stream.order_seed``).
        steps_per_task: replaces ``stream.steps_per_task``.
        train_cuts: replaces ``stream.train_cuts``.
        test_cuts: replaces ``stream.test_cuts``.
        name: the run's name in the PNG and JSON (default: the config's file name).

    Examples:
        speechkit continual conf/coconut/slurp_coconut.yaml --out_dir exp/slurp_continual/coconut/seed0
    """
    parsed = read_continual_config(config)
    if seed is not None:
        parsed.seed = seed
    given = {"steps_per_task": steps_per_task, "train_cuts": train_cuts, "test_cuts": test_cuts}
    parsed.stream = dataclasses.replace(parsed.stream, **{k: v for k, v in given.items() if v is not None})
    run_stream(parsed, Path(out_dir), name or Path(config).stem)


def run_stream(config: ContinualConfig, out: Path, name: str) -> dict[str, Any]:
    """The whole stream (see the module docstring); returns what ``accuracy.json`` holds."""
    started = time.perf_counter()
    stream = config.stream
    L.seed_everything(config.seed, verbose=False)
    train = load_cuts(stream.train_cuts, "train_cuts").to_eager()
    test = load_cuts(stream.test_cuts, "test_cuts").to_eager()
    scenario = build_scenario(stream, train, test)
    model = build_task(config, scenario)
    test_set = ScoredTestSet(test, config.data, model, stream.eval_batch_cuts)
    buffer = ReplayBuffer(stream.buffer_size, stream.buffer_selection, seed=config.seed) if stream.buffer_size else None
    result: dict[str, Any] = {"name": name, "seed": config.seed, "tasks": [list(t) for t in scenario.tasks],
                              "matrix": [], "task_wall_s": [], "buffer_counts": []}
    for t in range(len(scenario.tasks)):
        task_start = time.perf_counter()
        current = scenario.task_cuts(train, t, stream.label_field)
        rehearsal = buffer.cuts() if buffer is not None else CutSet.from_cuts([])
        model.begin_task(scenario.seen(t), list(rehearsal.ids))
        log.info("continual %s: task %d/%d, classes %s, %d cuts + %d in the buffer", name, t + 1, len(scenario.tasks),
                 list(scenario.tasks[t]), len(current), len(rehearsal))
        manifest = write_cuts_atomic(current + rehearsal, out / f"task{t}" / "cuts_train.jsonl.gz")
        trainer = train_task(model, manifest, config.data, stream.steps_per_task, config.seed * 1000 + t)
        row, counts = test_set.row(model, scenario, t)
        result["matrix"].append(row)
        result["test_counts"] = counts
        if buffer is not None:
            features = pooled_features(model, current, config.data, stream.eval_batch_cuts) if (
                stream.buffer_selection == "herding") else None
            buffer.add_task(list(current), [cut_label(c, stream.label_field) for c in current], features)
            result["buffer_counts"].append(buffer.counts())
        result["task_wall_s"].append(round(time.perf_counter() - task_start, 1))
        result.update(summarize(result["matrix"], counts))
        log.info("continual %s: after task %d, accuracy per task %s, on seen classes %.3f", name, t + 1,
                 [round(a, 3) for a in row], result["seen_accuracy"][-1])
        _write_json(result, out / "accuracy.json")
    trainer.save_checkpoint(out / "last.ckpt", weights_only=True)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    _write_json(result, out / "accuracy.json")
    size = len(result["matrix"])
    plot_accuracy_over_time({name: [r + [float("nan")] * (size - len(r)) for r in result["matrix"]]},
                            out / "accuracy.png", result["test_counts"], title=f"{name} (seed {config.seed})")
    return result
