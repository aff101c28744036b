"""``WhisperDistill``: a smaller Whisper student distilled from its frozen teacher.

Two Whisper sequence-to-sequence cores (:class:`speechkit.models.whisper_seq2seq.WhisperSeq2Seq`) share one
tokenizer, prompt and decoding setup: the student's (``core``, trained, decoded, validated, saved and exported like
any Whisper task's) and the frozen teacher's (``teacher``). The student is built from the teacher's weights by
structured surgery, and trained with three loss terms:

``L = alpha * CE(labels) + beta * KD(z_s, z_t; T) + gamma * SquareHead(h_s, h_t)``

* KD: ``T^2 KL(softmax(z_t/T) || softmax(z_s/T))`` over the label tokens (Hinton et al. 2015, "Distilling the
  Knowledge in a Neural Network", section 2; Minitron's logit loss, Muralidharan et al. 2024, "Compact Language Models
  via Pruning and Knowledge Distillation").
* SquareHead: per-layer normalized feature MSE (Kurtic et al. 2023, "Sparse Fine-tuning for Inference Acceleration
  of Large Language Models"), each kept student block against the teacher block it came from, encoder and decoder.
* Surgery (:mod:`speechkit.models.whisper_surgery`): remove a contiguous block of ``n`` layers where the angular
  distance ``d(x^l, x^(l+n))`` is smallest (Gromov et al. 2024, "The Unreasonable Ineffectiveness of the Deeper
  Layers"), or given layer indices; and/or keep the ``*_ffn_keep`` most important MLP neurons and the ``*_heads_keep``
  most important attention heads per layer by Minitron's activation importance (section 2.2; self- and
  cross-attention alike).
* ``student_init``: the student starts from other weights of the same shapes (a pruned model written by
  ``speechkit compress``) while the teacher stays dense: sparse fine-tuning with SquareHead; the
  ``GradualPruning`` callback (``schedule: null``) keeps its zeros fixed.

Data-dependent surgery runs in ``setup`` on the first ``calibration_batches`` training batches. The task stores the
plan in its checkpoint (``on_save_checkpoint``) and replays it before the weights load (``on_load_checkpoint``), so
``speechkit.checkpoints.load_task``, ``--ckpt_path`` and ``speechkit export`` rebuild the student's shapes. The
teacher is not a registered submodule: it is neither saved nor optimized.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterable, Literal, Optional

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import Tensor, nn

from speechkit.checkpoints import load_checkpoint, record_task_class
from speechkit.data.batches import SpeechBatch
from speechkit.distill import kd_loss, squarehead_loss
from speechkit.errors import SpeechkitError
from speechkit.losses.checks import check_finite
from speechkit.models.whisper_seq2seq import (
    WhisperCoreTask,
    WhisperSeq2Seq,
)
from speechkit.models.whisper_surgery import (
    STACKS,
    Plan,
    Removal,
    StudentShape,
    apply_surgery,
    layer_map,
    record_layers,
    stack_masks,
)
from speechkit.optim.warmup import adamw_warmup_decay
from speechkit.tensors import IGNORE_INDEX

SURGERY_KEY = "speechkit_surgery"  # this task's entry in its checkpoints: the plan of apply_surgery


class WhisperDistill(WhisperCoreTask, L.LightningModule):
    """Distil a Whisper teacher into a student with fewer layers or narrower MLPs.

    Args:
        model_name_or_path: the teacher (``ct2:tiny.en``, a CTranslate2 or Hugging Face folder); ``init_checkpoint``
            then loads a fine-tuned Whisper task's checkpoint into it. The student starts from the same weights.
        remove_decoder_layers: an int ``n``: remove the contiguous block of ``n`` decoder layers with the smallest
            angular distance on calibration data; a list: remove those layer indices.
        remove_encoder_layers: the same for the encoder.
        decoder_ffn_keep: keep this many MLP neurons in every decoder layer (Minitron importance); ``None`` = all.
        encoder_ffn_keep: the same for the encoder.
        decoder_heads_keep: keep this many heads in every decoder attention (self and cross; Minitron importance
            of each head's output before ``out_proj``); ``None`` = all. The head width stays 64, so the layer's
            attention width becomes ``keep * head_dim`` (the student loads back from its checkpoint, not from a
            Hugging Face config, whose ``head_dim = d_model / heads`` cannot express it: ``speechkit export``
            refuses such a student).
        encoder_heads_keep: the same for the encoder.
        student_init: a Hugging Face Whisper folder of the teacher's shapes whose weights the student starts from
            (e.g. ``<out>/model`` of ``speechkit compress``); the teacher keeps ``model_name_or_path`` +
            ``init_checkpoint``.
        calibration_batches: training batches used to choose layers / neurons.
        alpha: weight of the cross-entropy on the transcript.
        beta: weight of the logit KD loss.
        gamma: weight of SquareHead over the kept encoder and decoder layers.
        temperature: KD softmax temperature.
        kd_direction: ``forward`` KL(teacher || student) or ``reverse``.
        kd_top_k: restrict KD to the teacher's top-k tokens (``None`` = the whole vocabulary).
        language: language code of the data (``en`` or ``None`` for English-only models, which refuse any other).
        task: ``transcribe`` or ``translate``.
        pad_to_30s: pad every input to 30 s (stock Whisper) instead of variable-length encoder input.
        lr: peak learning rate of AdamW (the student is trained in full).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps (then linear decay to ``trainer.max_steps``).
        scheduler: another learning-rate schedule, replacing warm-up + decay.
        num_beams: beam size for validation/test decoding (1 = batched greedy).
        max_new_tokens: decoding length limit.
        init_checkpoint: a Whisper task checkpoint (``model.*`` weights) loaded into the teacher, and so the student.
        predictions_file: where ``speechkit test`` writes ``{"id", "ref", "hyp"}`` lines; default
            ``<log_dir>/predictions.jsonl``.
    """

    checkpoint_fixed_args: tuple[str, ...] = (
        "model_name_or_path", "language", "remove_decoder_layers", "remove_encoder_layers", "decoder_ffn_keep",
        "encoder_ffn_keep", "decoder_heads_keep", "encoder_heads_keep")
    checkpoint_source_args: tuple[str, ...] = ("init_checkpoint", "student_init")

    def __init__(
        self,
        model_name_or_path: str = "ct2:tiny.en",
        remove_decoder_layers: Removal = 0,
        remove_encoder_layers: Removal = 0,
        decoder_ffn_keep: Optional[int] = None,
        encoder_ffn_keep: Optional[int] = None,
        decoder_heads_keep: Optional[int] = None,
        encoder_heads_keep: Optional[int] = None,
        student_init: Optional[str] = None,
        calibration_batches: int = 4,
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 0.0,
        temperature: float = 2.0,
        kd_direction: Literal["forward", "reverse"] = "forward",
        kd_top_k: Optional[int] = None,
        language: Optional[str] = "en",
        task: Literal["transcribe", "translate"] = "transcribe",
        pad_to_30s: bool = False,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 50,
        scheduler: Optional[LRSchedulerCallable] = None,
        num_beams: int = 1,
        max_new_tokens: int = 128,
        init_checkpoint: Optional[str] = None,
        predictions_file: Optional[str] = None,
    ) -> None:
        self._check_weights(alpha, beta, gamma, temperature, calibration_batches)
        super().__init__()
        self.save_hyperparameters(ignore=["scheduler"])  # a callable: not weights_only-loadable
        self.scheduler_factory = scheduler
        self.core = WhisperSeq2Seq.load(model_name_or_path, language, None, task, pad_to_30s, num_beams,
                                        max_new_tokens)
        self.model = self.core.model.train()  # the student; loaders return eval-mode models
        if init_checkpoint:
            self.core.load_task_weights(init_checkpoint)
        self.wer = self.core.wer_metric()
        self.predictions: list[dict[str, str]] = []
        self.shape = StudentShape.of(remove_decoder_layers, remove_encoder_layers, decoder_ffn_keep, encoder_ffn_keep,
                                     decoder_heads_keep, encoder_heads_keep)
        self.shape.check(self.model)
        self._teacher = self.core.with_model(copy.deepcopy(self.model).eval().requires_grad_(False))  # no submodule
        if student_init:
            self._load_student(student_init)
        self.surgery: Optional[Plan] = None
        if not self.shape.needs_data:
            self.apply_surgery(self.plan_surgery([]))

    # ------------------------------------------------------------ checks
    @staticmethod
    def _check_weights(alpha: float, beta: float, gamma: float, temperature: float, calibration_batches: int) -> None:
        if min(alpha, beta, gamma) < 0 or alpha + beta + gamma <= 0:
            raise SpeechkitError(f"alpha, beta, gamma must be >= 0 and not all 0, got {alpha}, {beta}, {gamma}")
        if temperature <= 0:
            raise SpeechkitError(f"temperature must be > 0, got {temperature}")
        if calibration_batches < 1:
            raise SpeechkitError(f"calibration_batches must be >= 1, got {calibration_batches}")

    def _load_student(self, folder: str) -> None:
        """Start the student from another Whisper of the same shapes (strict: every weight must fit)."""
        from speechkit.models.pretrained import load_whisper

        state = load_whisper(folder).model.state_dict()
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise SpeechkitError(f"student_init {folder}: weights do not fit the teacher's shapes ({error})") from None

    @property
    def teacher(self) -> WhisperSeq2Seq:
        """The frozen teacher's core, its model moved to the student's device on first use."""
        model = self._teacher.model
        if next(model.parameters()).device != self.device:
            model.to(self.device)
        return self._teacher


    # ------------------------------------------------------------ surgery
    def setup(self, stage: str) -> None:
        if self.surgery is not None:
            return
        resume = getattr(self.trainer, "ckpt_path", None)  # resuming / testing a student: rebuild its saved shapes
        checkpoint = load_checkpoint(resume) if resume else {}
        if checkpoint.get(SURGERY_KEY) is not None:
            return self.on_load_checkpoint(checkpoint)
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or getattr(datamodule.config, "train_cuts", None) is None:
            raise SpeechkitError("remove_*_layers as a number / *_ffn_keep choose layers on training data: the "
                                 "data module needs train_cuts (or give remove_*_layers as index lists)")
        loader = iter(datamodule.train_dataloader())
        calibration = [batch for _, batch in zip(range(self.hparams.calibration_batches), loader)]
        self.apply_surgery(self.plan_surgery(calibration))

    def plan_surgery(self, batches: Iterable[SpeechBatch]) -> Plan:
        """What to cut, measured on the unmodified student (:meth:`StudentShape.plan`)."""
        return self.shape.plan(self.core, batches)

    def apply_surgery(self, plan: Plan) -> None:
        """Cut the student as ``plan`` says and remember the plan (the checkpoint stores it)."""
        apply_surgery(self.model, plan)
        self.surgery = plan

    def layer_map(self, stack: str) -> list[int]:
        """Teacher state index of every student state of ``stack`` (0 = the stack's input)."""
        return layer_map(self.surgery, stack, len(self._teacher.model.get_submodule(stack)))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the class and the surgery plan: a checkpoint rebuilds the student's shapes from them."""
        record_task_class(self, checkpoint)
        checkpoint[SURGERY_KEY] = self.surgery

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Replay the saved surgery (before Lightning or ``load_task`` loads the student's weights)."""
        if self.surgery is None and checkpoint.get(SURGERY_KEY) is not None:
            self.apply_surgery(checkpoint[SURGERY_KEY])

    # ------------------------------------------------------------ losses
    @staticmethod
    def _run(core: WhisperSeq2Seq, feats: Tensor, lens: Tensor, inputs: Tensor,
             record: bool) -> tuple[Tensor, dict[str, list[Tensor]]]:
        """Logits ``(B, U-1, V)`` of a core's model and (when ``record``) the residual stream of both stacks."""
        with contextlib.ExitStack() as stack:
            states = {name: stack.enter_context(record_layers(core.model, name)) for name in STACKS} if record else {}
            logits = core.logits(feats, lens, inputs)
        return logits, states

    def distill_losses(self, batch: SpeechBatch) -> dict[str, Tensor]:
        """``ce``, ``kd``, ``squarehead`` (each when its weight is > 0) and their weighted sum ``loss``."""
        hp = self.hparams
        feats, lens = self.core.features(batch)
        inputs, labels = self.core.shift_labels(batch)
        record = hp.gamma > 0
        logits, student = self._run(self.core, feats, lens, inputs, record)
        losses = {"ce": nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX)}
        if hp.beta > 0 or hp.gamma > 0:
            with torch.no_grad():
                teacher_logits, teacher = self._run(self.teacher, feats, lens, inputs, record)
        if hp.beta > 0:
            losses["kd"] = kd_loss(logits, teacher_logits, hp.temperature, hp.kd_direction, labels != IGNORE_INDEX, hp.kd_top_k)
        if record:
            masks = stack_masks(batch, lens, feats.shape[-1])
            losses["squarehead"] = sum(
                squarehead_loss(student[name], [teacher[name][j] for j in self.layer_map(name)], masks[name])
                for name in STACKS)
        weights = {"ce": hp.alpha, "kd": hp.beta, "squarehead": hp.gamma}
        losses["loss"] = sum(weights[name] * value for name, value in losses.items())
        return losses

    def forward(self, batch: SpeechBatch) -> Tensor:
        """The student's mean token loss of a batch (prompt and padding masked): the validation loss."""
        return self.core.loss(batch)

    def training_step(self, batch: SpeechBatch, batch_idx: int) -> Tensor:
        losses = self.distill_losses(batch)
        check_finite(losses["loss"], self.global_step, "training loss")
        for name, value in losses.items():
            self.log("train_loss" if name == "loss" else f"train_{name}", value, prog_bar=name == "loss",
                     batch_size=len(batch))
        self.log("audio_s", batch.durations.sum(), reduce_fx="sum", batch_size=len(batch))
        self.log("padding_in", self.core.padding_fraction(batch), batch_size=len(batch))
        return losses["loss"]

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        return adamw_warmup_decay(self.model.parameters(), self.trainer.max_steps, hp.lr, hp.weight_decay,
                                  hp.warmup_steps, self.scheduler_factory)

    def on_fit_start(self) -> None:
        student = sum(p.numel() for p in self.model.parameters())
        teacher = sum(p.numel() for p in self._teacher.model.parameters())
        plan = self.surgery or {}
        kept = {kind: sorted({len(v) for v in plan.get(kind, {}).values()}) for kind in ("neurons", "heads")}
        rank_zero_info(f"WhisperDistill: student {student:,} parameters ({student / teacher:.1%} of the teacher's "
                       f"{teacher:,}); removed layers {plan.get('remove', {})}, MLP neurons kept per layer "
                       f"{kept['neurons'] or 'all'}, heads kept per attention {kept['heads'] or 'all'}")

