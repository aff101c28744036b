"""A class-balanced experience-replay buffer of fixed capacity, filled by random or herding selection.

COCONUT (Cappellazzo et al., ACL Findings 2024) replays past samples with every new task. After each task the
capacity is re-divided equally among the classes seen so far (counts differ by at most one); old classes give up
their lowest-ranked samples, new classes enter ranked at random or by iCaRL herding (Rebuffi et al. 2017,
*iCaRL*, Algorithm 4: greedily add the sample that keeps the running mean closest to the class mean).
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import numpy as np
from lhotse import CutSet
from lhotse.cut import Cut

from speechkit.errors import SpeechkitError

Selection = Literal["random", "herding"]


def balanced_quotas(capacity: int, available: dict[str, int]) -> dict[str, int]:
    """Equal shares of ``capacity`` over the classes (in the given order; the first ones get the remainder); a
    class with fewer samples than its share keeps them all and the rest is re-divided among the others."""
    quotas = {name: 0 for name in available}
    open_classes, left = [n for n in available if available[n] > 0], capacity
    while open_classes and left > 0:
        share, extra = divmod(left, len(open_classes))
        wanted = {n: share + (i < extra) for i, n in enumerate(open_classes)}
        short = [n for n in open_classes if available[n] - quotas[n] <= wanted[n]]
        if not short:
            for name in open_classes:
                quotas[name] += wanted[name]
            break
        for name in short:  # fill these completely, then divide what remains among the others
            left -= available[name] - quotas[name]
            quotas[name] = available[name]
        open_classes = [n for n in open_classes if n not in short]
    return quotas


def herding_order(features: np.ndarray) -> list[int]:
    """iCaRL herding: sample indices in selection order, each chosen so that the mean of the chosen (L2-normalised)
    features stays closest to the class mean. ``features`` is ``(N, D)``."""
    if features.ndim != 2 or len(features) == 0:
        raise SpeechkitError(f"herding: features must be a non-empty (N, D) array, got shape {features.shape}")
    z = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    mean = z.mean(0)
    chosen: list[int] = []
    total = np.zeros_like(mean)
    for k in range(1, len(z) + 1):
        distance = np.linalg.norm(mean - (total + z) / k, axis=1)
        distance[chosen] = np.inf
        best = int(distance.argmin())
        chosen.append(best)
        total += z[best]
    return chosen


class ReplayBuffer:
    """Past samples, class-balanced, at most ``capacity`` cuts.

    Args:
        capacity: the most cuts the buffer holds.
        selection: ``random`` or ``herding`` (needs features of the new cuts in :meth:`add_task`).
        seed: the random ranking's seed.
    """

    def __init__(self, capacity: int, selection: Selection = "random", seed: int = 0) -> None:
        if capacity < 1:
            raise SpeechkitError(f"replay buffer: capacity must be >= 1, got {capacity}")
        if selection not in ("random", "herding"):
            raise SpeechkitError(f"replay buffer: selection must be 'random' or 'herding', got {selection!r}")
        self.capacity, self.selection = capacity, selection
        self.rng = np.random.default_rng(seed)
        self.members: dict[str, list[Cut]] = {}  # class -> cuts, best-ranked first

    def add_task(self, cuts: Sequence[Cut], labels: Sequence[str], features: Optional[np.ndarray] = None) -> None:
        """Take a finished task's cuts (with their classes, and ``(N, D)`` features for herding) and re-balance.

        A class already in the buffer, or more classes than the capacity, is an error.
        """
        cuts = list(cuts)
        if len(labels) != len(cuts):
            raise SpeechkitError(f"replay buffer: {len(cuts)} cuts but {len(labels)} labels")
        by_class: dict[str, list[int]] = {}
        for index, label in enumerate(labels):
            by_class.setdefault(str(label), []).append(index)
        again = sorted(set(by_class) & set(self.members))
        if again:
            raise SpeechkitError(f"replay buffer: classes {again} are already stored; each class enters once "
                                 "(class-incremental tasks are disjoint)")
        classes = len(self.members) + len(by_class)
        if self.capacity < classes:
            raise SpeechkitError(f"replay buffer: capacity {self.capacity} is smaller than the {classes} classes "
                                 "seen; it must hold at least one sample of each")
        ranked = {name: [cuts[i] for i in self._rank(rows, features)] for name, rows in by_class.items()}
        pool = {**self.members, **ranked}
        quotas = balanced_quotas(self.capacity, {name: len(items) for name, items in pool.items()})
        self.members = {name: items[: quotas[name]] for name, items in pool.items()}

    def _rank(self, rows: list[int], features: Optional[np.ndarray]) -> list[int]:
        if self.selection == "random":
            return [rows[i] for i in self.rng.permutation(len(rows))]
        if features is None:
            raise SpeechkitError("replay buffer: herding selection needs the features of the new cuts")
        return [rows[i] for i in herding_order(np.asarray(features)[rows])]

    def cuts(self) -> CutSet:
        """Every stored cut."""
        return CutSet.from_cuts([cut for items in self.members.values() for cut in items])

    def counts(self) -> dict[str, int]:
        """Stored cuts per class."""
        return {name: len(items) for name, items in self.members.items()}

    def ids(self) -> set[str]:
        """The stored cut ids."""
        return {cut.id for items in self.members.values() for cut in items}

    def __len__(self) -> int:
        return sum(self.counts().values())
