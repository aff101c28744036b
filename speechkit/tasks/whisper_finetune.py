"""``WhisperFinetune``: fine-tune Whisper on a language, with the strategies of *Fine-tuning Whisper for Pashto
ASR: strategies and scale* (Rahman 2026) as configuration.

Loss: ``L = -sum_i log p(y_i | y_<i, Enc(mel))`` over the transcript and ``<|endoftext|>``; the decoder prompt
``<|startoftranscript|><|xx|><|transcribe|><|notimestamps|>`` is fed but masked out of the loss. Strategies:
``full`` (every weight), ``lora`` (peft adapters only), ``frozen_encoder`` (stem and first K encoder layers
frozen). Multistage transfer chains runs of this task (``speechkit.drivers.multistage``). A language Whisper lacks
gets a new ``<|xx|>`` token (``add_language``). Encoder input is padded to 30 s (stock) or variable-length.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Literal, Optional

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable
from torch import nn

from speechkit.checkpoints import checkpoint_state_dict, load_checkpoint
from speechkit.data.batches import SpeechBatch
from speechkit.data.manifests import language_code
from speechkit.errors import SpeechkitError
from speechkit.tensors import IGNORE_INDEX
from speechkit.losses.checks import check_finite
from speechkit.metrics.stateful import WERMetric
from speechkit.models.adaptation import apply_lora, count_trainable, freeze_encoder_layers
from speechkit.models.pretrained import load_whisper
from speechkit.models.whisper_encoder import generate_variable_length, variable_length_input
from speechkit.models.whisper_language import add_language, decoder_prompt_ids, has_language, is_multilingual

log = logging.getLogger(__name__)

Strategy = Literal["full", "lora", "frozen_encoder"]
WHISPER_FRAMES = 3000  # 30 s of 10 ms mel frames


def linear_warmup_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor: linear warm-up to 1 over ``warmup_steps``, then linear decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


class WhisperFinetune(L.LightningModule):
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
        num_beams: beam size for validation/test decoding (1 = batched greedy).
        max_new_tokens: decoding length limit.
        init_checkpoint: start from this Lightning checkpoint's weights (multistage transfer).
        predictions_file: where ``speechkit test`` writes ``{"id", "ref", "hyp"}`` lines; default
            ``<log_dir>/predictions.jsonl``.

    With ``--ckpt_path``, an argument given in the config or on the command line replaces the checkpoint's saved
    value (``predictions_file``, ``num_beams``, ``max_new_tokens``, ``pad_to_30s`` ...), except those in
    ``checkpoint_fixed_args`` (the weights' shapes and vocabulary), which must match the checkpoint.
    """

    checkpoint_fixed_args: tuple[str, ...] = (
        "model_name_or_path", "language", "new_language_init_from", "strategy", "lora_rank", "lora_alpha",
        "lora_dropout", "lora_target_modules")

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
        num_beams: int = 1,
        max_new_tokens: int = 128,
        init_checkpoint: Optional[str] = None,
        predictions_file: Optional[str] = None,
    ) -> None:
        super().__init__()
        if strategy not in ("full", "lora", "frozen_encoder"):
            raise SpeechkitError(f"strategy {strategy!r}: expected one of full, lora, frozen_encoder")
        self.save_hyperparameters(ignore=["scheduler"])  # a callable: not weights_only-loadable
        self.scheduler_factory = scheduler
        bundle = load_whisper(model_name_or_path)
        self.tokenizer, self.feature_extractor = bundle.tokenizer, bundle.feature_extractor
        self.generation_config = bundle.generation_config
        model = bundle.model
        self.added_language_id = self._ensure_language(model, language, new_language_init_from)
        self.prompt = decoder_prompt_ids(self.tokenizer, language if is_multilingual(self.tokenizer) else None, task)
        self.eot = self.tokenizer.convert_tokens_to_ids("<|endoftext|>")
        self.pad_token_id = self.eot
        if strategy == "lora":
            model = apply_lora(model, lora_rank, lora_alpha, lora_dropout, lora_target_modules)
        elif strategy == "frozen_encoder":
            freeze_encoder_layers(model, frozen_encoder_layers)
        self.model = model.train()  # loaders return eval-mode models; Lightning keeps submodule modes
        if init_checkpoint:
            self._load_weights(init_checkpoint)
        self.wer = WERMetric(language=self._metric_language(language))
        self._predictions: list[dict] = []

    # ------------------------------------------------------------ set-up
    def _ensure_language(self, model: nn.Module, language: Optional[str], init_from: Optional[str]) -> Optional[int]:
        if not is_multilingual(self.tokenizer):
            if language is not None and language_code(language) != "en":
                raise SpeechkitError(
                    f"language {language!r}: {self.hparams.model_name_or_path} is an English-only Whisper (no "
                    "language tokens); set language: en, or use a multilingual one such as ct2:base"
                )
            return None
        if language is None or has_language(self.tokenizer, language):
            return None
        if init_from is None:
            raise SpeechkitError(
                f"language {language!r}: Whisper has no <|{language}|> token; set new_language_init_from to a "
                "related language code (or 'mean') to add one"
            )
        source = None if init_from == "mean" else init_from
        new_id = add_language(model, self.tokenizer, self.generation_config, language, source)
        log.info("added <|%s|> as token %d (initialised from %s)", language, new_id, init_from)
        return new_id

    @staticmethod
    def _metric_language(language: Optional[str]) -> str:
        from speechkit.text.normalizers import get_normalizer

        try:
            get_normalizer(language or "en")
            return language or "en"
        except SpeechkitError:
            return "mul"  # a language outside the normalizer's table: script-preserving basic rules

    def _load_weights(self, checkpoint: str) -> None:
        state = checkpoint_state_dict(load_checkpoint(checkpoint), checkpoint)
        missing, unexpected = self.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.startswith("wer.")]:
            raise SpeechkitError(
                f"init_checkpoint {checkpoint}: weights do not fit this model (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}); stages must use the same size, strategy and languages"
            )

    # ------------------------------------------------------------ what the data module checks before training
    max_input_seconds: float = WHISPER_FRAMES / 100  # Whisper's encoder takes at most 30 s

    @property
    def expected_language(self) -> str:
        """The language every supervision of the manifests must carry (``en`` for English-only models)."""
        return self.hparams.language or "en"

    def tokenize(self, text: str) -> list[int]:
        """Decoder tokens of one utterance: prompt + text + ``<|endoftext|>`` (the data module calls this)."""
        return self.prompt + self.tokenizer.encode(" " + text.strip(), add_special_tokens=False) + [self.eot]

    def on_fit_start(self) -> None:
        total = sum(p.numel() for p in self.model.parameters())
        print(f"WhisperFinetune[{self.hparams.strategy}]: {count_trainable(self.model):,} trainable of {total:,} parameters")

    # ------------------------------------------------------------ forward
    def _features(self, batch: SpeechBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, n_mels, T)`` encoder input and ``(B,)`` real frames; stock mode pads to 3000 frames."""
        feats, lens = batch.inputs.transpose(1, 2), batch.input_lens  # (B, F, T)
        if feats.shape[-1] > WHISPER_FRAMES:
            longest = batch.cut_ids[int(lens.argmax())]
            raise SpeechkitError(f"cut {longest!r} is longer than 30 s: Whisper takes at most {WHISPER_FRAMES} frames")
        if self.hparams.pad_to_30s:
            floor = torch.stack([f[:, :n].max() - 2.0 for f, n in zip(feats, lens)])  # silence's log-mel value
            pad = floor[:, None, None].expand(-1, feats.shape[1], WHISPER_FRAMES - feats.shape[-1])
            feats = torch.cat([feats, pad], dim=-1)
        return feats, lens

    def shift_labels(self, batch: SpeechBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder inputs ``(B, U-1)`` and labels ``(B, U-1)`` with the prompt and padding set to -100."""
        if batch.tokens is None:
            raise SpeechkitError("batch has no token ids: the data module must take `tokenize` from this task")
        inputs, labels = batch.tokens[:, :-1], batch.tokens[:, 1:]
        positions = torch.arange(labels.shape[1], device=labels.device)[None, :]
        ignore = (positions < len(self.prompt) - 1) | (positions >= batch.token_lens[:, None] - 1)  # prompt, padding
        return inputs, labels.masked_fill(ignore, IGNORE_INDEX)

    def forward(self, batch: SpeechBatch) -> torch.Tensor:
        """Mean token loss of a batch (prompt and padding masked)."""
        inputs, labels = self.shift_labels(batch)
        feats, lens = self._features(batch)
        if self.hparams.pad_to_30s:
            logits = self.model(input_features=feats, decoder_input_ids=inputs).logits
        else:
            with variable_length_input(self.model, lens):
                logits = self.model(input_features=feats, decoder_input_ids=inputs).logits  # (B, U-1, V)
        return nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX)

    def training_step(self, batch: SpeechBatch, batch_idx: int) -> torch.Tensor:
        loss = check_finite(self(batch), self.global_step, "training loss")
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch))
        self.log("audio_s", batch.durations.sum(), reduce_fx="sum", batch_size=len(batch))
        frames = WHISPER_FRAMES if self.hparams.pad_to_30s else batch.inputs.shape[1]  # what the encoder saw
        self.log("padding_in", 1 - batch.input_lens.sum() / (len(batch) * frames), batch_size=len(batch))
        return loss

    # ------------------------------------------------------------ decoding
    @torch.no_grad()
    def transcribe(self, batch: SpeechBatch) -> list[str]:
        """Batched greedy (``num_beams=1``) or beam-search transcripts of a batch."""
        feats, lens = self._features(batch)
        config = copy.deepcopy(self.generation_config)
        config.update(num_beams=self.hparams.num_beams, max_new_tokens=self.hparams.max_new_tokens, max_length=None)
        kwargs = dict(generation_config=config)
        if is_multilingual(self.tokenizer):
            kwargs.update(language=self.hparams.language, task=self.hparams.task)
        if self.hparams.pad_to_30s:
            ids = self.model.generate(input_features=feats, **kwargs)
        else:
            ids = generate_variable_length(self.model, feats, lens, **kwargs)
        return [text.strip() for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def _decode_step(self, batch: SpeechBatch) -> list[str]:
        hyps = self.transcribe(batch)
        self.wer.update(batch.texts, hyps)
        return hyps

    def validation_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        self.log("val_loss", self(batch), batch_size=len(batch), sync_dist=True)
        self._decode_step(batch)

    def on_validation_epoch_end(self) -> None:
        scores = self.wer.compute()
        self.wer.reset()
        for name, value in scores.items():
            self.log(f"val_{name}", value, prog_bar=name == "wer")
        if self.trainer.sanity_checking or self.global_step == 0:
            print(f"dev WER before training: {float(scores['wer']):.4f} (raw {float(scores['wer_raw']):.4f})")
        else:
            print(f"dev WER at step {self.global_step}: {float(scores['wer']):.4f} (raw {float(scores['wer_raw']):.4f})")

    def test_step(self, batch: SpeechBatch, batch_idx: int) -> None:
        hyps = self._decode_step(batch)
        self._predictions += [{"id": i, "ref": r, "hyp": h} for i, r, h in zip(batch.cut_ids, batch.texts, hyps)]

    def on_test_epoch_end(self) -> None:
        scores = self.wer.compute()
        self.wer.reset()
        for name, value in scores.items():
            self.log(f"test_{name}", value)
        path = Path(self.hparams.predictions_file or Path(self.trainer.log_dir or ".") / "predictions.jsonl")
        if self.trainer.world_size > 1:
            path = path.with_suffix(f".rank{self.global_rank}.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for row in self._predictions:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"wrote {len(self._predictions)} predictions to {path}")
        self._predictions = []

    # ------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.scheduler_factory is not None:
            scheduler = self.scheduler_factory(optimizer)
        else:
            total = self.trainer.max_steps if self.trainer.max_steps > 0 else 10_000
            warmup = max(1, self.hparams.warmup_steps)
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: linear_warmup_decay(step, warmup, total)
            )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------ batch-size search
    def synthetic_batch(self, batch_size: int, duration_s: float, num_tokens: int) -> SpeechBatch:
        """A random batch of one bucket's shape, for ``speechkit batch-sizes``."""
        frames = min(WHISPER_FRAMES, int(duration_s * 100))
        n_mels = self.model.config.num_mel_bins if hasattr(self.model, "config") else 80
        tokens = torch.randint(0, self.eot, (batch_size, max(num_tokens, len(self.prompt) + 2)))
        tokens[:, : len(self.prompt)] = torch.tensor(self.prompt)
        return SpeechBatch(
            inputs=torch.randn(batch_size, frames, n_mels), input_lens=torch.full((batch_size,), frames),
            texts=[""] * batch_size, cut_ids=[f"synthetic-{i}" for i in range(batch_size)],
            durations=torch.full((batch_size,), duration_s), tokens=tokens,
            token_lens=torch.full((batch_size,), tokens.shape[1]),
        )
