"""Logs people open (issue 13, item 5): every shipped Whisper config writes ``metrics.csv`` and a TensorBoard event
file into one version folder beside its checkpoints; every config with a learning-rate schedule logs the lr (so
``speechkit fit-scaling-law`` reads its run); the dev WER before training is a metric in both files."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import yaml
from lightning.pytorch.demos.boring_classes import BoringModel
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from speechkit.cli import main as speechkit_main
from speechkit.errors import SpeechkitError
from speechkit.loggers import CSVTensorBoardLogger
from speechkit.testing import shipped_configs, tiny_whisper_dir, tone_corpus

REPO = Path(__file__).resolve().parents[1]
WHISPER_CONFIGS = sorted((REPO / "conf" / "whisper").glob("*.yaml"))
CONFIGS = shipped_configs("fit")
STEPS = 6  # losses at steps 1-5: enough points for the scaling law's 4 parameters

pytestmark = pytest.mark.usefixtures("one_thread")


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(REPO)) for p in paths]


@pytest.mark.parametrize("config", WHISPER_CONFIGS, ids=ids(WHISPER_CONFIGS))
def test_every_whisper_config_logs_csv_and_tensorboard(config):
    logger = yaml.safe_load(config.read_text())["trainer"]["logger"]
    assert logger["class_path"] == "speechkit.loggers.CSVTensorBoardLogger"


@pytest.mark.parametrize("config", CONFIGS, ids=ids(CONFIGS))
def test_every_config_with_a_schedule_logs_its_lr_every_step(config):
    tree = yaml.safe_load(config.read_text())
    model = tree["model"]
    scheduled = "Whisper" in model["class_path"] or (model.get("init_args") or {}).get("scheduler")  # warm-up + decay
    monitors = [c for c in tree["trainer"].get("callbacks") or [] if c["class_path"].endswith(".LearningRateMonitor")]
    if scheduled:
        assert [m["init_args"]["logging_interval"] for m in monitors] == ["step"]


def scalars(event_file: Path) -> dict[str, dict[int, float]]:
    """``{tag: {step: value}}`` of a TensorBoard event file."""
    events = EventAccumulator(str(event_file))
    events.Reload()
    return {tag: {s.step: s.value for s in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def csv_column(rows: list[dict], column: str) -> dict[int, float]:
    return {int(row["step"]): float(row[column]) for row in rows if row.get(column)}


@pytest.fixture(scope="module")
def new_language_run(tmp_path_factory) -> Path:
    """``conf/whisper/new_language.yaml`` for 6 steps on a tiny Whisper and tones, its run moved the way the recipes
    move it (``--trainer.logger.init_args.save_dir``); returns that folder."""
    root = tmp_path_factory.mktemp("new_language_logs")
    for split, seed in (("train", 0), ("dev", 1)):
        tone_corpus(root / "data", split, num_cuts=6, seed=seed, max_duration=0.8)
    out = root / "run"
    data = {f"--data.init_args.config.{split}_cuts": str(root / "data" / f"cuts_{name}.jsonl.gz")
            for split, name in (("train", "train"), ("dev", "dev"), ("test", "dev"))}
    argv = ["fit", "-c", str(REPO / "conf/whisper/new_language.yaml"),
            "--model.init_args.model_name_or_path", str(tiny_whisper_dir(root / "tiny", multilingual=True)),
            *[item for pair in data.items() for item in pair],
            "--data.init_args.config.allow_language_mismatch", "true",  # <|ky|> on English tones
            "--trainer.max_steps", str(STEPS), "--trainer.val_check_interval", str(STEPS),
            "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(out), "--trainer.logger.init_args.save_dir", str(out)]
    assert speechkit_main(argv) == 0
    return out


def test_metrics_events_and_checkpoints_share_one_version_folder(new_language_run):
    (version,) = (new_language_run / "lightning_logs").iterdir()
    assert version.name == "version_0"
    assert (version / "metrics.csv").is_file() and (version / "hparams.yaml").is_file()
    assert len(list(version.glob("events.out.tfevents.*"))) == 1
    assert list((version / "checkpoints").glob("best-step=6-*.ckpt"))


def test_the_event_file_holds_what_metrics_csv_holds(new_language_run):
    version = new_language_run / "lightning_logs" / "version_0"
    rows = list(csv.DictReader((version / "metrics.csv").open()))
    board = scalars(next(version.glob("events.out.tfevents.*")))
    for tag in ("train_loss", "lr-AdamW", "val_wer", "val_wer_before"):
        assert board[tag] == pytest.approx(csv_column(rows, tag)), tag
    assert sorted(board["train_loss"]) == list(range(STEPS))
    assert list(board["val_wer_before"]) == [0]  # dev WER before training: the sanity pass, at step 0


def test_fit_scaling_law_reads_the_run(new_language_run, capsys):
    metrics = new_language_run / "lightning_logs" / "version_0" / "metrics.csv"
    assert speechkit_main(["fit-scaling-law", "--fit", str(metrics)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("L0=") and f"fit {metrics.parent}: MAPE" in printed


class LoggingModel(BoringModel):
    """Lightning's boring model, logging its loss."""

    def training_step(self, batch, batch_idx):
        output = super().training_step(batch, batch_idx)
        self.log("train_loss", output["loss"])
        return output


def test_each_run_takes_one_version_number(tmp_path):
    """Two loggers in a list would take version_0 and version_1 in the first run (each the next free number)."""
    for _ in range(2):
        trainer = L.Trainer(max_steps=2, logger=CSVTensorBoardLogger(tmp_path), limit_val_batches=1,
                            log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(LoggingModel())
        assert trainer.checkpoint_callback.dirpath == str(Path(trainer.log_dir) / "checkpoints")
    folders = sorted((tmp_path / "lightning_logs").iterdir())
    assert [f.name for f in folders] == ["version_0", "version_1"]
    for folder in folders:
        assert (folder / "metrics.csv").is_file() and list(folder.glob("events.out.tfevents.*"))
        assert list((folder / "checkpoints").glob("*.ckpt"))


def test_without_tensorboard_the_logger_is_a_one_line_error(tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name.startswith("tensorboard") else find_spec(name, *args))
    with pytest.raises(SpeechkitError, match=r"needs TensorBoard: pip install -e '\.\[tensorboard\]'"):
        CSVTensorBoardLogger(tmp_path)
