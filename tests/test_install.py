"""The install itself: torch and torchaudio from one release, torchaudio's compiled extension loads and computes.

A wildcard pin once resolved torchaudio 2.11.1 against torch 2.11.0; ``libtorchaudio.so`` then failed to load
(undefined symbol) and every LightningCLI command died while parsing ``model``. These tests make such a pair fail
CI loudly, at the first test file, instead of deep inside a training run.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torchaudio
import torchaudio.functional as F

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def release(version: str) -> str:
    """``2.11.0+cu130`` -> ``2.11.0`` (the local build tag is not part of the release)."""
    return version.split("+")[0]


def pinned(name: str) -> str:
    """The exact version pyproject.toml pins ``name`` to (``name==X.Y.Z``), or an assertion naming the line."""
    lines = re.findall(rf'^\s*"({name}\s*[=<>!~][^"]*)",', PYPROJECT.read_text(), flags=re.MULTILINE)
    assert len(lines) == 1, f"pyproject.toml: expected one {name} requirement, found {lines}"
    match = re.fullmatch(rf"{name}\s*==\s*(\d+\.\d+\.\d+)", lines[0])
    assert match, f"pyproject.toml: {lines[0]!r} must pin an exact release (name==X.Y.Z), not a range or wildcard"
    return match.group(1)


def test_torch_and_torchaudio_are_pinned_to_one_exact_release():
    assert pinned("torch") == pinned("torchaudio")


def test_the_installed_torch_and_torchaudio_are_the_pinned_release():
    assert release(torch.__version__) == pinned("torch")
    assert release(torchaudio.__version__) == pinned("torchaudio")


def test_torchaudio_compiled_extension_aligns_a_known_path():
    """``forced_align`` runs in ``libtorchaudio`` (``torch.ops.torchaudio``): a broken pair cannot load it.

    Five frames whose argmax spells blank, a, a, blank, b; the Viterbi path over targets [a, b] is that sequence.
    """
    logits = torch.full((1, 5, 3), -5.0)
    for frame, label in enumerate([0, 1, 1, 0, 2]):
        logits[0, frame, label] = 5.0
    log_probs = torch.log_softmax(logits, dim=-1)
    path, scores = F.forced_align(log_probs, torch.tensor([[1, 2]], dtype=torch.int32), blank=0)
    assert path.tolist() == [[0, 1, 1, 0, 2]]
    expected = torch.log_softmax(torch.tensor([5.0, -5.0, -5.0]), dim=0)[0]  # every frame's chosen label
    torch.testing.assert_close(scores, expected.expand(1, 5))


def test_torchaudio_rnnt_loss_kernel_matches_a_hand_computed_value():
    """``rnnt_loss`` is another compiled kernel: one frame, one target label, uniform logits over 2 symbols.

    The only path emits the label then blank: p = 1/2 * 1/2, loss = log 4.
    """
    logits = torch.zeros(1, 1, 2, 2)  # (B, T, U + 1, V)
    loss = F.rnnt_loss(logits, torch.tensor([[1]], dtype=torch.int32), torch.tensor([1], dtype=torch.int32),
                       torch.tensor([1], dtype=torch.int32), blank=0, reduction="sum")
    torch.testing.assert_close(loss, torch.tensor(4.0).log())
