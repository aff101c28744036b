"""Class-incremental scenarios: disjoint tasks that cover every class, in a seeded order."""

import pytest
from lhotse import CutSet

from speechkit.continual import ClassIncrementalScenario, cut_label
from speechkit.errors import SpeechkitError
from tests.continual.conftest import intent_cuts


def test_fsc_split_is_4_then_3_disjoint_and_complete(fsc_like_cuts):
    scenario = ClassIncrementalScenario.from_cuts(fsc_like_cuts, "intent", first_task=4, increment=3, seed=0)
    assert scenario.sizes() == [4] + [3] * 9
    flat = scenario.classes
    assert len(flat) == len(set(flat)) == 31
    assert set(flat) == {cut_label(cut, "intent") for cut in fsc_like_cuts}
    for t in range(10):
        task = scenario.task_cuts(fsc_like_cuts, t, "intent")
        assert {cut_label(c, "intent") for c in task} == set(scenario.tasks[t])
        assert len(task) == 4 * len(scenario.tasks[t])
    assert len(scenario.seen_cuts(fsc_like_cuts, 9, "intent")) == len(fsc_like_cuts)
    assert scenario.seen(1) == list(scenario.tasks[0] + scenario.tasks[1])


def test_order_follows_the_seed():
    classes = [f"c{i}" for i in range(18)]
    a = ClassIncrementalScenario.split(classes, 3, 3, seed=0)
    assert a == ClassIncrementalScenario.split(classes, 3, 3, seed=0)
    assert a != ClassIncrementalScenario.split(classes, 3, 3, seed=1)
    assert ClassIncrementalScenario.split(classes, 3, 3, seed=None).tasks[0] == ("c0", "c1", "c10")  # sorted


def test_a_class_in_two_tasks_is_an_error():
    with pytest.raises(SpeechkitError, match="class 'b' is in task 0 and task 1"):
        ClassIncrementalScenario.from_lists([["a", "b"], ["b", "c"]])


@pytest.mark.parametrize("tasks", [[], [["a"], []]])
def test_an_empty_task_is_an_error(tasks):
    with pytest.raises(SpeechkitError, match="at least one class"):
        ClassIncrementalScenario.from_lists(tasks)


def test_sizes_that_do_not_split_are_an_error():
    with pytest.raises(SpeechkitError, match="7 classes do not split into 3 \\+ k x 3"):
        ClassIncrementalScenario.split([str(i) for i in range(7)], 3, 3)


def test_a_cut_of_an_unknown_class_names_itself():
    scenario = ClassIncrementalScenario.from_lists([["a"], ["b"]])
    with pytest.raises(SpeechkitError, match="cut 'z-0' has class 'z'"):
        scenario.check_covers(intent_cuts({"a": 1, "z": 1}), "intent")


def test_a_cut_without_the_label_field_names_the_field():
    cuts = intent_cuts({"a": 1})
    with pytest.raises(SpeechkitError, match="no 'scenario' label"):
        cut_label(next(iter(cuts)), "scenario")
    assert isinstance(CutSet.from_cuts(cuts), CutSet)
