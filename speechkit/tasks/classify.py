"""``AudioClassifier``: utterance classification (spoken digits, intents) with a pluggable head.

A small convolutional encoder over log-mel features, masked mean pooling, then a head: linear + cross-entropy,
harmonic (any distance of *Rethinking the Harmonic Loss*), or the spherical Z-loss of de Brebisson & Vincent.
Switches: per-sample loss re-weighting (Sow et al. 2025, :class:`speechkit.losses.LossReweighter`) and NoiseFiT
noise injection on SNR-selected encoder blocks with its hybrid loss (:class:`speechkit.optim.NoiseFiT`).
It is the base for the continual SLU task: the label comes from any supervision field (``label_field``).
"""

from __future__ import annotations

import inspect
from typing import Any, Literal, Optional, Union

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torch.nn import functional as F

from speechkit.checkpoints import record_task_class
from speechkit.data.batches import SpeechBatch
from speechkit.errors import SpeechkitError
from speechkit.losses import HarmonicHead, LossReweighter, Strategy, ZLoss, check_finite
from speechkit.losses.distances import DistanceName
from speechkit.models.conv_encoder import ConvEncoder
from speechkit.optim import NoiseFiT
from speechkit.optim.warmup import configure_optimizers

HeadKind = Literal["linear", "harmonic", "zloss"]
HEADS = ("linear", "harmonic", "zloss")


def _head_options(options: Optional[dict[str, Any]]) -> dict[str, Any]:
    """``harmonic_options`` checked against ``HarmonicHead``'s own arguments, so a misspelt key names itself."""
    options = dict(options or {})
    allowed = set(inspect.signature(HarmonicHead).parameters) - {"dim", "n_classes", "distance", "n"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise SpeechkitError(f"harmonic_options: unknown keys {unknown}; expected some of {sorted(allowed)}")
    return options


def make_noisefit(noisefit: Union[bool, dict[str, Any]], head: str, num_layers: int) -> Optional[NoiseFiT]:
    """``False`` -> None; ``True`` -> NoiseFiT defaults; a dict -> ``NoiseFiT(**dict)`` (unknown keys are errors).
    Its ``n_layers`` blocks are chosen among the encoder's ``num_layers``."""
    if noisefit is False:
        return None
    if head == "zloss":
        raise SpeechkitError("noisefit: the NoiseFiT hybrid loss is built on cross-entropy; use head linear or "
                             "harmonic, not zloss")
    options = {} if noisefit is True else dict(noisefit)
    try:
        result = NoiseFiT(**options)
    except TypeError as error:
        raise SpeechkitError(f"noisefit: {error}; expected keys of speechkit.optim.NoiseFiT") from error
    if result.n_layers > num_layers:
        raise SpeechkitError(f"noisefit: n_layers {result.n_layers} exceeds the encoder's num_layers {num_layers}")
    return result


class AudioClassifier(L.LightningModule):
    """Classifies utterances into ``labels``.

    Args:
        labels: the class names, in index order; a cut's label (``label_field``) must be one of them.
        label_field: ``"text"`` (the transcript is the class, e.g. "seven") or a key of ``supervision.custom``.
        num_mel_bins: feature bins of the input (as in the data config).
        hidden: encoder width and embedding size.
        num_layers: convolution blocks.
        head: ``linear`` (+ cross-entropy), ``harmonic`` or ``zloss``.
        distance: harmonic-head distance (``speechkit.losses.HarmonicHead``).
        harmonic_n: harmonic exponent n.
        harmonic_options: further ``HarmonicHead`` arguments (e.g. ``{metric_init_scale: 1.0, p: 3.0}``).
        zloss_a: Z-loss sharpness a.
        zloss_b: Z-loss target z-score b (> 0; at most ``sqrt(len(labels) - 1)`` is reachable).
        reweighting: per-sample loss re-weighting strategy (``linupper``, ``quadratic``, ``extremes``, ``upper``,
            ``uniform``); ``None`` = plain mean.
        reweighting_warmup_steps: steps of plain averaging before re-weighting starts.
        noisefit: NoiseFiT on the encoder blocks: ``false`` = off, ``true`` = defaults, or a dict of
            ``speechkit.optim.NoiseFiT`` arguments (e.g. ``{noise_std: 0.1, n_layers: 1}``). Blocks are selected by
            SNR on the first training batch; the training loss becomes the hybrid loss (not with ``zloss`` or
            ``reweighting``).
        optimizer: optimizer factory (LightningCLI ``class_path`` / ``init_args``).
        scheduler: learning-rate scheduler factory, stepped every optimizer step; ``None`` = constant.

    With ``--ckpt_path``, the arguments in ``checkpoint_fixed_args`` (the weights' shapes) must match the
    checkpoint; any other given in the config or on the command line replaces the saved value.
    """

    checkpoint_fixed_args: tuple[str, ...] = (
        "labels", "num_mel_bins", "hidden", "num_layers", "head", "distance", "harmonic_options")

    def __init__(
        self,
        labels: list[str],
        label_field: str = "text",
        num_mel_bins: int = 80,
        hidden: int = 128,
        num_layers: int = 3,
        head: HeadKind = "linear",
        distance: DistanceName = "euclidean",
        harmonic_n: float = 1.0,
        harmonic_options: Optional[dict[str, Any]] = None,
        zloss_a: float = 1.0,
        zloss_b: float = 1.0,
        reweighting: Optional[Strategy] = None,
        reweighting_warmup_steps: int = 0,
        noisefit: Union[bool, dict[str, Any]] = False,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: Optional[LRSchedulerCallable] = None,
    ) -> None:
        super().__init__()
        if len(set(labels)) != len(labels) or len(labels) < 2:
            raise SpeechkitError(f"labels: expected at least two distinct names, got {labels}")
        if head not in HEADS:
            raise SpeechkitError(f"head: expected one of {list(HEADS)}, got {head!r}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.labels = list(labels)
        self.label_index = {name: i for i, name in enumerate(self.labels)}
        self.encoder = ConvEncoder(num_mel_bins, hidden, num_layers)
        self.head_kind = head
        if harmonic_options and head != "harmonic":
            raise SpeechkitError(f"harmonic_options: only for head 'harmonic', got head {head!r}")
        if head == "harmonic":
            options = _head_options(harmonic_options)
            self.head = HarmonicHead(hidden, len(labels), distance=distance, n=harmonic_n, **options)
        else:
            self.head = nn.Linear(hidden, len(labels))
        self.zloss = ZLoss(a=zloss_a, b=zloss_b, reduction="none") if head == "zloss" else None
        self.reweighter = LossReweighter(reweighting, warmup_steps=reweighting_warmup_steps) if reweighting else None
        self.noisefit = make_noisefit(noisefit, head, num_layers)
        if self.noisefit is not None and self.reweighter is not None:
            raise SpeechkitError("noisefit, reweighting: the NoiseFiT hybrid loss is not a per-sample loss; "
                                 "switch on one of them")
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    def targets(self, batch: SpeechBatch) -> torch.Tensor:
        """Class indices ``(B,)`` of a batch; an unknown label names the cut."""
        field = self.hparams.label_field
        out = []
        for cut_id, text, custom in zip(batch.cut_ids, batch.texts, batch.custom):
            value = text if field == "text" else (custom or {}).get(field)
            if str(value) not in self.label_index:
                raise SpeechkitError(f"cut {cut_id!r}: label {value!r} ({field}) is not one of {self.labels}")
            out.append(self.label_index[str(value)])
        return torch.tensor(out, device=batch.inputs.device)

    def forward(self, feats: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Class scores ``(B, C)``: log-probabilities (harmonic) or logits (linear, Z-loss)."""
        return self.head(self.encoder(feats, lens))

    def sample_losses(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-sample losses ``(B,)`` of the head: NLL of the harmonic log-probabilities, Z-loss, or cross-entropy."""
        if self.head_kind == "harmonic":
            return F.nll_loss(scores, targets, reduction="none")
        if self.head_kind == "zloss":
            return self.zloss(scores, targets)
        return F.cross_entropy(scores, targets, reduction="none")

    def training_loss(self, batch: SpeechBatch, targets: torch.Tensor) -> torch.Tensor:
        """The head's loss, re-weighted or replaced by the NoiseFiT hybrid loss when those switches are on."""
        if self.noisefit is not None:
            if not self.noisefit.selected:  # first batch (or first after a resume): pick blocks by SNR
                self.noisefit.select_layers(self.encoder.blocks, lambda: self(batch.inputs, batch.input_lens))
            return self.noisefit.loss(lambda: self(batch.inputs, batch.input_lens), targets)
        losses = self.sample_losses(self(batch.inputs, batch.input_lens), targets)
        return self.reweighter(losses, self.global_step) if self.reweighter is not None else losses.mean()

    def training_step(self, batch: SpeechBatch, batch_idx: int) -> torch.Tensor:
        loss = check_finite(self.training_loss(batch, self.targets(batch)), self.global_step, "train_loss")
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch))
        self.log("head_weight_norm", self.head_weight_norm(), batch_size=len(batch))
        return loss

    def head_weight_norm(self) -> torch.Tensor:
        """Frobenius norm of the head's class-vector matrix ``(C, D)`` (the linear weight or the harmonic class
        centres, without bias or metric): the weight-norm growth the harmonic-loss papers track."""
        return self.head.weight.detach().norm()

    def _eval_step(self, batch: SpeechBatch, prefix: str) -> None:
        scores = self(batch.inputs, batch.input_lens)
        targets = self.targets(batch)
        loss = self.sample_losses(scores, targets).mean()
        self.log(f"{prefix}_loss", loss, batch_size=len(batch), sync_dist=True)
        accuracy = (scores.argmax(-1) == targets).float().mean()
        self.log(f"{prefix}_acc", accuracy, prog_bar=True, batch_size=len(batch), sync_dist=True)

    def validation_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_task_class(self, checkpoint)

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.parameters(), self.optimizer_factory, self.scheduler_factory)
