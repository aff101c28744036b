"""NoiseFiT: adaptive noise injection on SNR-selected layers with a hybrid loss.

*NoiseFiT: Noise-Aware Fine-Tuning...* (Khadangi et al. 2025, arXiv 2504.03302; code ``akhadangi/NoiseFiT``,
``NoiseFiT_v1_manual_snr.py``, the paper's v1). For hidden states ``h`` (..., H):

    phi   = min(exp(var_H(h) / mean(var_H(h))), 5)          (or exp(entropy(softmax(logits))) when logits are given)
    med   = median_H(h),  MAD = max(median_H |h - med|, 1e-6 ||h||)
    w     = exp(-beta |h - med| / (MAD + 1e-6))
    h~    = h + base_std * MAD * w * phi * xi,   xi ~ N(0, I)   (zero mean: unbiased)

Layer selection: ``SNR_l = mean|h_l| / mean_passes(mean|h~_l - h_l|)`` with ``base_std = noise_std * std(h_l)``
on one batch, 10 passes; the k layers with the largest (or smallest) SNR get a forward hook that adds noise with
``base_std = noise_std^2 * std(h)`` (the code multiplies by noise_std twice; ``faithful_std=False`` uses it once).
Hybrid loss from one clean and two noisy forwards:

    L = alpha CE(z, y) + (1 - alpha) (KL(softmax(z/T) || softmax(z1)) + KL(softmax(z/T) || softmax(z2))) / 2
        + lambda KL(softmax(z2) || softmax(z1))

The clean logits are not detached (as in the code; ``detach_teacher=True`` detaches them).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Literal, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from speechkit.errors import SpeechkitError
from speechkit.tensors import IGNORE_INDEX

EPSILON = 1e-6


def adaptive_noise(h: Tensor, base_std: float, beta: float = 0.1, logits: Tensor | None = None,
                   generator: torch.Generator | None = None) -> Tensor:
    """``h + sigma * xi`` with NoiseFiT's per-element ``sigma`` (module docstring). h (..., H) -> (..., H)."""
    if logits is not None:
        p = F.softmax(logits, dim=-1)
        factor = torch.exp(-(p * torch.log(p + EPSILON)).sum(-1, keepdim=True))
    else:
        var = h.var(dim=-1, keepdim=True)
        factor = torch.exp(var / (var.mean() + EPSILON))
    factor = factor.clamp(max=5.0)
    median = h.median(dim=-1, keepdim=True).values
    mad = (h - median).abs().median(dim=-1, keepdim=True).values
    mad = torch.maximum(mad, EPSILON * h.norm(dim=-1, keepdim=True))
    weight = torch.exp(-beta * (h - median).abs() / (mad + EPSILON))
    noise = torch.randn(h.shape, generator=generator, dtype=h.dtype, device="cpu").to(h.device)
    return h + base_std * mad * weight * factor * noise


def _hidden(output: Any) -> Tensor:
    """The hidden-state tensor of a layer's output (a tensor, or the first element of a tuple as in HF blocks)."""
    hidden = output[0] if isinstance(output, (tuple, list)) else output
    if not isinstance(hidden, Tensor):
        raise SpeechkitError(f"layers: a selected layer returned {type(output).__name__}; expected a tensor or a "
                             "tuple whose first element is the hidden states")
    return hidden


def _kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) per position over the last dimension."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


class NoiseFiT:
    """NoiseFiT as a switch for a task: select layers, hook them, compute the hybrid loss.

    Use: ``noisefit.select_layers(layers, lambda: model(batch))`` once (e.g. at the start of training), then in
    ``training_step`` ``loss = noisefit.loss(lambda: model(batch), targets)``. ``layers`` is the list of blocks
    whose outputs may receive noise (e.g. a transformer's ``encoder.layers``).

    Args:
        noise_std: base noise level (paper 0.1).
        n_layers: number of layers to perturb (k = 3).
        select: "largest" or "smallest" SNR.
        alpha: weight of the clean cross-entropy in the hybrid loss (0.5).
        lam: weight of the consistency term (0.1).
        temperature: temperature of the clean soft targets (1.0).
        beta: sensitivity of the median-distance weighting (0.1).
        n_passes: noisy passes for the SNR estimate (10).
        faithful_std: multiply by noise_std twice in the hooks, as the official code does.
        detach_teacher: detach the clean logits in the soft-target term (the code does not).
        ignore_index: target value of positions left out of every term.
    """

    def __init__(self, noise_std: float = 0.1, n_layers: int = 3, select: Literal["largest", "smallest"] = "largest",
                 alpha: float = 0.5, lam: float = 0.1, temperature: float = 1.0, beta: float = 0.1,
                 n_passes: int = 10, faithful_std: bool = True, detach_teacher: bool = False,
                 ignore_index: int = IGNORE_INDEX) -> None:
        for name, value, ok in (("noise_std", noise_std, noise_std >= 0), ("n_layers", n_layers, n_layers >= 1),
                                ("select", select, select in ("largest", "smallest")),
                                ("alpha", alpha, 0 <= alpha <= 1), ("lam", lam, lam >= 0),
                                ("temperature", temperature, temperature > 0), ("n_passes", n_passes, n_passes >= 1)):
            if not ok:
                raise SpeechkitError(f"{name}: invalid value {value!r} (noise_std >= 0, n_layers >= 1, select "
                                     "largest|smallest, alpha in [0, 1], lam >= 0, temperature > 0, n_passes >= 1)")
        self.noise_std, self.n_layers, self.select, self.alpha, self.lam = noise_std, n_layers, select, alpha, lam
        self.temperature, self.beta, self.n_passes = temperature, beta, n_passes
        self.faithful_std, self.detach_teacher, self.ignore_index = faithful_std, detach_teacher, ignore_index
        self.enabled = False
        self.selected: list[int] = []
        self._handles: list[Any] = []

    # -- layer selection -------------------------------------------------------------------------------------------
    def layer_snr(self, layers: Sequence[nn.Module], run: Callable[[], Any],
                  generator: torch.Generator | None = None) -> Tensor:
        """SNR of each layer's output on the batch that ``run()`` forwards (no gradient). -> (L,)"""
        outputs: list[Tensor | None] = [None] * len(layers)
        handles = [layer.register_forward_hook(self._capture(outputs, i)) for i, layer in enumerate(layers)]
        try:
            with torch.no_grad():
                run()
        finally:
            for handle in handles:
                handle.remove()
        snr = []
        for i, h in enumerate(outputs):
            if h is None:
                raise SpeechkitError(f"layers: layer {i} was not called by run()")
            diffs = [(adaptive_noise(h, self.noise_std * float(h.std()), self.beta, generator=generator) - h)
                     .abs().mean() for _ in range(self.n_passes)]
            snr.append(h.abs().mean() / (torch.stack(diffs).mean() + EPSILON))
        return torch.stack(snr)

    @staticmethod
    def _capture(outputs: list, index: int) -> Callable:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            outputs[index] = _hidden(output).detach()
        return hook

    def select_layers(self, layers: Sequence[nn.Module], run: Callable[[], Any],
                      generator: torch.Generator | None = None) -> list[int]:
        """Pick the ``n_layers`` layers by SNR and hook them (noise only inside :meth:`noisy`). Returns indices."""
        layers = list(layers)
        if self.n_layers > len(layers):
            raise SpeechkitError(f"n_layers: expected <= {len(layers)} (the number of layers), got {self.n_layers}")
        snr = self.layer_snr(layers, run, generator)
        indices = snr.topk(self.n_layers, largest=self.select == "largest").indices.tolist()
        self.attach([layers[i] for i in indices])
        self.selected = indices
        return indices

    # -- noise hooks -----------------------------------------------------------------------------------------------
    def attach(self, layers: Sequence[nn.Module]) -> None:
        """Hook these layers (replacing earlier hooks); noise is added only while :meth:`noisy` is active."""
        self.detach()
        self._handles = [layer.register_forward_hook(self._inject) for layer in layers]

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _inject(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        if not self.enabled:
            return None  # output unchanged
        hidden = _hidden(output)
        base_std = self.noise_std * float(hidden.detach().std())
        if self.faithful_std:
            base_std *= self.noise_std
        noisy = adaptive_noise(hidden, base_std, self.beta)
        return (noisy, *output[1:]) if isinstance(output, (tuple, list)) else noisy

    @contextmanager
    def noisy(self) -> Iterator[None]:
        """Forwards inside this block get noise on the hooked layers."""
        previous, self.enabled = self.enabled, True
        try:
            yield
        finally:
            self.enabled = previous

    # -- hybrid loss -----------------------------------------------------------------------------------------------
    def hybrid_loss(self, clean: Tensor, noisy1: Tensor, noisy2: Tensor, targets: Tensor) -> Tensor:
        """The hybrid loss from clean and two noisy logits (..., V) and targets (...)."""
        if not clean.shape == noisy1.shape == noisy2.shape or clean.shape[:-1] != targets.shape:
            raise SpeechkitError(f"logits, targets: expected three equal (..., V) logits and (...) targets, got "
                                 f"{tuple(clean.shape)}, {tuple(noisy1.shape)}, {tuple(noisy2.shape)}, "
                                 f"{tuple(targets.shape)}")
        keep = (targets != self.ignore_index).to(clean.dtype)
        count = keep.sum().clamp_min(1)
        ce = F.cross_entropy(clean.reshape(-1, clean.shape[-1]), targets.reshape(-1), ignore_index=self.ignore_index)
        teacher = F.log_softmax((clean.detach() if self.detach_teacher else clean) / self.temperature, -1)
        log1, log2 = F.log_softmax(noisy1, -1), F.log_softmax(noisy2, -1)
        soft = 0.5 * (_kl(teacher, log1) + _kl(teacher, log2))
        consistency = _kl(log2, log1)
        return (self.alpha * ce + (1 - self.alpha) * (soft * keep).sum() / count
                + self.lam * (consistency * keep).sum() / count)

    def loss(self, forward: Callable[[], Tensor], targets: Tensor) -> Tensor:
        """One clean and two noisy calls of ``forward()`` (returning logits) -> the hybrid loss."""
        clean = forward()
        with self.noisy():
            noisy1, noisy2 = forward(), forward()
        return self.hybrid_loss(clean, noisy1, noisy2, targets)
