"""Class-incremental scenarios: disjoint class sets, one per task, in a seeded order.

COCONUT (Cappellazzo et al., ACL Findings 2024) follows the class-incremental split of its predecessor on Fluent
Speech Commands: 31 intents in 10 tasks, 4 in the first and 3 in each further one (``first_task=4, increment=3``).
SLURP-synth's 18 scenarios make 6 tasks of 3 (``first_task=3, increment=3``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from lhotse import CutSet
from lhotse.cut import Cut

from speechkit.errors import SpeechkitError


def cut_label(cut: Cut, label_field: str) -> str:
    """The class of a cut: its first supervision's text (``label_field="text"``) or ``custom[label_field]``."""
    if not cut.supervisions:
        raise SpeechkitError(f"cut {cut.id!r} has no supervision: it carries no {label_field!r} label")
    supervision = cut.supervisions[0]
    value = supervision.text if label_field == "text" else (supervision.custom or {}).get(label_field)
    if value is None:
        raise SpeechkitError(f"cut {cut.id!r}: supervision has no {label_field!r} label (supervision.custom keys: "
                             f"{sorted(supervision.custom or {})})")
    return str(value)


@dataclass(frozen=True)
class ClassIncrementalScenario:
    """The classes of each task; task ``t`` trains on its own classes only.

    Args:
        tasks: one tuple of class names per task; a class may appear in one task only.
    """

    tasks: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        if not self.tasks or any(not task for task in self.tasks):
            raise SpeechkitError(f"scenario: every task needs at least one class, got {self.tasks}")
        owner: dict[str, int] = {}
        for index, task in enumerate(self.tasks):
            for name in task:
                if name in owner:
                    raise SpeechkitError(f"scenario: class {name!r} is in task {owner[name]} and task {index}; "
                                         "class-incremental tasks must be disjoint")
                owner[name] = index

    @classmethod
    def split(
        cls, classes: Iterable[str], first_task: int, increment: int, seed: Optional[int] = 0
    ) -> "ClassIncrementalScenario":
        """``first_task`` classes, then ``increment`` per task, in an order shuffled by ``seed`` (``None``: sorted).

        The class count must be ``first_task + k * increment``; anything else is an error naming the sizes.
        """
        names = sorted(set(classes))
        if first_task < 1 or increment < 1:
            raise SpeechkitError(f"scenario: first_task and increment must be >= 1, got {first_task}, {increment}")
        if len(names) < first_task or (len(names) - first_task) % increment:
            raise SpeechkitError(f"scenario: {len(names)} classes do not split into {first_task} + k x {increment}")
        if seed is not None:
            random.Random(seed).shuffle(names)
        sizes = [first_task] + [increment] * ((len(names) - first_task) // increment)
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return cls(tuple(tuple(names[s:s + n]) for s, n in zip(starts, sizes)))

    @classmethod
    def from_cuts(
        cls, cuts: CutSet, label_field: str, first_task: int, increment: int, seed: Optional[int] = 0
    ) -> "ClassIncrementalScenario":
        """:meth:`split` over the labels the cuts carry."""
        return cls.split({cut_label(cut, label_field) for cut in cuts}, first_task, increment, seed)

    @property
    def classes(self) -> list[str]:
        """Every class, in task order."""
        return [name for task in self.tasks for name in task]

    def seen(self, task: int) -> list[str]:
        """The classes of tasks ``0..task``."""
        self._check_task(task)
        return [name for t in self.tasks[: task + 1] for name in t]

    def task_of(self, label: str) -> int:
        """The task that holds ``label``."""
        for index, task in enumerate(self.tasks):
            if label in task:
                return index
        raise SpeechkitError(f"scenario: class {label!r} is in no task; the classes are {self.classes}")

    def check_covers(self, cuts: CutSet, label_field: str, what: str = "cuts") -> None:
        """Every cut's label belongs to a task (an unknown one names the cut)."""
        known = set(self.classes)
        for cut in cuts:
            label = cut_label(cut, label_field)
            if label not in known:
                raise SpeechkitError(f"{what}: cut {cut.id!r} has class {label!r}, which is in no task of the "
                                     f"scenario ({len(known)} classes)")

    def task_cuts(self, cuts: CutSet, task: int, label_field: str) -> CutSet:
        """The cuts whose class belongs to ``task``."""
        self._check_task(task)
        return self._select(cuts, set(self.tasks[task]), label_field)

    def seen_cuts(self, cuts: CutSet, task: int, label_field: str) -> CutSet:
        """The cuts whose class belongs to tasks ``0..task``."""
        return self._select(cuts, set(self.seen(task)), label_field)

    @staticmethod
    def _select(cuts: CutSet, wanted: set[str], label_field: str) -> CutSet:
        return CutSet.from_cuts([cut for cut in cuts if cut_label(cut, label_field) in wanted])

    def _check_task(self, task: int) -> None:
        if not 0 <= task < len(self.tasks):
            raise SpeechkitError(f"scenario: task {task} does not exist; there are {len(self.tasks)} tasks")

    def sizes(self) -> list[int]:
        """Classes per task."""
        return [len(task) for task in self.tasks]

    @classmethod
    def from_lists(cls, tasks: Sequence[Sequence[str]]) -> "ClassIncrementalScenario":
        """A scenario from explicit class lists (e.g. a config's ``tasks:``)."""
        return cls(tuple(tuple(str(name) for name in task) for task in tasks))
