"""SentencePiece subwords for translation targets: training a model on text, and ``text <-> ids`` with fixed ids.

Ids: 0 pad, 1 unknown, 2 begin (BOS), 3 end (EOS), then the pieces (Kudo and Richardson, *SentencePiece*, EMNLP
2018; unigram model by default).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from speechkit.errors import SpeechkitError

PAD, UNK, BOS, EOS = 0, 1, 2, 3


def train_subwords(texts: Iterable[str], model_path: str | Path, vocab_size: int = 1000,
                   model_type: str = "unigram") -> Path:
    """Train a SentencePiece model on ``texts`` and write ``model_path`` (``.model``) atomically; returns it."""
    import sentencepiece

    from speechkit.checkpoints import temporary_name

    lines = [line.strip() for line in texts if line.strip()]
    if not lines:
        raise SpeechkitError(f"train_subwords {model_path}: no non-empty text to train on")
    path = Path(model_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_name(path)
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_prefix=str(temporary.with_suffix("")), vocab_size=vocab_size,
            model_type=model_type, pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, character_coverage=1.0,
            num_threads=1, minloglevel=2,
        )
        temporary.with_suffix(".model").replace(path)
    finally:
        for suffix in (".model", ".vocab"):
            temporary.with_suffix(suffix).unlink(missing_ok=True)
    return path


class SubwordTokenizer:
    """``text <-> ids`` with a SentencePiece ``.model`` trained by :func:`train_subwords` (pad 0, BOS 2, EOS 3)."""

    def __init__(self, model_path: str | Path) -> None:
        import sentencepiece

        if not Path(model_path).is_file():
            raise SpeechkitError(f"subword model {model_path}: no such file (train one with "
                                 "speechkit.text.subwords.train_subwords)")
        self.processor = sentencepiece.SentencePieceProcessor(model_file=str(model_path))
        specials = (self.processor.pad_id(), self.processor.unk_id(), self.processor.bos_id(), self.processor.eos_id())
        if specials != (PAD, UNK, BOS, EOS):
            raise SpeechkitError(f"subword model {model_path}: pad/unk/bos/eos ids are {specials}, expected "
                                 f"{(PAD, UNK, BOS, EOS)} (train it with speechkit.text.subwords.train_subwords)")

    def __len__(self) -> int:
        return self.processor.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Piece ids of ``text`` (no BOS / EOS)."""
        return list(self.processor.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids; pad, BOS and EOS are left out."""
        return self.processor.decode([i for i in ids if i not in (PAD, BOS, EOS)])
