import random

import pytest

from speechkit.errors import SpeechkitError
from speechkit.rl import Node, preference_pairs, search, select_hard, word_overlap


def tree(values: dict[str, float]) -> Node:
    """A root whose children have the given steps and values."""
    root = Node(prefix="q")
    for step, value in values.items():
        root.children.append(Node(prefix=f"q {step}", step=step, value=value, depth=1, parent=root))
    return root


def test_word_overlap_hand_values():
    assert word_overlap("call get weather now", "call get time") == pytest.approx(2 / 3)
    assert word_overlap("a b", "c") == 0.0
    assert word_overlap("", "") == 1.0


def test_pair_filter_edges_are_those_of_the_reference_code():
    # gap exactly min_gap is kept ("<" rejects); a smaller one is not
    assert len(preference_pairs(tree({"alpha": 0.5, "beta": 0.25}), min_gap=0.25)) == 1
    assert preference_pairs(tree({"alpha": 0.5, "beta": 0.41}), min_gap=0.1) == []
    # chosen exactly at min_chosen is kept, below it not
    assert len(preference_pairs(tree({"alpha": -0.25, "beta": -1.0}), min_chosen=-0.25)) == 1
    assert preference_pairs(tree({"alpha": -0.3001, "beta": -1.0}), min_chosen=-0.3) == []
    # near-identical steps are dropped
    assert preference_pairs(tree({"call f ( x )": 1.0, "call f ( x ) ,": 0.0})) == []


def test_pair_is_max_and_min_child_of_each_node():
    root = tree({"good answer": 0.9, "middle": 0.3, "bad": -0.5})
    child = root.children[1]
    for step, value in (("deep one", 0.2), ("deep two", 0.7)):
        child.children.append(Node(prefix=f"{child.prefix} {step}", step=step, value=value, depth=2, parent=child))
    pairs = preference_pairs(root)
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [("q", "good answer", "bad"),
                                                                 ("q middle", "deep two", "deep one")]


def test_search_prefers_the_rewarded_branch():
    """Steps are words; the reward is the fraction of the target words in the response. The search tree's
    pairs must prefer steps that belong to the target."""
    target = {"turn", "on", "lights"}
    vocabulary = ["turn", "on", "lights", "play", "music", "off"]
    rng = random.Random(0)

    def propose(prefix, n):
        return [(word, 0.5, False) for word in rng.sample(vocabulary, n)]

    def fast(prefix, step):
        return 0.1 if step in target else -0.1

    def reward(prefix, continuation):
        words = continuation.split()
        return sum(word in target for word in words) / max(len(words), 1) - 0.5

    root = search("command:", propose, fast, reward, num_actions=3, max_depth=3, iterations=8)
    assert root.visits == 8 and len(root.walk()) > 4
    pairs = preference_pairs(root)
    assert pairs and all(p.chosen_value > p.rejected_value for p in pairs)
    assert sum(p.chosen in target for p in pairs) > sum(p.rejected in target for p in pairs)


def test_select_hard_takes_the_top_ratio_of_each_stratum():
    ppl = [5.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0]
    tools = [True, True, True, True, False, False, False, False]
    assert select_hard(ppl, tools, ratio=0.5) == [0, 2, 4, 6]
    assert select_hard(ppl, ratio=0.3) == [2, 4, 6]  # ceil(0.3 * 8) = 3


def test_bad_input_is_clear():
    with pytest.raises(SpeechkitError, match="num_actions"):
        search("q", lambda p, n: [], lambda p, s: 0.0, lambda p, c: 0.0, num_actions=1)
    with pytest.raises(SpeechkitError, match="no step"):
        search("q", lambda p, n: [], lambda p, s: 0.0, lambda p, c: 0.0)
    with pytest.raises(SpeechkitError, match="strata"):
        select_hard([1.0, 2.0], ["a"])
