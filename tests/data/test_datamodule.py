"""SpeechDataModule: sampling, batches, augmentation and bad input."""

from __future__ import annotations

import gzip
from collections import Counter

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet, Recording

from speechkit.data import DataConfig, SpeechDataModule, load_cuts
from speechkit.data.augment import snr_db
from speechkit.errors import SpeechkitError
from speechkit.testing import tone_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("tones")
    tone_corpus(out, "train", num_cuts=60, seed=1)
    tone_corpus(out, "dev", num_cuts=10, seed=2)
    return out


def config(corpus, **overrides) -> DataConfig:
    options = dict(
        train_cuts=str(corpus / "cuts_train.jsonl.gz"), dev_cuts=str(corpus / "cuts_dev.jsonl.gz"),
        input="fbank", max_duration=5.0, num_buckets=3, val_batch_size=4,
    )
    options.update(overrides)
    return DataConfig(**options)


def test_every_cut_once_per_epoch_and_duration_within_limit(corpus):
    dm = SpeechDataModule(config(corpus))
    seen = Counter()
    for batch in dm.train_dataloader():
        assert float(batch.durations.sum()) <= 5.0 + 1e-6
        assert batch.inputs.shape[0] == len(batch.cut_ids) == batch.input_lens.shape[0]
        assert int(batch.input_lens.max()) == batch.inputs.shape[1]
        seen.update(batch.cut_ids)
    expected = {cut.id for cut in CutSet.from_file(corpus / "cuts_train.jsonl.gz")}
    assert set(seen) == expected and set(seen.values()) == {1}


def test_eval_batches_are_static_and_typed(corpus):
    dm = SpeechDataModule(config(corpus, input="whisper_fbank"))
    batches = list(dm.val_dataloader())
    assert [len(b) for b in batches] == [4, 4, 2]
    batch = batches[0]
    assert batch.inputs.shape[-1] == 80 and batch.texts[0].startswith("tone")
    assert batch.custom[0]["label"] in (0, 1)
    # Whisper log-mel padding is what silence gives: the row's maximum minus 2.
    short = int(batch.input_lens.argmin())
    length = int(batch.input_lens[short])
    if length < batch.inputs.shape[1]:
        real_max = float(batch.inputs[short, :length].max())
        assert float(batch.inputs[short, length:].max()) == pytest.approx(real_max - 2.0, abs=1e-5)


def test_tokenizer_from_task_gives_token_ids(corpus):
    dm = SpeechDataModule(config(corpus))
    dm.tokenizer = lambda text: [ord(ch) for ch in text]
    batch = next(iter(dm.val_dataloader()))
    assert batch.tokens.shape == (4, 5) and batch.token_lens.tolist() == [5, 5, 5, 5]
    assert "".join(map(chr, batch.tokens[0].tolist())) == batch.texts[0]


def test_resample_on_load(corpus):
    dm = SpeechDataModule(config(corpus, input="waveform", sampling_rate=8000))
    batch = next(iter(dm.val_dataloader()))
    assert int(batch.input_lens[0]) == pytest.approx(float(batch.durations[0]) * 8000, abs=2)


def test_noise_mixing_hits_target_snr(corpus, tmp_path):
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "noise.wav", rng.standard_normal(16000 * 3).astype(np.float32) * 0.1, 16000)
    noise = CutSet.from_cuts([Recording.from_file(tmp_path / "noise.wav").to_cut()])
    noise.to_file(tmp_path / "noise_cuts.jsonl.gz")
    cfg = config(corpus, noise_cuts=str(tmp_path / "noise_cuts.jsonl.gz"), noise_snr=(7.0, 7.0), noise_prob=1.0)
    augment = SpeechDataModule(cfg).train_augment()
    cuts = CutSet.from_file(corpus / "cuts_dev.jsonl.gz").subset(first=3).to_eager()
    for mixed in augment(cuts, epoch=0, index=0):
        speech = mixed.tracks[0].cut.load_audio()[0]
        noise_track = mixed.tracks[1]
        noise_audio = noise_track.cut.load_audio()[0][: speech.shape[0]]
        gain_db = noise_track.snr
        assert gain_db == 7.0
        # The mixed-in noise, scaled as Lhotse scales it, sits at the requested SNR within 0.1 dB.
        mixed_audio = mixed.load_audio()[0]
        residual = mixed_audio[: speech.shape[0]] - speech
        assert abs(snr_db(speech, residual) - 7.0) < 0.1
        assert noise_audio.shape == speech.shape


def test_bad_manifests_name_the_file(corpus, tmp_path):
    with pytest.raises(SpeechkitError, match="does not exist"):
        load_cuts(str(tmp_path / "missing.jsonl.gz"), "train_cuts")
    bad = tmp_path / "bad.jsonl.gz"
    with gzip.open(bad, "wt") as f:
        f.write("this is not json\n")
    with pytest.raises(SpeechkitError, match="bad.jsonl.gz"):
        load_cuts(str(bad), "train_cuts")
    with pytest.raises(SpeechkitError, match="not cuts"):
        load_cuts(str(corpus / "recordings_train.jsonl.gz"), "train_cuts")


def test_missing_audio_file_names_cut_and_file(corpus, tmp_path):
    cuts = CutSet.from_file(corpus / "cuts_dev.jsonl.gz").to_eager()
    first = next(iter(cuts))
    first.recording.sources[0].source = str(tmp_path / "gone.wav")
    cuts.to_file(tmp_path / "cuts_dev.jsonl.gz")
    dm = SpeechDataModule(config(corpus, dev_cuts=str(tmp_path / "cuts_dev.jsonl.gz")))
    with pytest.raises(SpeechkitError, match=rf"{first.id}.*gone.wav"):
        next(iter(dm.val_dataloader()))


def test_bad_config_values():
    with pytest.raises(SpeechkitError, match="16000"):
        DataConfig(input="whisper_fbank", sampling_rate=8000)
    with pytest.raises(SpeechkitError, match="bucket_duration_bins"):
        DataConfig(bucket_batch_size=[4, 2])
    with pytest.raises(SpeechkitError, match="noise_snr"):
        DataConfig(noise_snr=(20.0, 10.0))


def test_one_bucket_is_a_clear_error(corpus):
    dm = SpeechDataModule(config(corpus, num_buckets=1))
    with pytest.raises(SpeechkitError, match="num_buckets=1: Lhotse's bucketing sampler needs at least 2 buckets"):
        dm.train_dataloader()


def test_2d_bins_with_per_bucket_batch_sizes(corpus):
    """2-D (duration x tokens) buckets with fixed batch sizes; token counts come from the task's tokenizer."""
    bins = [[0.8, 6], [1.3, 6]]
    dm = SpeechDataModule(config(corpus, bucket_duration_bins=bins, bucket_batch_size=[4, 2]))
    dm.tokenizer = lambda text: [ord(ch) for ch in text] + [0]  # "toneK" -> 6 tokens
    seen = Counter()
    for batch in dm.train_dataloader():
        longest = float(batch.durations.max())
        assert len(batch) <= (4 if longest <= 0.8 else 2)
        seen.update(batch.cut_ids)
    assert sum(seen.values()) == 60 and set(seen.values()) == {1}
    assert dm.train_sampler.bucket_filter.num_dropped == 0


# --------------------------------------------------------------------- checks before the first step (issue 11)
class Probe(L.LightningModule):
    """A task that states the longest cut and the language it takes, and counts the batches it sees."""

    def __init__(self, max_input_seconds: float | None = None, expected_language: str | None = None) -> None:
        super().__init__()
        self.max_input_seconds = max_input_seconds
        self.expected_language = expected_language
        self.layer = torch.nn.Linear(80, 1)
        self.steps = 0
        self.seen: list[str] = []

    def training_step(self, batch, batch_idx):
        self.steps += 1
        self.seen += batch.cut_ids
        return self.layer(batch.inputs).mean()

    def validation_step(self, batch, batch_idx):
        self.seen += batch.cut_ids

    def test_step(self, batch, batch_idx):
        self.seen += batch.cut_ids

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def trainer(tmp_path, **overrides) -> L.Trainer:
    """Validation after step 2 of 3, as a shipped config validates after step 75."""
    options = dict(max_steps=3, val_check_interval=2, check_val_every_n_epoch=None, num_sanity_val_steps=0,
                   limit_val_batches=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, use_distributed_sampler=False, default_root_dir=tmp_path)
    options.update(overrides)
    return L.Trainer(**options)


def with_missing_audio(corpus, tmp_path, split: str = "dev"):
    cuts = CutSet.from_file(corpus / f"cuts_{split}.jsonl.gz").to_eager()
    first = next(iter(cuts))
    first.recording.sources[0].source = str(tmp_path / "gone.wav")
    cuts.to_file(tmp_path / f"cuts_{split}.jsonl.gz")
    return str(tmp_path / f"cuts_{split}.jsonl.gz"), first.id


def test_missing_dev_audio_fails_before_the_first_step(corpus, tmp_path):
    """Issue 11, defect 6: a missing dev file failed at the first validation, after training, with no checkpoint."""
    dev, cut_id = with_missing_audio(corpus, tmp_path)
    probe = Probe()
    gone = tmp_path / "gone.wav"
    with pytest.raises(SpeechkitError, match=rf"^dev_cuts: 1 of 10 cuts have audio that does not open .*"
                                             rf"cut '{cut_id}' \({dev} line 1\): {gone} does not exist"):
        trainer(tmp_path).fit(probe, SpeechDataModule(config(corpus, dev_cuts=dev)))
    assert probe.steps == 0


def test_missing_test_audio_fails_before_fit_and_before_test(corpus, tmp_path):
    test, cut_id = with_missing_audio(corpus, tmp_path)
    dm = SpeechDataModule(config(corpus, test_cuts=test))
    probe = Probe()
    with pytest.raises(SpeechkitError, match=rf"^test_cuts: 1 of 10 .*'{cut_id}'"):
        trainer(tmp_path).fit(probe, dm)
    with pytest.raises(SpeechkitError, match=rf"^test_cuts: 1 of 10 .*'{cut_id}'"):
        trainer(tmp_path).test(probe, dm)
    assert probe.steps == 0 and probe.seen == []


def test_validating_without_dev_cuts_fails_before_the_first_step(corpus, tmp_path):
    probe = Probe()
    with pytest.raises(SpeechkitError, match="no dev_cuts manifest, but the trainer validates"):
        trainer(tmp_path).fit(probe, SpeechDataModule(config(corpus, dev_cuts=None)))
    assert probe.steps == 0
    trainer(tmp_path, limit_val_batches=0).fit(Probe(), SpeechDataModule(config(corpus, dev_cuts=None)))


def long_cuts(corpus, limit: float) -> dict[str, float]:
    cuts = CutSet.from_file(corpus / "cuts_train.jsonl.gz")
    return {cut.id: cut.duration for cut in cuts if cut.duration > limit}


def test_a_training_cut_over_the_limit_fails_before_the_first_step(corpus, tmp_path):
    """Issue 11, defect 6: a cut over Whisper's 30 s failed at the step that reached it."""
    too_long = long_cuts(corpus, 1.0)
    first = next(iter(too_long))
    probe = Probe(max_input_seconds=1.0)
    with pytest.raises(SpeechkitError, match=rf"^train_cuts: {len(too_long)} of 60 cuts are longer than the 1.00 s "
                                             rf"the model takes: cut '{first}' .*: {too_long[first]:.2f} s > 1.00 s"):
        trainer(tmp_path, limit_val_batches=0).fit(probe, SpeechDataModule(config(corpus, dev_cuts=None)))
    assert probe.steps == 0


def test_drop_too_long_leaves_out_and_reports_the_long_training_cuts(corpus, tmp_path, caplog):
    too_long = long_cuts(corpus, 1.0)
    assert 0 < len(too_long) < 60
    probe = Probe(max_input_seconds=1.0)
    dm = SpeechDataModule(config(corpus, dev_cuts=None, drop_too_long=True))
    trainer(tmp_path, max_steps=-1, max_epochs=1, limit_val_batches=0).fit(probe, dm)
    every = {cut.id for cut in CutSet.from_file(corpus / "cuts_train.jsonl.gz")}
    assert sorted(probe.seen) == sorted(every - set(too_long))
    report = [r.getMessage() for r in caplog.records if "drop_too_long" in r.getMessage()]
    assert len(report) == 1 and f"leaves out {len(too_long)} of 60 cuts longer than 1.00 s" in report[0]
    assert all(repr(cut_id) in report[0] for cut_id in too_long)


def test_speed_perturbation_lowers_the_training_limit(corpus):
    dm = SpeechDataModule(config(corpus, speed_perturb=[0.9, 1.1]))
    assert dm.train_limit(30.0) == pytest.approx(27.0) and dm.train_limit(None) is None
    assert SpeechDataModule(config(corpus, speed_perturb=[0.9], speed_perturb_prob=0.0)).train_limit(30.0) == 30.0
    longest = max(cut.duration for cut in CutSet.from_file(corpus / "cuts_train.jsonl.gz"))
    with pytest.raises(SpeechkitError, match=r"speed_perturb 0.9 stretches a cut to 1.11x"):
        dm.check_data("fit", max_input_seconds=longest / 0.95, validates=False)


def test_an_evaluation_cut_over_the_limit_is_never_dropped(corpus):
    dm = SpeechDataModule(config(corpus, drop_too_long=True))
    with pytest.raises(SpeechkitError, match=r"^dev_cuts: .* longer than the 1.00 s .*never filtered"):
        dm.check_data("validate", max_input_seconds=1.0)


def test_a_manifest_in_another_language_fails_before_the_first_step(corpus, tmp_path, caplog):
    """Issue 11, defect 9: German manifests trained an English model with only the normalizer changing."""
    probe = Probe(expected_language="de")
    train = corpus / "cuts_train.jsonl.gz"
    with pytest.raises(SpeechkitError, match=rf"^train_cuts: 60 of 60 cuts are not in the configured language 'de': "
                                             rf"cut 'train_0000' \({train} line 1\): supervision language en"):
        trainer(tmp_path).fit(probe, SpeechDataModule(config(corpus)))
    assert probe.steps == 0
    probe = Probe(expected_language="<|de|>")
    trainer(tmp_path, max_steps=1).fit(probe, SpeechDataModule(config(corpus, allow_language_mismatch=True)))
    assert probe.steps == 1
    assert any("allow_language_mismatch: 60 of 60 cuts are not in" in r.getMessage() for r in caplog.records)
    trainer(tmp_path, max_steps=1).fit(Probe(expected_language="English"), SpeechDataModule(config(corpus)))


@pytest.mark.parametrize("damage", ["bad line", "truncated gzip"])
def test_a_malformed_training_manifest_fails_before_the_first_step(corpus, tmp_path, damage):
    """Issue 11, defect 11: a bad line after the first, or a truncated file, was a JSONDecodeError / EOFError."""
    bad = tmp_path / "cuts_train.jsonl.gz"
    if damage == "bad line":
        with gzip.open(corpus / "cuts_train.jsonl.gz", "rt") as f:
            rows = f.readlines()
        rows[4] = "{not json\n"
        with gzip.open(bad, "wt") as f:
            f.writelines(rows)
        expected = rf"^train_cuts: {bad} line 5 is not a Lhotse cut"
    else:
        data = (corpus / "cuts_train.jsonl.gz").read_bytes()
        bad.write_bytes(data[: len(data) * 3 // 4])
        expected = rf"^train_cuts: {bad} is truncated or corrupt after line \d+"
    probe = Probe()
    with pytest.raises(SpeechkitError, match=expected):
        trainer(tmp_path).fit(probe, SpeechDataModule(config(corpus, train_cuts=str(bad))))
    assert probe.steps == 0
