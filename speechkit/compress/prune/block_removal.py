"""Contiguous block removal chosen by angular distance (Gromov et al. 2024, "The Unreasonable Ineffectiveness of
the Deeper Layers", used by Thangarasa et al. 2024, "Self-Data Distillation for Recovering Quality in Pruned LLMs").

``d(x^l, x^(l+n)) = (1/pi) arccos(cos(x^l, x^(l+n)))`` with ``x^l`` the residual-stream input of layer l (HF
``hidden_states[l]``) at the last real token (decoders) or averaged over real tokens; averaged over the calibration
set; ``l* = argmin_l d``; layers ``l*, ..., l*+n-1`` are removed so the input of ``l*`` feeds ``l*+n``.
Note: HF models apply the final norm to ``hidden_states[-1]``; ``l* + n = L`` then compares against the normed
output, which is what a user of ``output_hidden_states`` sees.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from speechkit.errors import SpeechkitError

Tokens = Literal["last", "all"]


def angular_distance(a: Tensor, b: Tensor) -> Tensor:
    """``arccos(cos(a, b)) / pi`` along the last dim: 0 for parallel, 0.5 orthogonal, 1 antiparallel; ``(...)``."""
    cos = F.cosine_similarity(a.double(), b.double(), dim=-1).clamp(-1.0, 1.0)
    return torch.arccos(cos) / math.pi


def _pick_tokens(h: Tensor, mask: Tensor | None, tokens: Tokens) -> tuple[Tensor, Tensor]:
    """Vectors ``(B, T', D)`` and weights ``(B, T')`` of the tokens that count."""
    b, t, _ = h.shape
    mask = torch.ones(b, t, dtype=torch.bool, device=h.device) if mask is None else mask.bool()
    if tokens == "all":
        return h, mask.to(h.dtype)
    if tokens != "last":
        raise SpeechkitError(f"tokens must be 'last' or 'all', got {tokens!r}")
    last = (mask.long().cumsum(1) * mask).argmax(dim=1)  # index of the last real token, (B,)
    return h[torch.arange(b), last][:, None, :], torch.ones(b, 1, dtype=h.dtype, device=h.device)


def angular_distance_profile(hidden_states: Sequence[Tensor], n: int, mask: Tensor | None = None,
                             tokens: Tokens = "last") -> Tensor:
    """Mean angular distance between ``hidden_states[l]`` and ``hidden_states[l + n]`` for every start l.

    Args:
        hidden_states: ``L + 1`` tensors ``(B, T, D)`` (HF ``output_hidden_states``: the input of layer l at l).
        n: block size (layers to remove), 1 <= n <= L.
        mask: ``(B, T)`` real tokens.
        tokens: "last" real token (Gromov et al.) or the mean over "all" real tokens.

    Returns:
        ``(L - n + 1,)`` distances for one batch; average the profiles of several batches for the calibration set.
    """
    layers = len(hidden_states) - 1
    if not 1 <= n <= layers:
        raise SpeechkitError(f"n must be in [1, {layers}] (number of layers), got {n}")
    picked = [_pick_tokens(h, mask, tokens) for h in hidden_states]
    profile = []
    for start in range(layers - n + 1):
        (a, weight), (b, _) = picked[start], picked[start + n]
        d = angular_distance(a, b)  # (B, T')
        profile.append((d * weight).sum() / weight.sum())
    return torch.stack(profile).float()


def best_block(profile: Tensor) -> int:
    """``l* = argmin_l d(l)`` (the first on ties)."""
    return int(torch.argmin(profile))


def _get(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError as error:
        raise SpeechkitError(f"layers: {path!r} is not a submodule of the model") from error


def remove_layers(model: nn.Module, layers: str, indices: Sequence[int], config_key: str | None = None) -> nn.Module:
    """Delete layers ``indices`` from the ``nn.ModuleList`` at ``layers`` (e.g. "model.decoder.layers"), in place.

    Re-numbers ``layer_idx`` attributes of the remaining layers' submodules (HF KV-cache slots) and, when
    ``config_key`` is given (e.g. "decoder_layers"), sets ``model.config.<config_key>`` to the new count.
    """
    stack = _get(model, layers)
    if not isinstance(stack, nn.ModuleList):
        raise SpeechkitError(f"layers: {layers!r} is a {type(stack).__name__}, expected nn.ModuleList")
    drop = set(indices)
    bad = [i for i in drop if not 0 <= i < len(stack)]
    if bad or len(drop) >= len(stack):
        raise SpeechkitError(f"indices {sorted(drop)} must be distinct layers of {len(stack)} and leave at least one")
    kept = [layer for i, layer in enumerate(stack) if i not in drop]
    for new_index, layer in enumerate(kept):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    model.get_submodule(layers.rsplit(".", 1)[0] if "." in layers else "").__setattr__(
        layers.rsplit(".", 1)[-1], nn.ModuleList(kept))
    if config_key is not None:
        config = getattr(model, "config", None)
        if config is None or not hasattr(config, config_key):
            raise SpeechkitError(f"config_key: the model has no config.{config_key}")
        setattr(config, config_key, len(kept))
    return model


def remove_blocks(model: nn.Module, layers: str, start: int, n: int, config_key: str | None = None) -> nn.Module:
    """Remove the contiguous block ``start, ..., start + n - 1`` (see :func:`remove_layers`)."""
    return remove_layers(model, layers, range(start, start + n), config_key)
