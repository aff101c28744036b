"""Distillation: KD kernels, SquareHead, multi-layer representational distillation, progressive stages."""

from speechkit.distill.kd import KDLoss, kd_loss, token_mask
from speechkit.distill.multilayer import (
    MultiLayerDistiller,
    TeacherSpec,
    align_lengths,
    align_time,
    attention_kl,
    lengths_to_mask,
    uniform_layer_map,
)
from speechkit.distill.progressive import ProgressiveSchedule, Stage, ernie_tiny_stages
from speechkit.distill.squarehead import SquareHeadLoss, squarehead_loss, squarehead_terms

__all__ = [
    "KDLoss",
    "MultiLayerDistiller",
    "ProgressiveSchedule",
    "SquareHeadLoss",
    "Stage",
    "TeacherSpec",
    "align_lengths",
    "align_time",
    "attention_kl",
    "ernie_tiny_stages",
    "kd_loss",
    "lengths_to_mask",
    "squarehead_loss",
    "squarehead_terms",
    "token_mask",
    "uniform_layer_map",
]
