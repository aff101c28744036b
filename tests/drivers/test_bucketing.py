"""``speechkit bins`` / ``batch-sizes`` read a training run's configuration through the one resolver and count
tokens with the task's own ``tokenize``, as training does (issue 12, items 3 and 5).

Before: ``bins`` took no config and counted with the bare tokenizer (``--tokenizer whisper``: no leading space,
``text`` even when the run trains on another ``text_field``); ``batch-sizes -c`` read one YAML by hand (the last
``-c`` only, the first key found anywhere in the tree, no overrides).
"""

from __future__ import annotations

import textwrap

import lightning as L
import pytest
import yaml
from lhotse import CutSet

from speechkit.cli import main
from speechkit.config import resolve_fit_config
from speechkit.data.sampling import WhisperTokenCounter, estimate_bucket_bins
from speechkit.testing import tiny_whisper_dir, tone_corpus

pytestmark = pytest.mark.usefixtures("one_thread")

# Targets of very different lengths, in a supervision custom field (as a translation task trains on).
TARGETS = ["ja", "zwei drei", "vier fünf sechs sieben", "acht", "neun zehn elf zwölf dreizehn vierzehn", "null eins",
           "fünfzehn sechzehn siebzehn", "achtzehn", "neunzehn zwanzig einundzwanzig zweiundzwanzig", "ok"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """A WhisperFinetune run on tone cuts whose ``de`` field holds the targets (``text_field: de``)."""
    root = tmp_path_factory.mktemp("bucketing")
    cuts = tone_corpus(root / "data", "train", num_cuts=20, seed=3, max_duration=2.0)
    cuts = CutSet.from_cuts(cut.map_supervisions(lambda s, i=i: s.with_custom("de", TARGETS[i % len(TARGETS)]))
                            for i, cut in enumerate(cuts))
    manifest = root / "cuts_de.jsonl.gz"
    cuts.to_file(manifest)
    config = {
        "trainer": {"accelerator": "cpu", "devices": 1, "logger": False, "use_distributed_sampler": False},
        "model": {"class_path": "speechkit.tasks.whisper_finetune.WhisperFinetune",
                  "init_args": {"model_name_or_path": str(tiny_whisper_dir(root / "whisper")), "language": "de"}},
        "data": {"class_path": "speechkit.data.SpeechDataModule",
                 "init_args": {"config": {"train_cuts": str(manifest), "text_field": "de", "num_buckets": 2,
                                          "allow_language_mismatch": True}}},
    }  # fmt: skip
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return {"root": root, "config": str(path), "cuts": CutSet.from_file(manifest), "whisper": root / "whisper"}


def printed_config(capsys) -> dict:
    return yaml.safe_load(capsys.readouterr().out)


def measured_by_the_data_module(config: str, cuts: CutSet) -> dict[str, int]:
    """The token count of each cut as ``SpeechDataModule`` measures it in training (after ``setup`` took the
    task's ``tokenize``)."""
    resolved = resolve_fit_config(["-c", config])
    task, data = resolved.model(), resolved.datamodule()
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.strategy.connect(task)
    data.trainer = trainer
    data.setup("fit")
    counter = data._token_counter()
    return {cut.id: counter(cut) for cut in cuts}


def test_offline_2d_bins_count_tokens_as_the_data_module_does(run, capsys):
    assert main(["bins", "-c", run["config"], "--num-subbuckets", "2"]) == 0
    printed = printed_config(capsys)
    measured = measured_by_the_data_module(run["config"], run["cuts"])
    expected = estimate_bucket_bins(run["cuts"], 2, 2, token_counter=lambda cut: measured[cut.id])
    assert [tuple(b) for b in printed["bucket_duration_bins"]] == expected.bins
    assert printed["bucket_max_tps"] == pytest.approx(expected.max_tps, rel=1e-5)  # printed with 6 digits
    assert max(n for _, n in expected.bins) == max(measured.values())  # the longest target, prompt included
    bare = WhisperTokenCounter(str(run["whisper"]), language="de")  # the former `--tokenizer whisper` count
    assert any(bare(cut) != measured[cut.id] for cut in run["cuts"])


def test_bins_takes_cuts_and_buckets_from_the_config_and_its_overrides(run, capsys):
    """1-D bins need no task: the config's train_cuts and num_buckets, a --key=value override winning."""
    assert main(["bins", "-c", run["config"]]) == 0
    assert len(printed_config(capsys)["bucket_duration_bins"]) == 2
    assert main(["bins", "-c", run["config"], "--data.init_args.config.num_buckets=4"]) == 0
    assert printed_config(capsys)["bucket_duration_bins"] == estimate_bucket_bins(run["cuts"], 4).bins


def test_bins_with_a_tokenizer_and_a_config_is_one_line(run, capsys):
    assert main(["bins", "-c", run["config"], "--tokenizer", "chars", "--num-subbuckets", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--tokenizer" in err and "tokenize" in err


TASK = textwrap.dedent(
    '''
    import torch
    from lightning import LightningModule


    class CharTask(LightningModule):
        """One token per character plus two (start and end)."""

        def __init__(self, width: int = 8):
            super().__init__()
            self.net = torch.nn.Linear(4, width)

        def tokenize(self, text):
            return [0] + [1] * len(text) + [2]

        def synthetic_batch(self, batch_size, duration_s, num_tokens):
            return torch.zeros(batch_size, 4)

        def training_step(self, batch, batch_idx):
            return self.net(batch).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)
    '''
)


@pytest.fixture
def searched(tmp_path, monkeypatch) -> list:
    """Makes ``char_task_for_bucketing.CharTask`` importable; returns the buckets the search is given."""
    import speechkit.data.batch_size_search as search

    (tmp_path / "char_task_for_bucketing.py").write_text(TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    buckets: list = []
    original = search.find_batch_sizes

    def recording(step, given, *args, **kwargs):
        buckets.extend(given)
        return original(step, given, *args, **kwargs)

    monkeypatch.setattr(search, "find_batch_sizes", recording)
    return buckets


def test_batch_sizes_merges_config_files_and_overrides(searched, tmp_path, capsys):
    """Model in one file, bins in a second, precision overridden on the command line (the former reader took the
    last -c only and refused --trainer.* / --data.* options)."""
    (tmp_path / "model.yaml").write_text(yaml.safe_dump({
        "model": {"class_path": "char_task_for_bucketing.CharTask"}, "trainer": {"precision": "bf16-mixed"}}))
    (tmp_path / "bins.yaml").write_text(yaml.safe_dump({"data": {
        "class_path": "speechkit.data.SpeechDataModule",
        "init_args": {"config": {"bucket_duration_bins": [[1.0, 10], [2.0, 20]]}}}}))
    args = ["-c", str(tmp_path / "model.yaml"), "--config", str(tmp_path / "bins.yaml"), "--trainer.precision",
            "32-true", "--device", "cpu", "--memory-budget-gb", "1000", "--max_batch_size", "4", "--start", "4"]
    assert main(["batch-sizes", *args]) == 0
    out = capsys.readouterr().out
    assert "2 buckets, device cpu" in out and "precision 32-true" in out
    assert searched == [(1.0, 10), (2.0, 20)]


def test_batch_sizes_gives_1d_buckets_the_most_task_tokens_of_their_cuts(run, searched, tmp_path, capsys):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({
        "model": {"class_path": "char_task_for_bucketing.CharTask"},
        "data": {"class_path": "speechkit.data.SpeechDataModule", "init_args": {"config": {
            "train_cuts": str(run["root"] / "cuts_de.jsonl.gz"), "text_field": "de",
            "bucket_duration_bins": [1.0, 2.0]}}}}))
    args = ["-c", str(tmp_path / "run.yaml"), "--device", "cpu", "--memory-budget-gb", "1000", "--max-batch-size",
            "2", "--start", "2"]
    assert main(["batch-sizes", *args]) == 0
    short = max(len(c.supervisions[0].custom["de"]) + 2 for c in run["cuts"] if c.duration <= 1.0)
    every = max(len(c.supervisions[0].custom["de"]) + 2 for c in run["cuts"])
    assert searched == [(1.0, short), (2.0, every)]


def test_batch_sizes_refuses_bins_where_training_would_not_read_them(tmp_path, capsys):
    """The former reader took the first ``bucket_duration_bins`` anywhere under ``data``; a key that `speechkit fit`
    rejects (here directly under init_args instead of init_args.config) is now the same one-line error."""
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump({
        "model": {"class_path": "lightning.pytorch.demos.boring_classes.BoringModel"},
        "data": {"class_path": "speechkit.data.SpeechDataModule",
                 "init_args": {"bucket_duration_bins": [[2.0, 10]]}}}))
    assert main(["batch-sizes", "-c", str(tmp_path / "wrong.yaml"), "--device", "cpu", "--memory-budget-gb", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Option 'bucket_duration_bins' is not accepted" in err
