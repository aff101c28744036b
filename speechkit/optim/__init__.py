"""Learning-rate schedules (WSD, WSD-S, cosine / linear baselines) and NoiseFiT noise injection."""

from speechkit.optim.noisefit import NoiseFiT, adaptive_noise
from speechkit.optim.wsd import (DecayShape, StepCheckpoint, WarmupDecay, WarmupStableDecay, WarmupStableDecayS,
                                 decay_multiplier, warmup_decay_lambda, wsd_lambda, wsd_s_lambda)

__all__ = [
    "DecayShape", "NoiseFiT", "StepCheckpoint", "WarmupDecay", "WarmupStableDecay", "WarmupStableDecayS",
    "adaptive_noise", "decay_multiplier", "warmup_decay_lambda", "wsd_lambda", "wsd_s_lambda",
]
