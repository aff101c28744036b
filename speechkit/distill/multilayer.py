"""Multi-layer representational distillation: several teachers, layer maps, frame-rate alignment.

Latent distillation as in ERNIE-Tiny (Su et al. 2021) / TinyBERT and Minitron's intermediate-state loss
(Muralidharan et al. 2024): ``L = sum_teachers w * sum_(m -> g(m)) dist(proj(H_s^m), H_t^g(m))`` with a learned
linear projection from the student width to each teacher's width, and the uniform map ``g(m) = m L_t / L_s``.
Sequences at different frame rates (a 50 Hz audio student, a 25 Hz video teacher) are aligned in time by
linear interpolation or adaptive average pooling before the distance. ERNIE-Tiny's attention term is
:func:`attention_kl`.

Dimension legend: B batch, T frames/tokens, D width, H heads, L layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from speechkit.errors import SpeechkitError
from speechkit.tensors import lengths_to_mask

Align = Literal["interpolate", "pool"]
Distance = Literal["mse", "l1", "cosine"]


def uniform_layer_map(n_student: int, n_teacher: int) -> list[int]:
    """``g(m) = round(m * L_t / L_s)`` for student layers m = 1..L_s, indices into HF ``hidden_states``.

    (4 student, 12 teacher) -> [3, 6, 9, 12].
    """
    if n_student < 1 or n_teacher < 1:
        raise SpeechkitError(f"layer counts must be positive, got n_student={n_student}, n_teacher={n_teacher}")
    return [round(m * n_teacher / n_student) for m in range(1, n_student + 1)]


def align_time(x: Tensor, length: int, mode: Align = "interpolate") -> Tensor:
    """Resample ``x`` ``(B, T, D)`` to ``(B, length, D)`` along time (linear interpolation or average pooling)."""
    if length < 1:
        raise SpeechkitError(f"length must be positive, got {length}")
    if x.shape[1] == length:
        return x
    channels_first = x.transpose(1, 2)  # (B, D, T)
    if mode == "interpolate":
        out = F.interpolate(channels_first, size=length, mode="linear", align_corners=False)
    elif mode == "pool":
        out = F.adaptive_avg_pool1d(channels_first, length)
    else:
        raise SpeechkitError(f"align must be 'interpolate' or 'pool', got {mode!r}")
    return out.transpose(1, 2)


def align_lengths(lengths: Tensor, source: int, target: int) -> Tensor:
    """Valid lengths after resampling ``source`` frames to ``target``: ``ceil(len * target / source)``."""
    return torch.clamp(torch.ceil(lengths.float() * target / source).long(), max=target)



def _distance(a: Tensor, b: Tensor, kind: Distance) -> Tensor:
    """Per-frame distance ``(B, T)`` of ``(B, T, D)`` tensors."""
    if kind == "mse":
        return (a - b).pow(2).mean(-1)
    if kind == "l1":
        return (a - b).abs().mean(-1)
    if kind == "cosine":
        return 1 - F.cosine_similarity(a, b, dim=-1)
    raise SpeechkitError(f"distance must be 'mse', 'l1' or 'cosine', got {kind!r}")


def attention_kl(student_attn: Tensor, teacher_attn: Tensor, mask: Tensor | None = None, eps: float = 1e-12) -> Tensor:
    """ERNIE-Tiny / TinyBERT attention transfer: mean over heads and queries of ``KL(A_t || A_s)`` per row.

    Args:
        student_attn: ``(B, H, Tq, Tk)`` attention probabilities (rows sum to 1).
        teacher_attn: same shape.
        mask: ``(B, Tk)`` bool of real keys (queries at padded positions are ignored too when Tq == Tk).
    """
    if student_attn.shape != teacher_attn.shape:
        raise SpeechkitError(f"attention shapes differ: {tuple(student_attn.shape)} vs {tuple(teacher_attn.shape)}")
    t = teacher_attn.detach().float()
    kl = torch.where(t > 0, t * (torch.log(t + eps) - torch.log(student_attn.float() + eps)), torch.zeros_like(t))
    if mask is None:
        return kl.sum(-1).mean()
    keys = mask.bool()[:, None, None, :]  # (B, 1, 1, Tk)
    per_row = torch.where(keys, kl, torch.zeros_like(kl)).sum(-1)  # (B, H, Tq)
    if per_row.shape[-1] != mask.shape[-1]:  # cross-attention: queries are not masked
        return per_row.mean()
    return per_row[mask.bool()[:, None, :].expand_as(per_row)].mean()


@dataclass
class TeacherSpec:
    """One teacher: its width, which student layer maps to which teacher layer, and the term weight."""

    name: str
    dim: int
    layer_map: Mapping[int, int]  # student hidden_states index -> teacher hidden_states index
    weight: float = 1.0
    distance: Distance = "mse"


class MultiLayerDistiller(nn.Module):
    """Distil student hidden states into several teachers' layers through learned linear projections.

    Args:
        student_dim: student width.
        teachers: one ``TeacherSpec`` per teacher.
        align: "interpolate" or "pool" for teacher/student sequences of different lengths.
        align_to: the time axis the distance is computed on: "student" (teacher resampled) or "teacher".
        project: learn a ``Linear(student_dim, teacher.dim)`` per (teacher, layer pair); with False the widths
            must match.
    """

    def __init__(self, student_dim: int, teachers: Sequence[TeacherSpec], align: Align = "interpolate",
                 align_to: Literal["student", "teacher"] = "student", project: bool = True) -> None:
        super().__init__()
        if not teachers:
            raise SpeechkitError("teachers must hold at least one TeacherSpec")
        names = [t.name for t in teachers]
        if len(set(names)) != len(names):
            raise SpeechkitError(f"teacher names must be unique, got {names}")
        if align_to not in ("student", "teacher"):
            raise SpeechkitError(f"align_to must be 'student' or 'teacher', got {align_to!r}")
        self.teachers, self.align, self.align_to = list(teachers), align, align_to
        self.projections = nn.ModuleDict()
        for spec in self.teachers:
            if not spec.layer_map:
                raise SpeechkitError(f"teacher {spec.name!r}: layer_map is empty")
            if not project and spec.dim != student_dim:
                raise SpeechkitError(f"teacher {spec.name!r}: dim {spec.dim} != student_dim {student_dim} "
                                     "and project=False")
            for s in spec.layer_map:
                key = f"{spec.name}__{s}"
                self.projections[key] = nn.Linear(student_dim, spec.dim) if project else nn.Identity()

    def forward(self, student_hidden: Sequence[Tensor], teacher_hidden: Mapping[str, Sequence[Tensor]],
                student_lengths: Tensor | None = None,
                teacher_lengths: Mapping[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Weighted total and the per-term losses ``{"<teacher>/<s>-><t>": loss}``.

        Args:
            student_hidden: ``(B, Ts, Ds)`` per student layer.
            teacher_hidden: per teacher name, ``(B, Tt, Dt)`` per teacher layer.
            student_lengths: ``(B,)`` valid student frames (default all).
            teacher_lengths: per teacher, ``(B,)`` valid frames (default all).
        """
        terms: dict[str, Tensor] = {}
        total = student_hidden[0].new_zeros(())
        for spec in self.teachers:
            if spec.name not in teacher_hidden:
                raise SpeechkitError(f"teacher_hidden has no entry for teacher {spec.name!r}")
            for s, t in spec.layer_map.items():
                hs, ht = student_hidden[s], teacher_hidden[spec.name][t].detach()
                hs = self.projections[f"{spec.name}__{s}"](hs)  # (B, Ts, Dt)
                lengths = None if teacher_lengths is None else teacher_lengths.get(spec.name)
                loss = self._pair_loss(hs, ht, student_lengths, lengths, spec.distance)
                terms[f"{spec.name}/{s}->{t}"] = loss
                total = total + spec.weight * loss
        return total, terms

    def _pair_loss(self, hs: Tensor, ht: Tensor, s_len: Tensor | None, t_len: Tensor | None, kind: Distance) -> Tensor:
        if self.align_to == "student":
            if s_len is None and t_len is not None:
                s_len = align_lengths(t_len, ht.shape[1], hs.shape[1])
            ht, length, valid = align_time(ht, hs.shape[1], self.align), hs.shape[1], s_len
        else:
            length, valid = ht.shape[1], t_len
            if valid is None and s_len is not None:
                valid = align_lengths(s_len, hs.shape[1], length)
            hs = align_time(hs, length, self.align)
        per_frame = _distance(hs, ht, kind)  # (B, T)
        if valid is None:
            return per_frame.mean()
        mask = lengths_to_mask(valid, length)
        return per_frame[mask].mean() if bool(mask.any()) else per_frame.sum() * 0

