"""``CTCFinetune``: character CTC speech recognition on the masked-pretraining encoder, from scratch or pretrained.

The encoder is ``speechkit.models.speech_encoder.SpeechEncoder`` (fbank -> 4x conv subsampling -> Conformer); a
linear layer gives per-frame log-probabilities over blank + characters (``speechkit.text.characters``), trained with
CTC (Graves et al. 2006). ``pretrained`` loads the ``encoder.*`` weights of a ``MaskedSpeechPretrain`` checkpoint
by name (the Ask2Mask recipe's fine-tuning stage: *Ask2Mask: Guided Data Selection for Masked Speech Modeling*,
Baskar et al. 2022, section 4). Decoding is greedy or prefix beam search without a language model; validation logs
``val_loss`` and ``val_wer`` / ``val_cer`` (raw and normalized, ``speechkit.metrics``); ``speechkit test`` writes
``predictions.jsonl``. As a scorer, ``frame_posteriors`` gives the per-frame posteriors that ``speechkit
scorer-confidences`` stores on cuts.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal, Optional, Union

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torch.nn import functional as F

from speechkit.checkpoints import load_part, prefixed_weights, record_task_class
from speechkit.data.batches import SpeechBatch
from speechkit.errors import SpeechkitError
from speechkit.losses import check_finite
from speechkit.metrics.stateful import WERMetric
from speechkit.models.ctc_decode import beam_decode, greedy_decode
from speechkit.models.speech_encoder import FBANK_FRAME_SHIFT, SUBSAMPLING, EncoderConfig, SpeechEncoder, encoder_config
from speechkit.models.whisper_seq2seq import log_wer, prediction_rows, predictions_path, write_predictions
from speechkit.optim.warmup import configure_optimizers
from speechkit.text.characters import BLANK, ENGLISH_ALPHABET, CharTokenizer
from speechkit.text.normalizers import NormalizerKind

ENCODER_PREFIX = "encoder."


def encoder_weights(path: str) -> dict[str, torch.Tensor]:
    """The ``encoder.*`` weights of a checkpoint (``MaskedSpeechPretrain`` or ``CTCFinetune``), prefix removed."""
    return prefixed_weights(path, ENCODER_PREFIX, "a MaskedSpeechPretrain or CTCFinetune checkpoint")


class CTCRecognition:
    """What a character-CTC LightningModule shares: decoding, the CTC loss and the training / evaluation hooks.

    The task gives ``batch_log_probs(batch) -> (log_probs (B, T, V), lens (B,))`` and has ``tokenizer``, ``wer``,
    ``predictions``, ``optimizer_factory``, ``scheduler_factory`` and the hparams ``decoding``, ``beam_size`` and
    ``predictions_file``; ``frames`` names its output frames in errors.
    """

    frames = "encoder frames"

    def decode(self, log_probs: torch.Tensor, lens: torch.Tensor) -> list[str]:
        """Texts of a batch, greedy or by beam search."""
        if self.hparams.decoding == "beam":
            ids = beam_decode(log_probs, lens, self.hparams.beam_size)
        else:
            ids = greedy_decode(log_probs, lens)
        return [self.tokenizer.decode(row) for row in ids]

    def ctc_loss(self, batch: SpeechBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean CTC loss (per target length, as ``F.ctc_loss``'s ``mean``), with the log-probs and lengths; a cut
        too short for its characters is an error."""
        if batch.tokens is None:
            raise SpeechkitError(f"{type(self).__name__}: the batch has no token ids (use "
                                 "speechkit.data.SpeechDataModule)")
        log_probs, lens = self.batch_log_probs(batch)
        too_short = (lens < batch.token_lens).nonzero().flatten().tolist()
        if too_short:
            i = too_short[0]
            raise SpeechkitError(f"cut {batch.cut_ids[i]!r}: {int(lens[i])} {self.frames} cannot carry its "
                                 f"{int(batch.token_lens[i])} characters under CTC")
        loss = F.ctc_loss(log_probs.transpose(0, 1).float(), batch.tokens, lens, batch.token_lens, blank=BLANK,
                          reduction="mean", zero_infinity=True)
        return loss, log_probs, lens

    def training_step(self, batch: SpeechBatch, batch_idx: int) -> torch.Tensor:
        loss = check_finite(self.ctc_loss(batch)[0], self.global_step, "train_loss")
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def validation_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        loss, log_probs, lens = self.ctc_loss(batch)
        self.log("val_loss", loss, batch_size=len(batch), sync_dist=True)
        self.wer.update(batch.texts, self.decode(log_probs, lens))

    def on_validation_epoch_end(self) -> None:
        log_wer(self, self.wer, "val")

    def test_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        log_probs, lens = self.batch_log_probs(batch)
        hyps = self.decode(log_probs, lens)
        self.wer.update(batch.texts, hyps)
        self.predictions += prediction_rows(batch, hyps)

    def on_test_epoch_end(self) -> None:
        log_wer(self, self.wer, "test")
        write_predictions(self.predictions, predictions_path(self.hparams.predictions_file, self.trainer))
        self.predictions = []

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_task_class(self, checkpoint)

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.parameters(), self.optimizer_factory, self.scheduler_factory)


class CTCFinetune(CTCRecognition, L.LightningModule):
    """Character CTC on a (pretrained) speech encoder.

    Args:
        alphabet: the output characters (blank is added as id 0); include ``" "`` for word boundaries.
        encoder: encoder sizes, the same as the pretrained checkpoint's (``MaskedSpeechPretrain.encoder``).
        pretrained: a ``MaskedSpeechPretrain`` (or ``CTCFinetune``) checkpoint whose ``encoder.*`` weights are
            loaded; ``None`` trains from scratch.
        freeze_encoder_steps: train only the output layer for this many steps first (0 = never frozen).
        decoding: ``greedy`` (best path) or ``beam`` (prefix beam search, no language model).
        beam_size: beams of ``beam`` decoding.
        language: language code of the WER normalizer (``speechkit.metrics``).
        normalizer: the normalized WER's normalizer: ``auto`` (Whisper's English one for ``en``: it writes number
            words as digits, so a spoken number counts as one word), ``basic``, ``whisper_en`` or ``none``.
        predictions_file: where ``speechkit test`` writes ``{"id", "ref", "hyp"}`` lines (default: the log folder's
            ``predictions.jsonl``).
        optimizer: optimizer factory (LightningCLI ``class_path`` / ``init_args``).
        scheduler: learning-rate scheduler factory, stepped every optimizer step; ``None`` = constant.
    """

    checkpoint_fixed_args: tuple[str, ...] = ("alphabet", "encoder")
    checkpoint_source_args: tuple[str, ...] = ("pretrained",)

    def __init__(
        self,
        alphabet: str = ENGLISH_ALPHABET,
        encoder: Union[EncoderConfig, dict[str, Any]] = EncoderConfig(),
        pretrained: Optional[str] = None,
        freeze_encoder_steps: int = 0,
        decoding: Literal["greedy", "beam"] = "greedy",
        beam_size: int = 8,
        language: str = "en",
        normalizer: NormalizerKind = "auto",
        predictions_file: Optional[str] = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: Optional[LRSchedulerCallable] = None,
    ) -> None:
        super().__init__()
        encoder = encoder_config(encoder)
        if decoding not in ("greedy", "beam") or beam_size < 1:
            raise SpeechkitError(f"decoding, beam_size: expected greedy|beam and >= 1, got {decoding!r}, {beam_size}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.hparams["encoder"] = asdict(encoder)  # plain values: the checkpoint loads with weights_only
        self.tokenizer = CharTokenizer(alphabet)
        self.encoder = SpeechEncoder(encoder)
        self.output = nn.Linear(encoder.dim, len(self.tokenizer))
        if pretrained is not None:
            self.load_encoder(pretrained)
        self.wer = WERMetric(language=language, normalizer=normalizer)
        self.predictions: list[dict[str, str]] = []
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    # ------------------------------------------------------------------ what the data module and scorers read
    pad_token_id = BLANK
    frame_shift = FBANK_FRAME_SHIFT * SUBSAMPLING  # seconds per output frame

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def load_encoder(self, path: str) -> None:
        """Load a checkpoint's ``encoder.*`` weights by name; a missing, extra or misshapen one names itself."""
        load_part(self.encoder, encoder_weights(path), path, "encoder")

    def forward(self, feats: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities ``(B, T', V)`` and output lengths ``(B,)``."""
        hidden, out_lens = self.encoder(feats, lens)
        return self.output(hidden).log_softmax(-1), out_lens

    @torch.no_grad()
    def frame_posteriors(self, feats: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posteriors ``(B, T', V)`` (blank included) and lengths, in eval mode: a scorer's view."""
        log_probs, out_lens = self(feats, lens)
        return log_probs.exp(), out_lens

    def batch_log_probs(self, batch: SpeechBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return self(batch.inputs, batch.input_lens)

    # ------------------------------------------------------------------ training
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        frozen = self.global_step < self.hparams.freeze_encoder_steps
        self.encoder.requires_grad_(not frozen)
