"""Pruning: magnitude and SparseGPT (unstructured), masks and the gradual schedule, Minitron width/depth surgery,
angular-distance block removal, the PruneNet policy, and LOST low-rank + channel-sparse layers.

The Lightning callback lives in ``speechkit.compress.prune.callback`` (imported on demand: it pulls in Lightning).
"""

from speechkit.compress.prune.block_removal import (
    angular_distance,
    angular_distance_profile,
    best_block,
    remove_blocks,
    remove_layers,
)
from speechkit.compress.prune.lost import LowRankSparseLinear, lost_param_count, lostify
from speechkit.compress.prune.magnitude import check_sparsity, magnitude_mask, magnitude_prune
from speechkit.compress.prune.masks import GradualSchedule, MaskManager, cubic_sparsity, find_linears, masks_from_zeros
from speechkit.compress.prune.minitron import (
    ActivationImportance,
    aggregate,
    block_importance,
    prune_channels,
    prune_depth,
    prune_heads,
    prune_neurons,
    set_module,
    shrink_linear,
    slice_mlp,
    top_indices,
)
from speechkit.compress.prune.prunenet import PolicyNet, select_rows, spectral_ks_reward, train_policy
from speechkit.compress.prune.sparsegpt import sparsegpt

__all__ = [
    "ActivationImportance",
    "GradualSchedule",
    "LowRankSparseLinear",
    "MaskManager",
    "PolicyNet",
    "aggregate",
    "angular_distance",
    "angular_distance_profile",
    "best_block",
    "block_importance",
    "check_sparsity",
    "cubic_sparsity",
    "find_linears",
    "lost_param_count",
    "lostify",
    "magnitude_mask",
    "magnitude_prune",
    "masks_from_zeros",
    "prune_channels",
    "prune_depth",
    "prune_heads",
    "prune_neurons",
    "remove_blocks",
    "remove_layers",
    "select_rows",
    "set_module",
    "shrink_linear",
    "slice_mlp",
    "sparsegpt",
    "spectral_ks_reward",
    "top_indices",
    "train_policy",
]
