"""Pure, tested losses and heads: harmonic (+ distances), Z-loss and the PaLM log Z penalty, ND, KL-Top, sample
re-weighting, and the NaN/inf guard."""

from speechkit.losses.checks import check_finite
from speechkit.losses.distances import DistanceName, pairwise_log_distance
from speechkit.losses.harmonic import HarmonicHead, harmax_log_probs
from speechkit.losses.kl_top import KLTop, kl_top
from speechkit.losses.nd import NDLoss, class_centers
from speechkit.losses.reweighting import LossReweighter, Strategy, sample_weights
from speechkit.losses.zloss import CrossEntropyWithLogZPenalty, ZLoss, logz_squared

__all__ = [
    "CrossEntropyWithLogZPenalty", "DistanceName", "HarmonicHead", "KLTop", "LossReweighter", "NDLoss", "Strategy",
    "ZLoss", "check_finite", "class_centers", "harmax_log_probs", "kl_top", "logz_squared", "pairwise_log_distance",
    "sample_weights",
]
