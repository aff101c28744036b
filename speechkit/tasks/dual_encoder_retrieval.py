"""``DualEncoderRetrieval``: the contrastive audio-text retrieval baseline beside the captioner-as-retriever.

*Killing two birds with one stone: Can an audio captioning system also be used for audio-text retrieval?* (Labbé et
al., DCASE 2023) compares its captioner's loss-based retrieval with dual encoders trained by a contrastive loss;
this task is that baseline on the same data (:class:`speechkit.data.captions.CaptionDataModule`: one caption drawn
per audio per batch). Towers: :class:`speechkit.models.dual_encoder.DualEncoder`. Loss: the symmetric InfoNCE
``(CE(audio -> captions) + CE(caption -> audios)) / 2`` over the batch's cosine similarities at a fixed
temperature, through ``speechkit.losses.contrastive.multimodal_contrastive_loss``; captions that are the same text
after normalisation are positives of each other's audios (the synthetic corpus repeats captions), not negatives.
Validation logs ``val_loss`` and dev-set retrieval (every audio against every caption of the dev cuts):
``val_t2a_R1``, ``val_a2t_R1``, ``val_t2a_mAP10``, ``val_a2t_mAP10``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from lhotse import CutSet
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch.nn import functional as F

from speechkit.checkpoints import record_task_class
from speechkit.data.captions import CaptionBatch, caption_pairs
from speechkit.data.config import DataConfig
from speechkit.errors import SpeechkitError
from speechkit.losses import check_finite
from speechkit.losses.contrastive import multimodal_contrastive_loss
from speechkit.metrics.caption_retrieval import caption_retrieval_metrics
from speechkit.models.dual_encoder import (
    DualEncoder,
    TextEncoderConfig,
    text_encoder_config,
)
from speechkit.models.speech_encoder import EncoderConfig, encoder_config
from speechkit.optim.warmup import configure_optimizers
from speechkit.tasks.caption_retrieval import (
    caption_retrieval_table,
    cut_features,
    pad_features,
)
from speechkit.tasks.captioning import check_vocabulary, vocabulary_words
from speechkit.text.words import PAD, WordTokenizer, normalize_caption


def caption_labels(texts: Sequence[str]) -> torch.Tensor:
    """``(B,)``: the index of each caption's first equal caption (after normalisation) in the batch."""
    first: dict[str, int] = {}
    return torch.tensor([first.setdefault(normalize_caption(t), i) for i, t in enumerate(texts)])


class DualEncoderRetrieval(L.LightningModule):
    """Audio and text encoders trained with the symmetric InfoNCE loss (see the module docstring).

    Args:
        vocabulary: the caption words, or a file with one word a line (stored in the checkpoint as the list).
        encoder: audio encoder sizes (as ``AudioCaptioner``'s).
        text: text encoder sizes.
        embed_dim: ``E``, the shared embedding size.
        temperature: of the softmax over cosine similarities.
        optimizer: optimizer factory (LightningCLI ``class_path`` / ``init_args``).
        scheduler: learning-rate scheduler factory, stepped every optimizer step; ``None`` = constant.
    """

    checkpoint_fixed_args: tuple[str, ...] = ("encoder", "text", "embed_dim")  # vocabulary: on_load_checkpoint

    def __init__(
        self,
        vocabulary: str | list[str],
        encoder: EncoderConfig | dict[str, Any] = EncoderConfig(),
        text: TextEncoderConfig | dict[str, Any] = TextEncoderConfig(),
        embed_dim: int = 128,
        temperature: float = 0.07,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        encoder, text = encoder_config(encoder), text_encoder_config(text)
        if temperature <= 0:
            raise SpeechkitError(f"temperature must be > 0, got {temperature}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.tokenizer = WordTokenizer(vocabulary_words(vocabulary))
        self.hparams["vocabulary"] = self.tokenizer.words[4:]
        self.hparams["encoder"], self.hparams["text"] = asdict(encoder), asdict(text)
        self.model = DualEncoder(len(self.tokenizer), encoder, text, embed_dim)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self._dev: dict[str, list] = {"audio": [], "refs": []}

    pad_token_id = PAD

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def embed_captions(self, captions: Sequence[str], batch: int = 256) -> torch.Tensor:
        """``(C, E)`` L2-normalised caption embeddings."""
        out = []
        for start in range(0, len(captions), batch):
            ids = [torch.tensor(self.tokenize(c)) for c in captions[start:start + batch]]
            tokens = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=PAD).to(self.device)
            lens = torch.tensor([len(i) for i in ids], device=self.device)
            out.append(F.normalize(self.model.embed_text(tokens, lens).float(), dim=-1))
        return torch.cat(out)

    def loss(self, batch: CaptionBatch) -> torch.Tensor:
        speech = batch.speech
        if speech.tokens is None:
            raise SpeechkitError("DualEncoderRetrieval: the batch has no token ids (use CaptionDataModule)")
        audio = self.model.embed_audio(speech.inputs, speech.input_lens)
        text = self.model.embed_text(speech.tokens, speech.token_lens)
        labels = caption_labels(speech.texts).to(audio.device)
        return multimodal_contrastive_loss(audio, text, labels, self.hparams.temperature)

    def training_step(self, batch: CaptionBatch, batch_idx: int) -> torch.Tensor:
        loss = check_finite(self.loss(batch), self.global_step, "train_loss")
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def validation_step(self, batch: CaptionBatch, batch_idx: int) -> None:
        self.log("val_loss", self.loss(batch), batch_size=len(batch), sync_dist=True)
        audio = self.model.embed_audio(batch.speech.inputs, batch.speech.input_lens)
        self._dev["audio"].append(F.normalize(audio.float(), dim=-1).cpu())
        self._dev["refs"] += batch.references

    def on_validation_epoch_end(self) -> None:
        audio, refs = self._dev["audio"], self._dev["refs"]
        self._dev = {"audio": [], "refs": []}
        if not audio or self.trainer.sanity_checking:
            return
        captions = [c for captions in refs for c in captions]
        owner = [a for a, captions in enumerate(refs) for _ in captions]
        loss = -(torch.cat(audio) @ self.embed_captions(captions).cpu().T)  # (A, C)
        for direction in ("t2a", "a2t"):
            metrics = caption_retrieval_metrics(loss, owner, direction, normalize=False)
            self.log(f"val_{direction}_R1", metrics["R@1"], rank_zero_only=True)
            self.log(f"val_{direction}_mAP10", metrics["mAP@10"], rank_zero_only=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_task_class(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_vocabulary(checkpoint, self.tokenizer)

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.parameters(), self.optimizer_factory, self.scheduler_factory)


@torch.no_grad()
def dual_encoder_losses(task: DualEncoderRetrieval, audios: Sequence[torch.Tensor], captions: Sequence[str],
                        audio_batch: int = 32) -> torch.Tensor:
    """``(A, C)`` minus the cosine similarities: the same shape and sense (lower = more likely) as the captioner's
    ``pairwise_caption_loss``, so one table compares both."""
    was_training = task.training
    task.eval()
    try:
        embedded = []
        for start in range(0, len(audios), audio_batch):
            feats, lens = pad_features(audios[start:start + audio_batch])
            embedded.append(F.normalize(task.model.embed_audio(feats.to(task.device), lens.to(task.device)).float(),
                                        dim=-1).cpu())
        return -(torch.cat(embedded) @ task.embed_captions(captions).cpu().T)
    finally:
        task.train(was_training)


def dual_encoder_retrieval(task: DualEncoderRetrieval, cuts: CutSet, data: DataConfig
                           ) -> tuple[torch.Tensor, dict[str, dict[str, float]]]:
    """Every audio of ``cuts`` against every caption of ``cuts``: the losses and the four-row table."""
    _, captions, owner = caption_pairs(cuts)
    _, feats = cut_features(cuts, data)
    loss = dual_encoder_losses(task, feats, captions)
    return loss, caption_retrieval_table(loss, owner)
