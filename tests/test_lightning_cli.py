"""``speechkit fit|test`` (speechkit.lightning_cli): atomic checkpoints by default, SIGTERM / SIGINT save a resumable
last.ckpt and exit 143 / 130, and with --ckpt_path the values the user gave win over the checkpoint's (where safe)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch import LightningDataModule, LightningModule

from speechkit.checkpoints import AtomicCheckpointIO, load_checkpoint
from speechkit.cli import main
from speechkit.lightning_cli import SpeechkitCLI, with_atomic_checkpoint_io
from speechkit.testing import tiny_whisper_dir, tone_corpus

REPO = Path(__file__).resolve().parent.parent
TRAINER = {"accelerator": "cpu", "devices": 1, "use_distributed_sampler": False, "enable_progress_bar": False,
           "enable_model_summary": False, "logger": False, "num_sanity_val_steps": 0}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli_corpus")
    tone_corpus(root, "train", num_cuts=8, seed=0, max_duration=0.6)
    tone_corpus(root, "dev", num_cuts=4, seed=1, max_duration=0.6)
    return root


def data_section(corpus: Path) -> dict:
    return {"class_path": "speechkit.data.SpeechDataModule",
            "init_args": {"config": {"train_cuts": str(corpus / "cuts_train.jsonl.gz"),
                                     "dev_cuts": str(corpus / "cuts_dev.jsonl.gz"),
                                     "test_cuts": str(corpus / "cuts_dev.jsonl.gz"), "input": "fbank",
                                     "num_mel_bins": 40, "max_duration": 3.0, "num_buckets": 2,
                                     "val_batch_size": 4}}}


def classifier_config(corpus: Path, root: Path, **trainer) -> dict:
    model = {"class_path": "speechkit.tasks.classify.AudioClassifier",
             "init_args": {"labels": ["tone0", "tone1"], "num_mel_bins": 40, "hidden": 8, "num_layers": 1}}
    return {"seed_everything": 0, "trainer": {**TRAINER, "default_root_dir": str(root), "limit_val_batches": 0,
                                              **trainer},
            "model": model, "data": data_section(corpus)}


def write(config: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


# ------------------------------------------------------------------ atomic checkpoints by default
def lightning_configs() -> list[Path]:
    return sorted(p for p in (REPO / "conf").rglob("*.yaml") if "trainer" in (yaml.safe_load(p.read_text()) or {}))


@pytest.mark.parametrize("config", lightning_configs(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_saves_atomically(config):
    plugins = yaml.safe_load(config.read_text())["trainer"].get("plugins") or []
    assert {"class_path": "speechkit.checkpoints.AtomicCheckpointIO"} in plugins


def test_a_config_without_checkpoint_io_gets_the_atomic_one(corpus, tmp_path):
    config = write(classifier_config(corpus, tmp_path), tmp_path / "c.yaml")
    cli = SpeechkitCLI(LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                       run=False, args=["-c", str(config)])
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    own = TorchCheckpointIO()
    assert with_atomic_checkpoint_io([own]) == [own]  # a config's own CheckpointIO is kept
    assert [type(p) for p in with_atomic_checkpoint_io(None)] == [AtomicCheckpointIO]


# ------------------------------------------------------------------ signals and exit codes
def start_fit(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "speechkit.cli", "fit", "-c", str(config), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(pattern: str, folder: Path, process: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not list(folder.glob(pattern)):
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline, f"no {pattern} in {folder} after {timeout} s"
        time.sleep(0.2)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_saves_a_resumable_last_checkpoint_and_exits_128_plus_it(corpus, tmp_path, signum, code):
    ckpts = tmp_path / "ckpts"
    every_step = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                  "init_args": {"dirpath": str(ckpts), "every_n_train_steps": 1, "save_top_k": 1,
                                "filename": "step-{step}"}}
    config = write(classifier_config(corpus, tmp_path, max_steps=100_000, callbacks=[every_step]), tmp_path / "c.yaml")
    process = start_fit(config)
    wait_for("step-*.ckpt", ckpts, process)  # training is under way
    process.send_signal(signum)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == code, output[-3000:]
    last = load_checkpoint(ckpts / "last.ckpt")
    assert last["global_step"] >= 1 and f"--ckpt_path {ckpts / 'last.ckpt'}" in output
    assert not [p.name for p in ckpts.iterdir() if not p.name.endswith(".ckpt")]  # no temporary file left
    if signum != signal.SIGTERM:
        return
    stop = last["global_step"] + 2
    resumed = subprocess.run(
        [sys.executable, "-m", "speechkit.cli", "fit", "-c", str(config), "--ckpt_path", str(ckpts / "last.ckpt"),
         "--trainer.max_steps", str(stop)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_checkpoint(ckpts / f"step-step={stop}.ckpt")["global_step"] == stop


# ------------------------------------------------------------------ --ckpt_path: what the user typed wins
@pytest.fixture(scope="module")
def whisper_run(corpus, tmp_path_factory) -> dict:
    """A WhisperFinetune checkpoint written by `speechkit fit` (tiny random Whisper, 1 step)."""
    root = tmp_path_factory.mktemp("whisper_cli")
    model = {"class_path": "speechkit.tasks.whisper_finetune.WhisperFinetune",
             "init_args": {"model_name_or_path": str(tiny_whisper_dir(root / "tiny", multilingual=False)),
                           "language": "en", "warmup_steps": 1, "max_new_tokens": 3}}
    data = data_section(corpus)
    data["init_args"]["config"].update(input="whisper_fbank", num_mel_bins=80)
    config = {"seed_everything": 0, "trainer": {**TRAINER, "default_root_dir": str(root / "exp"), "max_steps": 1,
                                                "limit_val_batches": 0, "limit_test_batches": 1},
              "model": model, "data": data}
    path = write(config, root / "fit.yaml")
    assert main(["fit", "-c", str(path), "--trainer.enable_checkpointing", "true"]) == 0
    return {"config": path, "ckpt": next((root / "exp").rglob("*.ckpt")), "root": root, "yaml": config}


@pytest.fixture
def decoding(monkeypatch) -> list[dict]:
    """The decoding settings every ``transcribe`` call of the Whisper core ran with."""
    from speechkit.models.whisper_seq2seq import WhisperSeq2Seq

    calls, original = [], WhisperSeq2Seq.transcribe

    def transcribe(self, batch):
        calls.append({"num_beams": self.num_beams, "max_new_tokens": self.max_new_tokens})
        return original(self, batch)

    monkeypatch.setattr(WhisperSeq2Seq, "transcribe", transcribe)
    return calls


def test_predictions_file_and_num_beams_given_on_the_command_line_win(whisper_run, tmp_path, decoding, capsys):
    """Defect 13: the checkpoint's saved predictions_file (None) and num_beams (1) used to override these."""
    out = tmp_path / "mine" / "predictions.jsonl"
    code = main(["test", "-c", str(whisper_run["config"]), "--ckpt_path", str(whisper_run["ckpt"]),
                 "--model.init_args.predictions_file", str(out), "--model.init_args.num_beams", "2"])
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and {"id", "ref", "hyp"} <= set(rows[0])
    assert decoding and all(call["num_beams"] == 2 for call in decoding)
    assert "num_beams=2 (checkpoint: 1)" in capsys.readouterr().err


def test_a_value_given_in_the_config_wins_too(whisper_run, tmp_path, decoding):
    config = json.loads(json.dumps(whisper_run["yaml"]))
    config["model"]["init_args"]["max_new_tokens"] = 2
    config["model"]["init_args"]["predictions_file"] = str(tmp_path / "p.jsonl")
    path = write(config, tmp_path / "test.yaml")
    assert main(["test", "-c", str(path), "--ckpt_path", str(whisper_run["ckpt"])]) == 0
    assert decoding and all(call == {"num_beams": 1, "max_new_tokens": 2} for call in decoding)
    assert (tmp_path / "p.jsonl").is_file()


@pytest.mark.parametrize("flag, value", [("strategy", "lora"), ("language", "de")])
def test_a_value_that_changes_the_weights_shapes_is_refused_in_one_line(whisper_run, flag, value, capsys):
    code = main(["test", "-c", str(whisper_run["config"]), "--ckpt_path", str(whisper_run["ckpt"]),
                 f"--model.init_args.{flag}", value])
    assert code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{flag}={value!r}" in lines[0] and str(whisper_run["ckpt"]) in lines[0]


def test_a_crafted_ckpt_path_runs_nothing(whisper_run, tmp_path, capsys):
    marker = tmp_path / "MARKER"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import torch

    crafted = {"pytorch-lightning_version": "2.6.6", "state_dict": {}, "hyper_parameters": {"x": Evil()}}
    torch.save(crafted, tmp_path / "evil.ckpt")  # looks like a Lightning checkpoint from the outside
    code = main(["test", "-c", str(whisper_run["config"]), "--ckpt_path", str(tmp_path / "evil.ckpt")])
    assert code == 2 and not marker.exists()
    assert "refused" in capsys.readouterr().err
