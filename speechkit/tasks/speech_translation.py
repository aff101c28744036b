"""``SpeechTranslation``: encoder-decoder translation from speech (end-to-end ST) or from text (MT), one task.

*Pre-training for Speech Translation: CTC Meets Optimal Transport* (Le et al., ICML 2023), section 4.1: an MT
model is trained on the corpus's text (``source: text``: ``speechkit.models.translation.TextEncoder`` over source
characters); its encoder initialises the text branch of the CTC + OT pretraining (``speechkit.tasks.ctc_ot``) and
its decoder the ST model, whose speech encoder (``speechkit.models.speech_encoder.SpeechEncoder``) comes from that
pretraining (``source: speech``; ``encoder_init`` / ``decoder_init``). Training minimises label-smoothed cross
entropy (Szegedy et al. 2016; 0.1 in the paper) on target subwords (``speechkit.text.subwords``); decoding is beam
search; validation logs ``val_loss``, ``val_bleu`` and ``val_chrf`` (greedy), test logs ``test_bleu`` /
``test_chrf`` (beam) through ``speechkit.metrics.bleu.score_bleu`` and writes ``predictions.jsonl``.

Batches: ``SpeechBatch`` (``source: speech``; data ``text_field: text``, the target read from the supervision's
``custom[target_field]``, e.g. Multi30k's ``"de"``) or ``TextPairBatch`` (``source: text``,
``speechkit.data.text_pairs.TextPairDataModule``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal, Union

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import nn
from torch.nn import functional as F

from speechkit.checkpoints import (
    checkpoint_state_dict,
    load_checkpoint,
    record_task_class,
)
from speechkit.data.batches import SpeechBatch
from speechkit.data.text_pairs import TextPairBatch
from speechkit.errors import SpeechkitError
from speechkit.losses import check_finite
from speechkit.metrics.bleu import score_bleu
from speechkit.models.speech_encoder import EncoderConfig, SpeechEncoder, encoder_config
from speechkit.models.translation import (
    TextEncoder,
    TransformerConfig,
    TranslationDecoder,
    beam_search,
    transformer_config,
)
from speechkit.models.whisper_seq2seq import predictions_path, write_predictions
from speechkit.optim.warmup import configure_optimizers
from speechkit.text.characters import CharTokenizer
from speechkit.text.subwords import BOS, EOS, PAD, SubwordTokenizer

Batch = Union[SpeechBatch, TextPairBatch]
MULTI30K_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789'`$= "  # every character of Multi30k's English, normalized


def load_submodule(module: nn.Module, path: str, prefix: str) -> None:
    """Load the ``<prefix>.*`` weights of a task checkpoint into ``module``; a missing, extra or misshapen weight is
    an error naming it."""
    state = checkpoint_state_dict(load_checkpoint(path), path)
    weights = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
    own = module.state_dict()
    missing, extra = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    wrong = [k for k in own if k in weights and weights[k].shape != own[k].shape]
    if missing or extra or wrong:
        raise SpeechkitError(f"checkpoint {path}: its {prefix}.* weights do not fit (missing {missing[:3]}, unexpected "
                             f"{extra[:3]}, other shapes {wrong[:3]}); give the sizes it was trained with")
    module.load_state_dict(weights)


def pad_ids(rows: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Id lists -> ``(B, L)`` padded with 0 and lengths ``(B,)``."""
    lens = torch.tensor([len(r) for r in rows], dtype=torch.long)
    ids = torch.zeros(len(rows), int(lens.max()), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return ids.to(device), lens.to(device)


class SpeechTranslation(L.LightningModule):
    """Speech (or text) -> target-language text, encoder-decoder.

    Args:
        target_spm: SentencePiece ``.model`` of the target language (``speechkit.text.subwords.train_subwords``).
        source: ``speech`` (fbank -> ``SpeechEncoder``) or ``text`` (source characters -> ``TextEncoder``).
        target_field: key of ``supervision.custom`` holding the translation (speech batches).
        source_alphabet: characters of the text encoder's input (``source: text``).
        encoder: ``SpeechEncoder`` sizes (``source: speech``; ``dim`` = the decoder's).
        text_encoder: ``TextEncoder`` sizes (``source: text``; ``dim`` = the decoder's).
        decoder: ``TranslationDecoder`` sizes.
        encoder_init: a checkpoint whose ``encoder.*`` weights start the encoder (``CTCOptimalTransport``,
            ``CTCFinetune``, ``MaskedSpeechPretrain`` or ``SpeechTranslation``); ``None``: random.
        decoder_init: a ``SpeechTranslation`` checkpoint (the MT model) whose ``decoder.*`` weights start the decoder.
        label_smoothing: of the cross entropy.
        beam_size: beams at test time (validation decodes greedily).
        max_target_tokens: longest decoded output.
        length_penalty: beam scores are ``log p / len^length_penalty``.
        predictions_file: where ``speechkit test`` writes ``{"id", "src", "ref", "hyp"}`` lines.
        optimizer: optimizer factory.
        scheduler: learning-rate scheduler factory, stepped every step; ``None`` = constant.
    """

    checkpoint_fixed_args: tuple[str, ...] = ("source", "source_alphabet", "encoder", "text_encoder", "decoder")
    checkpoint_source_args: tuple[str, ...] = ("encoder_init", "decoder_init")

    def __init__(
        self,
        target_spm: str,
        source: Literal["speech", "text"] = "speech",
        target_field: str = "de",
        source_alphabet: str = MULTI30K_ALPHABET,
        encoder: EncoderConfig | dict[str, Any] = EncoderConfig(),
        text_encoder: TransformerConfig | dict[str, Any] = TransformerConfig(),
        decoder: TransformerConfig | dict[str, Any] = TransformerConfig(),
        encoder_init: str | None = None,
        decoder_init: str | None = None,
        label_smoothing: float = 0.1,
        beam_size: int = 5,
        max_target_tokens: int = 100,
        length_penalty: float = 1.0,
        predictions_file: str | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if source not in ("speech", "text"):
            raise SpeechkitError(f"source: expected speech or text, got {source!r}")
        encoder, text_encoder, decoder = encoder_config(encoder), transformer_config(text_encoder), \
            transformer_config(decoder)
        width = encoder.dim if source == "speech" else text_encoder.dim
        if width != decoder.dim:
            raise SpeechkitError(f"{source} encoder dim {width} != decoder dim {decoder.dim}: the decoder attends to "
                                 "the encoder's output, give both the same dim")
        if beam_size < 1 or max_target_tokens < 1:
            raise SpeechkitError(f"beam_size, max_target_tokens: expected >= 1, got {beam_size}, {max_target_tokens}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.hparams.update(encoder=asdict(encoder), text_encoder=asdict(text_encoder), decoder=asdict(decoder))
        self.target_tokenizer = SubwordTokenizer(target_spm)
        self.source_tokenizer = CharTokenizer(source_alphabet)
        if source == "speech":
            self.encoder: nn.Module = SpeechEncoder(encoder)
        else:
            self.encoder = TextEncoder(len(self.source_tokenizer), text_encoder)
        self.decoder = TranslationDecoder(len(self.target_tokenizer), decoder)
        if encoder_init is not None:
            load_submodule(self.encoder, encoder_init, "encoder")
        if decoder_init is not None:
            load_submodule(self.decoder, decoder_init, "decoder")
        self.scored: dict[str, list[tuple[str, str, str, str]]] = {"val": [], "test": []}
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler

    # ------------------------------------------------------------------ model
    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output ``(B, S, D)`` and lengths ``(B,)`` of a speech or text batch."""
        if self.hparams.source == "speech":
            if not isinstance(batch, SpeechBatch):
                raise SpeechkitError("SpeechTranslation(source=speech) takes SpeechBatch (speechkit.data."
                                     f"SpeechDataModule), got {type(batch).__name__}")
            return self.encoder(batch.inputs, batch.input_lens)
        if not isinstance(batch, TextPairBatch):
            raise SpeechkitError("SpeechTranslation(source=text) takes TextPairBatch (speechkit.data.text_pairs."
                                 f"TextPairDataModule), got {type(batch).__name__}")
        ids, lens = pad_ids([self.source_tokenizer.encode(text) for text in batch.sources], self.device)
        return self.encoder(ids, lens)

    def references(self, batch: Batch) -> list[str]:
        """The target sentences of a batch."""
        if isinstance(batch, TextPairBatch):
            return batch.targets
        field = self.hparams.target_field
        missing = [cut for cut, custom in zip(batch.cut_ids, batch.custom) if field not in custom]
        if missing:
            raise SpeechkitError(f"cut {missing[0]!r}: its supervision has no custom[{field!r}] (the translation); "
                                 f"set target_field to the key that holds it")
        return [custom[field] for custom in batch.custom]

    def loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Label-smoothed cross entropy per target token, with the encoder output and lengths."""
        memory, memory_lens = self.encode(batch)
        targets = [self.target_tokenizer.encode(text) for text in self.references(batch)]
        prefix, _ = pad_ids([[BOS] + t for t in targets], self.device)
        labels, _ = pad_ids([t + [EOS] for t in targets], self.device)
        logits = self.decoder(prefix, memory, memory_lens)  # (B, U, V)
        loss = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=PAD,
                               label_smoothing=self.hparams.label_smoothing)
        return loss, memory, memory_lens

    def translate(self, memory: torch.Tensor, memory_lens: torch.Tensor, beam_size: int) -> list[str]:
        ids = beam_search(self.decoder, memory, memory_lens, BOS, EOS, beam_size, self.hparams.max_target_tokens,
                          self.hparams.length_penalty)
        return [self.target_tokenizer.decode(row) for row in ids]

    # ------------------------------------------------------------------ Lightning
    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = check_finite(self.loss(batch)[0], self.global_step, "train_loss")
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def _evaluate(self, batch: Batch, stage: str, beam_size: int) -> None:
        loss, memory, memory_lens = self.loss(batch)
        self.log(f"{stage}_loss", loss, batch_size=len(batch), sync_dist=True)
        hyps = self.translate(memory, memory_lens, beam_size)
        ids = batch.ids if isinstance(batch, TextPairBatch) else batch.cut_ids
        sources = batch.sources if isinstance(batch, TextPairBatch) else batch.texts
        self.scored[stage] += list(zip(ids, sources, self.references(batch), hyps))

    def _score(self, stage: str) -> dict[str, Any]:
        rows, self.scored[stage] = self.scored[stage], []
        if not rows:
            return {}
        scores = score_bleu([r[2] for r in rows], [r[3] for r in rows])
        self.log(f"{stage}_bleu", scores["bleu"], prog_bar=stage == "val")
        self.log(f"{stage}_chrf", scores["chrf"])
        rank_zero_info(f"{stage} at step {self.global_step}: BLEU {scores['bleu']:.2f}, chrF {scores['chrf']:.2f} "
                       f"({len(rows)} segments; {scores['signature']})")
        return {"rows": rows, **scores}

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val", beam_size=1)

    def on_validation_epoch_end(self) -> None:
        self._score("val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test", beam_size=self.hparams.beam_size)

    def on_test_epoch_end(self) -> None:
        scored = self._score("test")
        rows = [{"id": i, "src": s, "ref": r, "hyp": h} for i, s, r, h in scored.get("rows", [])]
        write_predictions(rows, predictions_path(self.hparams.predictions_file, self.trainer))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_task_class(self, checkpoint)

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.parameters(), self.optimizer_factory, self.scheduler_factory)

