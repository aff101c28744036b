"""The replay buffer: never above capacity, class-balanced, only past classes; herding against brute force."""

import itertools

import numpy as np
import pytest

from speechkit.continual import ClassIncrementalScenario, ReplayBuffer, balanced_quotas, cut_label, herding_order
from speechkit.errors import SpeechkitError
from tests.continual.conftest import intent_cuts


@pytest.mark.parametrize("selection", ["random", "herding"])
def test_buffer_over_a_stream(fsc_like_cuts, selection):
    scenario = ClassIncrementalScenario.from_cuts(fsc_like_cuts, "intent", 4, 3, seed=0)
    buffer = ReplayBuffer(capacity=40, selection=selection, seed=0)
    rng = np.random.default_rng(0)
    for t in range(len(scenario.tasks)):
        assert set(buffer.counts()) == set(scenario.seen(t)) - set(scenario.tasks[t])  # only past classes
        task = list(scenario.task_cuts(fsc_like_cuts, t, "intent"))
        features = rng.standard_normal((len(task), 8)) if selection == "herding" else None
        buffer.add_task(task, [cut_label(c, "intent") for c in task], features)
        counts = buffer.counts()
        assert len(buffer) <= 40 and len(buffer.cuts()) == len(buffer)
        assert max(counts.values()) - min(counts.values()) <= 1
        assert all(cut_label(c, "intent") == name for name, cuts in buffer.members.items() for c in cuts)
    assert len(buffer) == 40 and sorted(counts.values()) == [1] * 22 + [2] * 9  # 40 = 31 x 1 + 9 extra


def test_buffer_fills_capacity_and_shrinks_old_classes_keeping_their_best():
    buffer = ReplayBuffer(capacity=6, seed=0)
    first = list(intent_cuts({"a": 10, "b": 10}))
    buffer.add_task(first, [cut_label(c, "intent") for c in first])
    kept_a = [c.id for c in buffer.members["a"]]
    assert buffer.counts() == {"a": 3, "b": 3}
    second = list(intent_cuts({"c": 10}))
    buffer.add_task(second, ["c"] * 10)
    assert buffer.counts() == {"a": 2, "b": 2, "c": 2}
    assert [c.id for c in buffer.members["a"]] == kept_a[:2]


def test_a_small_class_gives_its_share_to_the_others():
    assert balanced_quotas(10, {"a": 1, "b": 20, "c": 20}) == {"a": 1, "b": 5, "c": 4}
    assert balanced_quotas(7, {"a": 5, "b": 5}) == {"a": 4, "b": 3}
    assert balanced_quotas(30, {"a": 5, "b": 5}) == {"a": 5, "b": 5}


def test_a_buffer_smaller_than_the_classes_is_an_error():
    buffer = ReplayBuffer(capacity=2)
    cuts = list(intent_cuts({"a": 2, "b": 2, "c": 2}))
    with pytest.raises(SpeechkitError, match="capacity 2 is smaller than the 3 classes"):
        buffer.add_task(cuts, [cut_label(c, "intent") for c in cuts])


def test_a_class_entering_twice_is_an_error():
    buffer = ReplayBuffer(capacity=10)
    cuts = list(intent_cuts({"a": 2}))
    buffer.add_task(cuts, ["a", "a"])
    with pytest.raises(SpeechkitError, match=r"classes \['a'\] are already stored"):
        buffer.add_task(cuts, ["a", "a"])


def test_herding_needs_features_and_capacity_must_be_positive():
    with pytest.raises(SpeechkitError, match="herding selection needs the features"):
        ReplayBuffer(4, "herding").add_task(list(intent_cuts({"a": 2})), ["a", "a"])
    with pytest.raises(SpeechkitError, match="capacity must be >= 1"):
        ReplayBuffer(0)


def test_herding_prefix_is_the_greedy_closest_mean():
    rng = np.random.default_rng(1)
    features = rng.standard_normal((7, 3))
    z = features / np.linalg.norm(features, axis=1, keepdims=True)
    order = herding_order(features)
    assert sorted(order) == list(range(7))
    best_single = min(range(7), key=lambda i: np.linalg.norm(z.mean(0) - z[i]))
    assert order[0] == best_single
    best_pair_given_first = min((i for i in range(7) if i != order[0]),
                                key=lambda i: np.linalg.norm(z.mean(0) - (z[order[0]] + z[i]) / 2))
    assert order[1] == best_pair_given_first
    # the first 3 herded samples' mean is closer to the class mean than a typical random triple
    herded = np.linalg.norm(z.mean(0) - z[order[:3]].mean(0))
    triples = [np.linalg.norm(z.mean(0) - z[list(c)].mean(0)) for c in itertools.combinations(range(7), 3)]
    assert herded <= np.median(triples)
