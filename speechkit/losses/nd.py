"""ND loss: *Improving Knowledge Distillation via Regularizing Feature Norm and Direction* (Wang et al. 2023).

``L_ND = (1/B) sum_i [1 - (f_s^i . c_{y_i} / ||c_{y_i}||) / max(||f_s^i||, ||f_t^i||)]`` (code
``WangYZ1608/Knowledge-Distillation-via-ND: CIFAR/utils.py::DirectNormLoss``): pulls the student's feature towards
the teacher's class-mean direction with a norm at least the teacher's. ``c_k`` = mean teacher embedding of class k
over the training set (:func:`class_centers`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from speechkit.errors import SpeechkitError


def class_centers(features: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    """Per-class mean of ``features`` (N, D) with ``labels`` (N,) -> (n_classes, D); a class without samples raises."""
    if features.dim() != 2 or labels.shape != features.shape[:1]:
        raise SpeechkitError(f"features, labels: expected (N, D) and (N,), got {tuple(features.shape)} and "
                             f"{tuple(labels.shape)}")
    counts = torch.bincount(labels, minlength=n_classes)
    if counts.numel() > n_classes or (counts == 0).any():
        missing = (counts[:n_classes] == 0).nonzero().flatten().tolist()
        raise SpeechkitError(f"labels: expected ids in [0, {n_classes}) with every class present; missing {missing}, "
                             f"max id {int(labels.max())}")
    sums = torch.zeros(n_classes, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, features)
    return sums / counts[:, None].to(features.dtype)


class NDLoss(nn.Module):
    """Feature norm-and-direction loss (Wang et al. 2023); the total KD++ loss adds it as ``weight * L_ND``.

    Args:
        class_centers: (C, D) teacher class means.
        weight: lambda_ND (the CIFAR scripts use 2 or 4; default 1).
    """

    def __init__(self, class_centers: Tensor, weight: float = 1.0) -> None:
        super().__init__()
        if class_centers.dim() != 2:
            raise SpeechkitError(f"class_centers: expected (C, D), got {tuple(class_centers.shape)}")
        self.register_buffer("directions", F.normalize(class_centers.detach().clone(), dim=-1))  # (C, D)
        self.weight = weight

    def forward(self, student: Tensor, teacher: Tensor, labels: Tensor) -> Tensor:
        """student, teacher (B, D) features (teacher not differentiated), labels (B,) -> scalar."""
        if student.shape != teacher.shape or student.dim() != 2 or student.shape[1] != self.directions.shape[1]:
            raise SpeechkitError(f"student, teacher: expected equal shapes (B, {self.directions.shape[1]}), got "
                                 f"{tuple(student.shape)} and {tuple(teacher.shape)}")
        if labels.shape != student.shape[:1]:
            raise SpeechkitError(f"labels: expected shape ({student.shape[0]},), got {tuple(labels.shape)}")
        projection = (student * self.directions[labels]).sum(-1)  # (B,)
        norm = torch.maximum(student.norm(dim=-1), teacher.detach().norm(dim=-1))
        return self.weight * (1.0 - projection / norm).mean()
