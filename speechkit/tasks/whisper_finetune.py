"""``WhisperFinetune``: fine-tune Whisper on a language, with the strategies of *Fine-tuning Whisper for Pashto
ASR: strategies and scale* (Rahman 2026) as configuration.

A thin LightningModule around the Whisper sequence-to-sequence core (:class:`speechkit.models.whisper_seq2seq.
WhisperSeq2Seq`: features, prompt and labels, loss, decoding, WER, predictions). Loss: ``L = -sum_i log p(y_i | y_<i,
Enc(mel))`` over the transcript and ``<|endoftext|>``; the decoder prompt ``<|startoftranscript|><|xx|><|transcribe|>
<|notimestamps|>`` is fed but masked out of the loss. Strategies (:func:`speechkit.models.adaptation.apply_strategy`):
``full`` (every weight), ``lora`` (peft adapters only), ``frozen_encoder`` (stem and first K encoder layers frozen).
Multistage transfer chains runs of this task (``speechkit.drivers.multistage``). A language Whisper lacks gets a new
``<|xx|>`` token. Encoder input is padded to 30 s (stock) or variable-length.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from speechkit.checkpoints import record_task_class
from speechkit.data.batches import SpeechBatch
from speechkit.errors import SpeechkitError
from speechkit.models.whisper_predict import predict_rows
from speechkit.losses.checks import check_finite
from speechkit.models.adaptation import STRATEGIES, Strategy, count_trainable
from speechkit.models.whisper_seq2seq import (
    WhisperCoreTask,
    WhisperSeq2Seq,
    predictions_path,
    write_predictions,
)
from speechkit.optim.token_steps import LossNormalization, LrScaling, TokenSteps, TokenStepsMixin
from speechkit.optim.warmup import adamw_warmup_decay


class WhisperFinetune(WhisperCoreTask, TokenStepsMixin, L.LightningModule):
    """Whisper fine-tuning for any size and language.

    Args:
        model_name_or_path: ``ct2:tiny.en`` / ``ct2:base`` (packaged real weights), a CTranslate2 folder, a
            Hugging Face folder or hub name (``from_pretrained``).
        language: language code of the data (``en`` or ``None`` for English-only models, which refuse any other).
            Before training the data module refuses a manifest whose supervisions name another language
            (``DataConfig.allow_language_mismatch`` lets it through, counted and logged).
        new_language_init_from: for a language Whisper lacks: the related language whose token row initialises
            the new ``<|xx|>`` row; ``"mean"`` for the mean of all language rows. Ignored when Whisper has it.
        task: ``transcribe`` or ``translate``.
        strategy: ``full``, ``lora`` or ``frozen_encoder``.
        lora_rank: LoRA rank r (paper: 64).
        lora_alpha: LoRA alpha.
        lora_dropout: LoRA dropout.
        lora_target_modules: module names to adapt.
        frozen_encoder_layers: encoder layers frozen by ``frozen_encoder`` (paper: 2 of 6 on whisper-base).
        pad_to_30s: pad every input to 30 s (stock Whisper) instead of variable-length encoder input.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps (then linear decay to ``trainer.max_steps``).
        scheduler: another learning-rate schedule (e.g. ``speechkit.optim`` WSD), replacing warm-up + decay.
        tokens_per_step: accumulate duration-bucketed batches into optimizer steps of at least this many transcript
            tokens (``speechkit.optim.token_steps``); ``None``: a step per batch.
        loss_normalization: ``batch_mean`` (each batch's mean token loss) or ``tokens`` (every token of an
            optimizer step weighs alike, whatever batch it came in).
        lr_scaling: ``none``, ``sqrt`` or ``linear``: the step's lr is ``lr * (step tokens / reference_tokens)^p``.
        reference_tokens: the step size in tokens at which ``lr`` applies (default ``tokens_per_step``).
        num_beams: beam size for validation/test decoding (1 = batched greedy).
        max_new_tokens: decoding length limit.
        init_checkpoint: start from this Lightning checkpoint's weights (multistage transfer).
        predictions_file: where ``speechkit test`` writes ``{"id", "ref", "hyp"}`` lines and ``speechkit predict``
            the JSONL rows of ``speechkit transcribe``; default ``<log_dir>/predictions.jsonl``.

    With ``--ckpt_path``, an argument given in the config or on the command line replaces the checkpoint's saved
    value (``predictions_file``, ``num_beams``, ``max_new_tokens``, ``pad_to_30s`` ...), except those in
    ``checkpoint_fixed_args`` (the weights' shapes and vocabulary), which must match the checkpoint.
    """

    checkpoint_fixed_args: tuple[str, ...] = (
        "model_name_or_path", "language", "new_language_init_from", "strategy", "lora_rank", "lora_alpha",
        "lora_dropout", "lora_target_modules")
    checkpoint_source_args: tuple[str, ...] = ("init_checkpoint",)

    def __init__(
        self,
        model_name_or_path: str = "ct2:tiny.en",
        language: Optional[str] = "en",
        new_language_init_from: Optional[str] = None,
        task: Literal["transcribe", "translate"] = "transcribe",
        strategy: Strategy = "full",
        lora_rank: int = 64,
        lora_alpha: float = 128.0,
        lora_dropout: float = 0.05,
        lora_target_modules: list[str] = ["q_proj", "v_proj"],  # noqa: B006 - jsonargparse needs the literal
        frozen_encoder_layers: int = 2,
        pad_to_30s: bool = False,
        lr: float = 1e-5,
        weight_decay: float = 0.0,
        warmup_steps: int = 50,
        scheduler: Optional[LRSchedulerCallable] = None,
        tokens_per_step: Optional[int] = None,
        loss_normalization: LossNormalization = "batch_mean",
        lr_scaling: LrScaling = "none",
        reference_tokens: Optional[int] = None,
        num_beams: int = 1,
        max_new_tokens: int = 128,
        init_checkpoint: Optional[str] = None,
        predictions_file: Optional[str] = None,
    ) -> None:
        super().__init__()
        if strategy not in STRATEGIES:
            raise SpeechkitError(f"strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
        self.save_hyperparameters(ignore=["scheduler"])  # a callable: not weights_only-loadable
        self.scheduler_factory = scheduler
        self.token_steps = TokenSteps(tokens_per_step, loss_normalization, lr_scaling, reference_tokens)
        self.core = WhisperSeq2Seq.load(model_name_or_path, language, new_language_init_from, task, pad_to_30s,
                                        num_beams, max_new_tokens).adapted(
            strategy, lora_rank, lora_alpha, lora_dropout, lora_target_modules, frozen_encoder_layers, init_checkpoint)
        self.model = self.core.model.train()  # loaders return eval-mode models; Lightning keeps submodule modes
        self.wer = self.core.wer_metric()
        self.predictions: list[dict[str, str]] = []


    # ------------------------------------------------------------ training
    def on_fit_start(self) -> None:
        total = sum(p.numel() for p in self.model.parameters())
        rank_zero_info(f"WhisperFinetune[{self.hparams.strategy}]: {count_trainable(self.model):,} trainable of "
                       f"{total:,} parameters")

    def forward(self, batch: SpeechBatch) -> torch.Tensor:
        """Mean token loss of a batch (prompt and padding masked)."""
        return self.core.loss(batch)

    def batch_target_tokens(self, batch: SpeechBatch) -> int:
        return self.core.target_tokens(batch)

    def training_step(self, batch: SpeechBatch, batch_idx: int) -> torch.Tensor:
        tokens = self.core.target_tokens(batch)
        total = check_finite(self.core.loss(batch, reduction="sum"), self.global_step, "training loss")
        self.log("train_loss", total / max(tokens, 1), prog_bar=True, batch_size=len(batch))
        self.log("audio_s", batch.durations.sum(), reduce_fx="sum", batch_size=len(batch))
        self.log("padding_in", self.core.padding_fraction(batch), batch_size=len(batch))
        return self.token_steps.training_loss(total, tokens)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        return adamw_warmup_decay(self.model.parameters(), self.trainer.max_steps, hp.lr, hp.weight_decay,
                                  hp.warmup_steps, self.scheduler_factory)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_task_class(self, checkpoint)

    # ------------------------------------------------------------ prediction (evaluation: WhisperCoreTask)
    def predict_step(self, batch: SpeechBatch, batch_idx: int) -> list[dict[str, Any]]:
        """Transcribe a batch as ``speechkit transcribe`` does; its JSONL rows are written at the epoch's end."""
        rows = predict_rows(self.core, batch)
        self.predictions += rows
        return rows

    def on_predict_epoch_end(self) -> None:
        write_predictions(self.predictions, predictions_path(self.hparams.predictions_file, self.trainer))
        self.predictions = []

