"""Harmonic classification head: class probabilities from distances to class vectors.

*Harmonic Loss Trains Interpretable AI Models* (Baek et al., TMLR 2025): with ``d_i = ||w_i - x||``,
``p_i = d_i^-n / sum_j d_j^-n`` (HarMax) and ``loss = -log p_y``. *Rethinking the Harmonic Loss via Non-Euclidean
Distance Layers* (Miller-Golub et al. 2026) replaces ``d`` by other distances (see :mod:`.distances`).
Computed in log space: ``log p = log_softmax(-n log delta)``, which equals HarMax exactly and never forms
``delta^-n``.
"""

from __future__ import annotations

import math
from typing import get_args

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from speechkit.errors import SpeechkitError
from speechkit.losses import distances as D
from speechkit.losses.distances import DistanceName


def harmax_log_probs(log_distances: Tensor, n: float) -> Tensor:
    """HarMax ``log(delta^-n / sum_j delta_j^-n) = log_softmax(-n log delta)`` over the last dimension (Baek et al.)."""
    if n <= 0:
        raise SpeechkitError(f"n: expected a harmonic exponent > 0, got {n}")
    return F.log_softmax(-n * log_distances, dim=-1)


class HarmonicHead(nn.Module):
    """Distance layer + HarMax; ``forward(x)`` returns log-probabilities (train with ``F.nll_loss``).

    Pipeline (official repos): ``delta(x, w_v)`` -> ``**2`` if ``squared`` -> ``+ eps`` -> ``/ dim`` if
    ``dim_normalize`` -> ``/ min_v delta`` if ``min_normalize`` -> ``p = delta^-n / sum`` -> ``(p + s/V) / (1 + s)``
    with ``s = prob_smoothing`` (the repos add ``s/V`` and let cross-entropy renormalise). Every step runs on
    ``log delta``. Dividing by a per-row constant (dim, min) leaves p unchanged; the switches exist to match the
    repos' numerics and the reference formula in tests.

    Args:
        dim: feature size N.
        n_classes: number of classes V.
        distance: one of ``euclidean, manhattan, minkowski, chebyshev, cosine, mahalanobis (full, learnable M),
            mahalanobis_diagonal (M = diag(exp theta)), mahalanobis_cholesky (M = L L^T), hamming (soft),
            canberra, bray_curtis, bray_curtis_abs``.
        n: harmonic exponent (> 0); the vision configs use 1, the GPT-2 head uses n_embd on squared distances.
        eps: added to the distance before the log (1e-4 in the repos); 0 keeps the head exactly scale invariant.
        squared: use ``delta^2`` (the GPT-2 head squares the Euclidean distance, so its n acts as 2n on delta).
        dim_normalize: divide the distance by ``dim``.
        min_normalize: divide by the per-row minimum distance.
        prob_smoothing: mix ``s`` of the uniform distribution into p (the repos use 0.01).
        p: Minkowski exponent (> 0).
        smooth_alpha: Chebyshev smoothing (``logsumexp(alpha |dx|) / alpha``); None is the exact max.
        temperature: soft-Hamming sigmoid temperature.
        denominator_min: lower clamp of the Canberra / Bray-Curtis denominators (1e-3 in the repo).
        mahalanobis_lambda: ridge of the full Mahalanobis matrix, relative to its initial scale (>= 0).
        metric_init_scale: s, the initial scale of the full / Cholesky Mahalanobis factor (``A = L = s I`` up to
            the ridge); None = ``sqrt(dim)``.

    Mahalanobis metrics (``metric_matrix()`` returns M) are positive semi-definite by construction, so the
    quadratic form ``(x - w)^T M (x - w)`` can never go negative:

    - ``mahalanobis``: ``M = A A^T + lambda s^2 I`` with a learnable square factor A, initialised at
      ``s sqrt(1 + lambda) I``: M starts at ``s^2 (1 + 2 lambda) I``, the reference's initial ``(1 + 2 lambda) I`` up
      to the scale s. The reference learns M itself (``M + lambda I``, symmetrised); unconstrained, M turned
      indefinite on FSDD and the head collapsed to chance (recipes/fsdd/README.md). The ridge bounds M's
      eigenvalues below by ``lambda s^2``.
    - ``mahalanobis_cholesky``: ``M = L L^T``, L lower triangular with its diagonal clamped at ``>= 1e-6``, as in the
      reference, but initialised at ``L = s I`` instead of the reference's ``0.1 I (+ 0.01 N(0, 1))``, with which
      the head stayed at chance on FSDD (README).
    - ``mahalanobis_diagonal``: ``M = diag(exp theta)``, theta initialised at 0, clamped to [-10, 10] (the log
      parametrisation already takes relative steps).

    Why ``s = sqrt(dim)``: HarMax is invariant to scaling every distance, so the factor's initial scale changes
    nothing but its step size relative to itself. Adam moves every entry of the (N, N) factor by about ``lr`` per
    step whatever the gradient's size, so a coherent (sign-pattern) update can change the factor's spectral norm by
    ``lr N`` per step: 26 % of ``I`` at N = 128, lr 2e-3, and 256 % of the reference's ``0.1 I``. Starting at
    ``sqrt(N) I`` bounds the relative change by ``lr sqrt(N)`` (2.3 %). ``metric_matrix()`` and the head start as
    the Euclidean head (M proportional to I).

    ``bray_curtis`` is the paper's ``sum|x - w| / |sum(x + w)|``, a dissimilarity for non-negative vectors: with
    signed features or class vectors its denominator passes through 0, the distance then follows each class
    vector's coordinate sum rather than the input, and the head does not learn (FSDD: chance). ``bray_curtis_abs``
    (the repo's ``abs`` variant, ``sum|x - w| / sum(|x| + |w|)``, equal to ``bray_curtis`` on non-negative vectors)
    is the one to use on signed features; the FSDD Bray-Curtis config uses it.
    """

    def __init__(self, dim: int, n_classes: int, distance: DistanceName = "euclidean", n: float = 1.0,
                 eps: float = 1e-4, squared: bool = False, dim_normalize: bool = False, min_normalize: bool = True,
                 prob_smoothing: float = 0.0, p: float = 2.0, smooth_alpha: float | None = 10.0,
                 temperature: float = 1.0, denominator_min: float = 1e-3, mahalanobis_lambda: float = 1e-2,
                 metric_init_scale: float | None = None) -> None:
        super().__init__()
        scale = math.sqrt(dim) if metric_init_scale is None else metric_init_scale
        self._check(dim, n_classes, distance, n, eps, prob_smoothing, p, smooth_alpha, temperature, mahalanobis_lambda,
                    scale)
        self.dim, self.n_classes, self.distance, self.n, self.eps = dim, n_classes, distance, n, eps
        self.squared, self.dim_normalize, self.min_normalize = squared, dim_normalize, min_normalize
        self.prob_smoothing, self.p, self.smooth_alpha = prob_smoothing, p, smooth_alpha
        self.temperature, self.denominator_min, self.mahalanobis_lambda = temperature, denominator_min, mahalanobis_lambda
        self.metric_init_scale = scale
        self.weight = nn.Parameter(torch.empty(n_classes, dim))  # (V, N) class vectors
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's initialisation
        if distance == "mahalanobis":
            self.factor = nn.Parameter(torch.eye(dim) * scale * math.sqrt(1.0 + mahalanobis_lambda))  # A (N, N)
        elif distance == "mahalanobis_diagonal":
            self.log_scale = nn.Parameter(torch.zeros(dim))  # theta (N,), M = diag(exp theta)
        elif distance == "mahalanobis_cholesky":
            self.factor = nn.Parameter(torch.eye(dim) * scale)  # L (N, N), lower triangle used

    @staticmethod
    def _check(dim: int, n_classes: int, distance: str, n: float, eps: float, prob_smoothing: float, p: float,
               smooth_alpha: float | None, temperature: float, mahalanobis_lambda: float,
               metric_init_scale: float) -> None:
        checks = [("dim", dim, dim >= 1, "an integer >= 1"), ("n_classes", n_classes, n_classes >= 1, "an integer >= 1"),
                  ("distance", distance, distance in get_args(DistanceName), f"one of {list(get_args(DistanceName))}"),
                  ("n", n, n > 0, "> 0"), ("eps", eps, eps >= 0, ">= 0"),
                  ("prob_smoothing", prob_smoothing, prob_smoothing >= 0, ">= 0"), ("p", p, p > 0, "> 0"),
                  ("smooth_alpha", smooth_alpha, smooth_alpha is None or smooth_alpha > 0, "> 0 or None"),
                  ("temperature", temperature, temperature > 0, "> 0"),
                  ("mahalanobis_lambda", mahalanobis_lambda, mahalanobis_lambda >= 0, ">= 0"),
                  ("metric_init_scale", metric_init_scale, metric_init_scale > 0, "> 0 or None")]
        for name, value, ok, expected in checks:
            if not ok:
                raise SpeechkitError(f"{name}: expected {expected}, got {value!r}")

    def log_distances(self, x: Tensor) -> Tensor:
        """``log delta(x, w_v)`` before any normalisation. x (M, N) -> (M, V)."""
        w, kind = self.weight, self.distance
        if kind == "mahalanobis":
            return D.log_mahalanobis_factor(x, w, self.factor, ridge=self.ridge)
        if kind == "mahalanobis_diagonal":
            scale = torch.exp(0.5 * self.log_scale.clamp(-10.0, 10.0))  # sqrt of diag(M)
            return D.log_euclidean(x * scale, w * scale)
        if kind == "mahalanobis_cholesky":
            return D.log_mahalanobis_factor(x, w, self.cholesky_factor())
        options = {"minkowski": {"p": self.p}, "chebyshev": {"smooth_alpha": self.smooth_alpha},
                   "hamming": {"temperature": self.temperature}, "canberra": {"denominator_min": self.denominator_min},
                   "bray_curtis": {"denominator_min": self.denominator_min},
                   "bray_curtis_abs": {"denominator_min": self.denominator_min}}
        return D.pairwise_log_distance(x, w, kind, **options.get(kind, {}))

    @property
    def ridge(self) -> float:
        """``lambda s^2``: the ridge of the full Mahalanobis matrix."""
        return self.mahalanobis_lambda * self.metric_init_scale ** 2

    def cholesky_factor(self) -> Tensor:
        """L (N, N): the lower triangle of ``factor`` with its diagonal clamped at >= 1e-6 (M = L L^T)."""
        return torch.tril(self.factor, diagonal=-1) + torch.diag(self.factor.diagonal().clamp_min(1e-6))

    def metric_matrix(self) -> Tensor:
        """The Mahalanobis matrix M (N, N) the head uses (``mahalanobis*`` distances only)."""
        if self.distance == "mahalanobis":
            eye = torch.eye(self.dim, dtype=self.factor.dtype, device=self.factor.device)
            return self.factor @ self.factor.T + self.ridge * eye
        if self.distance == "mahalanobis_cholesky":
            lower = self.cholesky_factor()
            return lower @ lower.T
        if self.distance == "mahalanobis_diagonal":
            return torch.diag(torch.exp(self.log_scale.clamp(-10.0, 10.0)))
        raise SpeechkitError(f"metric_matrix: distance {self.distance!r} has no Mahalanobis matrix")

    def forward(self, x: Tensor) -> Tensor:
        """x (..., N) -> log-probabilities (..., V)."""
        if x.shape[-1] != self.dim:
            raise SpeechkitError(f"x: expected last dimension {self.dim} (HarmonicHead dim), got shape {tuple(x.shape)}")
        log_d = self.log_distances(x.reshape(-1, self.dim))  # (M, V)
        if self.squared:
            log_d = 2.0 * log_d
        if self.eps > 0:
            log_d = torch.logaddexp(log_d, torch.full_like(log_d, math.log(self.eps)))
        if self.dim_normalize:
            log_d = log_d - math.log(self.dim)
        if self.min_normalize:
            log_d = log_d - log_d.amin(-1, keepdim=True)  # a per-row shift: p and its gradient are unchanged
        log_p = harmax_log_probs(log_d, self.n)
        if self.prob_smoothing > 0:
            uniform = math.log(self.prob_smoothing / self.n_classes)
            log_p = torch.logaddexp(log_p, torch.full_like(log_p, uniform)) - math.log1p(self.prob_smoothing)
        return log_p.reshape(*x.shape[:-1], self.n_classes)
