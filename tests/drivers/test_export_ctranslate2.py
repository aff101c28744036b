"""``speechkit export --format ctranslate2``: a new-language checkpoint of a tiny random Whisper becomes a CTranslate2
folder that ``ctranslate2`` decodes as transformers does, that speechkit reads back weight for weight, and that
carries its training language; both formats get a model card; a failed export leaves nothing behind."""

from __future__ import annotations

import json
import re
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import transformers

from speechkit.cli import main
from speechkit.data import DataConfig, SpeechDataModule
from speechkit.drivers import export as export_module
from speechkit.drivers.export import export_checkpoint
from speechkit.errors import SpeechkitError
from speechkit.inference.models import load_model
from speechkit.inference.runtimes import ctranslate2_transcribe
from speechkit.models.ctranslate2 import VARIABLE_LENGTH_KEY, load_ctranslate2
from speechkit.tasks.whisper_finetune import WhisperFinetune
from speechkit.testing import tiny_whisper_dir, tone_corpus

pytest.importorskip("ctranslate2")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny multilingual Whisper with ``<|ky|>`` added, one training step, saved as a checkpoint."""
    root = tmp_path_factory.mktemp("ct2")
    tone_corpus(root / "data", "train", num_cuts=8, seed=0)
    torch.manual_seed(0)
    task = WhisperFinetune(str(tiny_whisper_dir(root / "multi", multilingual=True)), language="ky",
                           new_language_init_from="kk", max_new_tokens=4)
    dm = SpeechDataModule(DataConfig(train_cuts=str(root / "data" / "cuts_train.jsonl.gz"), max_duration=3.0,
                                     num_buckets=2, allow_language_mismatch=True))  # tones labelled en
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False, limit_val_batches=0,
                        default_root_dir=str(root))
    trainer.fit(task, dm)
    trainer.save_checkpoint(root / "run.ckpt")
    return {"task": task.eval(), "ckpt": root / "run.ckpt", "root": root}


def audio(seconds: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.3, 0.3, int(16000 * seconds)).astype(np.float32)


def test_a_float32_folder_reads_back_weight_for_weight_and_decodes_as_transformers(run, tmp_path):
    task = run["task"]
    folder = export_checkpoint(run["ckpt"], tmp_path / "ct2", format="ctranslate2")
    assert {"model.bin", "config.json", "tokenizer.json", "preprocessor_config.json", "generation_config.json",
            "README.md"} <= {p.name for p in folder.iterdir()}
    new_id = task.core.added_language_id
    config = json.loads((folder / "config.json").read_text())
    assert config["lang_ids"].count(new_id) == 1 and config["lang_ids"] == sorted(set(config["lang_ids"]))
    assert config["speechkit"] == {"language": "ky", "task": "transcribe", "variable_length_input": True,
                                   "prompt": ["<|startoftranscript|>", "<|ky|>", "<|transcribe|>", "<|notimestamps|>"]}

    bundle = load_ctranslate2(folder)
    trained = task.model.state_dict()
    assert all(torch.equal(tensor, trained[name]) for name, tensor in bundle.model.state_dict().items())
    assert bundle.generation_config.language == "ky" and bundle.generation_config.lang_to_id["ky"] == new_id
    assert getattr(bundle.model.config, VARIABLE_LENGTH_KEY)

    # CTranslate2 itself runs the folder: the encoder states and the first greedy token are transformers' own.
    import ctranslate2

    clips = [audio(1.0, 0), audio(2.5, 1)]
    features = task.feature_extractor(clips, sampling_rate=16000, return_tensors="pt").input_features
    model = ctranslate2.models.Whisper(str(folder), compute_type="float32")
    states = np.array(model.encode(ctranslate2.StorageView.from_array(features.numpy()), to_cpu=True))
    with torch.no_grad():
        expected = task.model.model.encoder(features).last_hidden_state
        first = task.model(input_features=features, decoder_input_ids=torch.tensor([task.core.prompt] * 2)).logits
    np.testing.assert_allclose(states, expected.numpy(), atol=1e-4)
    prompt = config["speechkit"]["prompt"]
    results = model.generate(ctranslate2.StorageView.from_array(features.numpy()), [prompt] * 2, beam_size=1,
                             max_length=8)
    # A result holds the prompt after <|startoftranscript|>, then the generated tokens.
    assert [r.sequences_ids[0][len(prompt) - 1] for r in results] == first[:, -1].argmax(-1).tolist()


def test_int8_weights_are_smaller_on_disk_and_decode(run, tmp_path):
    float32 = export_checkpoint(run["ckpt"], tmp_path / "f32", format="ctranslate2")
    int8 = export_checkpoint(run["ckpt"], tmp_path / "int8", format="ctranslate2", quantization="int8")
    ratio = (int8 / "model.bin").stat().st_size / (float32 / "model.bin").stat().st_size
    assert ratio < 0.35, ratio
    assert len(ctranslate2_transcribe(int8, [audio(1.0, 0)], compute_type="int8", max_length=8)) == 1
    assert "weights `int8`" in (int8 / "README.md").read_text()


def test_both_folders_carry_the_training_language_for_speechkit_transcribe(run, tmp_path):
    hf = export_checkpoint(run["ckpt"], tmp_path / "hf")
    ct2 = export_checkpoint(run["ckpt"], tmp_path / "ct2", format="ctranslate2", quantization="int8")
    generation = transformers.GenerationConfig.from_pretrained(hf)
    assert (generation.language, generation.task) == ("ky", "transcribe")
    assert json.loads((hf / "config.json").read_text())[VARIABLE_LENGTH_KEY] is True
    for folder in (hf, ct2):
        loaded = load_model(str(folder))
        assert (loaded.default_language, loaded.variable_length) == ("ky", True), folder
    # transformers decodes in the default language when none is given: the same tokens as with language="ky".
    model = transformers.WhisperForConditionalGeneration.from_pretrained(hf).eval()
    features = transformers.WhisperFeatureExtractor.from_pretrained(hf)(
        [audio(1.0, 2)], sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        assert torch.equal(model.generate(input_features=features, max_new_tokens=4),
                           model.generate(input_features=features, language="ky", max_new_tokens=4))
    assert run["task"].model.config.to_dict().get(VARIABLE_LENGTH_KEY) is None  # the training model is unchanged


def test_the_model_cards_say_how_to_run_each_folder(run, tmp_path):
    hf = export_checkpoint(run["ckpt"], tmp_path / "hf")
    ct2 = export_checkpoint(run["ckpt"], tmp_path / "ct2", format="ctranslate2", quantization="int8")
    hf_card, ct2_card = (hf / "README.md").read_text(), (ct2 / "README.md").read_text()
    for card in (hf_card, ct2_card):
        assert "| language | `ky` (new `<|ky|>` token" in card
        assert "| strategy | full |" in card and "| dev WER (at step 1) | not recorded in the checkpoint |" in card
        assert f"- checkpoint: `{run['ckpt']}`" in card
    assert 'pipeline("automatic-speech-recognition"' in hf_card and "| format | Hugging Face transformers |" in hf_card
    assert 'faster_whisper.tokenizer._LANGUAGE_CODES += ("ky",)' in ct2_card
    assert 'model.transcribe(audio, language="ky", beam_size=1)' in ct2_card
    assert "['<|startoftranscript|>', '<|ky|>', '<|transcribe|>', '<|notimestamps|>']" in ct2_card
    # The first Python block of each card runs as written (faster-whisper for CTranslate2, pipeline for hf).
    import soundfile

    soundfile.write(tmp_path / "audio.wav", audio(1.5, 3), 16000)
    for folder, card in ((hf, hf_card), (ct2, ct2_card)):
        code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
        code = code.replace("PATH/TO/THIS/FOLDER", str(folder)).replace('"audio.wav"', repr(str(tmp_path / "audio.wav")))
        code = code.replace("beam_size=1)", "beam_size=1, max_new_tokens=8)")  # the tiny model has 64 positions
        exec(compile(code, f"{folder.name}/README.md", "exec"), {})


def test_an_english_only_model_needs_no_language_token(tmp_path):
    tone_corpus(tmp_path / "data", "train", num_cuts=2, seed=0)
    task = WhisperFinetune(str(tiny_whisper_dir(tmp_path / "en", multilingual=False)), language="en", pad_to_30s=True)
    checkpoint = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams), "global_step": 0}
    task.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "en.ckpt")
    folder = export_checkpoint(tmp_path / "en.ckpt", tmp_path / "ct2", format="ctranslate2")
    config = json.loads((folder / "config.json").read_text())
    assert config["speechkit"] == {"language": None, "task": "transcribe", "variable_length_input": False,
                                   "prompt": ["<|startoftranscript|>", "<|notimestamps|>"]}
    assert not config.get("lang_ids")
    assert load_model(str(folder)).default_language is None


def test_a_failed_conversion_leaves_the_previous_export_untouched(run, tmp_path, monkeypatch):
    out = export_checkpoint(run["ckpt"], tmp_path / "ct2", format="ctranslate2", quantization="int8")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    def fail(*args, **kwargs):
        raise SpeechkitError("CTranslate2 converter: simulated failure")

    monkeypatch.setattr(export_module, "write_ctranslate2", fail)
    with pytest.raises(SpeechkitError, match="simulated failure"):
        export_checkpoint(run["ckpt"], out, format="ctranslate2")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct2"]  # no staging or intermediate folder left


def test_bad_requests_are_one_line_errors(run, tmp_path, monkeypatch, capsys):
    with pytest.raises(SpeechkitError, match=r"^--quantization int8: weight types apply to --format ctranslate2 only$"):
        export_checkpoint(run["ckpt"], tmp_path / "hf", quantization="int8")
    (tmp_path / "file").write_text("")
    with pytest.raises(SpeechkitError, match=r"file: exists and is not a folder$"):
        export_checkpoint(run["ckpt"], tmp_path / "file", format="ctranslate2")
    assert main(["export", "--checkpoint", str(run["ckpt"]), "--out", str(tmp_path / "x"), "--format", "onnx"]) == 2
    assert "onnx" in capsys.readouterr().err
    real = export_module.importlib.util.find_spec
    monkeypatch.setattr(export_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "ctranslate2" else real(name, *a))
    with pytest.raises(SpeechkitError, match=r'^--format ctranslate2 needs the ctranslate2 package: pip install '
                                             r'"speechkit\[deploy\]"$'):
        export_checkpoint(run["ckpt"], tmp_path / "ct2", format="ctranslate2")
    assert not (tmp_path / "hf").exists() and not (tmp_path / "ct2").exists()


def test_the_command_line_exports_int8(run, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(run["ckpt"]), "--out", str(tmp_path / "ct2"), "--format",
                 "ctranslate2", "--quantization", "int8"]) == 0
    assert "(ctranslate2, int8)" in capsys.readouterr().out
    assert (tmp_path / "ct2" / "model.bin").is_file()
