"""``speechkit continual``: a tiny stream end to end (fine-tuning forgets, replay remembers), the files it writes,
the shipped configs, config errors."""

import json
from pathlib import Path

import pytest
import yaml

from speechkit.checkpoints import load_task
from speechkit.cli import SUBCOMMANDS, main
from speechkit.drivers.continual import read_continual_config
from speechkit.errors import SpeechkitError
from speechkit.tasks.coconut import CoconutTask
from speechkit.testing import shipped_configs
from tests.continual.conftest import switch_tone_corpus

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("switch_tones")
    switch_tone_corpus(folder, "train", per_class=10, seed=0)
    switch_tone_corpus(folder, "test", per_class=5, seed=1)
    return folder


def write_config(folder: Path, tones: Path, buffer_size: int, selection: str = "random", **model) -> Path:
    config = {
        "seed": 0,
        "stream": {"train_cuts": str(tones / "cuts_train.jsonl.gz"), "test_cuts": str(tones / "cuts_test.jsonl.gz"),
                   "label_field": "intent", "first_task": 2, "increment": 2, "steps_per_task": 30,
                   "buffer_size": buffer_size, "buffer_selection": selection},
        "model": {"hidden": 32, "num_layers": 2, "proj_dim": 16, "text_hidden": 16, **model},
        "data": {"input": "fbank", "num_mel_bins": 40, "max_duration": 6.0, "num_buckets": 2},
    }
    path = folder / f"stream_{buffer_size}_{len(model)}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run(config: Path, out: Path) -> dict:
    assert main(["continual", str(config), "--out_dir", str(out)]) == 0
    return json.loads((out / "accuracy.json").read_text())


def test_fine_tuning_forgets_and_replay_remembers(tmp_path, tones):
    """Two tasks of two tone classes, 30 steps each: the first task is learnt (>= 90 %); fine-tuning then forgets it
    (<= 20 %), replay of 8 cuts keeps it (>= 70 %)."""
    finetune = run(write_config(tmp_path, tones, 0), tmp_path / "finetune")
    replay = run(write_config(tmp_path, tones, 8), tmp_path / "replay")
    for result in (finetune, replay):
        assert [len(row) for row in result["matrix"]] == [1, 2]
        assert result["matrix"][0][0] >= 0.9 and result["matrix"][1][1] >= 0.9
        assert result["test_counts"] == [10, 10]
        assert result["last_accuracy"] == pytest.approx(sum(result["matrix"][1]) / 2)
        assert result["average_accuracy"] == pytest.approx((result["matrix"][0][0] + result["last_accuracy"]) / 2)
    assert finetune["matrix"][1][0] <= 0.2 and finetune["forgetting"] >= 0.7
    assert replay["matrix"][1][0] >= 0.7
    assert replay["buffer_counts"][-1] == {name: 2 for name in ("c0", "c1", "c2", "c3")}
    assert finetune["buffer_counts"] == []


def test_coconut_run_writes_matrix_png_and_a_checkpoint_that_loads(tmp_path, tones):
    """Every loss on, a herding buffer: the files of a run, the loss terms logged, the checkpoint loads."""
    out = tmp_path / "coconut"
    result = run(write_config(tmp_path, tones, 8, "herding", kd_weight=1.0, nspt_weight=0.1, mm_weight=0.1), out)
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out.iterdir()) == ["accuracy.json", "accuracy.png", "last.ckpt", "task0", "task1"]
    task1 = (out / "task1" / "cuts_train.jsonl.gz")
    assert task1.is_file() and (out / "task1" / "log" / "metrics.csv").is_file()
    metrics = (out / "task1" / "log" / "metrics.csv").read_text().splitlines()[0]
    assert {"train_ce", "train_kd", "train_nspt", "train_mm"} <= set(metrics.split(","))
    first, second = result["tasks"]
    assert result["buffer_counts"] == [{name: 4 for name in first}, {name: 2 for name in first + second}]
    model = load_task(out / "last.ckpt", CoconutTask)
    assert model.labels == [name for task in result["tasks"] for name in task] and model.active.all()


SHIPPED = shipped_configs("continual")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_configs_validate(path):
    config = read_continual_config(path)
    assert config.stream.label_field == "scenario"
    CoconutTask(labels=[f"s{i}" for i in range(18)], **config.model)
    assert path.read_text().startswith(f"# speechkit continual conf/coconut/{path.name}")


def test_shipped_configs_exist():
    assert {p.stem for p in SHIPPED} >= {"slurp_finetune", "slurp_replay", "slurp_replay_kd", "slurp_coconut"}
    assert "continual" in SUBCOMMANDS


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["stream"].update(buffer_sise=3), r"stream: unknown keys \['buffer_sise'\]"),
    (lambda c: c["model"].update(labels=["a"]), r"model: \['labels'\] are set by the runner"),
    (lambda c: c["data"].update(train_cuts="x"), r"data: \['train_cuts'\] are set by the runner"),
    (lambda c: c["stream"].pop("test_cuts"), r"stream: missing keys \['test_cuts'\]"),
    (lambda c: c["stream"].update(steps_per_task=0), "steps_per_task"),
])
def test_config_errors_name_the_key(tmp_path, tones, edit, message):
    path = write_config(tmp_path, tones, 0)
    config = yaml.safe_load(path.read_text())
    edit(config)
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SpeechkitError, match=message):
        read_continual_config(path)


def test_a_buffer_smaller_than_the_classes_stops_before_task_two(tmp_path, tones):
    with pytest.raises(SpeechkitError, match="capacity 1 is smaller than the 2 classes"):
        from speechkit.drivers.continual import continual

        continual(str(write_config(tmp_path, tones, 1)), out_dir=str(tmp_path / "small"))
