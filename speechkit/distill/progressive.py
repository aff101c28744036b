"""Progressive multi-stage distillation as configuration (ERNIE-Tiny, Su et al. 2021, Table 1).

A schedule is a list of ``Stage``s, each saying for how many steps it runs, which teacher and which data it uses
and which losses are on (with weights). The task asks ``schedule.stage_at(step)`` every step and swaps its
teacher / dataloader / loss set when ``schedule.is_boundary(step)``; the schedule itself holds no models.

ERNIE-Tiny's four stages move teacher, data and objective from general to task-specific one at a time:
GD (pretrained teacher, general data, latent loss), GED (fine-tuned teacher), TAD (task data), TSD (latent + soft
+ hard labels).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from speechkit.errors import SpeechkitError


@dataclass(frozen=True)
class Stage:
    """One stage: ``steps`` long, with a ``teacher`` and ``data`` key the task resolves, and its losses."""

    name: str
    steps: int
    teacher: str = "pretrained"
    data: str = "general"
    losses: tuple[str, ...] = ("hidden", "attn")
    weights: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps <= 0:
            raise SpeechkitError(f"stage {self.name!r}: steps must be a positive integer, got {self.steps!r}")
        if not self.losses:
            raise SpeechkitError(f"stage {self.name!r}: losses must name at least one loss")
        unknown = set(self.weights) - set(self.losses)
        if unknown:
            raise SpeechkitError(f"stage {self.name!r}: weights for losses that are off: {sorted(unknown)}")

    def loss_weights(self) -> dict[str, float]:
        """Weight of every loss that is on (1.0 unless given)."""
        return {name: float(self.weights.get(name, 1.0)) for name in self.losses}


class ProgressiveSchedule:
    """Stages back to back; step ``t`` belongs to the stage whose range holds it (the last stage runs on).

    Args:
        stages: the stages in order; names must be unique.
        known_losses: if given, every stage's losses must be among them (the task's loss names).
    """

    def __init__(self, stages: Sequence[Stage], known_losses: Sequence[str] | None = None) -> None:
        if not stages:
            raise SpeechkitError("stages must hold at least one Stage")
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise SpeechkitError(f"stage names must be unique, got {names}")
        if known_losses is not None:
            for stage in stages:
                unknown = set(stage.losses) - set(known_losses)
                if unknown:
                    raise SpeechkitError(f"stage {stage.name!r}: unknown losses {sorted(unknown)}; "
                                         f"known: {sorted(known_losses)}")
        self.stages = list(stages)
        self.starts = [0]
        for stage in self.stages[:-1]:
            self.starts.append(self.starts[-1] + stage.steps)

    @property
    def total_steps(self) -> int:
        return self.starts[-1] + self.stages[-1].steps

    def index_at(self, step: int) -> int:
        if step < 0:
            raise SpeechkitError(f"step must be >= 0, got {step}")
        return bisect_right(self.starts, step) - 1

    def stage_at(self, step: int) -> Stage:
        return self.stages[self.index_at(step)]

    def is_boundary(self, step: int) -> bool:
        """True at the first step of every stage (including step 0)."""
        return step in self.starts

    def loss_weights(self, step: int) -> dict[str, float]:
        return self.stage_at(step).loss_weights()


def ernie_tiny_stages(steps: int | Sequence[int], soft_weight: float = 1.0, hard_weight: float = 1.0) -> list[Stage]:
    """ERNIE-Tiny's GD, GED, TAD, TSD stages; ``steps`` per stage (one number or four).

    Teachers are "pretrained" / "finetuned", data "general" / "task"; losses "hidden", "attn", "soft", "hard".
    """
    lengths = [steps] * 4 if isinstance(steps, int) else list(steps)
    if len(lengths) != 4:
        raise SpeechkitError(f"steps must be one number or four, got {len(lengths)}")
    latent = ("hidden", "attn")
    return [
        Stage("GD", lengths[0], teacher="pretrained", data="general", losses=latent),
        Stage("GED", lengths[1], teacher="finetuned", data="general", losses=latent),
        Stage("TAD", lengths[2], teacher="finetuned", data="task", losses=latent),
        Stage("TSD", lengths[3], teacher="finetuned", data="task", losses=(*latent, "soft", "hard"),
              weights={"soft": soft_weight, "hard": hard_weight}),
    ]
