"""Tree search that turns scored rollouts into preference pairs, and perplexity-based hard-sample selection.

*Boosting Tool Use of Large Language Models via Iterative Reinforced Fine-Tuning* (iTool, Zeng et al. 2025),
section 3.3 (MCTS-based preference data): nodes are partial responses, a step is a sentence or tool call sampled
from the policy; a child's value starts at a fast heuristic reward and accumulates the full rewards backed up
through it; selection maximises ``value / (visits + 1) + c * prior * sqrt(log N_parent / (visits + 1))``. Every node
with two or more children gives the pair (highest-value child, lowest-value child), kept when the value gap is at
least ``min_gap`` (0.1), the two steps overlap at most ``max_overlap`` (0.95, word sets) and the chosen value is at
least ``min_chosen`` (-0.3). Section 3.2: the samples the model finds hardest (highest perplexity, top 30 % of each
stratum, e.g. with / without a tool call) are the ones searched.

The search loop is the standard select / expand / simulate / back-up of UCT with iTool's score, fast reward and pair
filter; the policy and the rewards are callables, so any speechkit model (Whisper's decoder, a causal LM) plugs in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Hashable, Optional, Sequence

from speechkit.errors import SpeechkitError

# propose(prefix, n) -> n candidate next steps as (text, prior probability, ends the response)
Propose = Callable[[str, int], Sequence[tuple[str, float, bool]]]
# fast_reward(prefix, step) and reward(prefix, continuation) -> a number
Reward = Callable[[str, str], float]


@dataclass(eq=False)
class Node:
    """A partial response: ``prefix`` is the prompt and every step so far, ``step`` the last one."""

    prefix: str
    step: str = ""
    prior: float = 1.0
    stop: bool = False
    depth: int = 0
    parent: Optional["Node"] = field(default=None, repr=False)
    children: list["Node"] = field(default_factory=list, repr=False)
    visits: int = 0
    value: float = 0.0

    def score(self, c_explore: float) -> float:
        """The selection score of this node as its parent's child (iTool's UCB form)."""
        parent_visits = self.parent.visits if self.parent is not None else 0
        explore = math.sqrt(math.log(parent_visits) / (self.visits + 1)) if parent_visits > 0 else 0.0
        return self.value / (self.visits + 1) + c_explore * self.prior * explore

    def best_child(self, c_explore: float) -> "Node":
        return max(self.children, key=lambda child: child.score(c_explore))

    def backup(self, reward: float) -> None:
        node: Optional[Node] = self
        while node is not None:
            node.visits += 1
            node.value += reward
            node = node.parent

    def walk(self) -> list["Node"]:
        """This node and all below it, depth first."""
        nodes, stack = [], [self]
        while stack:
            node = stack.pop()
            nodes.append(node)
            stack.extend(reversed(node.children))
        return nodes


def join(prefix: str, step: str) -> str:
    return f"{prefix} {step}" if prefix else step


def search(prompt: str, propose: Propose, fast_reward: Reward, reward: Reward, num_actions: int = 3,
           max_depth: int = 3, iterations: int = 5, c_explore: float = 1.0, simulation_steps: int = 2) -> Node:
    """Build the search tree of ``prompt``; returns its root (iTool's defaults: 3 actions, depth 3, 5 iterations)."""
    if num_actions < 2:
        raise SpeechkitError(f"num_actions: expected >= 2 (a pair needs two children), got {num_actions}")
    if max_depth < 1 or iterations < 1 or simulation_steps < 1:
        raise SpeechkitError(f"max_depth, iterations and simulation_steps must be >= 1, got {max_depth}, "
                             f"{iterations}, {simulation_steps}")
    root = Node(prefix=prompt)
    for _ in range(iterations):
        node = root
        while node.children and node.depth < max_depth:
            node = node.best_child(c_explore)
        if node.stop or node.depth >= max_depth:
            node.backup(reward(node.parent.prefix if node.parent else prompt, node.step))
            continue
        for text, prior, stop in propose(node.prefix, num_actions):
            child = Node(join(node.prefix, text), text, float(prior), bool(stop), node.depth + 1, node)
            child.value = float(fast_reward(node.prefix, text))
            node.children.append(child)
        if not node.children:
            raise SpeechkitError(f"propose returned no step for prefix {node.prefix[-80:]!r}")
        start, leaf, continuation = node.prefix, node, []
        for _ in range(simulation_steps):
            if leaf.children:
                leaf = max(leaf.children, key=lambda child: child.value)
                continuation.append(leaf.step)
                if leaf.stop:
                    break
            else:  # roll out without growing the tree
                text, _, stop = propose(join(start, " ".join(continuation)), 1)[0]
                continuation.append(text)
                if stop:
                    break
        leaf.backup(float(reward(start, " ".join(continuation))))
    return root


def word_overlap(a: str, b: str) -> float:
    """``|A & B| / min(|A|, |B|)`` on the word sets of two steps (1.0 when both are empty, 0.0 when one is)."""
    words_a, words_b = set(a.split()), set(b.split())
    if not words_a or not words_b:
        return float(words_a == words_b)
    return len(words_a & words_b) / min(len(words_a), len(words_b))


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str
    chosen_value: float
    rejected_value: float


def preference_pairs(root: Node, min_gap: float = 0.1, max_overlap: float = 0.95,
                     min_chosen: float = -0.3) -> list[PreferencePair]:
    """One (max-value child, min-value child) pair per node with >= 2 children that passes iTool's three filters:
    kept when ``gap >= min_gap``, ``overlap <= max_overlap`` and ``chosen value >= min_chosen``."""
    pairs = []
    for node in root.walk():
        if len(node.children) < 2:
            continue
        best = max(node.children, key=lambda child: child.value)
        worst = min(node.children, key=lambda child: child.value)
        if (best.value - worst.value < min_gap or word_overlap(best.step, worst.step) > max_overlap
                or best.value < min_chosen):
            continue
        pairs.append(PreferencePair(node.prefix, best.step, worst.step, best.value, worst.value))
    return pairs


def select_hard(perplexities: Sequence[float], strata: Optional[Sequence[Hashable]] = None,
                ratio: float = 0.3) -> list[int]:
    """Indices of the ``ceil(ratio * n)`` highest-perplexity samples of each stratum (iTool: 30 %, stratified by
    whether the reference calls a tool), in the input order."""
    if not 0 < ratio <= 1:
        raise SpeechkitError(f"ratio: expected in (0, 1], got {ratio}")
    if strata is None:
        strata = [0] * len(perplexities)
    if len(strata) != len(perplexities):
        raise SpeechkitError(f"strata: {len(strata)} labels for {len(perplexities)} perplexities")
    if any(not math.isfinite(value) for value in perplexities):
        raise SpeechkitError("perplexities: contain NaN or inf")
    chosen: list[int] = []
    for stratum in dict.fromkeys(strata):
        members = [i for i, label in enumerate(strata) if label == stratum]
        members.sort(key=lambda i: -perplexities[i])
        chosen.extend(members[:math.ceil(ratio * len(members))])
    return sorted(chosen)
