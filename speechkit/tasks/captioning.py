"""``AudioCaptioner``: audio captioning with a Conformer encoder and a Transformer decoder over words.

*Killing two birds with one stone: Can an audio captioning system also be used for audio-text retrieval?* (Labbé,
Pellegrini, Pinquier, DCASE 2023), section 2: trained by teacher-forced cross-entropy with label smoothing (0.1 in
CoNeTTE), decoded by beam search (beam 2, 3-30 words in CoNeTTE). The model is
:class:`speechkit.models.captioner.Captioner`; data come from :class:`speechkit.data.captions.CaptionDataModule`
(one caption drawn per audio per batch, all references kept for the metrics). Validation logs ``val_loss`` (the
same smoothed loss) and, from the decoded captions, ``val_cider_d``, ``val_bleu4`` and ``val_meteor_exact``
(``speechkit.metrics.captioning``); ``speechkit test`` writes ``predictions.jsonl`` (id, hypothesis, references)
and logs the same three as ``test_*``. The same model scores audio-caption pairs for retrieval:
``speechkit.tasks.caption_retrieval``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from speechkit.checkpoints import record_task_class
from speechkit.data.captions import CaptionBatch
from speechkit.errors import SpeechkitError
from speechkit.losses import check_finite
from speechkit.metrics.captioning import captioning_metrics
from speechkit.models.captioner import (
    Captioner,
    DecoderConfig,
    InputNorm,
    decoder_config,
)
from speechkit.models.speech_encoder import EncoderConfig, encoder_config
from speechkit.models.whisper_seq2seq import predictions_path, write_predictions
from speechkit.optim.warmup import configure_optimizers
from speechkit.text.words import PAD, WordTokenizer, read_vocabulary


def vocabulary_words(vocabulary: str | list[str]) -> list[str]:
    """The word list: given, or read from a file of one word a line."""
    if isinstance(vocabulary, str):
        if not Path(vocabulary).is_file():
            raise SpeechkitError(f"vocabulary {vocabulary}: no such file (one word a line; `speechkit prepare "
                                 "scenes_synth` writes vocabulary.txt)")
        return read_vocabulary(vocabulary)
    return list(vocabulary)


def check_vocabulary(checkpoint: dict[str, Any], tokenizer: WordTokenizer) -> None:
    """The checkpoint's word list (its hyper-parameter ``vocabulary``) must be the task's, word for word."""
    saved, words = (checkpoint.get("hyper_parameters") or {}).get("vocabulary"), tokenizer.words[4:]
    if isinstance(saved, list) and saved != words:
        first = next((i for i, (a, b) in enumerate(zip(saved, words)) if a != b), min(len(saved), len(words)))
        raise SpeechkitError(f"vocabulary: the checkpoint's {len(saved)} words and the given {len(words)} differ from "
                             f"word {first} on; give the vocabulary it was trained with (or leave it out)")


class AudioCaptioner(L.LightningModule):
    """Encoder-decoder audio captioner (see the module docstring).

    Args:
        vocabulary: the caption words, or a file with one word a line (stored in the checkpoint as the list).
        encoder: encoder sizes (``SpeechEncoder``; ``num_mel_bins`` as the data config's).
        input_norm: ``global`` (per mel bin over the training data; keeps steady sounds and levels) or
            ``utterance`` (per utterance, as the speech tasks; a steady tone vanishes).
        decoder: decoder sizes.
        label_smoothing: of the training and validation cross-entropy (retrieval scores never smooth).
        beam_size: beams when decoding (1 = greedy).
        max_caption_words: longest decoded caption.
        min_caption_words: shortest decoded caption.
        predictions_file: where ``speechkit test`` writes ``{"id", "hyp", "refs"}`` lines (default: the log
            folder's ``predictions.jsonl``).
        optimizer: optimizer factory (LightningCLI ``class_path`` / ``init_args``).
        scheduler: learning-rate scheduler factory, stepped every optimizer step; ``None`` = constant.
    """

    # ``vocabulary`` may be given again as the file it came from: on_load_checkpoint compares the words
    checkpoint_fixed_args: tuple[str, ...] = ("encoder", "decoder", "input_norm")

    def __init__(
        self,
        vocabulary: str | list[str],
        encoder: EncoderConfig | dict[str, Any] = EncoderConfig(),
        decoder: DecoderConfig | dict[str, Any] = DecoderConfig(),
        input_norm: InputNorm = "global",
        label_smoothing: float = 0.1,
        beam_size: int = 2,
        max_caption_words: int = 30,
        min_caption_words: int = 1,
        predictions_file: str | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        encoder, decoder = encoder_config(encoder), decoder_config(decoder)
        if not 0.0 <= label_smoothing < 1.0:
            raise SpeechkitError(f"label_smoothing: expected a value in [0, 1), got {label_smoothing}")
        if max_caption_words + 2 > decoder.max_tokens:
            raise SpeechkitError(f"max_caption_words={max_caption_words} + <bos>/<eos> exceeds decoder.max_tokens="
                                 f"{decoder.max_tokens}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.tokenizer = WordTokenizer(vocabulary_words(vocabulary))
        self.hparams["vocabulary"] = self.tokenizer.words[4:]  # the list: the checkpoint needs no file
        self.hparams["encoder"], self.hparams["decoder"] = asdict(encoder), asdict(decoder)
        self.model = Captioner(len(self.tokenizer), encoder, decoder, input_norm)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self._decoded: dict[str, list] = {"hyps": [], "refs": [], "ids": []}

    # ------------------------------------------------------------------ what the data module reads
    pad_token_id = PAD

    def tokenize(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text)
        if len(ids) > self.model.decoder.config.max_tokens:
            raise SpeechkitError(f"caption {text[:60]!r}: {len(ids)} tokens with <bos>/<eos>, more than "
                                 f"decoder.max_tokens={self.model.decoder.config.max_tokens}")
        return ids

    # ------------------------------------------------------------------ the loss and decoding
    def pair_losses(self, feats: torch.Tensor, lens: torch.Tensor, tokens: torch.Tensor, token_lens: torch.Tensor,
                    label_smoothing: float = 0.0) -> torch.Tensor:
        """Mean token cross-entropy of each (audio, caption) row ``(B,)``: the paper's ``L(a, c)``."""
        memory, memory_pad = self.model.encode(feats, lens)
        losses, mask = self.model.token_losses(memory, memory_pad, tokens, token_lens, label_smoothing)
        return losses.sum(1) / mask.sum(1)

    def loss(self, batch: CaptionBatch) -> torch.Tensor:
        """Cross-entropy (with ``label_smoothing``) averaged over every target token of the batch."""
        speech = batch.speech
        if speech.tokens is None:
            raise SpeechkitError("AudioCaptioner: the batch has no token ids (use speechkit.data.CaptionDataModule)")
        memory, memory_pad = self.model.encode(speech.inputs, speech.input_lens)
        losses, mask = self.model.token_losses(memory, memory_pad, speech.tokens, speech.token_lens,
                                               self.hparams.label_smoothing)
        return losses.sum() / mask.sum()

    def caption(self, feats: torch.Tensor, lens: torch.Tensor) -> list[str]:
        """Decoded captions of a batch of features, in eval mode (the input norm's running statistics)."""
        was_training = self.training
        self.eval()
        try:
            ids = self.model.generate(feats, lens, self.hparams.beam_size, self.hparams.max_caption_words,
                                      self.hparams.min_caption_words)
        finally:
            self.train(was_training)
        return [self.tokenizer.decode(row) for row in ids]

    # ------------------------------------------------------------------ Lightning hooks
    def training_step(self, batch: CaptionBatch, batch_idx: int) -> torch.Tensor:
        loss = check_finite(self.loss(batch), self.global_step, "train_loss")
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def _decode_batch(self, batch: CaptionBatch) -> None:
        self._decoded["hyps"] += self.caption(batch.speech.inputs, batch.speech.input_lens)
        self._decoded["refs"] += batch.references
        self._decoded["ids"] += batch.speech.cut_ids

    def _log_metrics(self, stage: str) -> dict[str, float]:
        decoded, self._decoded = self._decoded, {"hyps": [], "refs": [], "ids": []}
        if not decoded["hyps"] or self.trainer.sanity_checking:
            return {}
        metrics = captioning_metrics(decoded["hyps"], decoded["refs"])
        for name, value in metrics.items():
            self.log(f"{stage}_{name}", value, rank_zero_only=True)
        if stage == "test":
            self._write_predictions(decoded)
        return metrics

    def validation_step(self, batch: CaptionBatch, batch_idx: int) -> None:
        self.log("val_loss", self.loss(batch), batch_size=len(batch), sync_dist=True)
        self._decode_batch(batch)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def test_step(self, batch: CaptionBatch, batch_idx: int) -> None:
        self._decode_batch(batch)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def _write_predictions(self, decoded: dict[str, list]) -> None:
        rows = [{"id": i, "hyp": h, "refs": r} for i, h, r in zip(decoded["ids"], decoded["hyps"], decoded["refs"])]
        write_predictions(rows, predictions_path(self.hparams.predictions_file, self.trainer))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_task_class(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_vocabulary(checkpoint, self.tokenizer)

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.parameters(), self.optimizer_factory, self.scheduler_factory)
