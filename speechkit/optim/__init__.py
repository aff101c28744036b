"""Learning-rate schedules (WSD, WSD-S, WSD over a time budget, cosine / linear baselines, AdamW with linear warm-up
and decay) and NoiseFiT noise injection."""

from speechkit.optim.noisefit import NoiseFiT, adaptive_noise
from speechkit.optim.warmup import adamw_warmup_decay, linear_warmup_decay
from speechkit.optim.wsd import (DecayShape, StepCheckpoint, TimeBudgetDecay, WarmupDecay, WarmupStableDecay,
                                 WarmupStableDecayS, decay_multiplier, warmup_decay_lambda, wsd_lambda, wsd_s_lambda)

__all__ = [
    "DecayShape", "NoiseFiT", "StepCheckpoint", "TimeBudgetDecay", "WarmupDecay", "WarmupStableDecay",
    "WarmupStableDecayS", "adamw_warmup_decay", "adaptive_noise", "decay_multiplier", "linear_warmup_decay",
    "warmup_decay_lambda", "wsd_lambda", "wsd_s_lambda",
]
