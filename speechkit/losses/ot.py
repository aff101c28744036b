"""Debiased Sinkhorn divergence between padded batches of point clouds, one divergence per utterance.

*Pre-training for Speech Translation: CTC Meets Optimal Transport* (Le et al., ICML 2023), section 3, eq. (5)-(7):
the speech encoder's outputs ``x_1..x_m`` and the text encoder's outputs ``y_1..y_n`` of one utterance are uniform
measures ``alpha = 1/m sum_i delta_{x_i}``, ``beta = 1/n sum_j delta_{y_j}``; the ground cost is
``C(a, b) = ||a - b||^2 / 2``; the entropic OT cost ``OT_eps(alpha, beta) = min_pi <pi, C> + eps KL(pi | alpha x
beta)`` with ``eps = blur^2`` is debiased, ``S = OT(alpha, beta) - OT(alpha, alpha)/2 - OT(beta, beta)/2`` (Feydy et
al., *Interpolating between Optimal Transport and MMD using Sinkhorn Divergences*, AISTATS 2019, eq. 4). With
``position_weight = g > 0`` every point gets one more coordinate ``g * i / (len - 1)`` (the authors' positional
term: the cost then adds ``g^2/2 (i/(m-1) - j/(n-1))^2``, favouring monotone alignments).

The solver is GeomLoss's ``SamplesLoss("sinkhorn", p=2, blur, scaling)`` written out (Feydy's thesis, section 3.3,
algorithm 3.5: log-domain symmetric Sinkhorn updates, epsilon-scaling from ``diameter^2`` down to ``blur^2`` by
factors ``scaling^2``, no gradient through the loop, one last extrapolation step that carries the gradient). It is
written here rather than called because GeomLoss's batched path is not the per-utterance loss on a ragged batch: it
draws the epsilon schedule from the diameter of the whole batch (padding included, ``max_diameter(x.view(-1, D),
...)``), so an utterance's divergence depends on its batch-mates; the fairseq code's default batched path also
weighs padded frames (section 4 of the project's speech paper notes). Here every utterance has its own diameter,
schedule and uniform weights on its valid frames only; an utterance whose schedule is shorter stops updating, so
the batched result equals the loop over utterances. Like GeomLoss, the loop stops at the end of the schedule: with
the paper's ``scaling = 0.5`` that is a handful of iterations, an approximation of ``S`` (a few per cent on small
clouds); ``scaling`` near 1 converges to it.

Dimension legend: ``B`` utterances, ``M`` frames of ``x``, ``N`` frames of ``y``, ``D`` features.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from speechkit.errors import SpeechkitError


def _check(x: Tensor, y: Tensor, x_mask: Tensor | None, y_mask: Tensor | None, blur: float,
           scaling: float) -> tuple[Tensor, Tensor]:
    if x.dim() != 3 or y.dim() != 3:
        raise SpeechkitError(f"sinkhorn_divergence: expected x (B, M, D) and y (B, N, D), got {tuple(x.shape)} and "
                             f"{tuple(y.shape)}")
    if x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise SpeechkitError(f"sinkhorn_divergence: x {tuple(x.shape)} and y {tuple(y.shape)} must have the same "
                             "batch size B and feature size D")
    if not blur > 0 or not 0 < scaling < 1:
        raise SpeechkitError(f"sinkhorn_divergence: expected blur > 0 and 0 < scaling < 1, got {blur}, {scaling}")
    masks = []
    for name, points, mask in (("x", x, x_mask), ("y", y, y_mask)):
        if mask is None:
            mask = torch.ones(points.shape[:2], dtype=torch.bool, device=points.device)
        if mask.shape != points.shape[:2]:
            raise SpeechkitError(f"sinkhorn_divergence: {name}_mask {tuple(mask.shape)} must be {tuple(points.shape[:2])}")
        empty = (~mask.bool()).all(1).nonzero().flatten().tolist()
        if empty:
            raise SpeechkitError(f"sinkhorn_divergence: {name} utterances {empty[:5]} are all padding (no valid "
                                 "frame): an empty measure has no transport")
        masks.append(mask.bool())
    return masks[0], masks[1]


def with_positions(points: Tensor, mask: Tensor, weight: float) -> Tensor:
    """``(B, L, D)`` -> ``(B, L, D + 1)``: the coordinate ``weight * i / (len - 1)`` appended (0 when len is 1)."""
    lens = mask.sum(1, keepdim=True).to(points.dtype)  # (B, 1)
    steps = torch.arange(points.shape[1], device=points.device, dtype=points.dtype)[None]  # (1, L)
    position = weight * steps / (lens - 1).clamp(min=1)
    return torch.cat([points, (position * mask).unsqueeze(-1)], dim=-1)


def _diameters(x: Tensor, y: Tensor, x_mask: Tensor, y_mask: Tensor) -> list[float]:
    """Per utterance, the diagonal of the bounding box of its valid points (GeomLoss's ``max_diameter``)."""
    big = torch.finfo(x.dtype).max
    low = torch.minimum(x.masked_fill(~x_mask[..., None], big).amin(1), y.masked_fill(~y_mask[..., None], big).amin(1))
    high = torch.maximum(x.masked_fill(~x_mask[..., None], -big).amax(1),
                         y.masked_fill(~y_mask[..., None], -big).amax(1))
    return (high - low).norm(dim=-1).tolist()


def epsilon_schedule(diameter: float, blur: float, scaling: float) -> list[float]:
    """GeomLoss's schedule for ``p = 2``: ``diameter^2``, then ``exp(e)`` for ``e`` from ``2 log diameter`` down
    by ``2 log(1/scaling)`` while above ``2 log blur``, then ``blur^2``."""
    start, stop, step = 2 * math.log(max(diameter, 1e-12)), 2 * math.log(blur), 2 * math.log(scaling)
    middle = [math.exp(start + k * step) for k in range(max(0, math.ceil((stop - start) / step)))]
    return [diameter ** 2, *middle, blur ** 2]


def half_squared_distances(x: Tensor, y: Tensor) -> Tensor:
    """``C_ij = ||x_i - y_j||^2 / 2`` ``(B, I, J)`` by ``|x|^2 + |y|^2 - 2 x.y`` (GeomLoss's form), clamped at 0."""
    squared = (x * x).sum(-1)[:, :, None] + (y * y).sum(-1)[:, None, :] - 2 * x @ y.transpose(1, 2)
    return squared.clamp(min=0) / 2


def _softmin(eps: Tensor, cost: Tensor, h: Tensor) -> Tensor:
    """``f_i = -eps log sum_j exp(h_j - C_ij / eps)``; ``eps`` ``(B, 1, 1)``, ``cost`` ``(B, I, J)``, ``h`` ``(B, J)``."""
    return -eps[:, :, 0] * (h[:, None, :] - cost / eps).logsumexp(-1)


def sinkhorn_divergence(
    x: Tensor,
    y: Tensor,
    x_mask: Tensor | None = None,
    y_mask: Tensor | None = None,
    blur: float = 0.05,
    scaling: float = 0.5,
    position_weight: float = 0.0,
    debias: bool = True,
) -> Tensor:
    """Per-utterance Sinkhorn divergence ``(B,)`` of ``x (B, M, D)`` and ``y (B, N, D)`` (see the module docstring).

    Args:
        x: first clouds (e.g. speech encoder outputs), padded.
        y: second clouds (e.g. text encoder outputs), padded.
        x_mask: ``(B, M)`` True on valid frames (``None``: all valid).
        y_mask: ``(B, N)`` True on valid frames.
        blur: ``eps = blur^2``, the entropic regularization of the last iterations.
        scaling: ratio of successive blur values in the epsilon-scaling schedule.
        position_weight: ``g``, weight of the appended normalized-position coordinate (0 = none).
        debias: return ``OT(x, y) - OT(x, x)/2 - OT(y, y)/2`` (else ``OT(x, y)``).

    Returns:
        ``(B,)`` divergences, computed in float32 (or float64 when given float64).
    """
    x_mask, y_mask = _check(x, y, x_mask, y_mask, blur, scaling)
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.to(dtype).masked_fill(~x_mask[..., None], 0.0)
    y = y.to(dtype).masked_fill(~y_mask[..., None], 0.0)
    if position_weight:
        x, y = with_positions(x, x_mask, position_weight), with_positions(y, y_mask, position_weight)
    a_log = torch.where(x_mask, -x_mask.sum(1, keepdim=True).to(dtype).log(), -math.inf)  # (B, M) log(1/m)
    b_log = torch.where(y_mask, -y_mask.sum(1, keepdim=True).to(dtype).log(), -math.inf)
    costs = {"xy": half_squared_distances(x, y), "xx": half_squared_distances(x, x), "yy": half_squared_distances(y, y)}
    schedules = [epsilon_schedule(d, blur, scaling) for d in _diameters(x, y, x_mask, y_mask)]
    f_ba, g_ab, a_x, b_y = _sinkhorn_loop(costs, a_log, b_log, schedules, debias)
    a, b = a_log.exp(), b_log.exp()
    if not debias:
        return (a * f_ba).sum(1) + (b * g_ab).sum(1)
    return (a * (f_ba - a_x)).sum(1) + (b * (g_ab - b_y)).sum(1)


def _sinkhorn_loop(costs: dict[str, Tensor], a_log: Tensor, b_log: Tensor, schedules: list[list[float]],
                   debias: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Symmetric log-domain Sinkhorn with epsilon-scaling (GeomLoss's ``sinkhorn_loop``), each utterance on its own
    schedule; returns the potentials ``f_ba (B, M)``, ``g_ab (B, N)``, ``a_x (B, M)``, ``b_y (B, N)``."""
    c_xy, c_xx, c_yy = costs["xy"], costs["xx"], costs["yy"]
    c_yx = c_xy.transpose(1, 2)
    steps = max(len(s) for s in schedules)
    table = torch.tensor([s + [s[-1]] * (steps - len(s)) for s in schedules], dtype=c_xy.dtype, device=c_xy.device)
    active = torch.tensor([[k < len(s) for k in range(steps)] for s in schedules], device=c_xy.device)  # (B, K)
    with torch.no_grad():
        eps = table[:, :1, None]  # (B, 1, 1)
        f_ba, g_ab = _softmin(eps, c_xy, b_log), _softmin(eps, c_yx, a_log)
        a_x, b_y = _softmin(eps, c_xx, a_log), _softmin(eps, c_yy, b_log)
        for k in range(steps):
            eps, keep = table[:, k, None, None], active[:, k, None]
            ft_ba, gt_ab = _softmin(eps, c_xy, b_log + g_ab / eps[:, 0]), _softmin(eps, c_yx, a_log + f_ba / eps[:, 0])
            f_ba, g_ab = torch.where(keep, (f_ba + ft_ba) / 2, f_ba), torch.where(keep, (g_ab + gt_ab) / 2, g_ab)
            if debias:
                at_x, bt_y = _softmin(eps, c_xx, a_log + a_x / eps[:, 0]), _softmin(eps, c_yy, b_log + b_y / eps[:, 0])
                a_x, b_y = torch.where(keep, (a_x + at_x) / 2, a_x), torch.where(keep, (b_y + bt_y) / 2, b_y)
    eps = table[:, -1, None, None]  # blur^2: the last extrapolation carries the gradient (through the costs)
    f_ba, g_ab = _softmin(eps, c_xy, b_log + g_ab / eps[:, 0]), _softmin(eps, c_yx, a_log + f_ba / eps[:, 0])
    if debias:
        a_x, b_y = _softmin(eps, c_xx, a_log + a_x / eps[:, 0]), _softmin(eps, c_yy, b_log + b_y / eps[:, 0])
    return f_ba, g_ab, a_x, b_y
