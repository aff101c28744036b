"""SpeechDataModule: sampling, batches, augmentation and bad input."""

from __future__ import annotations

import gzip
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
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
