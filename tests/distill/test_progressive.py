import pytest

from speechkit.distill.progressive import ProgressiveSchedule, Stage, ernie_tiny_stages
from speechkit.errors import SpeechkitError


def test_four_stage_dry_run_swaps_exactly_at_boundaries() -> None:
    schedule = ProgressiveSchedule(ernie_tiny_stages(2), known_losses=("hidden", "attn", "soft", "hard"))
    seen = [(step, schedule.stage_at(step).name, schedule.is_boundary(step)) for step in range(8)]
    assert [name for _, name, _ in seen] == ["GD", "GD", "GED", "GED", "TAD", "TAD", "TSD", "TSD"]
    assert [step for step, _, boundary in seen if boundary] == [0, 2, 4, 6]
    teachers = [schedule.stage_at(s).teacher for s in range(8)]
    data = [schedule.stage_at(s).data for s in range(8)]
    assert teachers == ["pretrained"] * 2 + ["finetuned"] * 6
    assert data == ["general"] * 4 + ["task"] * 4
    assert schedule.loss_weights(5) == {"hidden": 1.0, "attn": 1.0}
    assert schedule.loss_weights(6) == {"hidden": 1.0, "attn": 1.0, "soft": 1.0, "hard": 1.0}
    assert schedule.total_steps == 8 and schedule.stage_at(100).name == "TSD"


def test_uneven_stage_lengths() -> None:
    schedule = ProgressiveSchedule([Stage("a", 3), Stage("b", 1), Stage("c", 5)])
    assert [schedule.index_at(s) for s in range(10)] == [0, 0, 0, 1, 2, 2, 2, 2, 2, 2]


def test_bad_stages() -> None:
    with pytest.raises(SpeechkitError, match="steps"):
        Stage("x", 0)
    with pytest.raises(SpeechkitError, match="weights"):
        Stage("x", 1, losses=("hidden",), weights={"soft": 2.0})
    with pytest.raises(SpeechkitError, match="unique"):
        ProgressiveSchedule([Stage("x", 1), Stage("x", 1)])
    with pytest.raises(SpeechkitError, match="unknown losses"):
        ProgressiveSchedule([Stage("x", 1, losses=("mystery",))], known_losses=("hidden",))
    with pytest.raises(SpeechkitError, match="step"):
        ProgressiveSchedule([Stage("x", 1)]).stage_at(-1)
