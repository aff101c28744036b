"""The Whisper sequence-to-sequence core that every Whisper task composes.

:class:`WhisperSeq2Seq` holds a Whisper model with its tokenizer, feature extractor and generation config, and the
options that decide how a batch becomes encoder input, decoder labels, a loss and transcripts. A task
(``WhisperFinetune``, ``WhisperDistill``, and any new task that decodes text with Whisper) registers ``core.model``
as its ``model`` submodule, so its checkpoint keys are ``model.*``, and delegates the rest to the core; a
distillation task holds a second core around its frozen teacher (:meth:`WhisperSeq2Seq.with_model`).

* Encoder input: log-mel ``(B, T, n_mels)`` batches padded to Whisper's 30 s (3000 frames, ``pad_to_30s``) or fed
  at their own length (variable-length encoder input, :mod:`speechkit.models.whisper_encoder`).
* Decoder: the prompt ``<|startoftranscript|><|xx|><|transcribe|><|notimestamps|>`` of Whisper's multitask format
  (Radford et al. 2022, "Robust Speech Recognition via Large-Scale Weak Supervision", section 2.3, figure 1) is fed
  but masked out of the loss, ``L = -(1/N) sum_i log p(y_i | y_<i, prompt, Enc(mel))`` over the ``N`` transcript
  tokens and ``<|endoftext|>`` of the batch.
* Languages: a language Whisper lacks gets a new ``<|xx|>`` token (:func:`ensure_language`); an English-only
  Whisper refuses any other language.
* Decoding: batched greedy (``num_beams=1``) or beam search through ``generate``; WER / CER raw and normalized
  (normalizer chosen per language), ``predictions.jsonl`` written atomically.

Dimensions: ``B`` batch, ``T`` mel frames, ``F`` mel bins, ``U`` decoder tokens (prompt included), ``V`` vocabulary.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, Sequence

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import nn
from transformers import GenerationConfig, PreTrainedTokenizerBase, WhisperFeatureExtractor

from speechkit.checkpoints import checkpoint_state_dict, load_checkpoint
from speechkit.data.batches import SpeechBatch
from speechkit.data.manifests import language_code
from speechkit.errors import SpeechkitError
from speechkit.metrics.stateful import WERMetric
from speechkit.models.adaptation import Strategy, apply_strategy, export
from speechkit.models.ctranslate2 import VARIABLE_LENGTH_KEY, WhisperBundle
from speechkit.models.pretrained import load_whisper
from speechkit.models.whisper_decode import decoding_config, frame_mask, quiet_internal_warning
from speechkit.models.whisper_encoder import generate_variable_length, variable_length_input
from speechkit.models.whisper_language import add_language, decoder_prompt_ids, has_language, is_multilingual
from speechkit.tensors import IGNORE_INDEX

log = logging.getLogger(__name__)

WHISPER_FRAMES = 3000  # 30 s of 10 ms mel frames: the most Whisper's encoder takes
TASK_PREFIX = "model."  # a Whisper task registers its core's model as `model`: its checkpoint keys start so
Stage = Literal["val", "test"]


# ------------------------------------------------------------------ languages
def ensure_language(bundle: WhisperBundle, language: Optional[str], init_from: Optional[str],
                    name: str) -> Optional[int]:
    """Check ``language`` against the model and add its ``<|xx|>`` token when a multilingual Whisper lacks it.

    Args:
        bundle: the loaded Whisper (model, tokenizer and generation config grow in place).
        language: the data's language code (``en`` or ``None`` on an English-only model).
        init_from: the related language whose row initialises a new token's row, ``"mean"`` for the mean of all
            language rows; needed only when the token is missing.
        name: how the user named the model (for messages).

    Returns:
        The new token's id, or ``None`` when nothing was added.

    Raises:
        SpeechkitError: another language on an English-only Whisper, or a missing token without ``init_from``.
    """
    if not is_multilingual(bundle.tokenizer):
        if language is not None and language_code(language) != "en":
            raise SpeechkitError(f"language {language!r}: {name} is an English-only Whisper (no language tokens); "
                                 "set language: en, or use a multilingual one such as ct2:base")
        return None
    if language is None or has_language(bundle.tokenizer, language):
        return None
    if init_from is None:
        raise SpeechkitError(f"language {language!r}: Whisper has no <|{language}|> token; set "
                             "new_language_init_from to a related language code (or 'mean') to add one")
    source = None if init_from == "mean" else init_from
    new_id = add_language(bundle.model, bundle.tokenizer, bundle.generation_config, language, source)
    log.info("added <|%s|> as token %d (initialised from %s)", language, new_id, init_from)
    return new_id


def metric_language(language: Optional[str]) -> str:
    """The language WER is normalized for: ``language`` (``en`` for ``None``), or ``mul`` (script-preserving basic
    rules) for a language outside the normalizer table."""
    from speechkit.text.normalizers import get_normalizer

    try:
        get_normalizer(language or "en")
        return language or "en"
    except SpeechkitError:
        return "mul"


# ------------------------------------------------------------------ the core
@dataclasses.dataclass(eq=False)
class WhisperSeq2Seq:
    """A Whisper model and everything between a :class:`SpeechBatch` and a loss or a transcript.

    Attributes:
        model: ``WhisperForConditionalGeneration`` (possibly peft-wrapped, possibly shrunk by surgery).
        tokenizer: its tokenizer (with any added language token).
        feature_extractor: its feature extractor (saved with an export).
        generation_config: its generation config (knows any added language).
        language: language code of the data (``None``: English on an English-only model).
        task: ``transcribe`` or ``translate``.
        pad_to_30s: pad every input to 3000 frames (stock Whisper) instead of variable-length encoder input.
        num_beams: beam size of decoding (1 = batched greedy).
        max_new_tokens: decoding length limit.
        added_language_id: the ``<|xx|>`` token :func:`ensure_language` added, if any.
        prompt: decoder prompt ids (derived).
        eot: ``<|endoftext|>`` id, also the padding id of token batches (derived).
    """

    model: nn.Module = dataclasses.field(repr=False)
    tokenizer: PreTrainedTokenizerBase = dataclasses.field(repr=False)
    feature_extractor: WhisperFeatureExtractor = dataclasses.field(repr=False)
    generation_config: GenerationConfig = dataclasses.field(repr=False)
    language: Optional[str] = "en"
    task: Literal["transcribe", "translate"] = "transcribe"
    pad_to_30s: bool = False
    num_beams: int = 1
    max_new_tokens: int = 128
    added_language_id: Optional[int] = None
    prompt: list[int] = dataclasses.field(init=False)
    eot: int = dataclasses.field(init=False)

    max_input_seconds: ClassVar[float] = WHISPER_FRAMES / 100  # what the data module checks cuts against

    def __post_init__(self) -> None:
        language = self.language if is_multilingual(self.tokenizer) else None
        self.prompt = decoder_prompt_ids(self.tokenizer, language, self.task)
        self.eot = self.tokenizer.convert_tokens_to_ids("<|endoftext|>")

    @classmethod
    def load(cls, model_name_or_path: str, language: Optional[str] = "en",
             new_language_init_from: Optional[str] = None, task: Literal["transcribe", "translate"] = "transcribe",
             pad_to_30s: bool = False, num_beams: int = 1, max_new_tokens: int = 128) -> WhisperSeq2Seq:
        """Load a Whisper (``ct2:tiny.en``, a CTranslate2 or Hugging Face folder, a hub name), add the language's
        token if needed (:func:`ensure_language`) and build its core (the model in eval mode, as loaded)."""
        bundle = load_whisper(model_name_or_path)
        added = ensure_language(bundle, language, new_language_init_from, model_name_or_path)
        return cls(bundle.model, bundle.tokenizer, bundle.feature_extractor, bundle.generation_config,
                   language, task, pad_to_30s, num_beams, max_new_tokens, added)

    def with_model(self, model: nn.Module) -> WhisperSeq2Seq:
        """The same core around another model of the same vocabulary (an adapted model, a frozen teacher)."""
        return dataclasses.replace(self, model=model)

    def adapted(self, strategy: Strategy, lora_rank: int, lora_alpha: float, lora_dropout: float,
                lora_target_modules: Sequence[str], frozen_encoder_layers: int,
                init_checkpoint: Optional[str] = None) -> WhisperSeq2Seq:
        """The core around its model adapted for training by ``strategy`` (:func:`~speechkit.models.adaptation.
        apply_strategy`), with the weights of ``init_checkpoint`` (a Whisper task's checkpoint) if given."""
        core = self.with_model(apply_strategy(self.model, strategy, lora_rank, lora_alpha, lora_dropout,
                                              list(lora_target_modules), frozen_encoder_layers))
        if init_checkpoint:
            core.load_task_weights(init_checkpoint)
        return core

    # -------------------------------------------------------------- text
    @property
    def pad_token_id(self) -> int:
        """The id that pads token batches (``<|endoftext|>``, masked out of the loss)."""
        return self.eot

    @property
    def expected_language(self) -> str:
        """The language every supervision of the manifests must carry (``en`` for English-only models)."""
        return self.language or "en"

    def tokenize(self, text: str) -> list[int]:
        """Decoder tokens of one utterance: prompt + ``" " + text`` + ``<|endoftext|>`` (the data module's counter)."""
        return self.prompt + self.tokenizer.encode(" " + text.strip(), add_special_tokens=False) + [self.eot]

    # -------------------------------------------------------------- weights
    def load_task_weights(self, checkpoint: str) -> None:
        """Load the ``model.*`` weights of a Whisper task's checkpoint into :attr:`model` (a multistage stage's start,
        a distillation teacher): every weight must fit.

        Raises:
            SpeechkitError: an unreadable file, or weights of another size, strategy or vocabulary.
        """
        state = checkpoint_state_dict(load_checkpoint(checkpoint), checkpoint)
        weights = {k[len(TASK_PREFIX):]: v for k, v in state.items() if k.startswith(TASK_PREFIX)}
        foreign = [k for k in state if not k.startswith(TASK_PREFIX)]
        try:
            missing, unexpected = self.model.load_state_dict(weights, strict=False)
        except RuntimeError as error:  # a shape differs
            raise SpeechkitError(f"init_checkpoint {checkpoint}: weights do not fit this model "
                                 f"({str(error).strip().splitlines()[-1].strip()}); stages must use the same size, "
                                 "strategy and languages") from None
        unexpected = foreign + [TASK_PREFIX + k for k in unexpected]
        if missing or unexpected:
            raise SpeechkitError(
                f"init_checkpoint {checkpoint}: weights do not fit this model (missing "
                f"{[TASK_PREFIX + k for k in missing][:3]}, unexpected {unexpected[:3]}); stages must use the same "
                "size, strategy and languages")

    # -------------------------------------------------------------- teacher forcing
    def features(self, batch: SpeechBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder input ``(B, F, T')`` and real frames ``(B,)``; ``pad_to_30s`` pads ``T' = 3000`` with each
        utterance's silence value (its log-mel maximum - 2, the floor of Whisper's log-mel)."""
        feats, lens = batch.inputs.transpose(1, 2), batch.input_lens  # (B, F, T)
        if feats.shape[-1] > WHISPER_FRAMES:
            longest = batch.cut_ids[int(lens.argmax())]
            raise SpeechkitError(f"cut {longest!r} is longer than 30 s: Whisper takes at most {WHISPER_FRAMES} frames")
        if self.pad_to_30s:
            floor = torch.stack([f[:, :n].max() - 2.0 for f, n in zip(feats, lens)])  # silence's log-mel value
            pad = floor[:, None, None].expand(-1, feats.shape[1], WHISPER_FRAMES - feats.shape[-1])
            feats = torch.cat([feats, pad], dim=-1)
        return feats, lens

    def shift_labels(self, batch: SpeechBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder inputs ``(B, U-1)`` and labels ``(B, U-1)``, the prompt and padding set to ``IGNORE_INDEX``."""
        if batch.tokens is None:
            raise SpeechkitError("batch has no token ids: the data module must take `tokenize` from this task")
        inputs, labels = batch.tokens[:, :-1], batch.tokens[:, 1:]
        positions = torch.arange(labels.shape[1], device=labels.device)[None, :]
        ignore = (positions < len(self.prompt) - 1) | (positions >= batch.token_lens[:, None] - 1)  # prompt, padding
        return inputs, labels.masked_fill(ignore, IGNORE_INDEX)

    def logits(self, feats: torch.Tensor, lens: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``(B, U-1, V)`` of :attr:`model` for :meth:`features` and decoder ``inputs``."""
        context = contextlib.nullcontext() if self.pad_to_30s else variable_length_input(self.model, lens)
        with context:
            return self.model(input_features=feats, decoder_input_ids=inputs).logits

    def loss(self, batch: SpeechBatch, reduction: Literal["mean", "sum"] = "mean") -> torch.Tensor:
        """Cross-entropy of the batch's transcript tokens (prompt and padding masked): their mean, or their sum
        (:meth:`target_tokens` of them) for losses normalized over a whole optimizer step."""
        inputs, labels = self.shift_labels(batch)
        feats, lens = self.features(batch)
        logits = self.logits(feats, lens, inputs)
        return nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX,
                                           reduction=reduction)

    def target_tokens(self, batch: SpeechBatch) -> int:
        """Tokens the loss is taken over: each transcript and its ``<|endoftext|>``, not the prompt."""
        if batch.token_lens is None:
            raise SpeechkitError("batch has no token ids: the data module must take `tokenize` from this task")
        return int((batch.token_lens - len(self.prompt)).clamp(min=0).sum())

    def padding_fraction(self, batch: SpeechBatch) -> torch.Tensor:
        """Share of the encoder's input frames that are padding (3000 per utterance with ``pad_to_30s``)."""
        frames = WHISPER_FRAMES if self.pad_to_30s else batch.inputs.shape[1]
        return 1 - batch.input_lens.sum() / (len(batch) * frames)

    # -------------------------------------------------------------- decoding
    @torch.no_grad()
    def generate(self, batch: SpeechBatch) -> torch.Tensor:
        """Token ids ``(B, U')`` decoded by batched greedy search (``num_beams=1``) or beam search, at most
        ``max_new_tokens`` past the prompt. ``generate`` is given what it asks for (the length as ``max_length`` only,
        the input's frame mask, the language and task), so it warns about none of it on any batch."""
        feats, lens = self.features(batch)
        kwargs: dict[str, Any] = {
            "generation_config": decoding_config(self.generation_config, self.max_new_tokens, self.num_beams),
            "attention_mask": frame_mask(lens, len(lens), feats.shape[-1], feats.device),
        }
        if is_multilingual(self.tokenizer):
            kwargs.update(language=self.language, task=self.task)
        with quiet_internal_warning():
            if self.pad_to_30s:
                return self.model.generate(input_features=feats, **kwargs)
            return generate_variable_length(self.model, feats, lens, **kwargs)

    def transcribe(self, batch: SpeechBatch) -> list[str]:
        """Transcripts of a batch (:meth:`generate`, special tokens dropped, stripped)."""
        ids = self.generate(batch)
        return [text.strip() for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def wer_metric(self) -> WERMetric:
        """A WER / CER metric normalizing for this core's language (see :func:`metric_language`)."""
        return WERMetric(language=metric_language(self.language))

    def evaluate(self, batch: SpeechBatch, metric: WERMetric) -> list[str]:
        """Transcribe a batch and add it to ``metric``; returns the transcripts."""
        hyps = self.transcribe(batch)
        metric.update(batch.texts, hyps)
        return hyps

    # -------------------------------------------------------------- export and batch-size search
    def export(self, out_dir: str | Path, merge_lora: bool = False) -> Path:
        """Write a Hugging Face folder (model or LoRA adapter, tokenizer, feature extractor, generation config).

        The generation config carries the training language and task as defaults (a multilingual model), so
        ``pipeline(...)`` without a language decodes in it instead of detecting one: a new language's token was
        never a detection target, and detection picks another language. A model trained on unpadded input says so
        in its config (:data:`speechkit.models.ctranslate2.VARIABLE_LENGTH_KEY`), for ``speechkit transcribe``.

        Raises:
            SpeechkitError: shapes a Hugging Face Whisper config cannot rebuild (attention heads pruned: the
                attention width is ``heads x 64``, not ``d_model``), naming the first such weight.
        """
        if not hasattr(self.model, "peft_config"):  # LoRA never changes shapes
            check_exportable(self.model)
        generation = copy.deepcopy(self.generation_config)
        if is_multilingual(self.tokenizer) and self.language:
            generation.language, generation.task = self.language, self.task
        flags = {} if self.pad_to_30s else {VARIABLE_LENGTH_KEY: True}
        return export(self.model, self.tokenizer, self.feature_extractor, generation, out_dir, merge_lora, flags)

    def synthetic_batch(self, batch_size: int, duration_s: float, num_tokens: int) -> SpeechBatch:
        """A random batch of one bucket's shape, for ``speechkit batch-sizes``."""
        frames = min(WHISPER_FRAMES, int(duration_s * 100))
        n_mels = self.model.config.num_mel_bins if hasattr(self.model, "config") else 80
        tokens = torch.randint(0, self.eot, (batch_size, max(num_tokens, len(self.prompt) + 2)))
        tokens[:, : len(self.prompt)] = torch.tensor(self.prompt)
        return SpeechBatch(
            inputs=torch.randn(batch_size, frames, n_mels), input_lens=torch.full((batch_size,), frames),
            texts=[""] * batch_size, cut_ids=[f"synthetic-{i}" for i in range(batch_size)],
            durations=torch.full((batch_size,), duration_s), tokens=tokens,
            token_lens=torch.full((batch_size,), tokens.shape[1]),
        )


def check_exportable(model: nn.Module) -> None:
    """Refuse a model whose weights the Hugging Face class cannot rebuild from its own config.

    Depth and MLP width follow the config (surgery updates ``*_layers`` / ``*_ffn_dim``); attention heads do not:
    HF Whisper fixes every attention at ``d_model`` wide. The model is rebuilt on the meta device (no memory).
    """
    with torch.device("meta"):
        fresh = type(model)(copy.deepcopy(model.config))
    expected = {name: tuple(t.shape) for name, t in fresh.state_dict().items()}
    for name, tensor in model.state_dict().items():
        if name in expected and expected[name] != tuple(tensor.shape):
            raise SpeechkitError(
                f"export: {name} is {tuple(tensor.shape)} but a Hugging Face {type(model).__name__} built from this "
                f"config has {expected[name]} (attention heads pruned?); such a model loads only from its speechkit "
                "checkpoint (speechkit transcribe <ckpt>)")


# ------------------------------------------------------------------ scores and predictions of a Lightning run
def log_wer(module: LightningModule, metric: WERMetric, stage: Stage) -> dict[str, float]:
    """Log ``<stage>_wer``, ``_wer_raw``, ``_cer``, ``_cer_raw`` of the epoch and reset ``metric``.

    On validation also one rank-zero line, ``dev WER before training`` (the sanity pass or a validation at step 0,
    also logged as ``val_wer_before`` / ``val_wer_raw_before``) or ``dev WER at step N``.
    """
    computed = metric.compute()
    metric.reset()
    for name, value in computed.items():
        module.log(f"{stage}_{name}", value, prog_bar=stage == "val" and name == "wer")
    scores = {name: float(value) for name, value in computed.items()}
    if stage == "val":
        report_dev_wer(module, scores)
    return scores


def report_dev_wer(module: LightningModule, scores: dict[str, float]) -> None:
    """The rank-zero dev-WER line of a validation; before training also the metrics ``val_wer_before`` and
    ``val_wer_raw_before`` (written to the loggers directly in the sanity pass, whose ``self.log`` Lightning drops)."""
    trainer = module.trainer
    wer, raw = scores["wer"], scores["wer_raw"]
    if not (trainer.sanity_checking or module.global_step == 0):
        rank_zero_info(f"dev WER at step {module.global_step}: {wer:.4f} (raw {raw:.4f})")
        return
    rank_zero_info(f"dev WER before training: {wer:.4f} (raw {raw:.4f})")
    before = {"val_wer_before": wer, "val_wer_raw_before": raw}
    if trainer.sanity_checking:
        for logger in module.loggers:
            logger.log_metrics(before, step=module.global_step)
    else:
        for name, value in before.items():
            module.log(name, value)


def prediction_rows(batch: SpeechBatch, hyps: Sequence[str]) -> list[dict[str, str]]:
    """``{"id", "ref", "hyp"}`` per utterance: the cut id traces every hypothesis back to its audio."""
    return [{"id": i, "ref": r, "hyp": h} for i, r, h in zip(batch.cut_ids, batch.texts, hyps)]


def predictions_path(predictions_file: Optional[str], trainer: Trainer) -> Path:
    """``predictions_file`` or ``<log_dir>/predictions.jsonl``; ``.rank<k>.jsonl`` per rank on several devices."""
    path = Path(predictions_file or Path(trainer.log_dir or ".") / "predictions.jsonl")
    return path.with_suffix(f".rank{trainer.global_rank}.jsonl") if trainer.world_size > 1 else path


def write_predictions(rows: Sequence[dict[str, str]], path: Path) -> Path:
    """Write JSON lines atomically (a hidden temporary file beside ``path``, fsynced, renamed onto it): a crash
    never leaves half a file under the name. Logs one rank-zero line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    rank_zero_info(f"wrote {len(rows)} predictions to {path}")
    return path


class WhisperCoreTask:
    """What every Whisper task shares around its :class:`WhisperSeq2Seq` ``self.core``: the view the data module,
    exporters and decoders read, and the evaluation hooks (``val_loss`` + WER; test predictions written to
    ``hparams.predictions_file``). A delegation mixin for a ``LightningModule`` with ``self.wer`` and
    ``self.predictions``; the task itself is composed, not inherited from another task."""

    core: WhisperSeq2Seq
    max_input_seconds: float = WhisperSeq2Seq.max_input_seconds  # Whisper's encoder takes at most 30 s

    @property
    def expected_language(self) -> str:
        """The language every supervision of the manifests must carry (``en`` for English-only models)."""
        return self.core.expected_language

    @property
    def pad_token_id(self) -> int:
        """The id that pads token batches."""
        return self.core.pad_token_id

    def tokenize(self, text: str) -> list[int]:
        """Decoder tokens of one utterance: prompt + text + ``<|endoftext|>``."""
        return self.core.tokenize(text)

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The core's tokenizer (with any added language token)."""
        return self.core.tokenizer

    @property
    def feature_extractor(self) -> WhisperFeatureExtractor:
        """The core's feature extractor."""
        return self.core.feature_extractor

    @property
    def generation_config(self) -> GenerationConfig:
        """The core's generation config (knows any added language)."""
        return self.core.generation_config

    def synthetic_batch(self, batch_size: int, duration_s: float, num_tokens: int) -> SpeechBatch:
        """A random batch of one bucket's shape, for ``speechkit batch-sizes``."""
        return self.core.synthetic_batch(batch_size, duration_s, num_tokens)

    # ------------------------------------------------------------ evaluation (Lightning hooks)
    def validation_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        self.log("val_loss", self(batch), batch_size=len(batch), sync_dist=True)
        self.core.evaluate(batch, self.wer)

    def on_validation_epoch_end(self) -> None:
        log_wer(self, self.wer, "val")

    def test_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        self.predictions += prediction_rows(batch, self.core.evaluate(batch, self.wer))

    def on_test_epoch_end(self) -> None:
        log_wer(self, self.wer, "test")
        write_predictions(self.predictions, predictions_path(self.hparams.predictions_file, self.trainer))
        self.predictions = []
