"""``WhisperDistill``: a smaller Whisper student distilled from its frozen teacher.

Two Whisper sequence-to-sequence cores (:class:`speechkit.models.whisper_seq2seq.WhisperSeq2Seq`) share one
tokenizer, prompt and decoding setup: the student's (``core``, trained, decoded, validated, saved and exported like
any Whisper task's) and the frozen teacher's (``teacher``). The student is built from the teacher's weights by
structured surgery, and trained with three loss terms:

``L = alpha * CE(labels) + beta * KD(z_s, z_t; T) + gamma * SquareHead(h_s, h_t)``

* KD: ``T^2 KL(softmax(z_t/T) || softmax(z_s/T))`` over the label tokens (Hinton et al. 2015, "Distilling the
  Knowledge in a Neural Network", section 2; Minitron's logit loss, Muralidharan et al. 2024, "Compact Language Models
  via Pruning and Knowledge Distillation", section 3).
* SquareHead: per-layer normalized feature MSE (Kurtic et al. 2023, "Sparse Fine-tuning for Inference Acceleration
  of Large Language Models", section 3, equation 3), each kept student block against the teacher block it came from,
  encoder and decoder.
* Surgery: remove a contiguous block of ``n`` layers where the angular distance ``d(x^l, x^(l+n))`` is smallest
  (Gromov et al. 2024, "The Unreasonable Ineffectiveness of the Deeper Layers", section 3, equation 7), or given layer
  indices; and/or keep the ``*_ffn_keep`` most important MLP neurons and the ``*_heads_keep`` most important attention
  heads per layer by Minitron's activation importance (section 2.1; self- and cross-attention alike).
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
from typing import Any, Iterable, Iterator, Literal, Optional, Union

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import Tensor, nn
from transformers import GenerationConfig, PreTrainedTokenizerBase, WhisperFeatureExtractor

from speechkit.checkpoints import load_checkpoint, record_task_class
from speechkit.compress.prune import (
    ActivationImportance,
    angular_distance_profile,
    best_block,
    prune_heads,
    remove_layers,
    slice_mlp,
    top_indices,
)
from speechkit.data.batches import SpeechBatch
from speechkit.distill import kd_loss, squarehead_loss
from speechkit.errors import SpeechkitError
from speechkit.losses.checks import check_finite
from speechkit.models.whisper_encoder import encoder_lengths
from speechkit.models.whisper_seq2seq import (
    WhisperSeq2Seq,
    log_wer,
    prediction_rows,
    predictions_path,
    write_predictions,
)
from speechkit.optim.warmup import adamw_warmup_decay
from speechkit.tensors import IGNORE_INDEX, lengths_to_mask

SURGERY_KEY = "speechkit_surgery"  # this task's entry in its checkpoints: the plan of apply_surgery
# stack path -> (config key of its depth, config key of its MLP width)
STACKS = {"model.encoder.layers": ("encoder_layers", "encoder_ffn_dim"),
          "model.decoder.layers": ("decoder_layers", "decoder_ffn_dim")}
HEADS = {"model.encoder.layers": ("encoder_attention_heads", ("self_attn",)),
         "model.decoder.layers": ("decoder_attention_heads", ("self_attn", "encoder_attn"))}
Removal = Union[int, list[int]]


@contextlib.contextmanager
def record_layers(model: nn.Module, stack: str) -> Iterator[list[Tensor]]:
    """Collect the residual stream around the blocks of ``stack``: the first block's input, then every block's output.

    Yields a list that fills with ``L + 1`` tensors ``(B, T, D)`` per forward (HF ``hidden_states`` without the final
    layer norm; the variable-length encoder does not return hidden states, so hooks are used for both stacks).
    """
    layers, states = model.get_submodule(stack), []
    handles = [layers[0].register_forward_pre_hook(lambda _m, args: states.append(args[0]))]
    handles += [layer.register_forward_hook(lambda _m, _a, out: states.append(out)) for layer in layers]
    try:
        yield states
    finally:
        for handle in handles:
            handle.remove()


class WhisperDistill(L.LightningModule):
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
        self.removals = {"model.decoder.layers": remove_decoder_layers, "model.encoder.layers": remove_encoder_layers}
        self.ffn_keep = {"model.decoder.layers": decoder_ffn_keep, "model.encoder.layers": encoder_ffn_keep}
        self.heads_keep = {"model.decoder.layers": decoder_heads_keep, "model.encoder.layers": encoder_heads_keep}
        self._check_surgery()
        self._teacher = self.core.with_model(copy.deepcopy(self.model).eval().requires_grad_(False))  # no submodule
        if student_init:
            self._load_student(student_init)
        self.surgery: Optional[dict[str, Any]] = None
        if not self._needs_data():
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

    def _check_surgery(self) -> None:
        for stack, removal in self.removals.items():
            depth = len(self.model.get_submodule(stack))
            side = stack.split(".")[1]
            if isinstance(removal, int) and not 0 <= removal < depth:
                raise SpeechkitError(f"remove_{side}_layers={removal}: expected 0 <= n < {depth} layers")
            if isinstance(removal, list) and (len(set(removal)) >= depth or any(not 0 <= i < depth for i in removal)):
                raise SpeechkitError(f"remove_{side}_layers={removal}: expected distinct indices in [0, {depth}) "
                                     "that leave at least one layer")
            keep, width = self.ffn_keep[stack], self.model.config.to_dict()[STACKS[stack][1]]
            if keep is not None and not 1 <= keep <= width:
                raise SpeechkitError(f"{side}_ffn_keep={keep}: expected 1 <= keep <= {width}")
            keep, heads = self.heads_keep[stack], self.model.config.to_dict()[HEADS[stack][0]]
            if keep is not None and not 1 <= keep <= heads:
                raise SpeechkitError(f"{side}_heads_keep={keep}: expected 1 <= keep <= {heads}")

    def _load_student(self, folder: str) -> None:
        """Start the student from another Whisper of the same shapes (strict: every weight must fit)."""
        from speechkit.models.pretrained import load_whisper

        state = load_whisper(folder).model.state_dict()
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise SpeechkitError(f"student_init {folder}: weights do not fit the teacher's shapes ({error})") from None

    def _needs_data(self) -> bool:
        return any(isinstance(r, int) and r > 0 for r in self.removals.values()) or any(
            k is not None for k in [*self.ffn_keep.values(), *self.heads_keep.values()])

    @property
    def teacher(self) -> WhisperSeq2Seq:
        """The frozen teacher's core, its model moved to the student's device on first use."""
        model = self._teacher.model
        if next(model.parameters()).device != self.device:
            model.to(self.device)
        return self._teacher

    # ------------------------------------------------------------ what the data module reads from the task
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

    # ------------------------------------------------------------ what an exporter / decoder reads from the task
    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The core's tokenizer."""
        return self.core.tokenizer

    @property
    def feature_extractor(self) -> WhisperFeatureExtractor:
        """The core's feature extractor."""
        return self.core.feature_extractor

    @property
    def generation_config(self) -> GenerationConfig:
        """The core's generation config."""
        return self.core.generation_config

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

    @torch.no_grad()
    def plan_surgery(self, batches: Iterable[SpeechBatch]) -> dict[str, Any]:
        """Which layers to remove and which MLP neurons to keep, measured on the unmodified model.

        Returns:
            ``{"remove": {stack: [layer indices]}, "neurons": {"<stack>.<i>": [kept neuron indices]},
            "heads": {"<stack>.<i>.<attention>": [kept head indices]}}``.
        """
        batches = list(batches)
        if self._needs_data() and not batches:
            raise SpeechkitError("plan_surgery needs calibration batches for angular distance / neuron importance")
        plan: dict[str, Any] = {"remove": {}, "neurons": {}, "heads": {}}
        profiles = {stack: [] for stack, r in self.removals.items() if isinstance(r, int) and r > 0}
        patterns = [f"{stack}.*.fc1" for stack, keep in self.ffn_keep.items() if keep is not None]
        config = self.model.config.to_dict()
        heads = {f"{stack}.*.{attn}.out_proj": config[HEADS[stack][0]]
                 for stack, keep in self.heads_keep.items() if keep is not None for attn in HEADS[stack][1]}
        scoring = patterns or heads
        with ActivationImportance(self.model, neurons=patterns, heads=heads) if scoring else \
                contextlib.nullcontext() as imp:
            for batch in batches:
                self._profile_batch(batch, profiles)
        for stack, removal in self.removals.items():
            if isinstance(removal, list):
                plan["remove"][stack] = sorted(removal)
            elif removal > 0:
                start = best_block(torch.stack(profiles[stack]).mean(0))
                plan["remove"][stack] = list(range(start, start + removal))
        for stack, keep in self.ffn_keep.items():
            for i in range(len(self.model.get_submodule(stack)) if keep is not None else 0):
                plan["neurons"][f"{stack}.{i}"] = top_indices(imp.scores[f"{stack}.{i}.fc1"], keep).tolist()
        for stack, keep in self.heads_keep.items():
            for i in range(len(self.model.get_submodule(stack)) if keep is not None else 0):
                for attn in HEADS[stack][1]:
                    name = f"{stack}.{i}.{attn}"
                    plan["heads"][name] = top_indices(imp.scores[f"{name}.out_proj"], keep).tolist()
        return plan

    def _profile_batch(self, batch: SpeechBatch, profiles: dict[str, list[Tensor]]) -> None:
        """Add this batch's angular-distance profile of every stack being cut (decoder: last real token)."""
        feats, lens = self.core.features(batch)
        inputs, _ = self.core.shift_labels(batch)
        masks = self._masks(batch, lens, feats.shape[-1])
        with contextlib.ExitStack() as stack:
            states = {name: stack.enter_context(record_layers(self.model, name)) for name in profiles}
            self.core.logits(feats, lens, inputs)
        for name, hidden in states.items():
            tokens = "last" if "decoder" in name else "all"
            profiles[name].append(angular_distance_profile(hidden, self.removals[name], masks[name], tokens))

    def apply_surgery(self, plan: dict[str, Any]) -> None:
        """Apply a plan from :meth:`plan_surgery` to the student (neurons first, then layers)."""
        for name, keep in plan["neurons"].items():
            slice_mlp(self.model, f"{name}.fc1", f"{name}.fc2", torch.tensor(keep))
            setattr(self.model.config, STACKS[name.rsplit(".", 1)[0]][1], len(keep))
        for name, keep in plan.get("heads", {}).items():
            attention = self.model.get_submodule(name)
            chosen = torch.zeros(attention.num_heads)
            chosen[torch.tensor(keep)] = 1.0  # prune_heads keeps the top ones: exactly these
            prune_heads(self.model, [f"{name}.{p}_proj" for p in "qkv"], f"{name}.out_proj", attention.num_heads,
                        chosen, len(keep), attention=name)
        for stack, removed in plan["remove"].items():
            if removed:
                remove_layers(self.model, stack, removed, config_key=STACKS[stack][0])
        self.surgery = plan

    def layer_map(self, stack: str) -> list[int]:
        """Teacher state index of every student state from :func:`record_layers` (0 = the stack's input)."""
        removed = set((self.surgery or {}).get("remove", {}).get(stack, []))
        depth = len(self._teacher.model.get_submodule(stack))
        return [0] + [i + 1 for i in range(depth) if i not in removed]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the class and the surgery plan: a checkpoint rebuilds the student's shapes from them."""
        record_task_class(self, checkpoint)
        checkpoint[SURGERY_KEY] = self.surgery

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Replay the saved surgery (before Lightning or ``load_task`` loads the student's weights)."""
        if self.surgery is None and checkpoint.get(SURGERY_KEY) is not None:
            self.apply_surgery(checkpoint[SURGERY_KEY])

    # ------------------------------------------------------------ losses
    def _masks(self, batch: SpeechBatch, lens: Tensor, frames: int) -> dict[str, Tensor]:
        """Real positions: decoder input tokens ``(B, U-1)``, encoder frames ``(B, ceil(frames / 2))``."""
        tokens = lengths_to_mask(batch.token_lens - 1, batch.tokens.shape[1] - 1)
        enc = lengths_to_mask(encoder_lengths(lens), (frames + 1) // 2)
        return {"model.decoder.layers": tokens, "model.encoder.layers": enc}

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
            masks = self._masks(batch, lens, feats.shape[-1])
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

    # ------------------------------------------------------------ evaluation (the student)
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

    def synthetic_batch(self, batch_size: int, duration_s: float, num_tokens: int) -> SpeechBatch:
        """A random batch of one bucket's shape, for ``speechkit batch-sizes``."""
        return self.core.synthetic_batch(batch_size, duration_s, num_tokens)
