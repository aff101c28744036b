"""``AVDistill``: audio-visual student pretrained to regress frozen speech teachers' layers from clean audio.

*Audio-Visual Representation Learning via Knowledge Distillation from Speech Foundation Models* (Zhang et al.,
Pattern Recognition; arXiv 2502.05766), section 3: the student (``speechkit.models.av_student``: fbank and
mouth-video front-ends, span masking per modality, modality dropout, Transformer fusion) sees the audio (optionally
noisy, ``train_snr``) and the video; the teachers (``speechkit.models.av_teachers``: Whisper, speechkit's masked
speech model, Hugging Face audio encoders) see the clean audio, frozen (no gradient, eval mode, no optimizer state
and not saved in checkpoints: they are rebuilt from ``teachers`` when a checkpoint loads). The loss is
``speechkit.distill.representational.RepresentationalKD``: cosine (or L1) regression of each chosen teacher layer
through a linear head per (teacher, layer), plus soft-label KL on k-means clusters of that layer's features
(fitted at fit start on ``cluster_fit_batches`` training batches), teachers weighted by ``weight``. Heads sit on the
student's last layer (``student_layers: last``) or on the layer at the same relative depth (``depth``).
``AVCTCFinetune`` (``speechkit.tasks.av_ctc``) loads the ``student.*`` weights.

Dimension legend: ``B`` utterances, ``S`` samples, ``T`` frames at 25 fps, ``D`` width.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Mapping, Optional, Sequence, Union

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from speechkit.checkpoints import load_checkpoint, record_task_class
from speechkit.data.batches import SpeechBatch
from speechkit.data.noise_mix import NoiseBank
from speechkit.distill.multilayer import TeacherSpec
from speechkit.distill.representational import RepresentationalKD, cluster_key, temperature
from speechkit.errors import SpeechkitError, dataclass_fields_from
from speechkit.losses import check_finite
from speechkit.models.av_student import AVStudent, AVStudentConfig, student_config
from speechkit.models.av_teachers import FrozenTeacher, HFAudioTeacher, SpeechEncoderTeacher, WhisperTeacher
from speechkit.models.quantizer import fit_codebook
from speechkit.models.speech_encoder import encoder_config
from speechkit.optim.warmup import configure_optimizers
from speechkit.tensors import lengths_to_mask

TEACHER_PREFIX = "teachers."


@dataclass
class TeacherConfig:
    """One frozen teacher.

    Args:
        name: a unique name (it names the loss terms and heads).
        kind: ``whisper`` (``source``: ``ct2:tiny.en``, a CTranslate2 or Hugging Face folder), ``msm`` (a
            ``MaskedSpeechPretrain`` or ``CTCFinetune`` checkpoint) or ``hf`` (a Hugging Face audio-encoder folder).
        source: where the weights are.
        layers: teacher hidden-state indices to regress (0 = the input to the first layer); empty = the last.
        weight: ``w_k``, the teacher's weight in the loss.
    """

    name: str
    kind: Literal["whisper", "msm", "hf"]
    source: str
    layers: list[int] = field(default_factory=list)
    weight: float = 1.0


def teacher_config(value: Union[TeacherConfig, Mapping[str, Any]]) -> TeacherConfig:
    """A ``TeacherConfig`` from itself or a dict; an unknown key names itself."""
    if isinstance(value, TeacherConfig):
        return value
    return TeacherConfig(**dataclass_fields_from(value, TeacherConfig, "teachers"))


def build_teacher(config: TeacherConfig) -> FrozenTeacher:
    """Load one frozen teacher (see :class:`TeacherConfig`)."""
    if config.kind == "whisper":
        return WhisperTeacher(config.source)
    if config.kind == "hf":
        return HFAudioTeacher(config.source)
    if config.kind == "msm":
        from speechkit.tasks.ctc_finetune import encoder_weights

        hparams = load_checkpoint(config.source).get("hyper_parameters", {})
        if "encoder" not in hparams:
            raise SpeechkitError(f"teacher {config.name!r}: checkpoint {config.source} names no encoder sizes "
                                 "(expected a MaskedSpeechPretrain or CTCFinetune checkpoint)")
        return SpeechEncoderTeacher(encoder_config(hparams["encoder"]), encoder_weights(config.source))
    raise SpeechkitError(f"teacher {config.name!r}: kind must be whisper, msm or hf, got {config.kind!r}")


def student_slots(teachers: Sequence[TeacherConfig], built: Sequence[FrozenTeacher], num_layers: int,
                  mode: Literal["last", "depth"], distance: Literal["cosine", "l1"] = "cosine",
                  ) -> tuple[list[int], list[TeacherSpec]]:
    """Which student layer feeds each (teacher, layer) head, and the ``TeacherSpec`` of each teacher.

    Returns:
        ``slots[i]``: the student hidden-state index of head slot ``i``; each spec's ``layer_map`` maps slots to
        teacher layers (one slot per head, so several heads may read the same student layer).
    """
    slots, specs = [], []
    for config, teacher in zip(teachers, built):
        layers = config.layers or [teacher.num_layers]
        bad = [layer for layer in layers if not 0 <= layer <= teacher.num_layers]
        if bad:
            raise SpeechkitError(f"teacher {config.name!r}: layers {bad} out of range 0..{teacher.num_layers}")
        layer_map = {}
        for layer in layers:
            layer_map[len(slots)] = layer
            depth = max(1, round(layer * num_layers / teacher.num_layers))
            slots.append(num_layers if mode == "last" else depth)
        specs.append(TeacherSpec(config.name, teacher.dim, layer_map, config.weight, distance))
    return slots, specs


class AVDistill(L.LightningModule):
    """Representational distillation of frozen speech teachers into an audio-visual student.

    Args:
        teachers: one or more teachers (``name``, ``kind``, ``source``, ``layers``, ``weight``).
        student: the student's sizes, masking and modality dropout (``AVStudentConfig``).
        student_layers: heads on the student's ``last`` layer or on the layer of the same relative ``depth``.
        distance: the regression distance: ``cosine`` or ``l1``.
        num_clusters: k-means clusters per (teacher, layer) for the soft-label KL; 0 = regression only.
        kl_weight: ``beta``, the KL term's weight.
        cluster_fit_batches: training batches whose teacher features fit the k-means at fit start.
        noise_cuts: a noise manifest mixed into the student's audio in training (the teachers hear clean audio).
        train_snr: ``(low, high)`` dB drawn per batch when ``noise_cuts`` is set.
        optimizer: optimizer factory (LightningCLI ``class_path`` / ``init_args``).
        scheduler: learning-rate scheduler factory, stepped every optimizer step; ``None`` = constant.
    """

    checkpoint_fixed_args: tuple[str, ...] = ("student", "teachers", "student_layers", "num_clusters")

    def __init__(
        self,
        teachers: list[Union[TeacherConfig, dict[str, Any]]],
        student: Union[AVStudentConfig, dict[str, Any]] = AVStudentConfig(),
        student_layers: Literal["last", "depth"] = "last",
        distance: Literal["cosine", "l1"] = "cosine",
        num_clusters: int = 32,
        kl_weight: float = 1.0,
        cluster_fit_batches: int = 8,
        noise_cuts: Optional[str] = None,
        train_snr: tuple[float, float] = (0.0, 20.0),
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: Optional[LRSchedulerCallable] = None,
    ) -> None:
        super().__init__()
        configs = [teacher_config(t) for t in teachers]
        if not configs:
            raise SpeechkitError("teachers: give at least one teacher")
        student = student_config(student)
        if distance not in ("cosine", "l1") or student_layers not in ("last", "depth"):
            raise SpeechkitError(f"distance, student_layers: expected cosine|l1 and last|depth, got {distance!r}, "
                                 f"{student_layers!r}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.hparams["student"] = asdict(student)  # plain values: the checkpoint loads with weights_only
        self.hparams["teachers"] = [asdict(c) for c in configs]
        self.student = AVStudent(student)
        self.teachers = torch.nn.ModuleList([build_teacher(c) for c in configs])
        self.slots, specs = student_slots(configs, list(self.teachers), student.num_layers, student_layers, distance)
        self.kd = RepresentationalKD(student.dim, specs, num_clusters, kl_weight)
        self.noise = NoiseBank(noise_cuts) if noise_cuts else None
        self.strict_loading = False  # checkpoints hold no teacher weights
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    # ------------------------------------------------------------------ teachers
    def teacher_hidden(self, batch: SpeechBatch) -> tuple[dict[str, list[torch.Tensor]], dict[str, torch.Tensor]]:
        """Every teacher's hidden states and lengths on the batch's clean audio (no gradient, eval mode)."""
        check_audio(batch)
        hidden, lengths = {}, {}
        for spec, teacher in zip(self.kd.teachers, self.teachers):
            hidden[spec.name], lengths[spec.name] = teacher(batch.inputs, batch.input_lens)
        return hidden, lengths

    def student_hidden(self, batch: SpeechBatch, mask: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The student's hidden states on the (noisy, in training) audio and the video."""
        waveform = batch.inputs
        if self.training and self.noise is not None:
            snr = float(torch.empty(()).uniform_(*self.hparams.train_snr))
            waveform = self.noise.mix(waveform, batch.input_lens, snr)
        return self.student(waveform, batch.input_lens, batch.video, batch.video_lens, "audio_video", mask,
                            batch.cut_ids)

    def distill_loss(self, batch: SpeechBatch, mask: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``L_RKD`` of a batch and its terms."""
        teacher_hidden, teacher_lens = self.teacher_hidden(batch)
        hidden, lens = self.student_hidden(batch, mask)
        return self.kd([hidden[s] for s in self.slots], teacher_hidden, lens, teacher_lens)

    # ------------------------------------------------------------------ k-means targets
    @torch.no_grad()
    def fit_clusters(self, batches: Sequence[SpeechBatch], seed: int = 0) -> None:
        """k-means (``fit_codebook``) and temperature per (teacher, layer) on teacher frames pooled to 25 fps."""
        found: dict[str, list[torch.Tensor]] = {}
        for batch in batches:
            teacher_hidden, teacher_lens = self.teacher_hidden(batch)
            if batch.video is None:
                raise SpeechkitError("AVDistill: the batch has no video (set the data config's video_field)")
            for spec, s, t in self.kd.cluster_keys():  # teacher frames pooled to the student's (the video's) frames
                ht = teacher_hidden[spec.name][t]
                pooled, lens = self.kd.pooled(ht, teacher_lens[spec.name], batch.video.shape[1])
                found.setdefault(cluster_key(spec.name, s), []).append(pooled[lengths_to_mask(lens, pooled.shape[1])])
        fitted = {}
        for key, chunks in found.items():
            features = torch.cat(chunks).float().cpu()
            centroids = fit_codebook(features, self.hparams.num_clusters, seed)
            fitted[key] = (centroids.to(self.device), temperature(features, centroids))
        self.kd.set_clusters(fitted)

    def on_fit_start(self) -> None:
        if self.hparams.num_clusters and not bool(self.kd.clusters_fitted):
            batches = []
            for number, batch in enumerate(self.trainer.datamodule.train_dataloader()):
                if number >= self.hparams.cluster_fit_batches:
                    break
                batches.append(self.trainer.strategy.batch_to_device(batch, self.device))
            self.fit_clusters(batches)
            for name, buffer in self.kd.named_buffers():
                buffer.copy_(self.trainer.strategy.broadcast(buffer, src=0))

    # ------------------------------------------------------------------ training
    def training_step(self, batch: SpeechBatch, batch_idx: int) -> torch.Tensor:
        loss, terms = self.distill_loss(batch, mask=True)
        loss = check_finite(loss, self.global_step, "train_loss")
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch))
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=len(batch))
        return loss

    def validation_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        loss, terms = self.distill_loss(batch, mask=False)
        self.log("val_loss", loss, prog_bar=True, batch_size=len(batch), sync_dist=True)
        for name, value in terms.items():
            self.log(f"val/{name}", value, batch_size=len(batch), sync_dist=True)

    def test_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        loss, _ = self.distill_loss(batch, mask=False)
        self.log("test_loss", loss, batch_size=len(batch), sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Teachers are frozen and rebuilt from their sources: their weights stay out of the checkpoint."""
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith(TEACHER_PREFIX)]:
            del state[key]
        record_task_class(self, checkpoint)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The student's and the heads' parameters (never a teacher's)."""
        return [p for p in [*self.student.parameters(), *self.kd.parameters()] if p.requires_grad]

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.trainable_parameters(), self.optimizer_factory, self.scheduler_factory)


def check_audio(batch: SpeechBatch) -> None:
    """The batch carries 16 kHz waveforms ``(B, S)``, not features."""
    if batch.inputs.dim() != 2:
        raise SpeechkitError(f"audio-visual tasks take waveforms (data config input: waveform), got inputs of shape "
                             f"{tuple(batch.inputs.shape)}")
