"""Pairwise log-distances between features and class vectors, for the harmonic head.

The distances of *Rethinking the Harmonic Loss via Non-Euclidean Distance Layers* (Miller-Golub et al. 2026,
code ``maxwellmg/rethinking-harmonic-loss``: ``vision/models/distlayers.py``, ``llms/model/distance_layers.py``),
each returned as ``log delta(x, w_v)`` so that the harmonic probabilities ``delta^-n / sum delta^-n`` can be
formed as ``log_softmax(-n log delta)`` without overflow (n can be as large as the embedding size).

Shapes: ``x`` (M, N) features, ``weight`` (V, N) class vectors, result (M, V). The coordinate-wise distances
(Manhattan, Minkowski, Chebyshev, Hamming, Canberra, Bray-Curtis) build an (M, V, N) difference tensor; the
Euclidean, cosine and Mahalanobis ones use matrix products. Written by hand: torch has ``cdist`` for p-norms but
not these distances in log space.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from speechkit.errors import SpeechkitError

DistanceName = Literal["euclidean", "manhattan", "minkowski", "chebyshev", "cosine", "mahalanobis",
                       "mahalanobis_diagonal", "mahalanobis_cholesky", "hamming", "canberra", "bray_curtis",
                       "bray_curtis_abs"]


def _safe_log(d: Tensor) -> Tensor:
    """log of a non-negative distance; 0 maps to log(tiny) with zero gradient instead of -inf / NaN."""
    return torch.log(d.clamp_min(torch.finfo(d.dtype).tiny))


def _abs_diff(x: Tensor, weight: Tensor) -> Tensor:
    return (x[:, None, :] - weight[None, :, :]).abs()  # (M, V, N)


def squared_euclidean(x: Tensor, weight: Tensor) -> Tensor:
    """||x - w||^2 by the expansion ||x||^2 + ||w||^2 - 2 x.w, clamped at 0. (M, V)"""
    d2 = (x * x).sum(-1, keepdim=True) + (weight * weight).sum(-1)[None, :] - 2.0 * x @ weight.T
    return d2.clamp_min(0.0)


def log_euclidean(x: Tensor, weight: Tensor) -> Tensor:
    """log ||x - w||_2."""
    return 0.5 * _safe_log(squared_euclidean(x, weight))


def log_minkowski(x: Tensor, weight: Tensor, p: float = 2.0) -> Tensor:
    """log (sum_k |x_k - w_k|^p)^(1/p) = logsumexp(p log|x - w|) / p; any p > 0 (p < 1 is not a metric)."""
    if p <= 0:
        raise SpeechkitError(f"p: expected a Minkowski exponent > 0, got {p}")
    return torch.logsumexp(p * _safe_log(_abs_diff(x, weight)), dim=-1) / p


def log_manhattan(x: Tensor, weight: Tensor) -> Tensor:
    """log sum_k |x_k - w_k|."""
    return _safe_log(_abs_diff(x, weight).sum(-1))


def log_chebyshev(x: Tensor, weight: Tensor, smooth_alpha: float | None = 10.0) -> Tensor:
    """log max_k |x_k - w_k|; smooth: log( logsumexp(alpha |x - w|) / alpha ) (the paper's alpha = 10)."""
    diff = _abs_diff(x, weight)
    if smooth_alpha is None:
        return _safe_log(diff.amax(-1))
    if smooth_alpha <= 0:
        raise SpeechkitError(f"smooth_alpha: expected > 0 or None (hard max), got {smooth_alpha}")
    return _safe_log(torch.logsumexp(smooth_alpha * diff, dim=-1) / smooth_alpha)


def log_cosine(x: Tensor, weight: Tensor) -> Tensor:
    """log (1 - cos(x, w)), in [log tiny, log 2]."""
    cos = F.normalize(x, dim=-1) @ F.normalize(weight, dim=-1).T
    return _safe_log(1.0 - cos)


def log_mahalanobis(x: Tensor, weight: Tensor, metric: Tensor) -> Tensor:
    """log sqrt((x - w)^T M (x - w)) for a given matrix M = metric (N, N), symmetrised.

    M must be positive semi-definite: a negative form (indefinite M) is clamped to 0 and its gradient is lost. A
    learnable M should be parametrised through a factor (:func:`log_mahalanobis_factor`), as HarmonicHead does.
    """
    m = 0.5 * (metric + metric.T)
    xm = x @ m
    q = (xm * x).sum(-1, keepdim=True) + ((weight @ m) * weight).sum(-1)[None, :] - 2.0 * xm @ weight.T
    return 0.5 * _safe_log(q.clamp_min(0.0))


def log_mahalanobis_factor(x: Tensor, weight: Tensor, factor: Tensor, ridge: float = 0.0) -> Tensor:
    """Mahalanobis with ``M = A A^T + ridge I`` (positive semi-definite for any A, definite for ridge > 0).

    ``(x - w)^T M (x - w) = ||A^T (x - w)||^2 + ridge ||x - w||^2``: the Euclidean distances of ``x A`` and ``w A``
    plus the ridge term, added in log space (``logaddexp``). Neither term can be negative.

    Args:
        x: (M, N) features.
        weight: (V, N) class vectors.
        factor: A (N, N) (any square matrix; a lower-triangular L gives the Cholesky form ``M = L L^T``).
        ridge: lambda >= 0.
    """
    if ridge < 0:
        raise SpeechkitError(f"ridge: expected >= 0, got {ridge}")
    log_q = 2.0 * log_euclidean(x @ factor, weight @ factor)  # log ||A^T (x - w)||^2, (M, V)
    if ridge > 0:
        log_q = torch.logaddexp(log_q, math.log(ridge) + 2.0 * log_euclidean(x, weight))
    return 0.5 * log_q


def log_hamming(x: Tensor, weight: Tensor, temperature: float = 1.0) -> Tensor:
    """Soft Hamming: log sum_k |sigmoid(x_k / T) - sigmoid(w_k / T)|."""
    if temperature <= 0:
        raise SpeechkitError(f"temperature: expected > 0, got {temperature}")
    return log_manhattan(torch.sigmoid(x / temperature), torch.sigmoid(weight / temperature))


def log_canberra(x: Tensor, weight: Tensor, denominator_min: float = 1e-3) -> Tensor:
    """log sum_k |x_k - w_k| / max(|x_k| + |w_k|, denominator_min) (the repo's robust variant)."""
    denominator = (x.abs()[:, None, :] + weight.abs()[None, :, :]).clamp_min(denominator_min)
    return _safe_log((_abs_diff(x, weight) / denominator).sum(-1))


def log_bray_curtis(x: Tensor, weight: Tensor, denominator_min: float = 1e-3, absolute: bool = False) -> Tensor:
    """log of sum|x - w| / |sum(x + w)| (the paper's definition, ``bray_curtis``), or with ``absolute`` (the repo's
    ``abs`` variant, ``bray_curtis_abs``) of sum|x - w| / sum(|x| + |w|), bounded in [0, 1].

    The two agree on non-negative vectors, the domain of Bray-Curtis. On signed vectors the paper's denominator
    ``|sum(x + w)|`` passes through 0 whenever a class vector's coordinate sum cancels the input's, so the distance
    follows the class vectors' sums, not the input; a harmonic head with it did not learn FSDD (recipes/fsdd/README.md).
    Use ``absolute`` for signed features.
    """
    if absolute:
        denominator = x.abs().sum(-1, keepdim=True) + weight.abs().sum(-1)[None, :]
    else:
        denominator = (x.sum(-1, keepdim=True) + weight.sum(-1)[None, :]).abs()
    return _safe_log(_abs_diff(x, weight).sum(-1)) - _safe_log(denominator.clamp_min(denominator_min))


def pairwise_log_distance(x: Tensor, weight: Tensor, kind: str, **kwargs: object) -> Tensor:
    """``log delta(x_m, w_v)`` for a named distance (no learnable metric: the Mahalanobis forms take their matrix).

    Args:
        x: (M, N) features.
        weight: (V, N) class vectors.
        kind: one of :data:`DistanceName`.
        **kwargs: the distance's own options (``p``, ``smooth_alpha``, ``metric``, ``factor``, ``temperature``,
            ``denominator_min``).
    """
    functions: dict[str, Callable[..., Tensor]] = {
        "euclidean": log_euclidean, "manhattan": log_manhattan, "minkowski": log_minkowski,
        "chebyshev": log_chebyshev, "cosine": log_cosine, "mahalanobis": log_mahalanobis,
        "mahalanobis_cholesky": log_mahalanobis_factor, "hamming": log_hamming, "canberra": log_canberra,
        "bray_curtis": log_bray_curtis, "bray_curtis_abs": lambda a, b, **kw: log_bray_curtis(a, b, absolute=True, **kw),
    }
    if kind not in functions:
        raise SpeechkitError(f"distance: unknown name {kind!r}; expected one of {sorted(functions)} "
                             "(mahalanobis_diagonal needs HarmonicHead's learnable metric)")
    if x.dim() != 2 or weight.dim() != 2 or x.shape[-1] != weight.shape[-1]:
        raise SpeechkitError(f"x, weight: expected (M, N) and (V, N), got {tuple(x.shape)} and {tuple(weight.shape)}")
    return functions[kind](x, weight, **kwargs)
