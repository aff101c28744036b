"""Structured surgery that makes a Whisper student from its teacher: which layers, MLP neurons and attention heads
to keep (measured on calibration batches), and cutting them.

* Depth: remove the contiguous block of ``n`` layers whose input and output are closest in angular distance
  ``d(x^l, x^(l+n)) = arccos(cos(x^l, x^(l+n))) / pi`` (Gromov et al. 2024, "The Unreasonable Ineffectiveness of the
  Deeper Layers", their layer-pruning algorithm; :mod:`speechkit.compress.prune.block_removal`), or given indices.
* Width: keep the most important MLP neurons and attention heads of every layer by activation importance (Muralidharan
  et al. 2024, "Compact Language Models via Pruning and Knowledge Distillation", section 2.2; self- and
  cross-attention alike; :mod:`speechkit.compress.prune.minitron`).

A plan is plain data (``{"remove": ..., "neurons": ..., "heads": ...}``), so a checkpoint can store it and replay it
on a freshly built teacher (``WhisperDistill.on_load_checkpoint``).

Dimensions: ``B`` batch, ``T`` positions (encoder frames or decoder tokens), ``D`` model width.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

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
from speechkit.errors import SpeechkitError
from speechkit.models.whisper_encoder import encoder_lengths
from speechkit.models.whisper_seq2seq import WhisperSeq2Seq
from speechkit.tensors import lengths_to_mask

# stack path -> (config key of its depth, config key of its MLP width)
STACKS = {"model.encoder.layers": ("encoder_layers", "encoder_ffn_dim"),
          "model.decoder.layers": ("decoder_layers", "decoder_ffn_dim")}
# stack path -> (config key of its head count, its attention modules)
HEADS = {"model.encoder.layers": ("encoder_attention_heads", ("self_attn",)),
         "model.decoder.layers": ("decoder_attention_heads", ("self_attn", "encoder_attn"))}
Removal = Union[int, list[int]]
Plan = dict[str, Any]


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


def stack_masks(batch: SpeechBatch, lens: Tensor, frames: int) -> dict[str, Tensor]:
    """Real positions of each stack: decoder input tokens ``(B, U-1)``, encoder frames ``(B, ceil(frames / 2))``."""
    tokens = lengths_to_mask(batch.token_lens - 1, batch.tokens.shape[1] - 1)
    enc = lengths_to_mask(encoder_lengths(lens), (frames + 1) // 2)
    return {"model.decoder.layers": tokens, "model.encoder.layers": enc}


@dataclass(frozen=True)
class StudentShape:
    """What to cut from each stack (``model.encoder.layers`` / ``model.decoder.layers``) of a Whisper teacher.

    Attributes:
        removals: an int ``n`` (the block of ``n`` layers with the smallest angular distance) or layer indices.
        ffn_keep: MLP neurons kept in every layer (``None``: all).
        heads_keep: heads kept in every attention (``None``: all).
    """

    removals: dict[str, Removal]
    ffn_keep: dict[str, Optional[int]]
    heads_keep: dict[str, Optional[int]]

    @classmethod
    def of(cls, remove_decoder_layers: Removal = 0, remove_encoder_layers: Removal = 0,
           decoder_ffn_keep: Optional[int] = None, encoder_ffn_keep: Optional[int] = None,
           decoder_heads_keep: Optional[int] = None, encoder_heads_keep: Optional[int] = None) -> StudentShape:
        """The shape from the options of ``WhisperDistill`` (the same names)."""
        dec, enc = "model.decoder.layers", "model.encoder.layers"
        return cls({dec: remove_decoder_layers, enc: remove_encoder_layers},
                   {dec: decoder_ffn_keep, enc: encoder_ffn_keep}, {dec: decoder_heads_keep, enc: encoder_heads_keep})

    @property
    def needs_data(self) -> bool:
        """Whether choosing what to cut needs calibration batches (a block to find, neurons or heads to rank)."""
        return any(isinstance(r, int) and r > 0 for r in self.removals.values()) or any(
            k is not None for k in [*self.ffn_keep.values(), *self.heads_keep.values()])

    def check(self, model: nn.Module) -> None:
        """Refuse a shape ``model`` cannot take, naming the option (``remove_decoder_layers=4`` ...)."""
        config = model.config.to_dict()
        for stack, removal in self.removals.items():
            depth, side = len(model.get_submodule(stack)), stack.split(".")[1]
            if isinstance(removal, int) and not 0 <= removal < depth:
                raise SpeechkitError(f"remove_{side}_layers={removal}: expected 0 <= n < {depth} layers")
            if isinstance(removal, list) and (len(set(removal)) >= depth or any(not 0 <= i < depth for i in removal)):
                raise SpeechkitError(f"remove_{side}_layers={removal}: expected distinct indices in [0, {depth}) "
                                     "that leave at least one layer")
            keep, width = self.ffn_keep[stack], config[STACKS[stack][1]]
            if keep is not None and not 1 <= keep <= width:
                raise SpeechkitError(f"{side}_ffn_keep={keep}: expected 1 <= keep <= {width}")
            keep, heads = self.heads_keep[stack], config[HEADS[stack][0]]
            if keep is not None and not 1 <= keep <= heads:
                raise SpeechkitError(f"{side}_heads_keep={keep}: expected 1 <= keep <= {heads}")

    @torch.no_grad()
    def plan(self, core: WhisperSeq2Seq, batches: Iterable[SpeechBatch]) -> Plan:
        """Which layers to remove and which neurons / heads to keep, measured on ``core``'s (unmodified) model.

        Returns:
            ``{"remove": {stack: [layer indices]}, "neurons": {"<stack>.<i>": [kept neuron indices]},
            "heads": {"<stack>.<i>.<attention>": [kept head indices]}}``.
        """
        batches = list(batches)
        if self.needs_data and not batches:
            raise SpeechkitError("plan_surgery needs calibration batches for angular distance / neuron importance")
        model, plan = core.model, {"remove": {}, "neurons": {}, "heads": {}}
        profiles = {stack: [] for stack, r in self.removals.items() if isinstance(r, int) and r > 0}
        patterns = [f"{stack}.*.fc1" for stack, keep in self.ffn_keep.items() if keep is not None]
        config = model.config.to_dict()
        heads = {f"{stack}.*.{attn}.out_proj": config[HEADS[stack][0]]
                 for stack, keep in self.heads_keep.items() if keep is not None for attn in HEADS[stack][1]}
        scoring = patterns or heads
        with ActivationImportance(model, neurons=patterns, heads=heads) if scoring else \
                contextlib.nullcontext() as imp:
            for batch in batches:
                self._profile(core, batch, profiles)
        for stack, removal in self.removals.items():
            if isinstance(removal, list):
                plan["remove"][stack] = sorted(removal)
            elif removal > 0:
                start = best_block(torch.stack(profiles[stack]).mean(0))
                plan["remove"][stack] = list(range(start, start + removal))
        for stack, keep in self.ffn_keep.items():
            for i in range(len(model.get_submodule(stack)) if keep is not None else 0):
                plan["neurons"][f"{stack}.{i}"] = top_indices(imp.scores[f"{stack}.{i}.fc1"], keep).tolist()
        for stack, keep in self.heads_keep.items():
            for i in range(len(model.get_submodule(stack)) if keep is not None else 0):
                for attn in HEADS[stack][1]:
                    name = f"{stack}.{i}.{attn}"
                    plan["heads"][name] = top_indices(imp.scores[f"{name}.out_proj"], keep).tolist()
        return plan

    def _profile(self, core: WhisperSeq2Seq, batch: SpeechBatch, profiles: dict[str, list[Tensor]]) -> None:
        """Add this batch's angular-distance profile of every stack being cut (decoder: last real token)."""
        feats, lens = core.features(batch)
        inputs, _ = core.shift_labels(batch)
        masks = stack_masks(batch, lens, feats.shape[-1])
        with contextlib.ExitStack() as stack:
            states = {name: stack.enter_context(record_layers(core.model, name)) for name in profiles}
            core.logits(feats, lens, inputs)
        for name, hidden in states.items():
            tokens = "last" if "decoder" in name else "all"
            profiles[name].append(angular_distance_profile(hidden, self.removals[name], masks[name], tokens))


def apply_surgery(model: nn.Module, plan: Plan) -> None:
    """Cut ``model`` in place as ``plan`` says (neurons, heads, then layers) and update its config."""
    for name, keep in plan["neurons"].items():
        slice_mlp(model, f"{name}.fc1", f"{name}.fc2", torch.tensor(keep))
        setattr(model.config, STACKS[name.rsplit(".", 1)[0]][1], len(keep))
    for name, keep in plan.get("heads", {}).items():
        attention = model.get_submodule(name)
        chosen = torch.zeros(attention.num_heads)
        chosen[torch.tensor(keep)] = 1.0  # prune_heads keeps the top ones: exactly these
        prune_heads(model, [f"{name}.{p}_proj" for p in "qkv"], f"{name}.out_proj", attention.num_heads, chosen,
                    len(keep), attention=name)
    for stack, removed in plan["remove"].items():
        if removed:
            remove_layers(model, stack, removed, config_key=STACKS[stack][0])


def layer_map(plan: Optional[Plan], stack: str, teacher_depth: int) -> list[int]:
    """Teacher state index of every student state from :func:`record_layers` (0 = the stack's input)."""
    removed = set((plan or {}).get("remove", {}).get(stack, []))
    return [0] + [i + 1 for i in range(teacher_depth) if i not in removed]
