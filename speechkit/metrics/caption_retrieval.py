"""Audio-text retrieval scored by a captioner's losses: raw for text-to-audio, per-caption min-max for audio-to-text.

*Killing two birds with one stone: Can an audio captioning system also be used for audio-text retrieval?* (Labbé,
Pellegrini, Pinquier, DCASE 2023 Workshop), section 2: the score of a pair (audio ``a``, caption ``c``) is minus the
captioner's teacher-forced mean token cross-entropy ``L(a, c) = -(1/|c|) sum_i log p(c_i | c_<i, a)``.

* Text-to-audio (query ``c``, rank audios): ``score = -L(a, c)``. Adding any constant to a caption's losses (its
  prior ``-log p(c)``) shifts every score of that query alike, so the ranking is unchanged.
* Audio-to-text (query ``a``, rank captions): a generic caption has a low loss under every audio and would top every
  query; each caption's losses are min-max normalised across the audios first,
  ``L~(a, c) = (L(a, c) - min_a' L(a', c)) / (max_a' L(a', c) - min_a' L(a', c))``, ``score = -L~(a, c)``
  (the authors' ``scale_losses``). Since ``-L ~ log p(c) + PMI(a, c)``, this removes the caption's prior.

Ties: every column's best audio gets ``L~ = 0``, so an audio that is the best one of several captions meets them
tied in its A2T row. Ties within a query's row are broken by the raw loss (lower first). The authors' code offsets
only the row minimum and takes ``losses.argsort()`` as the ranks, which is wrong from three tied items on (raw
``[0.2, 0.3, 0.1]`` puts 0.3 first); here the order inside a tie group is the rank (``argsort`` of ``argsort``) of
the raw loss, and every tie group, not only the minimum, is ordered. ``../shared/papers/speech.md`` does not
leave the repository: the equations above are the paper's.

Metrics (``caption_retrieval_metrics``) go through ``speechkit.metrics.retrieval``: R@k is ``hit@k`` (at least one
relevant item in the top k), mAP@10 divides by every relevant item (five captions per audio for A2T, one audio per
caption for T2A), as the DCASE 2023 retrieval baseline does.

Dimension legend: ``A`` audios, ``C`` captions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from speechkit.errors import SpeechkitError
from speechkit.metrics.retrieval import retrieval_metrics, run_from_scores

Direction = Literal["t2a", "a2t"]
DIRECTIONS = ("t2a", "a2t")


def check_loss_matrix(loss: torch.Tensor) -> None:
    """Raise ``SpeechkitError`` unless ``loss`` is a finite ``(A, C)`` matrix with ``A, C >= 1``."""
    if not isinstance(loss, torch.Tensor) or loss.dim() != 2 or min(loss.shape) < 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise SpeechkitError(f"loss: expected an (audios, captions) matrix, got {shape}")
    bad = (~torch.isfinite(loss)).nonzero()
    if len(bad):
        a, c = bad[0].tolist()
        raise SpeechkitError(f"loss[{a}, {c}] = {loss[a, c].item()} is not finite (audio {a}, caption {c})")


def normalize_caption_losses(loss: torch.Tensor) -> torch.Tensor:
    """Per caption (column), min-max over the audios: every column spans [0, 1] (the paper's ``L~``).

    A column whose losses are all equal carries no information about the audios and becomes all zeros.

    Args:
        loss: ``(A, C)`` mean token cross-entropies.

    Returns:
        ``(A, C)`` float64 in [0, 1].
    """
    check_loss_matrix(loss)
    loss = loss.double()
    low, high = loss.min(0, keepdim=True).values, loss.max(0, keepdim=True).values  # (1, C)
    span = high - low
    return torch.where(span > 0, (loss - low) / torch.where(span > 0, span, 1.0), torch.zeros_like(loss))


def tie_break_ranks(values: torch.Tensor) -> torch.Tensor:
    """The rank (0 = smallest) of each entry of a 1-D tensor: ``argsort().argsort()``, stable.

    ``argsort`` alone gives the positions sorted, not the rank of each position; the two agree only when the
    permutation is its own inverse (true for two items, false for ``[0.2, 0.3, 0.1]``).
    """
    return values.argsort(stable=True).argsort(stable=True)


def break_ties(scores: torch.Tensor, raw_scores: torch.Tensor) -> torch.Tensor:
    """``scores`` ``(Q, D)`` with equal values in a row ordered by ``raw_scores`` (higher first).

    Each tie group of a row is spread below its value by less than half the row's smallest gap between distinct
    values, so groups never cross and the scores keep their meaning; the order inside a group is the rank of the
    raw score.

    Returns:
        ``(Q, D)`` float64.
    """
    scores, raw_scores = scores.double(), raw_scores.double()
    out = scores.clone()
    for row in range(scores.shape[0]):
        values = scores[row]
        distinct, counts = torch.unique_consecutive(values.sort().values, return_counts=True)
        if len(distinct) == len(values):
            continue
        gap = (distinct[1:] - distinct[:-1]).min().item() if len(distinct) > 1 else 1.0
        for value in distinct[counts > 1].tolist():
            members = (values == value).nonzero().flatten()
            rank_in_group = tie_break_ranks(-raw_scores[row, members])  # 0 = highest raw score
            out[row, members] = value - 0.5 * gap * rank_in_group.double() / len(members)
    return out


def retrieval_scores(loss: torch.Tensor, direction: Direction, normalize: bool | None = None) -> torch.Tensor:
    """Retrieval scores (higher = better) from a captioner's pairwise losses.

    Args:
        loss: ``(A, C)`` mean token cross-entropy of caption ``c`` given audio ``a``.
        direction: ``t2a`` (one row per caption query, audios ranked) or ``a2t`` (one row per audio query).
        normalize: min-max normalise each caption's losses over the audios first, ties broken by the raw loss;
            ``None`` = the paper's choice, normalised for ``a2t`` only.

    Returns:
        ``(C, A)`` for ``t2a``, ``(A, C)`` for ``a2t``; float64.
    """
    if direction not in DIRECTIONS:
        raise SpeechkitError(f"direction={direction!r}: expected one of {DIRECTIONS}")
    check_loss_matrix(loss)
    normalize = direction == "a2t" if normalize is None else normalize
    raw = -loss.double()
    scores = -normalize_caption_losses(loss) if normalize else raw
    if direction == "t2a":
        scores, raw = scores.T, raw.T
    return break_ties(scores, raw) if normalize else scores.contiguous()


def caption_qrels(audio_of_caption: Sequence[int], num_audios: int) -> list[list[int]]:
    """The captions of each audio, from each caption's audio index; an audio with no caption is an error."""
    captions: list[list[int]] = [[] for _ in range(num_audios)]
    for c, a in enumerate(audio_of_caption):
        if not 0 <= int(a) < num_audios:
            raise SpeechkitError(f"audio_of_caption[{c}] = {a}: expected an audio index in [0, {num_audios})")
        captions[int(a)].append(c)
    empty = [a for a, caps in enumerate(captions) if not caps]
    if empty:
        raise SpeechkitError(f"audio {empty[0]} has no caption ({len(empty)} of {num_audios} audios without one): "
                             "every audio needs at least one caption to be retrieved")
    return captions


def caption_retrieval_metrics(
    loss: torch.Tensor,
    audio_of_caption: Sequence[int],
    direction: Direction,
    normalize: bool | None = None,
    ks: Sequence[int] = (1, 5, 10),
    cutoff: int = 10,
) -> dict[str, float]:
    """R@k (``hit@k``) and mAP@cutoff of one direction, from the ``(A, C)`` losses (or ``-scores`` of any model).

    Args:
        loss: ``(A, C)``; lower = more likely a pair.
        audio_of_caption: ``C`` audio indices, the audio each caption describes.
        direction: ``t2a`` or ``a2t``.
        normalize: as in :func:`retrieval_scores`.
        ks: cut-offs of R@k.
        cutoff: cut-off of mAP.

    Returns:
        ``R@k`` for every k, ``mAP@cutoff``, and ``queries``.
    """
    check_loss_matrix(loss)
    num_audios, num_captions = loss.shape
    if len(audio_of_caption) != num_captions:
        raise SpeechkitError(f"audio_of_caption has {len(audio_of_caption)} entries but loss has {num_captions} "
                             f"caption columns (loss shape {tuple(loss.shape)} = (audios, captions))")
    captions = caption_qrels(audio_of_caption, num_audios)
    scores = retrieval_scores(loss, direction, normalize)
    audio_ids, caption_ids = [f"a{a}" for a in range(num_audios)], [f"c{c}" for c in range(num_captions)]
    if direction == "t2a":
        run = run_from_scores(scores, caption_ids, audio_ids)
        qrels = {f"c{c}": {f"a{int(a)}": 1} for c, a in enumerate(audio_of_caption)}
    else:
        run = run_from_scores(scores, audio_ids, caption_ids)
        qrels = {f"a{a}": {f"c{c}": 1 for c in caps} for a, caps in enumerate(captions)}
    metrics = retrieval_metrics(run, qrels, ks=tuple(ks), cutoff=cutoff)
    out = {f"R@{k}": metrics[f"hit@{k}"] for k in ks}
    return out | {f"mAP@{cutoff}": metrics[f"map@{cutoff}"], "queries": metrics["queries"]}
