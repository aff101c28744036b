"""Self-data distillation: training targets rewritten by the unpruned model, kept where they are verified.

*Self-Data Distillation for Recovering Quality in Pruned Large Language Models* (Thangarasa et al. 2024),
section 3.2: the original (unpruned) model rewrites each fine-tuning target in its own words; a rewrite whose
answer matches the original answer replaces the target, any other keeps the original; the pruned model is then
fine-tuned on these targets, which sit closer to the distribution it was trained on and so forget less. For speech
recognition the rewrite is the teacher's transcript of the utterance and the verified answer is the normalized
text: a transcript that equals the reference after normalization (casing, punctuation, "seven" / "7") replaces
it, keeping the words and adopting the teacher's written form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from speechkit.errors import SpeechkitError


@dataclass
class SelfDataTargets:
    texts: list[str]  # the training targets: the rewrite where accepted, else the original
    accepted: list[bool]

    @property
    def acceptance(self) -> float:
        return sum(self.accepted) / max(len(self.accepted), 1)


def accept_rewrites(references: Sequence[str], rewrites: Sequence[str],
                    verify: Callable[[str, str], bool]) -> SelfDataTargets:
    """Per pair, the rewrite if it is non-empty and ``verify(reference, rewrite)``, else the reference."""
    if len(references) != len(rewrites):
        raise SpeechkitError(f"rewrites: {len(rewrites)} for {len(references)} references")
    texts, accepted = [], []
    for reference, rewrite in zip(references, rewrites):
        ok = bool(rewrite.strip()) and verify(reference, rewrite)
        texts.append(rewrite.strip() if ok else reference)
        accepted.append(ok)
    return SelfDataTargets(texts, accepted)


def same_normalized(normalize: Callable[[str], str]) -> Callable[[str, str], bool]:
    """The ASR verifier: the two texts are equal after ``normalize`` (and the reference is not empty)."""
    def verify(reference: str, rewrite: str) -> bool:
        target = normalize(reference)
        return bool(target) and normalize(rewrite) == target
    return verify
