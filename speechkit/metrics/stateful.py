"""Torchmetrics wrappers so LightningModules log WER/CER (raw and normalized) during validation.

The states are edit and reference counts summed across batches and DDP ranks (``dist_reduce_fx="sum"``), never
rates, so the result equals ``speechkit.metrics.wer.score_wer`` on the whole set whatever the sharding::

    self.val_wer = WERMetric(language="ps")            # in __init__
    self.val_wer.update(refs, hyps)                    # in validation_step (lists of strings)
    self.log_dict({f"val/{k}": v for k, v in self.val_wer.compute().items()})  # on_validation_epoch_end
    self.val_wer.reset()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from speechkit.metrics.wer import edit_counts, resolve_normalizer
from speechkit.text.normalizers import Normalizer, NormalizerKind

# state name -> how it is read from EditCounts
_STATES = ("word_errors", "ref_words", "char_errors", "ref_chars")


class WERMetric(Metric):
    """Corpus WER and CER, normalized and raw; ``compute()`` returns ``wer, wer_raw, cer, cer_raw`` (fractions).

    Args:
        language: language code choosing the normalizer (``speechkit.text.get_normalizer``).
        normalizer: ``auto`` | ``whisper_en`` | ``basic`` | ``none`` or a ``Normalizer``.
        **kwargs: passed to ``torchmetrics.Metric`` (``sync_on_compute``, ``dist_sync_fn`` ...).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, language: str = "en", normalizer: NormalizerKind | Normalizer = "auto", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.normalize = resolve_normalizer(language, normalizer)
        for suffix in ("", "_raw"):
            for name in _STATES:
                self.add_state(name + suffix, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _add(self, refs: list[str], hyps: list[str], suffix: str) -> None:
        words, chars = edit_counts(refs, hyps, "word"), edit_counts(refs, hyps, "char")
        for name, value in zip(_STATES, (words.errors, words.ref_len, chars.errors, chars.ref_len)):
            state = getattr(self, name + suffix)
            setattr(self, name + suffix, state + value)

    def update(self, refs: list[str], hyps: list[str]) -> None:  # type: ignore[override]
        """Add a batch of reference and hypothesis strings (same length and order)."""
        self._add(list(refs), list(hyps), "_raw")
        self._add([self.normalize(text) for text in refs], [self.normalize(text) for text in hyps], "")

    def compute(self) -> dict[str, Tensor]:
        """Rates as float tensors; NaN when no reference word has been seen."""

        def rate(errors: Tensor, total: Tensor) -> Tensor:
            return errors.double() / total.double() if total > 0 else torch.tensor(float("nan"), dtype=torch.double)

        return {
            "wer": rate(self.word_errors, self.ref_words).float(),
            "wer_raw": rate(self.word_errors_raw, self.ref_words_raw).float(),
            "cer": rate(self.char_errors, self.ref_chars).float(),
            "cer_raw": rate(self.char_errors_raw, self.ref_chars_raw).float(),
        }
