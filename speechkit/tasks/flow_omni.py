"""``FlowOmni``: a speech-in, speech-out LM whose speech tokens are continuous mel frames (or k-means units).

*Continuous Speech Tokens Makes LLMs Robust Multi-Modality Learners* (Flow-Omni, Yuan et al. 2024), section 3: a
Whisper encoder and an adapter feed a causal LM; each answer step's hidden state feeds the text head and a flow
matching MLP head predicting the next ``r`` mel frames, ``L = L_LM + lambda * L_CFM``; stage 1 trains the adapter,
heads and projections with the LM frozen, stage 2 everything. The wiring (left-padded prompt, summed text and speech
step inputs, a stop logit) is :mod:`speechkit.models.spoken_lm`'s; the CFM loss and the Euler sampler are
:mod:`speechkit.losses.flow_matching`'s. ``L_CFM`` here is per mel value (the squared error over ``F r`` values
divided by ``F r``) so that ``lambda = 1`` weighs it like the token cross-entropy [P]; the stop logit's binary
cross-entropy is added to ``L_LM`` [P].

``speech_head: units`` is the discrete baseline (Mini-Omni-like): the same stacked frames quantized by k-means
(``speechkit.models.quantizer.fit_codebook``, fitted on the training answers at the start of ``fit`` unless the
checkpoint has them), predicted by a softmax head, fed back as their centroids.

Data: :class:`speechkit.data.spoken_answers.SpokenAnswerDataModule` (``text_field: answer``). Speech out and scores
(Griffin-Lim, Whisper WER of the spoken answers, mel distance, a PNG): ``speechkit.drivers.spoken_answers_eval``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from speechkit.checkpoints import checkpoint_state_dict, load_checkpoint, record_task_class
from speechkit.data.spoken_answers import SpokenAnswerBatch
from speechkit.errors import SpeechkitError
from speechkit.losses import check_finite
from speechkit.losses.flow_matching import FlowHead, flow_matching_loss, sample_ode
from speechkit.models.pretrained import load_whisper
from speechkit.models.quantizer import fit_codebook
from speechkit.models.spoken_lm import IGNORE, Adapter, AnswerTargets, answer_targets, stack_chunks
from speechkit.models.whisper_encoder import encoder_lengths, variable_length_input
from speechkit.optim.warmup import configure_optimizers
from speechkit.tensors import lengths_to_mask


@dataclass
class Answer:
    """One generated answer: text token ids (without EOS), their text and mel frames ``(M, F)``."""

    token_ids: list[int]
    text: str
    mels: Tensor


def _causal_lm(lm: str | dict[str, Any], vocab_size: int) -> nn.Module:
    if isinstance(lm, str):
        try:
            return AutoModelForCausalLM.from_pretrained(lm)
        except (OSError, ValueError) as error:
            raise SpeechkitError(f"lm {lm!r}: cannot load a Hugging Face causal LM ({error})") from error
    config = dict(lm)
    if "model_type" not in config:
        raise SpeechkitError(f"lm: a config dict needs model_type (e.g. 'llama', 'gpt2'), got keys {sorted(config)}")
    config["vocab_size"] = vocab_size
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))


class FlowOmni(L.LightningModule):
    """Whisper encoder + adapter + causal LM with text and speech heads (see the module docstring).

    Args:
        whisper: the Whisper whose encoder hears the prompt (``load_whisper``: ``ct2:base``, a folder, a hub name).
        lm: a Hugging Face causal LM name or folder (its tokenizer too), or a config dict (``model_type`` and
            sizes) for a randomly initialised LM over the Whisper tokenizer's vocabulary.
        frames_per_step: ``r``, mel frames predicted per answer step.
        adapter_stack: encoder states stacked by the adapter (the prompt's downsampling).
        num_mel_bins: ``F`` of the answer mels (the data config's).
        speech_head: ``flow`` (continuous, Flow-Omni) or ``units`` (k-means units + cross-entropy, the baseline).
        num_units: k-means units of the ``units`` head.
        unit_fit_batches: training batches read to fit the units.
        flow_width: hidden width of the flow head.
        flow_blocks: residual blocks of the flow head.
        cfm_weight: ``lambda`` of ``L = L_LM + lambda * L_CFM`` (also weighs the units' cross-entropy).
        sigma_min: of the OT path.
        ode_steps: Euler steps per generated chunk.
        stage: 1 (adapter, speech projection and heads train; LM frozen) or 2 (the LM trains too).
        train_encoder: the Whisper encoder trains as well (frozen by default, both stages).
        max_answer_steps: generation stops here if EOS and the stop logit have not ended it.
        init_from: a checkpoint whose weights this task starts from (stage 2 from stage 1's ``last.ckpt``; the
            same sizes and speech head), read with ``weights_only``.
        optimizer: optimizer factory (LightningCLI ``class_path`` / ``init_args``).
        scheduler: learning-rate scheduler factory, stepped every optimizer step; ``None`` = constant.
    """

    checkpoint_source_args: tuple[str, ...] = ("init_from",)  # a loaded checkpoint has its own weights

    def __init__(
        self,
        whisper: str,
        lm: str | dict[str, Any],
        frames_per_step: int = 4,
        adapter_stack: int = 4,
        num_mel_bins: int = 80,
        speech_head: Literal["flow", "units"] = "flow",
        num_units: int = 64,
        unit_fit_batches: int = 50,
        flow_width: int = 256,
        flow_blocks: int = 3,
        cfm_weight: float = 1.0,
        sigma_min: float = 1e-4,
        ode_steps: int = 10,
        stage: Literal[1, 2] = 1,
        train_encoder: bool = False,
        max_answer_steps: int = 100,
        init_from: str | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if frames_per_step < 1 or ode_steps < 1 or max_answer_steps < 1:
            raise SpeechkitError(f"frames_per_step={frames_per_step}, ode_steps={ode_steps}, max_answer_steps="
                                 f"{max_answer_steps}: each must be >= 1")
        if cfm_weight < 0:
            raise SpeechkitError(f"cfm_weight: expected >= 0, got {cfm_weight}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        bundle = load_whisper(whisper)
        self.encoder = bundle.model.get_encoder()
        self.tokenizer = bundle.tokenizer if isinstance(lm, dict) else AutoTokenizer.from_pretrained(lm)
        self.lm = _causal_lm(lm, len(self.tokenizer))
        width, self.frames_per_step, dim = self.lm.config.hidden_size, frames_per_step, num_mel_bins * frames_per_step
        self.eos = self.tokenizer.eos_token_id
        if self.eos is None:
            raise SpeechkitError(f"lm {lm!r}: its tokenizer has no EOS token")
        self.bos = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.eos
        self.pad_token_id = self.eos
        self.adapter = Adapter(self.encoder.config.d_model, width, adapter_stack)
        self.speech_in = nn.Linear(dim, width)
        self.stop_head = nn.Linear(width, 1)
        if speech_head == "flow":
            self.flow_head = FlowHead(dim, width, flow_width, flow_blocks)
        else:
            self.unit_head = nn.Linear(width, num_units)
            self.register_buffer("codebook", torch.zeros(num_units, dim))
            self.register_buffer("units_fitted", torch.tensor(False))
        if init_from:
            self.load_weights(init_from)
        self.encoder.requires_grad_(train_encoder).train(train_encoder)  # frozen parts: no dropout either
        self.lm.requires_grad_(stage == 2).train(stage == 2)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler

    def train(self, mode: bool = True) -> FlowOmni:
        """Training mode, except for the frozen encoder / LM (no dropout where nothing learns)."""
        super().train(mode)
        if mode:
            self.encoder.train(self.hparams.train_encoder)
            self.lm.train(self.hparams.stage == 2)
        return self

    def load_weights(self, path: str) -> None:
        """Every weight from a FlowOmni checkpoint of the same configuration (a mismatch names the weights)."""
        state = checkpoint_state_dict(load_checkpoint(path), path)
        own = self.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        resized = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unexpected or resized:
            raise SpeechkitError(f"init_from {path}: not a checkpoint of this configuration (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]}, other shapes {resized[:3]})")
        self.load_state_dict(state)

    # ------------------------------------------------------------------ what the data module reads
    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    # ------------------------------------------------------------------ the model
    def encode_prompt(self, feats: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, T, F)`` prompt features -> ``(B, P, d)`` LM inputs, left-padded, and their ``(B, P)`` mask; the
        encoder attends to each prompt's real frames only (``variable_length_input``)."""
        if feats.dim() != 3 or feats.shape[2] != self.encoder.config.num_mel_bins or lens.shape != feats.shape[:1]:
            raise SpeechkitError(f"prompt features: expected (B, T, {self.encoder.config.num_mel_bins}) with lengths "
                                 f"(B,), got {tuple(feats.shape)} and {tuple(lens.shape)}")
        with variable_length_input(self.encoder, lens):
            states = self.encoder(feats.transpose(1, 2)).last_hidden_state  # (B, S, D)
        prompt, plens = self.adapter(states, encoder_lengths(lens))
        mask = lengths_to_mask(plens, prompt.shape[1])
        order = torch.argsort(mask.int(), dim=1, stable=True)  # padding first, then the prompt in order
        return torch.gather(prompt, 1, order[..., None].expand_as(prompt)), torch.gather(mask, 1, order)

    def step_inputs(self, text: Tensor, speech: Tensor) -> Tensor:
        """``E_text(y) + W_in x``: ``(B, K)`` tokens and ``(B, K, F r)`` chunks -> ``(B, K, d)``."""
        return self.lm.get_input_embeddings()(text) + self.speech_in(speech)

    def _lm(self, embeds: Tensor, mask: Tensor, positions: Tensor, cache: Any = None,
            use_cache: bool = False) -> tuple[Any, Any]:
        """The LM's output and its key/value cache (``cache`` in transformers 5, ``past_key_values`` before)."""
        name = "cache" if "cache" in inspect.signature(self.lm.forward).parameters else "past_key_values"
        out = self.lm(inputs_embeds=embeds, attention_mask=mask.long(), position_ids=positions, use_cache=use_cache,
                      output_hidden_states=True, **({name: cache} if cache is not None else {}))
        return out, getattr(out, name, None)

    def answer_states(self, batch: SpokenAnswerBatch) -> tuple[Tensor, Tensor, AnswerTargets]:
        """Teacher-forced pass: hidden states ``(B, K, d)``, text logits ``(B, K, V)`` and the targets."""
        speech = batch.speech
        if speech.tokens is None:
            raise SpeechkitError("FlowOmni: the batch has no answer token ids (use SpokenAnswerDataModule)")
        chunks, chunk_lens = stack_chunks(batch.answer_mels, batch.answer_mel_lens, self.frames_per_step)
        if chunks.shape[2] != self.speech_in.in_features:
            raise SpeechkitError(f"answer mels: {batch.answer_mels.shape[2]} bins, expected num_mel_bins="
                                 f"{self.hparams.num_mel_bins}")
        targets = answer_targets(speech.tokens, speech.token_lens, chunks, chunk_lens, self.bos, self.eos)
        prompt, prompt_mask = self.encode_prompt(speech.inputs, speech.input_lens)
        embeds = torch.cat([prompt, self.step_inputs(targets.text_in, self.speech_in_values(targets))], 1)
        mask = torch.cat([prompt_mask, targets.step_mask], 1)
        out, _ = self._lm(embeds, mask, (mask.long().cumsum(1) - 1).clamp(min=0))
        start = prompt.shape[1]
        return out.hidden_states[-1][:, start:], out.logits[:, start:], targets

    def speech_in_values(self, targets: AnswerTargets) -> Tensor:
        """What is fed back: the frames themselves, or (units) the centroid of their unit."""
        if self.hparams.speech_head == "flow":
            return targets.speech_in
        fed = self.codebook[self.units_of(targets.speech_in)]
        return fed * (targets.speech_in.abs().sum(-1, keepdim=True) > 0).to(fed.dtype)  # 0 stays 0

    def units_of(self, chunks: Tensor) -> Tensor:
        """Nearest k-means unit of each chunk ``(..., F r) -> (...)``."""
        if not bool(self.units_fitted):
            raise SpeechkitError("FlowOmni: speech_head 'units' has no fitted codebook; call fit_units or train "
                                 "with the data module (fitted at the start of fit)")
        flat = chunks.reshape(-1, chunks.shape[-1])
        return torch.cdist(flat, self.codebook).argmin(-1).reshape(chunks.shape[:-1])

    def fit_units(self, chunks: Tensor, seed: int = 0) -> None:
        """Fit the ``units`` codebook on ``(N, F r)`` stacked answer frames."""
        self.codebook.copy_(fit_codebook(chunks.detach().float().cpu(), self.hparams.num_units, seed))
        self.units_fitted.fill_(True)

    # ------------------------------------------------------------------ the loss
    def losses(self, batch: SpokenAnswerBatch) -> dict[str, Tensor]:
        """``text`` (token cross-entropy), ``stop`` (binary cross-entropy), ``speech`` (CFM per mel value, or the
        units' cross-entropy) and ``loss = text + stop + cfm_weight * speech``."""
        hidden, logits, targets = self.answer_states(batch)
        text = F.cross_entropy(logits.flatten(0, 1).float(), targets.text_target.flatten(), ignore_index=IGNORE)
        stop_logits = self.stop_head(hidden).squeeze(-1)[targets.step_mask]
        stop = F.binary_cross_entropy_with_logits(stop_logits.float(), targets.stop_target[targets.step_mask].float())
        weight = self.hparams.cfm_weight
        with torch.set_grad_enabled(torch.is_grad_enabled() and weight > 0):  # lambda = 0: the head gets no gradient
            speech = self.speech_loss(hidden[targets.speech_mask], targets.speech_target[targets.speech_mask])
        loss = text + stop + (weight * speech if weight > 0 else 0.0)
        return {"loss": loss, "text": text, "stop": stop, "speech": speech}

    def speech_loss(self, cond: Tensor, chunks: Tensor) -> Tensor:
        if self.hparams.speech_head == "units":
            return F.cross_entropy(self.unit_head(cond).float(), self.units_of(chunks))
        return flow_matching_loss(self.flow_head, chunks, cond, self.hparams.sigma_min) / chunks.shape[-1]

    # ------------------------------------------------------------------ generation
    def next_chunk(self, hidden: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The speech head's chunk ``(B, F r)`` for hidden states ``(B, d)``: Euler-sampled, or the argmax unit's
        centroid."""
        if self.hparams.speech_head == "units":
            if not bool(self.units_fitted):
                raise SpeechkitError("FlowOmni: speech_head 'units' has no fitted codebook")
            return self.codebook[self.unit_head(hidden).argmax(-1)]
        return sample_ode(self.flow_head, hidden, self.speech_in.in_features, self.hparams.ode_steps,
                          generator=generator)

    @torch.no_grad()
    def generate(self, feats: Tensor, lens: Tensor, max_steps: int | None = None,
                 generator: torch.Generator | None = None) -> list[Answer]:
        """Answers to prompts ``(B, T, F)``: greedy text, Euler-sampled mel chunks fed back, until EOS and the stop
        logit (or ``max_steps`` answer steps, default ``max_answer_steps``)."""
        max_steps = self.hparams.max_answer_steps if max_steps is None else max_steps
        if max_steps < 1:
            raise SpeechkitError(f"max_steps: expected >= 1, got {max_steps}")
        prompt, mask = self.encode_prompt(feats, lens)
        batch, device, dim = prompt.shape[0], prompt.device, self.speech_in.in_features
        embeds = self.step_inputs(torch.full((batch, 1), self.bos, device=device),
                                  prompt.new_zeros(batch, 1, dim))
        embeds, mask = torch.cat([prompt, embeds], 1), torch.cat([mask, mask.new_ones(batch, 1)], 1)
        positions, past = (mask.long().cumsum(1) - 1).clamp(min=0), None
        text_done = torch.zeros(batch, dtype=torch.bool, device=device)
        speech_done = torch.zeros_like(text_done)
        tokens: list[list[int]] = [[] for _ in range(batch)]
        chunks: list[list[Tensor]] = [[] for _ in range(batch)]
        for _ in range(max_steps):
            out, past = self._lm(embeds, mask, positions, past, use_cache=True)
            hidden = out.hidden_states[-1][:, -1]  # (B, d)
            token = torch.where(text_done, self.eos, out.logits[:, -1].argmax(-1))
            speech_done |= torch.sigmoid(self.stop_head(hidden).squeeze(-1)) > 0.5
            chunk = self.next_chunk(hidden, generator) * (~speech_done)[:, None].to(hidden.dtype)  # (B, F r)
            for b in range(batch):
                if not text_done[b] and token[b] != self.eos:
                    tokens[b].append(int(token[b]))
                if not speech_done[b]:
                    chunks[b].append(chunk[b])
            text_done |= token == self.eos
            if bool((text_done & speech_done).all()):
                break
            embeds = self.step_inputs(token[:, None], chunk[:, None])
            mask = torch.cat([mask, mask.new_ones(batch, 1)], 1)
            positions = positions[:, -1:] + 1
        bins = self.hparams.num_mel_bins
        return [Answer(ids, self.tokenizer.decode(ids), torch.stack(c).reshape(-1, bins) if c
                       else prompt.new_zeros(0, bins)) for ids, c in zip(tokens, chunks)]

    # ------------------------------------------------------------------ Lightning hooks
    def on_fit_start(self) -> None:
        """The units' k-means on the training answers (rank 0's fit, broadcast: every rank the same units)."""
        if self.hparams.speech_head == "units" and not bool(self.units_fitted):
            self.fit_units(self._training_chunks())
            self.codebook.copy_(self.trainer.strategy.broadcast(self.codebook, src=0))

    def _training_chunks(self) -> Tensor:
        loader, found = self.trainer.datamodule.train_dataloader(), []
        for number, batch in enumerate(loader):
            if number >= self.hparams.unit_fit_batches:
                break
            chunks, lens = stack_chunks(batch.answer_mels, batch.answer_mel_lens, self.frames_per_step)
            found.append(chunks[lengths_to_mask(lens, chunks.shape[1])])
        return torch.cat(found).to(self.device)

    def training_step(self, batch: SpokenAnswerBatch, batch_idx: int) -> Tensor:
        losses = self.losses(batch)
        loss = check_finite(losses["loss"], self.global_step, "train_loss")
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch))
        self.log_dict({f"train_{k}": v for k, v in losses.items() if k != "loss"}, batch_size=len(batch))
        return loss

    def validation_step(self, batch: SpokenAnswerBatch, batch_idx: int) -> None:
        losses = self.losses(batch)
        self.log_dict({"val_loss" if k == "loss" else f"val_{k}": v for k, v in losses.items()},
                      batch_size=len(batch), sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_task_class(self, checkpoint)

    def configure_optimizers(self) -> Any:
        trainable = [p for p in self.parameters() if p.requires_grad]
        return configure_optimizers(trainable, self.optimizer_factory, self.scheduler_factory)
