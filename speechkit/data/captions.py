"""Audio captioning data: several captions per audio in one cut, one drawn per training step.

How a manifest holds them: one cut per audio clip with **one** supervision spanning it; ``supervision.text`` is
the first caption (so every speechkit tool that reads a transcript sees a caption) and
``supervision.custom["captions"]`` lists all of them (five for Clotho, AudioCaps test and ``scenes_synth``), the
first equal to ``text``. A cut without ``custom["captions"]`` has the one caption ``text``. Several supervisions
per cut are refused: for captions they would be read as parts of one transcript (``cut_text`` joins them).

Training draws one caption per cut per batch (a generator seeded by the data seed and the batch's cut ids, as
``speechkit.data.masked`` seeds its masks; Clotho's usual practice); validation and test use the first caption for
the loss, and every batch carries all references of each cut for the captioning metrics.

Dimension legend: ``B`` cuts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from lhotse import CutSet
from lhotse.cut import Cut
from lhotse.utils import fastcopy

from speechkit.data.batches import SpeechBatch
from speechkit.data.config import DataConfig
from speechkit.data.datamodule import SpeechDataModule
from speechkit.data.dataset import SpeechDataset
from speechkit.data.masked import batch_generator
from speechkit.errors import SpeechkitError

CAPTIONS_FIELD = "captions"


def cut_captions(cut: Cut) -> list[str]:
    """Every caption of a cut (see the module docstring); an error names the cut when there is none."""
    if len(cut.supervisions) != 1:
        raise SpeechkitError(f"cut {cut.id!r}: {len(cut.supervisions)} supervisions; a captioned audio has one "
                             f"supervision whose custom[{CAPTIONS_FIELD!r}] lists its captions")
    sup = cut.supervisions[0]
    captions = (sup.custom or {}).get(CAPTIONS_FIELD)
    if captions is None:
        captions = [sup.text] if sup.text and sup.text.strip() else []
    if not isinstance(captions, list) or not captions or any(
            not isinstance(c, str) or not c.strip() for c in captions):
        raise SpeechkitError(f"cut {cut.id!r}: expected custom[{CAPTIONS_FIELD!r}] to be a non-empty list of "
                             f"non-empty captions (or a text), got {captions!r}")
    return list(captions)


def caption_supervision_custom(captions: list[str], **extra: Any) -> dict[str, Any]:
    """The ``custom`` of a captioned audio's supervision (its ``text`` is ``captions[0]``)."""
    if not captions or any(not c.strip() for c in captions):
        raise SpeechkitError(f"captions: expected one or more non-empty captions, got {captions!r}")
    return {CAPTIONS_FIELD: list(captions), **extra}


def with_caption(cut: Cut, index: int) -> Cut:
    """The cut whose supervision text is its caption ``index``."""
    sup = cut.supervisions[0]
    return fastcopy(cut, supervisions=[fastcopy(sup, text=cut_captions(cut)[index])])


def caption_pairs(cuts: CutSet) -> tuple[list[str], list[str], list[int]]:
    """``(audio ids, captions, audio index of each caption)`` of a CutSet, in its order: the retrieval set."""
    audio_ids, captions, owner = [], [], []
    for a, cut in enumerate(cuts):
        audio_ids.append(cut.id)
        for caption in cut_captions(cut):
            captions.append(caption)
            owner.append(a)
    return audio_ids, captions, owner


@dataclass
class CaptionBatch:
    """A ``SpeechBatch`` whose ``texts`` / ``tokens`` are one caption per cut, with every caption of each cut.

    Attributes:
        speech: the batch (its ``texts`` the caption trained on).
        references: ``B`` lists, every caption of each cut (the captioning metrics' references).
    """

    speech: SpeechBatch
    references: list[list[str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.speech)


class CaptionDataset:
    """``CutSet`` -> :class:`CaptionBatch`: one caption per cut (drawn when ``draw``, else the first).

    Args:
        speech: the task dataset giving features and token ids.
        draw: draw the caption (training) or take the first (evaluation).
        seed: mixed into each batch's generator.
    """

    def __init__(self, speech: SpeechDataset, draw: bool, seed: int = 0) -> None:
        self.speech = speech
        self.draw = draw
        self.seed = seed

    def __getitem__(self, cuts: CutSet) -> CaptionBatch:
        references = {cut.id: cut_captions(cut) for cut in cuts}
        generator = batch_generator(self.seed, [cut.id for cut in cuts]) if self.draw else None
        chosen = []
        for cut in cuts:
            index = int(torch.randint(len(references[cut.id]), (1,), generator=generator)) if self.draw else 0
            chosen.append(with_caption(cut, index))
        batch = self.speech[CutSet.from_cuts(chosen)]  # sorted by duration: references follow its cut ids
        return CaptionBatch(speech=batch, references=[references[cut_id] for cut_id in batch.cut_ids])


class CaptionDataModule(SpeechDataModule):
    """``SpeechDataModule`` whose batches are :class:`CaptionBatch` (see the module docstring).

    Args:
        config: every data option (see ``DataConfig``); ``text_field`` must stay ``text``.
    """

    def __init__(self, config: DataConfig) -> None:
        if config.text_field != "text":
            raise SpeechkitError(f"CaptionDataModule: text_field={config.text_field!r}; captions are read from "
                                 f"supervision.text and custom[{CAPTIONS_FIELD!r}], set text_field: text")
        super().__init__(config)

    def dataset(self, train: bool) -> CaptionDataset:  # type: ignore[override]
        return CaptionDataset(super().dataset(train), draw=train, seed=self.config.seed)


def captions_of(cuts: CutSet, limit: int | None = None) -> list[str]:
    """Every caption of the first ``limit`` cuts (all when ``None``): the vocabulary's source."""
    out: list[str] = []
    for number, cut in enumerate(cuts):
        if limit is not None and number >= limit:
            break
        out += cut_captions(cut)
    return out
