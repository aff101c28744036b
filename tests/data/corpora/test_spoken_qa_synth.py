"""``spoken_qa_synth``: spoken SLURP prompts with spoken answers; test prompts clean, noisy at the SNR, pitch-shifted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechkit.data.augment import mix_at_snr, shift_pitch, snr_db
from speechkit.data.config import DataConfig
from speechkit.data.corpora import CORPORA, spoken_qa_synth
from speechkit.data.dataset import SpeechDataset
from speechkit.data.spoken_answers import SpokenAnswerDataset
from speechkit.errors import SpeechkitError


def test_mix_at_snr_and_shift_pitch_by_numpy():
    rng = np.random.default_rng(0)
    speech, noise = 0.1 * rng.standard_normal(16000), rng.standard_normal(16000)
    mixed = mix_at_snr(speech, noise, 5.0)
    assert snr_db(speech, mixed - speech) == pytest.approx(5.0, abs=1e-3)
    loud, hum = np.full(100, 0.9), rng.standard_normal(100)
    unscaled = loud + hum * 0.9 / np.sqrt(np.mean(hum**2))  # 0 dB
    assert np.abs(unscaled).max() > 1  # so the mix is scaled down as a whole: the SNR is kept
    assert mix_at_snr(loud, hum, 0.0) == pytest.approx(unscaled / np.abs(unscaled).max(), abs=1e-6)
    with pytest.raises(SpeechkitError, match=r"one shape \(T,\)"):
        mix_at_snr(speech, noise[:10], 5.0)
    t = np.arange(16000) / 16000
    shifted = shift_pitch((0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000, 12)
    assert shifted.shape == (16000,)
    assert np.argmax(np.abs(np.fft.rfft(shifted[2000:14000]))) / 12000 * 16000 == pytest.approx(400, abs=3)


def test_prompts_answers_and_test_conditions(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "qa"
    cuts = spoken_qa_synth.prepare(data_dir / "slurp", out, max_train=3, max_dev=1, max_test=2, speakers=2)
    assert "spoken_qa_synth" in CORPORA
    assert {s: len(c) for s, c in cuts.items()} == {"train": 6, "dev": 2, "test": 12}  # 2 kinds; test x3
    scenarios = {json.loads(line)["slurp_id"]: json.loads(line)["scenario"]
                 for name in ("devel.jsonl", "test.jsonl") for line in (data_dir / "slurp" / name).open()}
    for split, split_cuts in cuts.items():
        for cut in split_cuts:
            sup = cut.supervisions[0]
            custom = sup.custom
            assert custom["scenario"] == scenarios[custom["slurp_id"]]
            if custom["kind"] == "readback":
                assert sup.text == f"repeat after me. {custom['answer']}"
            else:
                assert sup.text.endswith(". what is this about?") and custom["answer"] == \
                    spoken_qa_synth.SCENARIO_WORDS.get(custom["scenario"], custom["scenario"])
            answer, rate = sf.read(custom["answer_audio"])
            assert rate == 16000 and len(answer) > 1600 and cut.sampling_rate == 16000
            assert custom["condition"] == "clean" if split != "test" else cut.id.endswith(custom["condition"])
    test = {cut.id: cut for cut in cuts["test"]}
    for cut_id in [i for i in test if i.endswith("-clean")]:
        clean = test[cut_id].load_audio()[0]
        noisy = test[cut_id.replace("clean", "noisy")].load_audio()[0]
        pitch = test[cut_id.replace("clean", "pitch")].load_audio()[0]
        assert snr_db(clean, noisy - clean) == pytest.approx(5.0, abs=0.3)  # 16-bit FLAC rounding
        assert len(pitch) == len(clean) and not np.allclose(pitch, clean, atol=1e-2)
        assert test[cut_id].supervisions[0].custom["answer_audio"] == \
            test[cut_id.replace("clean", "pitch")].supervisions[0].custom["answer_audio"]
    # the data module's dataset reads prompts and answers (one fixed answer voice: same answer text, same file)
    dataset = SpokenAnswerDataset(SpeechDataset(DataConfig(input="whisper_fbank", text_field="answer"),
                                                tokenizer=lambda text: [len(text)]), frames_per_step=4)
    batch = dataset[cuts["train"]]
    assert batch.answer_mels.shape[0] == 6 and batch.answer_mels.shape[1] % 4 == 0
    assert batch.speech.tokens[:, 0].tolist() == [len(t) for t in batch.speech.texts]
    again = spoken_qa_synth.prepare(data_dir / "slurp", out, max_train=3, max_dev=1, max_test=2, speakers=2)
    assert [c.to_dict() for c in again["test"]] == [c.to_dict() for c in cuts["test"]]  # cached audio, same cuts


def test_bad_input_is_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    slurp = data_dir / "slurp"
    with pytest.raises(SpeechkitError, match="is not SLURP: missing"):
        spoken_qa_synth.prepare(tmp_path, tmp_path / "out")
    with pytest.raises(SpeechkitError, match="fewer than max_dev \\+ max_train = 100040"):
        spoken_qa_synth.prepare(slurp, tmp_path / "out", max_train=100000)
    with pytest.raises(SpeechkitError, match="kinds \\['quiz'\\]"):
        spoken_qa_synth.prepare(slurp, tmp_path / "out", kinds=["quiz"])
    with pytest.raises(SpeechkitError, match="semitones must not be 0"):
        spoken_qa_synth.prepare(slurp, tmp_path / "out", semitones=0)
    with pytest.raises(SpeechkitError, match="max_test must be >= 1"):
        spoken_qa_synth.prepare(slurp, tmp_path / "out", max_test=0)
    assert not (tmp_path / "out").exists()
