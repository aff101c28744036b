"""The model card (``README.md``) of an exported folder: what the model is, how it was made, how to run it.

Everything in it is read from the checkpoint and the run beside it, nothing typed by hand: the base model, language,
strategy and input mode from the task's hyper-parameters; the dev WER and step from the ``ModelCheckpoint`` state
saved in the checkpoint; the data and the training configuration from the ``config.yaml`` that ``speechkit fit``
saves in the run's version folder (``.../version_N/config.yaml`` beside ``checkpoints/``).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from speechkit.errors import SpeechkitError

_FASTER_WHISPER_NOTE = ("faster-whisper accepts only the language codes Whisper shipped with; `{code}` is new, so "
                        "add it to faster-whisper's list before transcribing (the `<|{code}|>` token is in this "
                        "folder's vocabulary):")


@dataclass
class ModelCard:
    """The facts a card states; ``None`` where the checkpoint or its run does not record one."""

    base_model: str
    language: Optional[str]
    new_language: bool
    strategy: Optional[str]
    variable_length_input: bool
    step: int
    dev_wer: Optional[float]
    prompt: list[str]
    train_data: list[str] = field(default_factory=list)
    dev_data: list[str] = field(default_factory=list)
    run_config: Optional[Path] = None
    checkpoint: str = ""
    command: str = ""
    adapter_only: bool = False


def _cuts(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else ([str(value)] if value else [])


def _run_config(checkpoint: Path) -> tuple[Optional[Path], Mapping[str, Any]]:
    """The ``config.yaml`` of the run that wrote ``checkpoint`` (``version_N/checkpoints/x.ckpt``), if any."""
    import yaml

    path = checkpoint.resolve().parent.parent / "config.yaml"
    if not path.is_file():
        return None, {}
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, OSError):
        return path, {}
    return path, config if isinstance(config, dict) else {}


def card_facts(checkpoint: str | Path, raw: Mapping[str, Any], core: Any) -> ModelCard:
    """Gather the card of ``checkpoint`` (its loaded dict ``raw`` and the task's Whisper core)."""
    path = Path(checkpoint)
    hparams = raw.get("hyper_parameters") or {}
    scores = [state for key, state in (raw.get("callbacks") or {}).items()
              if str(key).startswith("ModelCheckpoint") and str(state.get("monitor", "")).startswith("val_wer")]
    score = scores[0].get("current_score") if scores else None
    run_config, config = _run_config(path)
    data = ((config.get("data") or {}).get("init_args") or {}).get("config") or {}
    return ModelCard(
        base_model=str(hparams.get("model_name_or_path") or hparams.get("teacher_name_or_path") or "unknown"),
        language=core.language, new_language=core.added_language_id is not None,
        strategy=hparams.get("strategy"), variable_length_input=not core.pad_to_30s,
        step=int(raw.get("global_step", 0)), dev_wer=None if score is None else float(score),
        prompt=core.tokenizer.convert_ids_to_tokens(core.prompt),
        train_data=_cuts(data.get("train_cuts")), dev_data=_cuts(data.get("dev_cuts")), run_config=run_config,
        checkpoint=str(path), command="speechkit " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        if Path(sys.argv[0]).name == "speechkit" else "")


def render(card: ModelCard, folder_format: str, quantization: Optional[str]) -> str:
    """The card's Markdown for a ``hf`` or ``ctranslate2`` folder."""
    code = card.language or "en"
    wer = "not recorded in the checkpoint" if card.dev_wer is None else f"{100 * card.dev_wer:.2f} %"
    lines = [
        f"# Whisper fine-tuned for `{code}` with speechkit", "",
        "| | |", "|---|---|",
        f"| base model | `{card.base_model}` |",
        f"| language | `{code}`" + (f" (new `<|{code}|>` token: Whisper did not have it)" if card.new_language else "")
        + " |",
        f"| strategy | {card.strategy or 'n/a'} |",
        f"| encoder input | {'unpadded (variable length)' if card.variable_length_input else 'padded to 30 s'} |",
        f"| training data | {', '.join(f'`{p}`' for p in card.train_data) or 'not recorded'} |",
        f"| dev data | {', '.join(f'`{p}`' for p in card.dev_data) or 'not recorded'} |",
        f"| dev WER (at step {card.step}) | {wer} |",
        f"| format | {'CTranslate2' if folder_format == 'ctranslate2' else 'Hugging Face transformers'}"
        + (f", weights `{quantization}`" if quantization else "") + " |",
        "",
        "## How it was made", "",
        f"- checkpoint: `{card.checkpoint}`",
    ]
    if card.run_config:
        lines.append(f"- training: `speechkit fit -c {card.run_config}` (the run's saved configuration)")
    if card.command:
        lines.append(f"- export: `{card.command}`")
    lines += ["", "## How to run it", ""] + (_ctranslate2_usage(card) if folder_format == "ctranslate2"
                                              else _hf_usage(card))
    if card.variable_length_input:
        lines += ["", "Trained on unpadded encoder input: `speechkit transcribe` decodes it that way; `pipeline`, "
                  "CTranslate2 and faster-whisper pad every window to 30 s, which this model did not see in training "
                  "(compare their WER on your dev set)."]
    return "\n".join(lines) + "\n"


def _hf_usage(card: ModelCard) -> list[str]:
    if card.adapter_only:
        return ["A LoRA adapter only: merge it into its base model first, then load the merged folder with "
                "`pipeline`:", "", "```bash", "speechkit merge-lora --adapter PATH/TO/THIS/FOLDER --out merged/",
                "```"]
    language = card.language or "en"
    default = (f"# decodes in `{language}`: the folder's generation config sets it as the default language"
               if card.language else "# an English model")
    return [
        "```python", "import soundfile as sf", "from transformers import pipeline", "",
        'asr = pipeline("automatic-speech-recognition", model="PATH/TO/THIS/FOLDER")',
        'audio, rate = sf.read("audio.wav", dtype="float32")  # mono',
        f'print(asr({{"raw": audio, "sampling_rate": rate}})["text"])  {default}',
        "```", "", "```bash", "speechkit transcribe PATH/TO/THIS/FOLDER audio_folder/ --out transcripts.jsonl", "```",
    ]


def _ctranslate2_usage(card: ModelCard) -> list[str]:
    code = card.language or "en"
    lines = ["```python"]
    if card.new_language:
        lines = [_FASTER_WHISPER_NOTE.format(code=code), ""] + lines + ["import faster_whisper.tokenizer"]
    lines += ["import numpy as np", "from faster_whisper import WhisperModel, decode_audio", ""]
    if card.new_language:
        lines += [f'faster_whisper.tokenizer._LANGUAGE_CODES += ("{code}",)']
    lines += [
        'model = WhisperModel("PATH/TO/THIS/FOLDER", device="cpu", compute_type="int8")',
        'audio = decode_audio("audio.wav")  # 16 kHz mono',
        "audio = np.pad(audio, (0, max(0, 480000 - len(audio))))  # under 30 s: pad with silence (see below)",
        f'segments, info = model.transcribe(audio, language="{code}", beam_size=1)'
        + ("" if card.language else "  # an English model"),
        'print(" ".join(segment.text for segment in segments))', "```", "",
        "faster-whisper pads the log-mel features of a clip shorter than 30 s with zeros, where transformers and "
        "OpenAI's Whisper pad the audio with silence; a fine-tuned model may not have seen the former and stop "
        "early, so pad the audio yourself as above.", "",
        "With `ctranslate2` alone, give the decoder prompt (also under `config.json`'s `speechkit.prompt`):", "",
        "```python", "import ctranslate2", "",
        'model = ctranslate2.models.Whisper("PATH/TO/THIS/FOLDER")',
        f"results = model.generate(features, [{card.prompt!r}])  # features: (batch, n_mels, 3000) log-mel",
        "```", "", "```bash", "speechkit transcribe PATH/TO/THIS/FOLDER audio_folder/ --out transcripts.jsonl", "```",
    ]
    return lines


def write_model_card(folder: Path, card: ModelCard, folder_format: str, quantization: Optional[str]) -> None:
    """Write ``folder/README.md`` (the folder is being staged: a plain write)."""
    try:
        (folder / "README.md").write_text(render(card, folder_format, quantization), encoding="utf-8")
    except OSError as error:
        raise SpeechkitError(f"{folder / 'README.md'}: cannot write ({error.strerror or error})") from None
