"""Captioned corpora: scenes_synth (FSDD digits, synthesized speech, tones and noises at known levels and times,
five templated captions that say what is in the audio), and the Clotho / AudioCaps importers on folders laid out as
their downloads are; one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechkit.data.captions import cut_captions
from speechkit.data.corpora import CORPORA, prepare
from speechkit.data.corpora.scenes_synth import (
    EVENT_DBFS,
    NOISE_DBFS,
    SAMPLE_RATE,
    Background,
    Event,
    active_rms,
    colored_noise,
    scene_captions,
)
from speechkit.errors import SpeechkitError
from speechkit.text.words import read_vocabulary


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, data_dir) -> Path:
    out = tmp_path_factory.mktemp("scenes") / "scenes"
    prepare("scenes_synth", str(data_dir / "fsdd"), str(out), num_train=24, num_dev=4, num_test=6, seed=3)
    return out


def db(value: float) -> float:
    return 20 * np.log10(value)


def test_scenes_have_five_captions_naming_what_was_placed_where(scenes):
    from lhotse import CutSet

    cuts = CutSet.from_file(scenes / "cuts_train.jsonl.gz").to_eager()
    assert len(cuts) == 24 and {"scenes_synth", "clotho", "audiocaps"} <= set(CORPORA)
    for cut in cuts:
        captions = cut_captions(cut)
        scene = cut.supervisions[0].custom["scene"]
        assert len(captions) == 5 and len(set(captions)) >= 4 and cut.duration == pytest.approx(4.0)
        for event in scene["events"]:
            if event["kind"] == "digit":
                word = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"][event["value"]]
            else:
                word = event["value"]  # man / woman, high / low, rising / falling
            assert word in captions[0].split(), (captions[0], event)
        background = scene["background"]
        if background["colour"]:
            assert background["level"] in captions[0] and background["colour"] in captions[0]
        else:
            assert "silence" in captions[0]


def test_scene_audio_has_its_events_at_the_stated_times_and_levels(scenes):
    from lhotse import CutSet

    for cut in CutSet.from_file(scenes / "cuts_train.jsonl.gz"):
        audio = cut.load_audio()[0].astype(np.float64)
        scene = cut.supervisions[0].custom["scene"]
        background = scene["background"]
        inside = np.zeros(len(audio), dtype=bool)
        for event in scene["events"]:
            start, stop = int(event["onset"] * SAMPLE_RATE), int((event["onset"] + event["duration"]) * SAMPLE_RATE)
            assert 0 <= start < stop <= len(audio)
            # exact up to 16-bit rounding without noise or under quiet noise (-24 dB); loud noise (-6 dB) adds ~1 dB
            tolerance = 2.5 if background["level"] == "loud" else 0.3
            assert db(active_rms(audio[start:stop])) == pytest.approx(EVENT_DBFS, abs=tolerance)
            inside[start:stop] = True
        outside = audio[~inside]
        if background["colour"] is None:
            assert np.abs(outside).max() < 1e-3  # silence between events (16-bit rounding)
        else:
            assert db(np.sqrt(np.mean(outside**2))) == pytest.approx(NOISE_DBFS[background["level"]], abs=1.5)


def test_splits_use_disjoint_fsdd_takes_and_the_vocabulary_covers_training(scenes):
    from lhotse import CutSet

    sources = {}
    for split in ("train", "dev", "test"):
        cuts = CutSet.from_file(scenes / f"cuts_{split}.jsonl.gz")
        sources[split] = {e["source"] for c in cuts for e in c.supervisions[0].custom["scene"]["events"]
                          if e["kind"] == "digit"}
        for source in sources[split]:
            take = int(source.split("_")[2])
            assert {"test": take < 5, "dev": 5 <= take < 10, "train": take >= 10}[split]
    vocabulary = set(read_vocabulary(scenes / "vocabulary.txt"))
    train = CutSet.from_file(scenes / "cuts_train.jsonl.gz")
    assert {w for c in train for cap in cut_captions(c) for w in cap.split()} <= vocabulary
    assert json.loads((scenes / "prepare.json").read_text())["splits"] == {"train": 24, "dev": 4, "test": 6}


def test_captions_are_templated_paraphrases_in_time_order():
    events = [Event("beep", "high", "end"), Event("digit", 7, "start")]
    captions = scene_captions(events, Background("pink", "loud", -27.0))
    assert captions[0] == "someone says seven at the start then a high beep at the end over loud pink noise"
    assert captions[1].startswith("with strong rushing noise behind a voice says seven")
    quiet = scene_captions([Event("sweep", "falling", "middle")], Background(None))
    assert quiet[0] == "a falling tone in the middle in silence"


def test_colored_noise_has_unit_rms_and_its_spectral_slope():
    rng = np.random.default_rng(0)
    for colour, slope in (("white", 0.0), ("pink", -1.0), ("brown", -2.0)):
        noise = colored_noise(colour, 2**16, rng)
        assert np.sqrt(np.mean(noise**2)) == pytest.approx(1.0)
        power = np.abs(np.fft.rfft(noise)) ** 2
        freqs = np.fft.rfftfreq(len(noise))
        band = (freqs > 0.001) & (freqs < 0.3)
        fitted = np.polyfit(np.log(freqs[band]), np.log(power[band]), 1)[0]
        assert fitted == pytest.approx(slope, abs=0.15)


def write_wav(path: Path, seconds: float = 0.5) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(path, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)


def clotho_folder(root: Path) -> Path:
    for subset, count in (("development", 3), ("validation", 2), ("evaluation", 2)):
        rows = []
        for i in range(count):
            name = f"{subset} clip, {i}.wav"
            write_wav(root / "clotho_audio_files" / subset / name)
            rows.append([name] + [f"{subset} sound {i} caption {k}" for k in range(1, 6)])
        with open(root / "clotho_csv_files" / f"clotho_captions_{subset}.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["file_name"] + [f"caption_{k}" for k in range(1, 6)])
            writer.writerows(rows)
    return root


def test_clotho_gives_five_captions_per_clip(tmp_path):
    (tmp_path / "clotho" / "clotho_csv_files").mkdir(parents=True)
    cuts = prepare("clotho", str(clotho_folder(tmp_path / "clotho")), str(tmp_path / "out"))
    assert {k: len(v) for k, v in cuts.items()} == {"train": 3, "dev": 2, "test": 2}
    cut = next(iter(cuts["dev"]))
    assert cut.id == "validation clip, 0"
    assert cut_captions(cut) == [f"validation sound 0 caption {k}" for k in range(1, 6)]


def test_clotho_row_without_audio_or_caption_is_an_error(tmp_path):
    root = tmp_path / "clotho"
    (root / "clotho_csv_files").mkdir(parents=True)
    clotho_folder(root)
    (root / "clotho_audio_files" / "evaluation" / "evaluation clip, 1.wav").unlink()
    with pytest.raises(SpeechkitError, match=r"lists 'evaluation clip, 1.wav' but .* does not exist"):
        prepare("clotho", str(root), str(tmp_path / "out"))
    path = root / "clotho_csv_files" / "clotho_captions_validation.csv"
    path.write_text("file_name,caption_1,caption_2,caption_3,caption_4,caption_5\nx.wav,a,,c,d,e\n")
    with pytest.raises(SpeechkitError, match=r"clotho_captions_validation.csv:2: empty file_name or caption"):
        prepare("clotho", str(root), str(tmp_path / "out"))


def audiocaps_folder(root: Path, missing: str | None = None) -> Path:
    videos = {"train": ["AAAAAAAAAA1", "BBBBB_BBBB2"], "val": ["CCCCCCCCCC3"], "test": ["DDDD-DDDDD4", "EEEEEEEEEE5"]}
    for split, ids in videos.items():
        rows = []
        for i, video in enumerate(ids):
            if video != missing:
                write_wav(root / "audio" / split / f"{video}_30000_40000.flac".replace(".flac", ".wav"))
            for k in range(1 if split == "train" else 5):
                rows.append([f"{split}{i}{k}", video, "30", f"{split} sound {i} caption {k}"])
        root.mkdir(parents=True, exist_ok=True)
        with open(root / f"{split}.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["audiocap_id", "youtube_id", "start_time", "caption"])
            writer.writerows(rows)
    return root


def test_audiocaps_groups_captions_by_video(tmp_path):
    cuts = prepare("audiocaps", str(audiocaps_folder(tmp_path / "ac")), str(tmp_path / "out"))
    assert {k: len(v) for k, v in cuts.items()} == {"train": 2, "dev": 1, "test": 2}
    test_cut = next(iter(cuts["test"]))
    assert test_cut.id == "DDDD-DDDDD4_30000_40000"
    assert cut_captions(test_cut) == [f"test sound 0 caption {k}" for k in range(5)]
    assert test_cut.supervisions[0].custom["audiocap_ids"] == [f"test0{k}" for k in range(5)]
    assert len(cut_captions(next(iter(cuts["train"])))) == 1


def test_audiocaps_missing_audio_is_an_error_or_left_out_and_logged(tmp_path, caplog):
    root = audiocaps_folder(tmp_path / "ac", missing="EEEEEEEEEE5")
    with pytest.raises(SpeechkitError, match=r"1 of 2 test audios have no file .*first: \['EEEEEEEEEE5'\]"):
        prepare("audiocaps", str(root), str(tmp_path / "out"))
    cuts = prepare("audiocaps", str(root), str(tmp_path / "out2"), skip_missing=True)
    assert len(cuts["test"]) == 1 and "left out 1 of 2 audios without a file: EEEEEEEEEE5" in caplog.text
