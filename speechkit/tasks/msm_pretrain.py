"""``MaskedSpeechPretrain``: masked speech modelling on unlabelled cuts, with random or Ask2Mask span masks.

fbank -> conv subsampler -> masked frames replaced by a learned embedding -> Conformer -> linear -> cross-entropy
against the k-means code of each masked frame's input (w2v-BERT's masked prediction, Chung et al. 2021, section
3.1; HuBERT-style k-means targets). Masks come from the data loader (``speechkit.data.masked``): wav2vec2 random
spans, or *Ask2Mask: Guided Data Selection for Masked Speech Modeling* (Baskar et al., IEEE J-STSP 2022) spans
that start only on frames a scorer is confident about (section 3.1), optionally with each utterance's loss scaled
by its confidence (section 3.2: ``sum_b u_b sum_{t in M_b} l_bt / sum_b |M_b|``,
``speechkit.losses.masked.masked_frame_loss``). Use it with ``speechkit.data.masked.MaskedSpeechDataModule``;
the encoder's weights (``encoder.*``) load into ``speechkit.tasks.ctc_finetune.CTCFinetune``.

``objective: contrastive`` replaces the cross-entropy by wav2vec 2.0's contrastive loss (Baevski et al. 2020,
section 3.2): the projected output of each masked frame must pick its own target among distractors drawn from the
utterance's other masked frames; the targets are a learned projection of the frame's k-means centroid (quantized
like wav2vec2's targets, but by the frozen k-means codebook instead of a Gumbel-softmax quantizer, and without the
diversity loss, which that quantizer needs and this one does not).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal, Optional, Union

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torch.nn import functional as F

from speechkit.checkpoints import record_task_class
from speechkit.data.masked import MaskedBatch, MaskingConfig, MaskingMode
from speechkit.errors import SpeechkitError
from speechkit.losses import check_finite
from speechkit.losses.masked import contrastive_frame_losses, masked_frame_loss
from speechkit.models.quantizer import KMeansQuantizer, load_codebook
from speechkit.models.speech_encoder import EncoderConfig, SpeechEncoder, encoder_config, encoder_frames
from speechkit.optim.warmup import configure_optimizers
from speechkit.tensors import lengths_to_mask


class MaskedSpeechPretrain(L.LightningModule):
    """Masked prediction of k-means codes.

    Args:
        codebook: the k-means codebook file (``speechkit msm-codebook CUTS OUT``); saved in the checkpoint too.
        encoder: encoder sizes (``num_mel_bins`` as in the data config); the same in ``CTCFinetune``.
        masking: ``random`` (wav2vec2 spans) or ``ask2mask`` (starts on the scorer's confident frames; the
            training cuts need ``speechkit scorer-confidences``).
        mask_prob: ``p``, probability of an encoder frame being a span start (wav2vec2: 0.065).
        mask_span: frames per span (wav2vec2: 10; 10 frames are 400 ms here).
        quantile: Ask2Mask: starts lie on frames whose confidence is at least this quantile of the utterance's.
        utterance_weighting: scale each utterance's masked loss by its mean scorer confidence (Ask2Mask section 3.2;
            needs confidences, with either masking).
        mask_seed: mixed into the masks' random draws.
        objective: ``prediction`` (cross-entropy on k-means codes, w2v-BERT) or ``contrastive`` (wav2vec2).
        num_distractors: contrastive: distractors per masked frame (wav2vec2: 100).
        temperature: contrastive: cosine-similarity temperature (wav2vec2: 0.1).
        optimizer: optimizer factory (LightningCLI ``class_path`` / ``init_args``).
        scheduler: learning-rate scheduler factory, stepped every optimizer step; ``None`` = constant.
    """

    checkpoint_fixed_args: tuple[str, ...] = ("encoder", "objective")

    def __init__(
        self,
        codebook: str,
        encoder: Union[EncoderConfig, dict[str, Any]] = EncoderConfig(),
        masking: MaskingMode = "random",
        mask_prob: float = 0.065,
        mask_span: int = 10,
        quantile: float = 0.5,
        utterance_weighting: bool = False,
        mask_seed: int = 0,
        objective: Literal["prediction", "contrastive"] = "prediction",
        num_distractors: int = 100,
        temperature: float = 0.1,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: Optional[LRSchedulerCallable] = None,
    ) -> None:
        super().__init__()
        encoder = encoder_config(encoder)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.hparams["encoder"] = asdict(encoder)  # plain values: the checkpoint loads with weights_only
        self.masking = MaskingConfig(masking, mask_prob, mask_span, quantile, encoder_frames,
                                     load_confidences=masking == "ask2mask" or utterance_weighting, seed=mask_seed)
        self.encoder = SpeechEncoder(encoder)
        self.quantizer = KMeansQuantizer(load_codebook(codebook, encoder.num_mel_bins))
        if objective not in ("prediction", "contrastive"):
            raise SpeechkitError(f"objective: expected 'prediction' or 'contrastive', got {objective!r}")
        if objective == "contrastive":
            self.head = nn.Linear(encoder.dim, encoder.dim)
            self.target_project = nn.Linear(self.quantizer.codebook.shape[1], encoder.dim)
        else:
            self.head = nn.Linear(encoder.dim, self.quantizer.num_codes)
        self.utterance_weighting = utterance_weighting
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    def frame_losses(self, batch: MaskedBatch) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Per-frame losses ``(B, T')``, the masked valid frames ``(B, T')`` and (prediction) the hits ``(B, T')``."""
        speech = batch.speech
        hidden, lens = self.encoder(speech.inputs, speech.input_lens, batch.mask)  # (B, T', D)
        codes = self.quantizer(speech.inputs, speech.input_lens)  # (B, T')
        masked = batch.mask & lengths_to_mask(lens, hidden.shape[1])
        if self.hparams.objective == "contrastive":
            targets = self.target_project(self.quantizer.codebook[codes])  # (B, T', D)
            losses = contrastive_frame_losses(self.head(hidden), targets, masked, self.hparams.num_distractors,
                                              self.hparams.temperature, target_ids=codes)
            return losses, masked, None
        logits = self.head(hidden)  # (B, T', K)
        losses = F.cross_entropy(logits.transpose(1, 2), codes, reduction="none")
        return losses, masked, logits.argmax(-1) == codes

    def training_step(self, batch: MaskedBatch, batch_idx: int) -> torch.Tensor:
        losses, masked, hits = self.frame_losses(batch)
        weights = batch.utterance_confidence if self.utterance_weighting else None
        loss = check_finite(masked_frame_loss(losses, masked, weights), self.global_step, "train_loss")
        size = len(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=size)
        if hits is not None and masked.any():
            self.log("train_masked_acc", hits[masked].float().mean(), batch_size=size)
        self.log("masked_fraction", masked.sum() / encoder_frames(batch.speech.input_lens).sum(), batch_size=size)
        return loss

    def _eval_step(self, batch: MaskedBatch, prefix: str) -> None:
        losses, masked, hits = self.frame_losses(batch)
        size = len(batch)
        self.log(f"{prefix}_loss", masked_frame_loss(losses, masked), prog_bar=True, batch_size=size, sync_dist=True)
        if hits is not None and masked.any():
            self.log(f"{prefix}_masked_acc", hits[masked].float().mean(), batch_size=size, sync_dist=True)

    def validation_step(self, batch: MaskedBatch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: MaskedBatch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_task_class(self, checkpoint)

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.parameters(), self.optimizer_factory, self.scheduler_factory)
