"""The synthetic audio-visual corpus: prepare -> manifests -> SpeechDataset batches with aligned mouth video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lhotse import CutSet
from lhotse.array import TemporalArray
from lhotse.utils import fastcopy

from speechkit import cli
from speechkit.data.config import DataConfig
from speechkit.data.corpora import CORPORA, manifest_path
from speechkit.data.corpora.synthetic_av import MOUTH_FIELD, draw_digit_strings, prepare
from speechkit.data.datamodule import SpeechDataModule
from speechkit.data.dataset import SpeechDataset
from speechkit.data.mouth import decode_visemes, draw_mouth_styles, frame_visemes, num_video_frames
from speechkit.errors import SpeechkitError

OPTIONS = dict(num_utterances=24, speakers=4, test_speakers=1, dev_fraction=0.15, test_fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic_av") / "corpus"
    assert cli.main(["prepare", "synthetic_av", "digits", str(out), "--num_utterances", "24", "--speakers", "4",
                     "--test_speakers", "1", "--dev_fraction", "0.15", "--test_fraction", "0.2"]) == 0
    return out


def _cuts(corpus: Path, split: str) -> CutSet:
    return CutSet.from_file(manifest_path(corpus, "cuts", split)).to_eager()


def test_every_cut_carries_a_mouth_video_as_long_as_its_audio(corpus: Path) -> None:
    assert "synthetic_av" in CORPORA
    assert (corpus / "mouth_preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for split in ("train", "dev", "test"):
        for cut in _cuts(corpus, split):
            manifest = cut.custom[MOUTH_FIELD]
            assert isinstance(manifest, TemporalArray) and manifest.frame_shift == 0.04
            frames = cut.load_mouth()
            assert frames.dtype == np.uint8 and frames.shape == (num_video_frames(cut.duration), 32, 32)
            assert abs(manifest.duration - cut.duration) <= 0.02
            assert Path(manifest.array.storage_path).is_absolute()
            assert set(cut.supervisions[0].text.split()) <= set("zero one two three four five six seven eight nine"
                                                                .split())


def test_test_split_is_speaker_and_text_disjoint(corpus: Path) -> None:
    speakers = {s: {c.supervisions[0].speaker for c in _cuts(corpus, s)} for s in ("train", "dev", "test")}
    texts = {s: {c.supervisions[0].text for c in _cuts(corpus, s)} for s in ("train", "dev", "test")}
    assert len(speakers["test"]) == 1 and not speakers["test"] & (speakers["train"] | speakers["dev"])
    assert len(speakers["train"]) == 3
    assert not texts["test"] & texts["train"] and not texts["dev"] & texts["train"]


def test_same_options_reuse_the_cache_and_give_identical_manifests(corpus: Path, tmp_path: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in (corpus / "mouth").iterdir()}
    prepare("digits", corpus, **OPTIONS)  # the same command again: every file cached
    assert {p.name: p.stat().st_mtime_ns for p in (corpus / "mouth").iterdir()} == before
    other = prepare("digits", tmp_path / "again", **OPTIONS)["test"]
    first = _cuts(corpus, "test")
    assert [c.id for c in first] == [c.id for c in other]
    assert all(np.array_equal(a.load_mouth(), b.load_mouth()) for a, b in zip(first, other))


def test_batches_keep_video_aligned_with_audio(corpus: Path) -> None:
    cuts = _cuts(corpus, "test")
    batch = SpeechDataset(DataConfig(input="waveform", video_field=MOUTH_FIELD))[cuts]
    assert batch.video.shape[:2] == (len(cuts), int(batch.video_lens.max())) and batch.video.dtype == torch.float32
    assert 0.0 <= float(batch.video.min()) and float(batch.video.max()) <= 1.0
    expected = torch.tensor([num_video_frames(float(d)) for d in batch.durations])
    assert torch.equal(batch.video_lens, expected)
    assert torch.allclose(batch.video_lens * 0.04, batch.input_lens / 16000, atol=0.021)
    by_id = {c.id: c for c in cuts}
    mouth = draw_mouth_styles(4, seed=0)[3]  # the test speaker is the last one
    for row, cut_id in enumerate(batch.cut_ids):
        length = int(batch.video_lens[row])
        frames = (batch.video[row, :length] * 255).round().to(torch.uint8).numpy()
        assert np.array_equal(frames, by_id[cut_id].load_mouth())
        assert float(batch.video[row, length:].abs().sum()) == 0.0  # zero padding
        # the mouth in the batch says what the audio says: visemes decoded from frames match the phoneme timings
        timings = json.loads(Path(by_id[cut_id].recording.sources[0].source).with_suffix(".phonemes.json").read_text())
        decoded = decode_visemes(frames, mouth)
        assert (decoded == frame_visemes([tuple(p) for p in timings], length)).mean() > 0.7, cut_id


def test_datamodule_buckets_truncates_and_mixes_cuts_with_video(corpus: Path) -> None:
    config = DataConfig(train_cuts=str(manifest_path(corpus, "cuts", "train")), input="waveform", max_duration=4.0,
                        num_buckets=2, video_field=MOUTH_FIELD, num_cuts_for_bins_estimate=100)
    module = SpeechDataModule(config)
    module.check_data("fit", validates=False)
    batches = list(module.train_dataloader())
    assert sum(len(b) for b in batches) == len(_cuts(corpus, "train"))
    for batch in batches:
        assert batch.video is not None and torch.equal(batch.video_lens, torch.tensor(
            [num_video_frames(float(d)) for d in batch.durations]))
    # noise mixing (Lhotse CutMix: a MixedCut whose speech track holds the field) keeps the frames
    noise = corpus.parent / "noise.jsonl.gz"
    CutSet.from_cuts(fastcopy(c, id=f"noise-{c.id}", custom=None) for c in _cuts(corpus, "dev")).to_file(noise)
    module = SpeechDataModule(DataConfig(**{**config.__dict__, "noise_cuts": str(noise), "noise_prob": 1.0}))
    for batch in module.train_dataloader():
        assert torch.equal(batch.video_lens, torch.tensor([num_video_frames(float(d)) for d in batch.durations]))
    # 2-D (duration x tokens) buckets with fixed batch sizes carry the field too
    module = SpeechDataModule(DataConfig(**{**config.__dict__, "bucket_duration_bins": [[1.0, 20], [3.0, 40]],
                                            "bucket_batch_size": [4, 2]}))
    module.tokenizer = lambda text: list(text.encode())
    assert sum(len(b) for b in module.train_dataloader()) > 0
    cut = _cuts(corpus, "train")[0]
    part = cut.truncate(offset=0.2, duration=0.4)
    assert np.array_equal(part.load_mouth(), cut.load_mouth()[5:15])
    padded = cut.pad(duration=cut.duration + 0.4)
    noisy = cut.mix(fastcopy(cut, id="noise", custom=None), snr=10)
    batch = SpeechDataset(config)[CutSet.from_cuts([padded, noisy])]
    assert batch.video_lens.tolist() == [num_video_frames(cut.duration) + 10, num_video_frames(cut.duration)]


def test_bad_video_input_is_a_clear_error(corpus: Path) -> None:
    cut = _cuts(corpus, "train")[0]
    dataset = SpeechDataset(DataConfig(input="waveform", video_field=MOUTH_FIELD))
    with pytest.raises(SpeechkitError, match=rf"cut '{cut.id}' has no video field 'lips'"):
        SpeechDataset(DataConfig(input="waveform", video_field="lips"))[CutSet.from_cuts([cut])]
    manifest = cut.custom[MOUTH_FIELD]
    short = fastcopy(manifest, array=fastcopy(manifest.array, shape=[manifest.num_frames - 3, 32, 32]))
    bad = fastcopy(cut, custom={MOUTH_FIELD: short})
    with pytest.raises(SpeechkitError, match=rf"cut '{cut.id}': video 'mouth' lasts [0-9.]+ s but its audio "
                                             rf"{cut.duration:.3f} s"):
        dataset[CutSet.from_cuts([bad])]
    manifest_file = corpus.parent / "one_bad.jsonl.gz"
    CutSet.from_cuts([_cuts(corpus, "train")[1], bad]).to_file(manifest_file)
    module = SpeechDataModule(DataConfig(train_cuts=str(manifest_file), video_field=MOUTH_FIELD))
    with pytest.raises(SpeechkitError, match=rf"train_cuts: {manifest_file}, line 2: cut '{cut.id}': video 'mouth'"):
        module.check_data("fit", validates=False)  # before the first step, from the manifest alone
    with pytest.raises(SpeechkitError, match="speed_perturb .* stretches the audio but not the video"):
        DataConfig(video_field=MOUTH_FIELD, speed_perturb=[0.9, 1.1])
    with pytest.raises(SpeechkitError, match="test_speakers < speakers"):
        prepare("digits", corpus.parent / "bad", num_utterances=10, speakers=2, test_speakers=2)
    with pytest.raises(SpeechkitError, match="only 100 distinct strings"):
        draw_digit_strings(101, seed=0, min_digits=2, max_digits=2)
