"""LOST: low-rank plus channel-wise sparse linear layers (Li et al. 2025, "LOST: Low-rank and Sparse
Pre-training for Large Language Models").

At initialisation only: ``W0 = U S V^T``; low-rank ``B = U_r S_r^(1/2)``, ``A = S_r^(1/2) V_r^T``; residual
``W_comp = W0 - B A``; channels ``I`` = the ``k`` input columns of ``W_comp`` (or of ``W0``) with the largest L2
(or L1) norm; sparse part ``W_s = W_comp[:, I]`` ``(out, k)``. Forward:
``y = gamma * act(x A^T) B^T + (1 - gamma) * x[..., I] W_s^T + b``. Both parts train; the channel set stays fixed.
The factor split, ``W_s`` initial value and the selection source are not published; they are our reading [D].
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torch import Tensor, nn

from speechkit.compress.prune.masks import find_linears
from speechkit.compress.prune.minitron import set_module
from speechkit.errors import SpeechkitError

Activation = Literal["identity", "silu", "relu", "gelu"]
_ACTS = {"identity": nn.Identity, "silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU}


class LowRankSparseLinear(nn.Module):
    """Drop-in for ``nn.Linear(in_features, out_features)`` as a rank-``rank`` + ``n_channels``-column layer.

    Constructed directly, it decomposes a freshly initialised dense weight (training from scratch); use
    :meth:`from_dense` to decompose a given weight.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, n_channels: int, gamma: float = 0.5,
                 act: Activation = "silu", bias: bool = True, channel_score: Literal["l2", "l1"] = "l2",
                 score_source: Literal["residual", "original"] = "residual") -> None:
        super().__init__()
        if not 1 <= rank <= min(in_features, out_features):
            raise SpeechkitError(f"rank must be in [1, {min(in_features, out_features)}], got {rank}")
        if not 0 <= n_channels <= in_features:
            raise SpeechkitError(f"n_channels must be in [0, {in_features}], got {n_channels}")
        if not 0 <= gamma <= 1:
            raise SpeechkitError(f"gamma must be in [0, 1], got {gamma}")
        if act not in _ACTS:
            raise SpeechkitError(f"act must be one of {sorted(_ACTS)}, got {act!r}")
        if score_source not in ("residual", "original"):
            raise SpeechkitError(f"score_source must be 'residual' or 'original', got {score_source!r}")
        if channel_score not in ("l2", "l1"):
            raise SpeechkitError(f"channel_score must be 'l2' or 'l1', got {channel_score!r}")
        self.in_features, self.out_features, self.gamma = in_features, out_features, gamma
        self.channel_score, self.score_source = channel_score, score_source
        self.act = _ACTS[act]()
        self.A = nn.Parameter(torch.empty(rank, in_features))
        self.B = nn.Parameter(torch.empty(out_features, rank))
        self.sparse_weight = nn.Parameter(torch.empty(out_features, n_channels))
        self.register_buffer("channels", torch.zeros(n_channels, dtype=torch.long))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        dense = nn.Linear(in_features, out_features, bias=bias)  # torch's default init for a from-scratch start
        self.init_from(dense.weight.detach(), None if dense.bias is None else dense.bias.detach())

    @torch.no_grad()
    def init_from(self, weight: Tensor, bias: Tensor | None = None) -> None:
        """Set the factors, channel set and sparse part from a dense ``(out, in)`` weight (LOST's SVD init)."""
        if weight.shape != (self.out_features, self.in_features):
            raise SpeechkitError(f"weight must be ({self.out_features}, {self.in_features}), got {tuple(weight.shape)}")
        u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)
        r = self.A.shape[0]
        root = s[:r].sqrt()
        b, a = u[:, :r] * root, root[:, None] * vh[:r]
        residual = weight.double() - b @ a  # W_comp
        source = residual if self.score_source == "residual" else weight.double()
        score = source.norm(p=2 if self.channel_score == "l2" else 1, dim=0)  # (in,)
        channels = torch.sort(torch.topk(score, self.channels.numel()).indices).values
        self.A.copy_(a), self.B.copy_(b)
        self.channels.copy_(channels)
        self.sparse_weight.copy_(residual[:, channels])
        if self.bias is not None and bias is not None:
            self.bias.copy_(bias)

    @classmethod
    def from_dense(cls, linear: nn.Linear | Tensor, rank: int, n_channels: int,
                   **kwargs: object) -> "LowRankSparseLinear":
        """Decompose an ``nn.Linear`` (or a ``(out, in)`` weight) into a LOST layer."""
        weight = linear.weight if isinstance(linear, nn.Linear) else linear
        bias = linear.bias if isinstance(linear, nn.Linear) else None
        layer = cls(weight.shape[1], weight.shape[0], rank, n_channels, bias=bias is not None,
                    **kwargs)  # type: ignore[arg-type]
        layer.init_from(weight.detach(), None if bias is None else bias.detach())
        return layer.to(weight.device)

    def low_rank_weight(self) -> Tensor:
        return self.B @ self.A

    def forward(self, x: Tensor) -> Tensor:  # (..., in) -> (..., out)
        low_rank = self.act(x @ self.A.T) @ self.B.T
        sparse = x[..., self.channels] @ self.sparse_weight.T
        out = self.gamma * low_rank + (1 - self.gamma) * sparse
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, rank={self.A.shape[0]}, "
                f"channels={self.channels.numel()}, gamma={self.gamma}")


def lost_param_count(in_features: int, out_features: int, rank: int, n_channels: int) -> int:
    """Weights of a LOST layer without bias: ``r (in + out) + k out``."""
    return rank * (in_features + out_features) + n_channels * out_features


def lostify(model: nn.Module, targets: str | Sequence[str], rank_fraction: float = 0.25,
            channel_fraction: float = 0.05, **kwargs: object) -> list[str]:
    """Replace every matched ``nn.Linear`` by :meth:`LowRankSparseLinear.from_dense` in place; returns the names.

    ``rank = ceil(rank_fraction * min(in, out))``, ``n_channels = round(channel_fraction * in)`` [D: r = d/4].
    """
    names = list(find_linears(model, targets))
    for name in names:
        linear = model.get_submodule(name)
        rank = max(1, math.ceil(rank_fraction * min(linear.in_features, linear.out_features)))
        channels = round(channel_fraction * linear.in_features)
        set_module(model, name, LowRankSparseLinear.from_dense(linear, rank, channels, **kwargs))
    return names
