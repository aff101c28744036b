"""CTC decoding without a language model: greedy (best path) and prefix beam search.

Graves et al., *Connectionist Temporal Classification* (ICML 2006), section 3.2 (best path) and the prefix search
of Hannun et al., *First-Pass Large Vocabulary Continuous Speech Recognition using Bi-Directional Recurrent DNNs*
(2014), algorithm 1, without the language model term. Dimension legend: ``B`` utterances, ``T`` frames, ``V``
vocabulary (blank at 0).
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch

BLANK = 0


def greedy_decode(log_probs: torch.Tensor, lens: torch.Tensor) -> list[list[int]]:
    """Best path: argmax per frame, repeats merged, blanks removed; one id list per utterance."""
    best = log_probs.argmax(-1).cpu()  # (B, T)
    out = []
    for row, length in zip(best, lens.tolist()):
        ids = torch.unique_consecutive(row[:length]).tolist()
        out.append([i for i in ids if i != BLANK])
    return out


def _logsumexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    high = max(a, b)
    return high + math.log(math.exp(a - high) + math.exp(b - high))


def prefix_beam_search(log_probs: torch.Tensor, beam_size: int = 8) -> list[int]:
    """The most probable label sequence of one utterance ``(T, V)`` under CTC, by prefix beam search.

    Each prefix keeps two log scores, ending in blank and ending in its last label; a label equal to the prefix's
    last one extends it only from the blank-ending score (else it is a repeat, merged).
    """
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}  # prefix -> (blank, non-blank)
    frames = log_probs.detach().double().cpu()
    top = min(beam_size, frames.shape[1])
    for frame in frames:
        candidates = frame.topk(top).indices.tolist()
        following: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [-math.inf, -math.inf])
        for prefix, (blank, label) in beams.items():
            total = _logsumexp(blank, label)
            for k in candidates:
                p = float(frame[k])
                if k == BLANK:
                    following[prefix][0] = _logsumexp(following[prefix][0], total + p)
                    continue
                extended = prefix + (k,)
                if prefix and prefix[-1] == k:
                    following[extended][1] = _logsumexp(following[extended][1], blank + p)
                    following[prefix][1] = _logsumexp(following[prefix][1], label + p)  # repeat merged
                else:
                    following[extended][1] = _logsumexp(following[extended][1], total + p)
        ranked = sorted(following.items(), key=lambda item: -_logsumexp(*item[1]))[:beam_size]
        beams = {prefix: (scores[0], scores[1]) for prefix, scores in ranked}
    return list(max(beams.items(), key=lambda item: _logsumexp(*item[1]))[0])


def beam_decode(log_probs: torch.Tensor, lens: torch.Tensor, beam_size: int = 8) -> list[list[int]]:
    """:func:`prefix_beam_search` of every utterance of ``(B, T, V)`` over its ``lens`` frames."""
    return [prefix_beam_search(row[:length], beam_size) for row, length in zip(log_probs, lens.tolist())]
