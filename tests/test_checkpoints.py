"""speechkit.checkpoints: safe loading (weights_only, one-line errors), rebuilding tasks, atomic saving."""

from __future__ import annotations

import errno
import io
import os
import pickle
import zipfile
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from speechkit.checkpoints import (
    TASK_CLASS_KEY,
    AtomicCheckpointIO,
    load_checkpoint,
    load_task,
    record_task_class,
    save_atomic,
    split_hparams,
    task_class,
    temporary_name,
)
from speechkit.data import DataConfig, SpeechDataModule
from speechkit.errors import SpeechkitError
from speechkit.tasks.classify import AudioClassifier
from speechkit.testing import tone_corpus

pytestmark = pytest.mark.usefixtures("one_thread")


def classifier() -> AudioClassifier:
    return AudioClassifier(labels=["tone0", "tone1"], num_mel_bins=40, hidden=8, num_layers=1)


def data(corpus: Path) -> SpeechDataModule:
    return SpeechDataModule(DataConfig(train_cuts=str(corpus / "cuts_train.jsonl.gz"), input="fbank",
                                       num_mel_bins=40, max_duration=3.0, num_buckets=2, seed=0))


def trainer(root: Path, steps: int, **kwargs) -> L.Trainer:
    options = dict(max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                   use_distributed_sampler=False, limit_val_batches=0, default_root_dir=root)
    options.update(kwargs)
    return L.Trainer(**options)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ckpt_corpus")
    tone_corpus(root, "train", num_cuts=8, seed=0)
    return root


@pytest.fixture(scope="module")
def ckpt(corpus, tmp_path_factory) -> Path:
    """A real Lightning checkpoint of AudioClassifier, saved as LightningCLI saves it (with the class path)."""
    root = tmp_path_factory.mktemp("ckpt")
    run = trainer(root, 2, enable_checkpointing=False)
    run.fit(classifier(), data(corpus))
    path = root / "model.ckpt"
    run.save_checkpoint(path)
    return path


class Marker:
    """Unpickling this runs code: it writes a marker file (a crafted checkpoint)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


# ------------------------------------------------------------------ loading
def test_a_fit_checkpoint_loads_weights_only(ckpt):
    checkpoint = load_checkpoint(ckpt)
    assert checkpoint["global_step"] == 2 and "state_dict" in checkpoint
    assert checkpoint["hyper_parameters"]["labels"] == ["tone0", "tone1"]


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
def test_a_crafted_pickle_is_refused_and_runs_nothing(tmp_path, legacy):
    marker = tmp_path / "MARKER"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Marker(marker)}, evil, _use_new_zipfile_serialization=not legacy)
    assert not marker.exists()
    with pytest.raises(SpeechkitError) as info:
        load_checkpoint(evil)
    message = str(info.value)
    assert "\n" not in message and str(evil) in message and "refused" in message
    assert not marker.exists()


def test_a_plain_pickle_is_refused_and_runs_nothing(tmp_path):
    marker, evil = tmp_path / "MARKER", tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"state_dict": {}, "x": Marker(marker)}))
    with pytest.raises(SpeechkitError, match="refused"):
        load_checkpoint(evil)
    assert not marker.exists()


def non_checkpoints(tmp_path: Path, ckpt: Path) -> dict[str, tuple[Path, str]]:
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    other_zip = tmp_path / "other.ckpt"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readme.txt", "hello")
    truncated = tmp_path / "truncated.ckpt"
    data = ckpt.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    listed = tmp_path / "list.ckpt"
    torch.save([1, 2], listed)
    return {"missing": (tmp_path / "missing.ckpt", "no such file"), "directory": (tmp_path, "directory"),
            "text": (text, "not a"), "other zip": (other_zip, "without data.pkl"),
            "truncated": (truncated, "truncated"), "empty": (empty, "empty"), "list": (listed, "holds a list")}


def test_non_checkpoints_are_one_line_errors_naming_the_file(tmp_path, ckpt):
    for name, (path, reason) in non_checkpoints(tmp_path, ckpt).items():
        with pytest.raises(SpeechkitError) as info:
            load_checkpoint(path)
        message = str(info.value)
        assert "\n" not in message and str(path) in message and reason in message, (name, message)


def test_allow_listed_types_load(tmp_path):
    path = tmp_path / "p.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"init_checkpoint": Path("/a/b.ckpt")}}, path)
    assert load_checkpoint(path)["hyper_parameters"]["init_checkpoint"] == Path("/a/b.ckpt")


# ------------------------------------------------------------------ rebuilding a task
def with_class_path(ckpt: Path, out: Path, class_path: str) -> Path:
    state = load_checkpoint(ckpt)
    state["hyper_parameters"]["_class_path"] = class_path
    state["hyper_parameters"]["_instantiator"] = "lightning.pytorch.cli.instantiate_module"
    torch.save(state, out)
    return out


def test_load_task_rebuilds_the_class_the_checkpoint_names(ckpt, tmp_path):
    path = with_class_path(ckpt, tmp_path / "cli.ckpt", "speechkit.tasks.classify.AudioClassifier")
    task = load_task(path)
    assert isinstance(task, AudioClassifier)
    saved = load_checkpoint(ckpt)["state_dict"]
    assert all(torch.equal(task.state_dict()[k], v) for k, v in saved.items())


def test_a_task_records_its_class_so_a_checkpoint_saved_from_python_loads(ckpt, tmp_path):
    """Trainer.fit in Python stores no hyper_parameters._class_path; the task's on_save_checkpoint records it."""
    checkpoint = load_checkpoint(ckpt)
    assert "_class_path" not in checkpoint["hyper_parameters"]
    assert checkpoint[TASK_CLASS_KEY] == "speechkit.tasks.classify.AudioClassifier"
    assert task_class(checkpoint, ckpt) is AudioClassifier
    assert isinstance(load_task(ckpt), AudioClassifier)


def test_load_task_needs_a_class_and_imports_no_foreign_module(ckpt, tmp_path):
    anonymous = tmp_path / "anonymous.ckpt"
    torch.save({k: v for k, v in load_checkpoint(ckpt).items() if k != TASK_CLASS_KEY}, anonymous)
    with pytest.raises(SpeechkitError, match="_class_path"):
        load_task(anonymous)  # no class path, no record of its own, no default
    assert isinstance(load_task(anonymous, default_class=AudioClassifier), AudioClassifier)
    foreign = with_class_path(ckpt, tmp_path / "foreign.ckpt", "antigravity.Thing")
    with pytest.raises(SpeechkitError, match="outside speechkit"):
        load_task(foreign)
    not_a_task = with_class_path(ckpt, tmp_path / "nota.ckpt", "speechkit.errors.SpeechkitError")
    with pytest.raises(SpeechkitError, match="not a LightningModule"):
        load_task(not_a_task)


class WithPart(L.LightningModule):
    """A task whose init argument is itself a class (LightningCLI stores it as class_path / init_args)."""

    def __init__(self, part: torch.nn.Module) -> None:
        super().__init__()
        self.part = part


def test_load_task_instantiates_nested_class_paths_as_lightning_does(tmp_path):
    task = WithPart(torch.nn.Linear(3, 2))
    hparams = {"_class_path": f"{__name__}.WithPart", "_instantiator": "lightning.pytorch.cli.instantiate_module",
               "part": {"class_path": "torch.nn.Linear", "init_args": {"in_features": 3, "out_features": 2}}}
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams}, tmp_path / "nested.ckpt")
    loaded = load_task(tmp_path / "nested.ckpt")
    assert isinstance(loaded.part, torch.nn.Linear) and torch.equal(loaded.part.weight, task.part.weight)


class FromParent(L.LightningModule):
    """A task that starts from another checkpoint's weights (as WhisperFinetune's init_checkpoint)."""

    checkpoint_source_args = ("init_checkpoint",)

    def __init__(self, init_checkpoint: str | None = None, width: int = 2) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(width, width)
        if init_checkpoint is not None:
            self.load_state_dict(load_checkpoint(init_checkpoint)["state_dict"])


def test_load_task_does_not_reload_where_the_weights_came_from(tmp_path):
    """The checkpoint's own weights replace the parent's, and the parent file may be gone."""
    task = FromParent(width=3)
    saved = {"state_dict": task.state_dict(), "hyper_parameters": {"init_checkpoint": str(tmp_path / "gone.ckpt"),
                                                                   "width": 3}}
    task.on_save_checkpoint(saved)
    record_task_class(task, saved)
    torch.save(saved, tmp_path / "child.ckpt")
    loaded = load_task(tmp_path / "child.ckpt")
    assert isinstance(loaded, FromParent) and torch.equal(loaded.layer.weight, task.layer.weight)
    with pytest.raises(SpeechkitError, match="gone.ckpt: no such file"):
        load_task(tmp_path / "child.ckpt", init_checkpoint=str(tmp_path / "gone.ckpt"))  # asked for: loaded


def test_load_task_overrides_and_mismatches(ckpt):
    with pytest.raises(SpeechkitError, match="no argument bogus"):
        load_task(ckpt, default_class=AudioClassifier, bogus=1)
    with pytest.raises(SpeechkitError, match="do not fit"):
        load_task(ckpt, default_class=AudioClassifier, hidden=4)


# ------------------------------------------------------------------ --ckpt_path overrides
def test_given_values_replace_saved_ones_except_fixed_ones():
    saved = {"labels": ["a", "b"], "hidden": 8, "zloss_a": 1.0, "label_field": "text"}
    kept, replaced = split_hparams(AudioClassifier, saved, {"zloss_a": 2.0, "hidden": 8, "labels": ("a", "b")})
    assert kept == {"labels": ["a", "b"], "hidden": 8, "label_field": "text"}
    assert replaced == {"zloss_a": (1.0, 2.0)}
    with pytest.raises(SpeechkitError) as info:
        split_hparams(AudioClassifier, saved, {"hidden": 16})
    assert "\n" not in str(info.value) and "hidden=16" in str(info.value) and "hidden=8" in str(info.value)


# ------------------------------------------------------------------ atomic saving
class FullDisk(io.FileIO):
    """A file on a disk that fills after ``room`` bytes."""

    room = 4096

    def write(self, data) -> int:
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def test_a_full_disk_keeps_the_previous_checkpoint_and_leaves_no_partial_file(tmp_path, monkeypatch):
    last = tmp_path / "last.ckpt"
    save_atomic({"state_dict": {"w": torch.zeros(10)}}, last)
    before = last.read_bytes()
    monkeypatch.setattr("speechkit.checkpoints._open_for_write", lambda path: FullDisk(path, "xb"))
    with pytest.raises(SpeechkitError) as info:
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(100_000)}}, last)
    message = str(info.value)
    assert "\n" not in message and str(last) in message and "no space left" in message and "free in" in message
    assert last.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_saving_needs_no_room_in_tmpdir(tmp_path, monkeypatch):
    """The temporary file lies beside the destination, never in TMPDIR."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no" / "such" / "tmpdir"))
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(3)}}, tmp_path / "out" / "a.ckpt")
    assert torch.equal(load_checkpoint(tmp_path / "out" / "a.ckpt")["state_dict"]["w"], torch.ones(3))


def test_the_temporary_name_matches_no_checkpoint_glob(tmp_path):
    temporary = temporary_name(tmp_path / "best-step=2-val_wer=0.1.ckpt")
    assert temporary.parent == tmp_path and temporary.name.startswith(".")
    assert not any(temporary.match(pattern) for pattern in ("*.ckpt", "best-*.ckpt", "last*.ckpt"))


def test_a_full_disk_during_fit_leaves_the_best_checkpoint_intact(corpus, tmp_path, monkeypatch):
    """ModelCheckpoint keeps every step; the third save hits a full disk: steps 1-2 stay loadable, nothing partial."""
    saves = []

    def opener(path):
        saves.append(path)
        return FullDisk(path, "xb") if len(saves) == 3 else open(path, "xb")  # noqa: SIM115

    monkeypatch.setattr("speechkit.checkpoints._open_for_write", opener)
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", every_n_train_steps=1, save_top_k=-1,
                               filename="best-{step}")
    run = trainer(tmp_path, 4, callbacks=[callback], plugins=[AtomicCheckpointIO()])
    with pytest.raises(SpeechkitError, match="no space left"):
        run.fit(classifier(), data(corpus))
    files = sorted(p.name for p in (tmp_path / "ckpts").iterdir())
    assert files == ["best-step=1.ckpt", "best-step=2.ckpt"]
    assert all(load_checkpoint(tmp_path / "ckpts" / name)["global_step"] in (1, 2) for name in files)
