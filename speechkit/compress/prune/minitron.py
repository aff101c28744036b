"""Minitron structured pruning: activation-based importance and the surgery that shrinks layers.

Muralidharan et al. 2024, "Compact Language Models via Pruning and Knowledge Distillation", Sec. 2.2, on a small
calibration set with forward passes only:
``F_head(i) = sum_(B,S) ||Attn_i(X)||_2`` (the head's slice of the attention output, i.e. of the input to the
output projection), ``F_neuron(i) = sum_(B,S) X W_1^i`` (up-projection pre-activation), ``F_emb(i) = sum_(B,S)
LN(X)_i`` (LayerNorm outputs over all layers), depth by Block Importance ``BI_i = 1 - E[cos(X_i, X_(i+1))]``.
Per batch, values are aggregated over the batch then the sequence with {"mean", "l2", "var"} (the paper's best:
batch L2, sequence mean); "mean" takes magnitudes so signs cannot cancel [D]; batches add up.
Then rank, keep the top ones, and shrink ``nn.Linear`` / ``nn.LayerNorm`` / ``nn.Embedding`` modules in place.
"""

from __future__ import annotations

import fnmatch
from typing import Literal, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from speechkit.compress.prune.masks import find_linears
from speechkit.errors import SpeechkitError

Agg = Literal["mean", "l2", "var"]


def aggregate(x: Tensor, batch: Agg = "l2", seq: Agg = "mean", mask: Tensor | None = None) -> Tensor:
    """Reduce activations ``(B, S, C)`` over the batch, then the sequence, to ``(C,)``; padded tokens count as 0."""
    if x.dim() == 2:
        x = x[:, None, :]
    if mask is not None:
        x = x * mask[:, :, None].to(x.dtype)
    out = _reduce(x, batch, 0)  # (S, C)
    if mask is not None:  # sequence positions that no example reaches do not count
        out = out[mask.bool().any(dim=0)]
    return _reduce(out, seq, 0)


def _reduce(x: Tensor, how: Agg, dim: int) -> Tensor:
    if how == "mean":
        return x.abs().mean(dim)
    if how == "l2":
        return x.norm(dim=dim)
    if how == "var":
        return x.var(dim, unbiased=False)
    raise SpeechkitError(f"aggregation must be 'mean', 'l2' or 'var', got {how!r}")


class ActivationImportance:
    """Forward hooks that accumulate Minitron importance while the user runs calibration batches.

    Args:
        model: the network.
        neurons: glob patterns of up / gate projections (``nn.Linear``); importance of each output neuron.
        heads: ``{pattern of the attention output projection: num_heads}``; importance of each head from the
            projection's input ``(B, S, H * Dh)``.
        channels: glob patterns of the norms (LayerNorm / RMSNorm) whose outputs give embedding-channel importance
            (summed over all matched modules).
        batch_agg, seq_agg: aggregations.

    Use: ``with ActivationImportance(model, neurons=["*.fc1"]) as imp: model(x)``; then ``imp.scores``. Set
    ``imp.token_mask = mask`` ``(B, S)`` before a forward to ignore padding.
    """

    def __init__(self, model: nn.Module, neurons: Sequence[str] = (), heads: Mapping[str, int] | None = None,
                 channels: Sequence[str] = (), batch_agg: Agg = "l2", seq_agg: Agg = "mean") -> None:
        self.scores: dict[str, Tensor] = {}
        self.token_mask: Tensor | None = None
        self.aggs = (batch_agg, seq_agg)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._plan: list[tuple[nn.Module, str, str, int]] = []  # (module, key, kind, heads)
        for name, module in (find_linears(model, neurons) if neurons else {}).items():
            self._plan.append((module, name, "out", 0))
        for pattern, n_heads in (heads or {}).items():
            for name, module in find_linears(model, pattern).items():
                if module.in_features % n_heads:
                    raise SpeechkitError(f"heads: {name} has {module.in_features} inputs, not divisible by {n_heads}")
                self._plan.append((module, name, "heads", n_heads))
        if channels:
            norms = [m for name, m in model.named_modules() if any(fnmatch.fnmatchcase(name, p) for p in channels)]
            if not norms:
                raise SpeechkitError(f"channels: patterns {list(channels)} match no module")
            self._plan += [(m, "channels", "out", 0) for m in norms]

    def __enter__(self) -> "ActivationImportance":
        for module, key, kind, n_heads in self._plan:
            if kind == "heads":
                self._handles.append(module.register_forward_pre_hook(self._head_hook(key, n_heads)))
            else:
                self._handles.append(module.register_forward_hook(self._out_hook(key)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _add(self, key: str, value: Tensor) -> None:
        value = value.detach().float()
        self.scores[key] = self.scores[key] + value if key in self.scores else value

    def _out_hook(self, key: str):  # noqa: ANN202 - torch hook signature
        def hook(_: nn.Module, __: tuple, output: Tensor) -> None:
            self._add(key, aggregate(output.detach(), *self.aggs, mask=self.token_mask))
        return hook

    def _head_hook(self, key: str, n_heads: int):  # noqa: ANN202
        def hook(_: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            per_head = x.reshape(*x.shape[:-1], n_heads, -1).norm(dim=-1)  # (B, S, H)
            self._add(key, aggregate(per_head, *self.aggs, mask=self.token_mask))
        return hook


def block_importance(hidden_states: Sequence[Tensor], mask: Tensor | None = None) -> Tensor:
    """Depth importance ``BI_i = 1 - E[cos(X_i, X_(i+1))]`` over real tokens, ``(L,)`` for ``L + 1`` hidden states."""
    out = []
    for a, b in zip(hidden_states[:-1], hidden_states[1:]):
        cos = F.cosine_similarity(a.double(), b.double(), dim=-1)  # (B, T)
        out.append(1 - (cos[mask.bool()] if mask is not None else cos).mean())
    return torch.stack(out).float()


def prune_depth(model: nn.Module, layers: str, importance: Tensor, keep: int, config_key: str | None = None) -> Tensor:
    """Keep the ``keep`` most important layers of the ``nn.ModuleList`` at ``layers`` (e.g. by ``block_importance``).

    Returns the kept layer indices; ``config_key`` (e.g. "decoder_layers") is updated as in ``remove_layers``.
    """
    from speechkit.compress.prune.block_removal import remove_layers

    kept = top_indices(importance, keep)
    remove_layers(model, layers, sorted(set(range(importance.numel())) - set(kept.tolist())), config_key)
    return kept


def top_indices(importance: Tensor, keep: int) -> Tensor:
    """Sorted indices of the ``keep`` largest importances."""
    if not 1 <= keep <= importance.numel():
        raise SpeechkitError(f"keep must be in [1, {importance.numel()}], got {keep}")
    return torch.sort(torch.topk(importance, keep).indices).values


def shrink_linear(linear: nn.Linear, keep: Tensor, dim: Literal["out", "in"]) -> nn.Linear:
    """A new ``nn.Linear`` with only the ``keep`` output rows (and bias entries) or input columns."""
    weight = linear.weight.detach()
    weight = weight[keep] if dim == "out" else weight[:, keep]
    bias = linear.bias
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias.detach()[keep] if dim == "out" else bias.detach())
    return new


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule ``name`` (dotted path) of ``model``."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _single(model: nn.Module, name: str) -> nn.Linear:
    found = find_linears(model, name)
    if list(found) != [name]:
        raise SpeechkitError(f"{name!r} must name exactly one nn.Linear, matched {list(found)}")
    return found[name]


def slice_mlp(model: nn.Module, up: str | Sequence[str], down: str, keep: Tensor) -> None:
    """Keep MLP neurons ``keep``: rows of the up (and gate) projections, columns of the down projection."""
    for name in [up] if isinstance(up, str) else up:
        set_module(model, name, shrink_linear(_single(model, name), keep, "out"))
    set_module(model, down, shrink_linear(_single(model, down), keep, "in"))


def prune_neurons(model: nn.Module, up: str | Sequence[str], down: str, importance: Tensor, keep: int) -> Tensor:
    """Keep the ``keep`` most important MLP neurons; returns their indices."""
    index = top_indices(importance, keep)
    slice_mlp(model, up, down, index)
    return index


def prune_heads(model: nn.Module, qkv: Sequence[str], out: str, num_heads: int, importance: Tensor, keep: int,
                attention: str | None = None) -> Tensor:
    """Keep the ``keep`` most important heads: their rows of q/k/v, their columns of the output projection.

    ``attention`` names the module whose ``num_heads`` (and ``embed_dim`` if present and not the model width) to
    update; HF Whisper reshapes with ``-1`` heads, so only ``num_heads`` needs to follow.
    """
    if importance.numel() != num_heads:
        raise SpeechkitError(f"importance has {importance.numel()} entries, expected num_heads={num_heads}")
    heads = top_indices(importance, keep)
    head_dim = _single(model, out).in_features // num_heads
    rows = (heads[:, None] * head_dim + torch.arange(head_dim)[None, :]).flatten()
    for name in qkv:
        set_module(model, name, shrink_linear(_single(model, name), rows, "out"))
    set_module(model, out, shrink_linear(_single(model, out), rows, "in"))
    if attention is not None:
        module = model.get_submodule(attention)
        if hasattr(module, "num_heads"):
            module.num_heads = keep
    return heads


def prune_channels(model: nn.Module, importance: Tensor, keep: int, readers: Sequence[str] = (),
                   writers: Sequence[str] = (), norms: Sequence[str] = (), embeddings: Sequence[str] = ()) -> Tensor:
    """Keep the ``keep`` most important residual-stream (embedding) channels everywhere they appear.

    Args:
        readers: glob patterns of Linears whose input is the residual stream (columns sliced).
        writers: Linears writing to it (rows and bias sliced).
        norms: LayerNorm / RMSNorm-like modules over the stream (``weight`` / ``bias`` sliced, shape updated).
        embeddings: ``nn.Embedding`` modules or plain parameters ``(N, D)`` (columns sliced).
    Norm statistics are then computed over the kept channels only (as in Minitron).
    """
    index = top_indices(importance, keep)
    for name in find_linears(model, readers) if readers else {}:
        set_module(model, name, shrink_linear(_single(model, name), index, "in"))
    for name in find_linears(model, writers) if writers else {}:
        set_module(model, name, shrink_linear(_single(model, name), index, "out"))
    for pattern in (*norms, *embeddings):
        hits = [(n, m) for n, m in model.named_modules() if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise SpeechkitError(f"pattern {pattern!r} matches no module")
        for _, module in hits:
            _slice_last_dim(module, index)
    return index


def _slice_last_dim(module: nn.Module, index: Tensor) -> None:
    with torch.no_grad():
        for pname, param in list(module.named_parameters(recurse=False)):
            setattr(module, pname, nn.Parameter(param.detach()[..., index].clone(), requires_grad=param.requires_grad))
    if hasattr(module, "normalized_shape"):
        module.normalized_shape = (len(index),)
    if hasattr(module, "embedding_dim"):
        module.embedding_dim = len(index)
