"""The LRS2/LRS3 importer on tiny mp4 files written here with PyAV (H.264 video + AAC audio)."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from speechkit.data.config import DataConfig
from speechkit.data.corpora import CORPORA
from speechkit.data.corpora.lrs3 import MOUTH_BOX, prepare, read_transcript
from speechkit.data.dataset import SpeechDataset
from speechkit.errors import SpeechkitError

SIZE = 224


def mouth_level(frame: int) -> int:
    return 30 + 7 * frame  # the grey of the mouth box in frame i: frames stay in order and at their time


def write_mp4(path: Path, frames: int, seconds: float, audio_rate: int = 44100) -> Path:
    """A 25 fps 224 x 224 face-like video (grey frame, mouth box at ``mouth_level(i)``) with a stereo 440 Hz tone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    left, top, right, bottom = (int(f * SIZE) for f in MOUTH_BOX)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width = video.height = SIZE
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=audio_rate, layout="stereo")
        for i in range(frames):
            image = np.full((SIZE, SIZE, 3), 200, np.uint8)
            image[top - 2 : bottom + 2, left - 2 : right + 2] = mouth_level(i)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        container.mux(video.encode())
        t = np.arange(int(seconds * audio_rate)) / audio_rate
        tone = np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32)
        for start in range(0, tone.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(tone[:, start : start + 1024].copy(), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = audio_rate, start
            for packet in audio.encode(frame):
                container.mux(packet)
        container.mux(audio.encode())
    return path


def write_utterance(root: Path, relative: str, text: str, frames: int = 30, seconds: float = 1.2) -> Path:
    mp4 = write_mp4(root / f"{relative}.mp4", frames, seconds)
    mp4.with_suffix(".txt").write_text(f"Text:  {text}\nConf:  4\n", encoding="utf-8")
    return mp4


@pytest.fixture(scope="module")
def lrs3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lrs3") / "LRS3"
    write_utterance(root, "trainval/spk_A-1/00001", "HELLO WORLD")
    write_utterance(root, "test/spkB/00002", "GOOD  MORNING", frames=26, seconds=1.04)
    return root


def test_import_gives_16k_audio_and_mouth_crops_at_25fps(lrs3: Path, tmp_path: Path) -> None:
    assert "lrs3" in CORPORA
    cuts = prepare(lrs3, tmp_path / "out", frame_size=32)
    (cut,) = cuts["trainval"]
    assert cut.id == "spk_A-1_00001" and cut.supervisions[0].text == "HELLO WORLD"
    assert cut.supervisions[0].speaker == "spk_A-1" and cut.sampling_rate == 16000
    assert abs(cut.duration - 1.2) < 0.07  # AAC pads its last frame
    audio = cut.load_audio()[0]
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16000 / audio.size - 440) < 5
    mouth = cut.load_mouth()
    assert mouth.dtype == np.uint8 and mouth.shape == (round(cut.duration / 0.04), 32, 32)
    levels = mouth[:30, 4:-4, 4:-4].reshape(min(30, len(mouth)), -1).mean(axis=1)
    assert np.allclose(levels, [mouth_level(i) for i in range(len(levels))], atol=4)  # the box, frame by frame
    assert cuts["test"][0].supervisions[0].text == "GOOD MORNING"
    stamp = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert stamp["splits"] == {"trainval": 1, "test": 1}
    batch = SpeechDataset(DataConfig(input="fbank", video_field="mouth"))[cuts["trainval"] + cuts["test"]]
    assert batch.video.shape[2:] == (32, 32)
    assert torch.equal(batch.video_lens, torch.round(batch.durations / 0.04).long())


def test_bad_files_are_named_or_left_out(lrs3: Path, tmp_path: Path) -> None:
    root = tmp_path / "LRS3"
    write_utterance(root, "trainval/spkC/00003", "FINE")
    write_mp4(root / "trainval/spkC/00004.mp4", 30, 1.2)  # no transcript
    with pytest.raises(SpeechkitError, match=r"transcript .*00004\.txt is missing"):
        prepare(root, tmp_path / "out", subsets=["trainval"], frame_size=32)
    cuts = prepare(root, tmp_path / "out", subsets=["trainval"], frame_size=32, skip_bad=True)
    assert [c.id for c in cuts["trainval"]] == ["spkC_00003"]
    assert "00004" in (tmp_path / "out" / "rejected.jsonl").read_text()
    short = tmp_path / "short"
    write_utterance(short, "test/spkD/00005", "TOO SHORT", frames=10, seconds=1.2)
    with pytest.raises(SpeechkitError, match=r"00005\.mp4: its video lasts 0\.400 s but its audio 1\.2"):
        prepare(short, tmp_path / "out2", subsets=["test"], frame_size=32)
    with pytest.raises(SpeechkitError, match=r"no subset folder\(s\) \['pretrain'\]"):
        prepare(lrs3, tmp_path / "out3", subsets=["pretrain"])
    (root / "bad.txt").write_text("Conf: 3\n")
    with pytest.raises(SpeechkitError, match="is not 'Text:  WORDS'"):
        read_transcript(root / "bad.txt")
