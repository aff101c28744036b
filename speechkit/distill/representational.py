"""Representational distillation: feature regression + soft-label KL on k-means clusters of teacher features.

*Audio-Visual Representation Learning via Knowledge Distillation from Speech Foundation Models* (Zhang et al.,
Pattern Recognition; arXiv 2502.05766), section 3 ("a soft-label KL loss combined with a feature-regression loss,
including a multi-teacher ensemble"); the paper's formula is not public, so this is the proposed reading [P]:

``L = sum_k w_k sum_{l in L_k} [ 1/T sum_t d(g_kl(z_t), h^kl_t) + beta 1/T sum_t KL(q^kl_t || softmax(V_kl z_t)) ]``

with ``d`` the cosine distance ``1 - cos`` (or L1), ``g_kl`` a learned linear head per (teacher, layer),
``q^kl_t = softmax_j(-||h^kl_t - mu^kl_j||^2 / tau_kl)`` over k-means centroids ``mu`` fitted on that teacher
layer's features, ``tau_kl`` the median squared distance of a frame to its nearest centroid, and teacher frames
average-pooled to the student's 25 fps first. The regression term is ``MultiLayerDistiller`` (its projections,
distances, pooling and per-teacher weights); this module adds the cluster targets and their KL.

Dimension legend: ``B`` utterances, ``T`` student frames, ``D`` width, ``K`` clusters, ``N`` pooled frames.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from speechkit.distill.multilayer import MultiLayerDistiller, TeacherSpec, align_lengths, align_time
from speechkit.errors import SpeechkitError
from speechkit.tensors import lengths_to_mask


def soft_cluster_targets(hidden: Tensor, centroids: Tensor, tau: Tensor | float) -> Tensor:
    """``q_t = softmax_j(-||h_t - mu_j||^2 / tau)``: ``(B, T, D)`` features, ``(K, D)`` centroids -> ``(B, T, K)``."""
    if hidden.shape[-1] != centroids.shape[-1]:
        raise SpeechkitError(f"features of width {hidden.shape[-1]} vs centroids {tuple(centroids.shape)}")
    squared = (hidden.unsqueeze(-2) - centroids).pow(2).sum(-1)  # (B, T, K)
    return torch.softmax(-squared / tau, dim=-1)


def soft_label_kl(logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean over (valid) frames of ``KL(q || softmax(logits))``: ``(B, T, K)`` logits and target probabilities."""
    q = targets.detach().float()
    per_frame = (torch.xlogy(q, q) - q * F.log_softmax(logits.float(), -1)).sum(-1)  # (B, T)
    if mask is None:
        return per_frame.mean()
    return per_frame[mask].mean() if bool(mask.any()) else per_frame.sum() * 0


def temperature(features: Tensor, centroids: Tensor) -> Tensor:
    """``tau``: the median squared distance of a frame ``(N, D)`` to its nearest centroid ``(K, D)`` [P]."""
    nearest = torch.cdist(features.float(), centroids.float()).min(-1).values.pow(2)  # (N,)
    return torch.quantile(nearest, 0.5).clamp(min=1e-6)


def cluster_key(name: str, student_layer: int) -> str:
    """The key of one (teacher, student layer) pair's cluster head, centroids and temperature."""
    return f"{name}__{student_layer}"


class RepresentationalKD(nn.Module):
    """Regression (``MultiLayerDistiller``, cosine or L1, pooled to student frames) + soft-label cluster KL.

    Args:
        student_dim: student width.
        teachers: one ``TeacherSpec`` per teacher (``layer_map`` student hidden index -> teacher hidden index,
            ``weight`` = the teacher's ``w_k``, ``distance`` cosine or l1).
        num_clusters: ``K`` k-means clusters per (teacher, layer); 0 = regression only.
        kl_weight: ``beta``.
    """

    def __init__(self, student_dim: int, teachers: Sequence[TeacherSpec], num_clusters: int = 0,
                 kl_weight: float = 1.0) -> None:
        super().__init__()
        if num_clusters == 1 or num_clusters < 0:
            raise SpeechkitError(f"num_clusters: expected 0 (off) or >= 2, got {num_clusters}")
        self.regression = MultiLayerDistiller(student_dim, teachers, align="pool", align_to="student")
        self.num_clusters, self.kl_weight = num_clusters, kl_weight
        self.cluster_heads = nn.ModuleDict()
        for spec in teachers if num_clusters else ():
            for s in spec.layer_map:
                key = cluster_key(spec.name, s)
                self.cluster_heads[key] = nn.Linear(student_dim, num_clusters)
                self.register_buffer(f"centroids__{key}", torch.zeros(num_clusters, spec.dim))
                self.register_buffer(f"tau__{key}", torch.ones(()))
        self.register_buffer("clusters_fitted", torch.tensor(num_clusters == 0))

    @property
    def teachers(self) -> list[TeacherSpec]:
        return self.regression.teachers

    def pooled(self, teacher_hidden: Tensor, teacher_lengths: Tensor | None,
               frames: int) -> tuple[Tensor, Tensor | None]:
        """Teacher frames ``(B, T_t, D)`` average-pooled to ``frames`` student frames, with their valid lengths."""
        lengths = None if teacher_lengths is None else align_lengths(teacher_lengths, teacher_hidden.shape[1], frames)
        return align_time(teacher_hidden, frames, "pool"), lengths

    def set_clusters(self, fitted: Mapping[str, tuple[Tensor, Tensor | float]]) -> None:
        """Install every key's ``(K, D_t)`` centroids and temperature (``speechkit.models.quantizer.fit_codebook``
        and :func:`temperature` on pooled teacher frames); keys are ``"<teacher>__<student layer>"``."""
        if set(fitted) != set(self.cluster_heads):
            raise SpeechkitError(f"cluster keys: expected {sorted(self.cluster_heads)}, got {sorted(fitted)}")
        for key, (centroids, tau) in fitted.items():
            buffer = getattr(self, f"centroids__{key}")
            if centroids.shape != buffer.shape:
                raise SpeechkitError(f"centroids of {key!r}: expected {tuple(buffer.shape)}, got "
                                     f"{tuple(centroids.shape)}")
            buffer.copy_(centroids)
            getattr(self, f"tau__{key}").fill_(float(tau))
        self.clusters_fitted.fill_(True)

    def cluster_keys(self) -> list[tuple[TeacherSpec, int, int]]:
        """Every (teacher, student layer, teacher layer) triple."""
        return [(spec, s, t) for spec in self.teachers for s, t in spec.layer_map.items()]

    def forward(self, student_hidden: Sequence[Tensor], teacher_hidden: Mapping[str, Sequence[Tensor]],
                student_lengths: Tensor, teacher_lengths: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Weighted total and per-term losses (``"<teacher>/<s>-><t>"`` regression, ``.../kl`` cluster KL)."""
        total, terms = self.regression(student_hidden, teacher_hidden, student_lengths, teacher_lengths)
        if not self.num_clusters:
            return total, terms
        if not bool(self.clusters_fitted):
            raise SpeechkitError("the cluster targets are not fitted yet (fit k-means on teacher features first)")
        frames = student_hidden[0].shape[1]
        mask = lengths_to_mask(student_lengths, frames)
        for spec, s, t in self.cluster_keys():
            key = cluster_key(spec.name, s)
            target, _ = self.pooled(teacher_hidden[spec.name][t].detach(), None, frames)
            q = soft_cluster_targets(target.float(), getattr(self, f"centroids__{key}"), getattr(self, f"tau__{key}"))
            kl = soft_label_kl(self.cluster_heads[key](student_hidden[s]), q, mask)
            terms[f"{spec.name}/{s}->{t}/kl"] = kl
            total = total + spec.weight * self.kl_weight * kl
        return total, terms
