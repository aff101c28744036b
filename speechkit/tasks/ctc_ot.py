"""``CTCOptimalTransport``: Siamese pretraining of a speech encoder with CTC plus optimal transport to a text encoder.

*Pre-training for Speech Translation: CTC Meets Optimal Transport* (Le et al., ICML 2023), section 3, eq. (8):
``L = w_ctc CTC(W f_s(x), y) + w_ot S_eps(f_s(x), f_t(y))``. The speech encoder ``f_s``
(``speechkit.models.speech_encoder.SpeechEncoder``) carries a linear CTC head over the source transcript's units
(characters here, ``speechkit.text.characters``; the paper uses phonemes); the text encoder ``f_t``
(``speechkit.models.translation.TextEncoder``) reads the same units and starts from the encoder of an MT model
trained on the corpus's text (``text_encoder_init``: a ``SpeechTranslation(source=text)`` checkpoint), trainable by
default as in the authors' command. ``S_eps`` is the per-utterance debiased Sinkhorn divergence with the position
coordinate (``speechkit.losses.ot.sinkhorn_divergence``; blur 0.05, scaling 0.5, position weight 1, ``w_ctc = 1``,
``w_ot = 0.1``: the paper's values). Both terms are summed per utterance and averaged over the batch (sentence
average). An utterance with fewer encoder frames than CTC needs for its characters (eSpeak's fastest voices say
more than 25 characters a second) adds no CTC loss (``zero_infinity``, the authors' ``--zero-infinity``) but keeps
its OT term; such utterances are counted and logged as ``train_ctc_infeasible`` / ``val_ctc_infeasible``. ``ot_weight = 0`` is CTC-only pretraining (the text encoder is then not run). The ``encoder.*`` weights
start ``SpeechTranslation(encoder_init=...)``.

Validation logs ``val_loss``, ``val_ctc``, ``val_ot`` and the greedy CTC transcripts' ``val_wer`` / ``val_cer``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torch.nn import functional as F

from speechkit.checkpoints import record_task_class
from speechkit.data.batches import SpeechBatch
from speechkit.errors import SpeechkitError
from speechkit.losses import check_finite
from speechkit.losses.ot import sinkhorn_divergence
from speechkit.metrics.stateful import WERMetric
from speechkit.models.ctc_decode import greedy_decode
from speechkit.models.speech_encoder import EncoderConfig, SpeechEncoder, encoder_config
from speechkit.models.translation import (
    TextEncoder,
    TransformerConfig,
    transformer_config,
)
from speechkit.models.whisper_seq2seq import log_wer
from speechkit.optim.warmup import configure_optimizers
from speechkit.tasks.speech_translation import MULTI30K_ALPHABET, load_submodule
from speechkit.tensors import lengths_to_mask
from speechkit.text.characters import BLANK, CharTokenizer
from speechkit.text.normalizers import NormalizerKind


class CTCOptimalTransport(L.LightningModule):
    """CTC + Sinkhorn-divergence pretraining of a speech encoder toward a text encoder.

    Args:
        alphabet: source transcript characters (CTC outputs and text encoder inputs; blank / padding is id 0).
        encoder: speech encoder sizes (``dim`` = the text encoder's).
        text_encoder: text encoder sizes, those of the MT model given as ``text_encoder_init``.
        text_encoder_init: a ``SpeechTranslation(source=text)`` checkpoint whose ``encoder.*`` weights start the
            text encoder; ``None``: random (only sensible with ``ot_weight = 0`` or in tests).
        freeze_text_encoder: keep the text encoder fixed (the paper trains it).
        ctc_weight: ``w_ctc``.
        ot_weight: ``w_ot`` (0 = CTC-only pretraining).
        ot_blur: Sinkhorn ``blur`` (``eps = blur^2``).
        ot_scaling: epsilon-scaling ratio.
        ot_position_weight: weight of the normalized-position coordinate.
        language: language of the WER normalizer.
        normalizer: normalized WER's normalizer (``speechkit.metrics``).
        optimizer: optimizer factory.
        scheduler: learning-rate scheduler factory, stepped every step; ``None`` = constant.
    """

    checkpoint_fixed_args: tuple[str, ...] = ("alphabet", "encoder", "text_encoder")
    checkpoint_source_args: tuple[str, ...] = ("text_encoder_init",)

    def __init__(
        self,
        alphabet: str = MULTI30K_ALPHABET,
        encoder: EncoderConfig | dict[str, Any] = EncoderConfig(),
        text_encoder: TransformerConfig | dict[str, Any] = TransformerConfig(),
        text_encoder_init: str | None = None,
        freeze_text_encoder: bool = False,
        ctc_weight: float = 1.0,
        ot_weight: float = 0.1,
        ot_blur: float = 0.05,
        ot_scaling: float = 0.5,
        ot_position_weight: float = 1.0,
        language: str = "en",
        normalizer: NormalizerKind = "basic",
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        encoder, text_encoder = encoder_config(encoder), transformer_config(text_encoder)
        if encoder.dim != text_encoder.dim:
            raise SpeechkitError(f"speech encoder dim {encoder.dim} != text encoder dim {text_encoder.dim}: optimal "
                                 "transport compares their outputs, give both the same dim")
        if min(ctc_weight, ot_weight) < 0 or ctc_weight + ot_weight == 0:
            raise SpeechkitError(f"ctc_weight, ot_weight: expected >= 0, not both 0, got {ctc_weight}, {ot_weight}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.hparams.update(encoder=asdict(encoder), text_encoder=asdict(text_encoder))
        self.tokenizer = CharTokenizer(alphabet)
        self.encoder = SpeechEncoder(encoder)
        self.output = nn.Linear(encoder.dim, len(self.tokenizer))
        self.text_encoder = TextEncoder(len(self.tokenizer), text_encoder)
        if text_encoder_init is not None:
            load_submodule(self.text_encoder, text_encoder_init, "encoder")
        self.text_encoder.requires_grad_(not freeze_text_encoder)
        self.wer = WERMetric(language=language, normalizer=normalizer)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler

    # ------------------------------------------------------------------ what the data module reads
    pad_token_id = BLANK

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    # ------------------------------------------------------------------ losses
    def losses(self, batch: SpeechBatch) -> dict[str, torch.Tensor]:
        """``ctc``, ``ot`` (batch means of the per-utterance sums), ``loss`` (weighted), ``log_probs``, ``lens``."""
        if batch.tokens is None:
            raise SpeechkitError("CTCOptimalTransport: the batch has no token ids (use speechkit.data.SpeechDataModule)")
        hidden, lens = self.encoder(batch.inputs, batch.input_lens)  # (B, T', D)
        log_probs = self.output(hidden).log_softmax(-1)
        ctc = F.ctc_loss(log_probs.transpose(0, 1).float(), batch.tokens, lens, batch.token_lens, blank=BLANK,
                         reduction="none", zero_infinity=True)  # (B,) per-utterance sums
        infeasible = (ctc == 0) & (batch.token_lens > 0)  # zero_infinity: too few frames for the characters
        ctc = ctc.sum() / len(batch)
        ot = torch.zeros((), device=hidden.device)
        if self.hparams.ot_weight > 0:
            text, text_lens = self.text_encoder(batch.tokens, batch.token_lens)  # (B, U, D)
            ot = sinkhorn_divergence(
                hidden, text, lengths_to_mask(lens, hidden.shape[1]), lengths_to_mask(text_lens, text.shape[1]),
                blur=self.hparams.ot_blur, scaling=self.hparams.ot_scaling,
                position_weight=self.hparams.ot_position_weight,
            ).mean()
        loss = self.hparams.ctc_weight * ctc + self.hparams.ot_weight * ot
        return {"loss": loss, "ctc": ctc, "ot": ot, "log_probs": log_probs, "lens": lens,
                "ctc_infeasible": infeasible.sum().float()}

    def _log(self, stage: str, out: dict[str, torch.Tensor], size: int) -> None:
        for name in ("loss", "ctc", "ot"):
            self.log(f"{stage}_{name}", out[name], prog_bar=name == "loss", batch_size=size, sync_dist=stage == "val")
        self.log(f"{stage}_ctc_infeasible", out["ctc_infeasible"], reduce_fx="sum", batch_size=size)

    def training_step(self, batch: SpeechBatch, batch_idx: int) -> torch.Tensor:
        out = self.losses(batch)
        check_finite(out["loss"], self.global_step, "train_loss")
        self._log("train", out, len(batch))
        return out["loss"]

    def validation_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        out = self.losses(batch)
        self._log("val", out, len(batch))
        hyps = [self.tokenizer.decode(ids) for ids in greedy_decode(out["log_probs"], out["lens"])]
        self.wer.update(batch.texts, hyps)

    def on_validation_epoch_end(self) -> None:
        log_wer(self, self.wer, "val")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_task_class(self, checkpoint)

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.parameters(), self.optimizer_factory, self.scheduler_factory)
