"""Learning-rate schedules (WSD, WSD-S, WSD over a time budget, cosine / linear baselines, AdamW with linear warm-up
and decay), an EMA of the weights with a warmed-up decay, and NoiseFiT noise injection."""

from speechkit.optim.averaging import WarmupEMA, ema_decay
from speechkit.optim.noisefit import NoiseFiT, adaptive_noise
from speechkit.optim.warmup import adamw_warmup_decay, linear_warmup_decay
from speechkit.optim.wsd import (DecayShape, StepCheckpoint, TimeBudgetDecay, WarmupDecay, WarmupStableDecay,
                                 WarmupStableDecayS, decay_multiplier, warmup_decay_lambda, wsd_lambda, wsd_s_lambda)

__all__ = [
    "DecayShape", "NoiseFiT", "StepCheckpoint", "TimeBudgetDecay", "WarmupDecay", "WarmupStableDecay",
    "WarmupEMA", "WarmupStableDecayS", "adamw_warmup_decay", "adaptive_noise", "decay_multiplier", "ema_decay",
    "linear_warmup_decay", "warmup_decay_lambda", "wsd_lambda", "wsd_s_lambda",
]
