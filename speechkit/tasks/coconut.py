"""``CoconutTask``: class-incremental spoken language understanding with COCONUT's contrastive losses.

*Continual Contrastive Spoken Language Understanding* (COCONUT; Cappellazzo et al., ACL Findings 2024). An
utterance classifier (the convolutional encoder of ``AudioClassifier``, masked mean pooling, a linear head over
every class, logits of classes not seen yet masked out) is trained task after task; the model after task ``t-1``
is frozen as the teacher of task ``t``. The training loss of a batch of current-task and rehearsal samples is

``L = CE(cur + buf) + kd_weight * KD(logits of old classes) + nspt_weight * NSPT(buf) + mm_weight * MM(cur)``

* fine-tuning: every weight 0 and no buffer (the runner's ``buffer_size: 0``);
* replay: a buffer; replay + KD: ``kd_weight > 0`` (Hinton logit KD, ``speechkit.distill.kd.kd_loss``, on the
  rehearsal samples or on all, ``kd_on``);
* COCONUT: ``nspt_weight > 0`` (student vs teacher projections of the rehearsal samples,
  ``speechkit.losses.contrastive.nspt_loss``) and ``mm_weight > 0`` (audio projection vs a text encoding of the
  transcript on current-task samples, ``multimodal_contrastive_loss``).

The paper's model is sequence-to-sequence; here the intent is predicted by a classification head (the issue's
alternative), and the MM text side is a small trainable byte-level encoder of the transcript (:class:`TextEncoder`).
Which samples are rehearsal samples is set by the runner with :meth:`begin_task` (their cut ids).
"""

from __future__ import annotations

import copy
from typing import Any, Literal, Optional, Sequence

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torch.nn import functional as F

from speechkit.checkpoints import record_task_class
from speechkit.data.batches import SpeechBatch
from speechkit.distill.kd import kd_loss
from speechkit.errors import SpeechkitError
from speechkit.losses import check_finite
from speechkit.losses.contrastive import multimodal_contrastive_loss, nspt_loss
from speechkit.models.conv_encoder import ConvEncoder
from speechkit.optim.warmup import configure_optimizers
from speechkit.tensors import lengths_to_mask

MASKED_LOGIT = -1e4  # logits of classes not seen yet (finite, so that KD and softmax stay NaN-free)


class TextEncoder(nn.Module):
    """Transcript -> ``(B, D)``: embeddings of the lower-cased UTF-8 bytes, one Conv1d (kernel 3) + GELU, masked
    mean pooling, a linear map. Bytes need no vocabulary: every transcript encodes."""

    def __init__(self, dim: int, out_dim: int, max_bytes: int = 256) -> None:
        super().__init__()
        self.max_bytes = max_bytes
        self.embed = nn.Embedding(257, dim, padding_idx=0)  # byte b -> b + 1; 0 = padding
        self.conv = nn.Conv1d(dim, dim, kernel_size=3, padding=1)
        self.out = nn.Linear(dim, out_dim)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        rows = [list(text.lower().encode("utf-8")[: self.max_bytes]) or [32] for text in texts]
        lens = torch.tensor([len(r) for r in rows], device=self.embed.weight.device)
        ids = torch.zeros(len(rows), int(lens.max()), dtype=torch.long, device=lens.device)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, device=lens.device) + 1
        mask = lengths_to_mask(lens, ids.shape[1]).unsqueeze(-1)  # (B, U, 1)
        x = F.gelu(self.conv(self.embed(ids).transpose(1, 2))).transpose(1, 2) * mask  # (B, U, D)
        return self.out(x.sum(1) / lens[:, None])


class Projector(nn.Sequential):
    """Linear -> GELU -> Linear: the contrastive projection of pooled encoder features."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, out_dim))


class CoconutTask(L.LightningModule):
    """Class-incremental utterance classification with replay, logit KD, NSPT and MM as switches.

    Args:
        labels: every class of the stream, in index order (the runner passes the scenario's classes).
        label_field: ``"text"`` or the ``supervision.custom`` key holding the class (``intent``, ``scenario``).
        num_mel_bins: feature bins of the input (as in the data config).
        hidden: encoder width.
        num_layers: convolution blocks of the encoder.
        proj_dim: size of the contrastive projections (audio and text).
        text_hidden: width of the byte-level text encoder (MM only).
        kd_weight: weight of logit KD from the teacher on the old classes (0 = off).
        kd_temperature: KD softmax temperature.
        kd_on: KD on the ``rehearsal`` samples only, or on ``all`` samples of the batch.
        nspt_weight: weight of the NSPT loss on rehearsal samples (0 = off).
        mm_weight: weight of the multimodal audio-text loss on current-task samples (0 = off).
        temperature: temperature of NSPT and MM.
        optimizer: optimizer factory (re-created for every task).
        scheduler: learning-rate scheduler factory, stepped every optimizer step; ``None`` = constant.
    """

    checkpoint_fixed_args: tuple[str, ...] = ("labels", "num_mel_bins", "hidden", "num_layers", "proj_dim",
                                              "text_hidden")

    def __init__(
        self,
        labels: list[str],
        label_field: str = "intent",
        num_mel_bins: int = 40,
        hidden: int = 128,
        num_layers: int = 3,
        proj_dim: int = 64,
        text_hidden: int = 64,
        kd_weight: float = 0.0,
        kd_temperature: float = 2.0,
        kd_on: Literal["rehearsal", "all"] = "all",
        nspt_weight: float = 0.0,
        mm_weight: float = 0.0,
        temperature: float = 0.1,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: Optional[LRSchedulerCallable] = None,
    ) -> None:
        super().__init__()
        if len(set(labels)) != len(labels) or len(labels) < 2:
            raise SpeechkitError(f"labels: expected at least two distinct names, got {labels}")
        for name, value in (("kd_weight", kd_weight), ("nspt_weight", nspt_weight), ("mm_weight", mm_weight)):
            if value < 0:
                raise SpeechkitError(f"{name} must be >= 0, got {value}")
        if kd_on not in ("rehearsal", "all"):
            raise SpeechkitError(f"kd_on: expected 'rehearsal' or 'all', got {kd_on!r}")
        if temperature <= 0 or kd_temperature <= 0:
            raise SpeechkitError(f"temperature, kd_temperature must be > 0, got {temperature}, {kd_temperature}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.labels = list(labels)
        self.label_index = {name: i for i, name in enumerate(self.labels)}
        self.encoder = ConvEncoder(num_mel_bins, hidden, num_layers)
        self.head = nn.Linear(hidden, len(labels))
        self.projector = Projector(hidden, proj_dim)
        self.text_encoder = TextEncoder(text_hidden, proj_dim) if mm_weight > 0 else None
        self.register_buffer("active", torch.ones(len(labels), dtype=torch.bool))  # classes seen so far
        self.register_buffer("old", torch.zeros(len(labels), dtype=torch.bool))  # classes the teacher knows
        self.register_buffer("task_index", torch.tensor(-1))  # the current task (-1: no stream, every class active)
        self.rehearsal_ids: set[str] = set()
        self._teacher: list[nn.ModuleDict] = []  # a list: the frozen copy is not a submodule (no optimizer, no ckpt)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    # ------------------------------------------------------------------ the stream
    def begin_task(self, seen: Sequence[str], rehearsal_ids: Sequence[str] = ()) -> None:
        """Start a task: ``seen`` = the classes of every task so far (the current one included), ``rehearsal_ids``
        = the buffer's cut ids. The classes seen before become the teacher's: a frozen copy of the model now."""
        unknown = sorted(set(seen) - set(self.label_index))
        if unknown:
            raise SpeechkitError(f"begin_task: classes {unknown} are not among the task's labels {self.labels}")
        seen_now = torch.zeros_like(self.active)
        seen_now[[self.label_index[name] for name in seen]] = True
        self.old.copy_(self.active if self.task_index >= 0 else torch.zeros_like(self.old))
        if (self.old & ~seen_now).any():
            raise SpeechkitError("begin_task: seen must include every class of the earlier tasks")
        self.active.copy_(seen_now)
        self.task_index += 1
        self.rehearsal_ids = set(rehearsal_ids)
        self._teacher = [self._snapshot()] if self.old.any() else []

    def _snapshot(self) -> nn.ModuleDict:
        teacher = nn.ModuleDict({"encoder": self.encoder, "head": self.head, "projector": self.projector})
        teacher = copy.deepcopy(teacher).eval()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        return teacher

    @property
    def teacher(self) -> Optional[nn.ModuleDict]:
        """The frozen model of the previous task (``None`` during the first task)."""
        return self._teacher[0] if self._teacher else None

    # ------------------------------------------------------------------ model
    def targets(self, batch: SpeechBatch) -> torch.Tensor:
        """Class indices ``(B,)``; an unknown label names the cut."""
        field = self.hparams.label_field
        out = []
        for cut_id, text, custom in zip(batch.cut_ids, batch.texts, batch.custom):
            value = text if field == "text" else (custom or {}).get(field)
            if str(value) not in self.label_index:
                raise SpeechkitError(f"cut {cut_id!r}: label {value!r} ({field}) is not one of {self.labels}")
            out.append(self.label_index[str(value)])
        return torch.tensor(out, device=batch.inputs.device)

    def features(self, feats: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Pooled encoder output ``(B, D)`` (also the herding features of the replay buffer)."""
        return self.encoder(feats, lens)

    def masked_logits(self, pooled: torch.Tensor, head: nn.Module) -> torch.Tensor:
        """``(B, C)`` logits with the classes not seen yet at :data:`MASKED_LOGIT`."""
        return head(pooled).masked_fill(~self.active, MASKED_LOGIT)

    def forward(self, feats: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C)`` over every class, unseen ones masked."""
        return self.masked_logits(self.features(feats, lens), self.head)

    def losses(self, batch: SpeechBatch) -> dict[str, torch.Tensor]:
        """The loss terms of a batch: ``ce`` always, ``kd``, ``nspt`` and ``mm`` where switched on and defined."""
        targets = self.targets(batch)
        pooled = self.features(batch.inputs, batch.input_lens)  # (B, D)
        logits = self.masked_logits(pooled, self.head)
        terms = {"ce": F.cross_entropy(logits, targets)}
        rehearsal = torch.tensor([cut_id in self.rehearsal_ids for cut_id in batch.cut_ids], device=pooled.device)
        h = self.hparams
        teacher = self.teacher
        if teacher is not None and (h.kd_weight > 0 or h.nspt_weight > 0):
            with torch.no_grad():
                teacher_pooled = teacher["encoder"](batch.inputs, batch.input_lens)
            if h.kd_weight > 0:
                rows = rehearsal if h.kd_on == "rehearsal" else torch.ones_like(rehearsal)
                if rows.any():
                    terms["kd"] = kd_loss(logits[rows][:, self.old], teacher["head"](teacher_pooled[rows])[:, self.old],
                                          h.kd_temperature)
            if h.nspt_weight > 0 and rehearsal.any():
                terms["nspt"] = nspt_loss(self.projector(pooled[rehearsal]),
                                          teacher["projector"](teacher_pooled[rehearsal]), targets[rehearsal],
                                          h.temperature)
        current = ~rehearsal
        if h.mm_weight > 0 and int(current.sum()) >= 2:
            texts = [text for text, keep in zip(batch.texts, current.tolist()) if keep]
            terms["mm"] = multimodal_contrastive_loss(self.projector(pooled[current]), self.text_encoder(texts),
                                                      targets[current], h.temperature)
        return terms

    def training_step(self, batch: SpeechBatch, batch_idx: int) -> torch.Tensor:
        terms = self.losses(batch)
        weights = {"ce": 1.0, "kd": self.hparams.kd_weight, "nspt": self.hparams.nspt_weight,
                   "mm": self.hparams.mm_weight}
        loss = check_finite(sum(weights[name] * value for name, value in terms.items()), self.global_step,
                            "train_loss")
        for name, value in terms.items():
            self.log(f"train_{name}", value.detach(), batch_size=len(batch))
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    @torch.no_grad()
    def predict_classes(self, feats: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Predicted class indices ``(B,)`` among the classes seen so far."""
        return self(feats, lens).argmax(-1)

    def _eval_step(self, batch: SpeechBatch, prefix: str) -> None:
        targets = self.targets(batch)
        logits = self(batch.inputs, batch.input_lens)
        self.log(f"{prefix}_loss", F.cross_entropy(logits, targets), batch_size=len(batch), sync_dist=True)
        accuracy = (logits.argmax(-1) == targets).float().mean()
        self.log(f"{prefix}_acc", accuracy, prog_bar=True, batch_size=len(batch), sync_dist=True)

    def validation_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_task_class(self, checkpoint)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        return configure_optimizers(params, self.optimizer_factory, self.scheduler_factory)
