"""``AudioClassifier``: utterance classification (spoken digits, intents) with a pluggable head.

A small convolutional encoder over log-mel features, masked mean pooling, then a head: linear + cross-entropy,
harmonic (any distance of *Rethinking the Harmonic Loss*), or the spherical Z-loss of de Brebisson & Vincent.
It is the base for the continual SLU task: the label comes from any supervision field (``label_field``).
"""

from __future__ import annotations

from typing import Literal, Optional

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from speechkit.data.batches import SpeechBatch
from speechkit.errors import SpeechkitError

HeadKind = Literal["linear", "harmonic", "zloss"]


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, T)`` boolean mask of valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class ConvEncoder(nn.Module):
    """Conv1d stack (stride 2 each) over ``(B, T, F)`` features -> ``(B, D)`` by masked mean pooling."""

    def __init__(self, num_mel_bins: int, hidden: int, num_layers: int) -> None:
        super().__init__()
        layers, channels = [], num_mel_bins
        for _ in range(num_layers):
            layers += [nn.Conv1d(channels, hidden, kernel_size=5, stride=2, padding=2), nn.GELU()]
            channels = hidden
        self.convs = nn.Sequential(*layers)
        self.num_layers = num_layers

    def forward(self, feats: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lens, feats.shape[1]).unsqueeze(-1)  # (B, T, 1)
        mean = (feats * mask).sum(1, keepdim=True) / lens[:, None, None]
        var = (((feats - mean) * mask) ** 2).sum(1, keepdim=True) / lens[:, None, None]
        x = ((feats - mean) / (var + 1e-5).sqrt() * mask).transpose(1, 2)  # (B, F, T), utterance-normalized
        x = self.convs(x)  # (B, D, T')
        for _ in range(self.num_layers):
            lens = (lens - 1) // 2 + 1
        keep = lengths_to_mask(lens, x.shape[-1]).unsqueeze(1)  # (B, 1, T')
        return (x * keep).sum(-1) / lens[:, None]  # (B, D)


class AudioClassifier(L.LightningModule):
    """Classifies utterances into ``labels``.

    Args:
        labels: the class names, in index order; a cut's label (``label_field``) must be one of them.
        label_field: ``"text"`` (the transcript is the class, e.g. "seven") or a key of ``supervision.custom``.
        num_mel_bins: feature bins of the input (as in the data config).
        hidden: encoder width and embedding size.
        num_layers: convolution layers.
        head: ``linear`` (+ cross-entropy), ``harmonic`` or ``zloss``.
        distance: harmonic-head distance (``speechkit.losses.HarmonicHead``).
        harmonic_n: harmonic exponent n.
        zloss_a: Z-loss scale a.
        zloss_b: Z-loss shift b.
        optimizer: optimizer factory (LightningCLI ``class_path`` / ``init_args``).
        scheduler: learning-rate scheduler factory, stepped every optimizer step; ``None`` = constant.
    """

    def __init__(
        self,
        labels: list[str],
        label_field: str = "text",
        num_mel_bins: int = 80,
        hidden: int = 128,
        num_layers: int = 3,
        head: HeadKind = "linear",
        distance: str = "euclidean",
        harmonic_n: float = 1.0,
        zloss_a: float = 1.0,
        zloss_b: float = 0.0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: Optional[LRSchedulerCallable] = None,
    ) -> None:
        super().__init__()
        if len(set(labels)) != len(labels) or len(labels) < 2:
            raise SpeechkitError(f"labels must be at least two distinct names, got {labels}")
        self.save_hyperparameters()
        self.labels = list(labels)
        self.label_index = {name: i for i, name in enumerate(self.labels)}
        self.encoder = ConvEncoder(num_mel_bins, hidden, num_layers)
        self.head_kind = head
        self.head = self._make_head(head, hidden, len(labels), distance, harmonic_n)
        self.zloss = None
        if head == "zloss":
            from speechkit.losses import ZLoss

            self.zloss = ZLoss(a=zloss_a, b=zloss_b)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    @staticmethod
    def _make_head(head: HeadKind, dim: int, n_classes: int, distance: str, n: float) -> nn.Module:
        if head == "harmonic":
            from speechkit.losses import HarmonicHead

            return HarmonicHead(dim, n_classes, distance=distance, n=n)
        if head in ("linear", "zloss"):
            return nn.Linear(dim, n_classes)
        raise SpeechkitError(f"head must be one of linear, harmonic, zloss; got {head!r}")

    def targets(self, batch: SpeechBatch) -> torch.Tensor:
        """Class indices ``(B,)`` of a batch; an unknown label names the cut."""
        field = self.hparams.label_field
        out = []
        for cut_id, text, custom in zip(batch.cut_ids, batch.texts, batch.custom):
            value = text if field == "text" else custom.get(field)
            if str(value) not in self.label_index:
                raise SpeechkitError(f"cut {cut_id!r}: label {value!r} ({field}) is not one of {self.labels}")
            out.append(self.label_index[str(value)])
        return torch.tensor(out, device=batch.inputs.device)

    def forward(self, feats: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Class scores ``(B, C)``: log-probabilities (harmonic) or logits (linear, Z-loss)."""
        return self.head(self.encoder(feats, lens))

    def loss(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.head_kind == "harmonic":
            return nn.functional.nll_loss(scores, targets)
        if self.head_kind == "zloss":
            return self.zloss(scores, targets)
        return nn.functional.cross_entropy(scores, targets)

    def training_step(self, batch: SpeechBatch, batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch.inputs, batch.input_lens), self.targets(batch))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.global_step}")
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch))
        self.log("head_weight_norm", self.head_weight_norm(), batch_size=len(batch))
        return loss

    def head_weight_norm(self) -> torch.Tensor:
        """Frobenius norm of the head's parameters (the weight-norm growth the harmonic-loss papers track)."""
        return torch.sqrt(sum((p.detach() ** 2).sum() for p in self.head.parameters()))

    def _eval_step(self, batch: SpeechBatch, prefix: str) -> None:
        scores = self(batch.inputs, batch.input_lens)
        targets = self.targets(batch)
        self.log(f"{prefix}_loss", self.loss(scores, targets), batch_size=len(batch), sync_dist=True)
        accuracy = (scores.argmax(-1) == targets).float().mean()
        self.log(f"{prefix}_acc", accuracy, prog_bar=True, batch_size=len(batch), sync_dist=True)

    def validation_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
