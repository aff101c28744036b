"""Reading the files the evaluation scripts score: Kaldi ``text`` files, ``predictions.jsonl``, TREC run and qrels.

Every reader names the file and line of a bad row; ids present in one file and missing from the other are an
error naming them (never a silent skip). Blank lines carry no record and are skipped. Files are UTF-8: a
byte-order mark is stripped (never part of the first id); other bytes are an error naming the line and byte offset.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from speechkit.errors import SpeechkitError

PREDICTION_KEYS = ("id", "ref", "hyp")
_NEWLINE = re.compile(r"\r\n|\r|\n")  # what open() in text mode splits on (not U+2028 or form feed, as splitlines)


def read_utf8(path: str | Path) -> str:
    """The text of a UTF-8 file without its byte-order mark.

    Raises:
        SpeechkitError: no such file, or bytes that are not UTF-8 (naming the line and the byte offset).
    """
    path = Path(path)
    if not path.is_file():
        raise SpeechkitError(f"{path}: no such file")
    data = path.read_bytes()
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = start + error.start
        line = data.count(b"\n", 0, offset) + 1
        utf16 = data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
        hint = "; it starts with a UTF-16 byte-order mark" if utf16 else ""
        raise SpeechkitError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[offset]:02x} at byte offset {offset}: {error.reason}{hint}); "
            "expected UTF-8"
        ) from None


def _lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its newline) of every non-blank line; a byte-order mark is not part of a line.

    A BOM at the start of a later line (files joined with ``cat``) is removed too: it is never part of an id.
    """
    for number, line in enumerate(_NEWLINE.split(read_utf8(path)), start=1):
        line = line.lstrip("\ufeff")
        if line.strip():
            yield number, line


def _add_unique(records: dict, key: str, value: object, path: str | Path, number: int, what: str = "id") -> None:
    if key in records:
        raise SpeechkitError(f"{path}:{number}: duplicate {what} {key!r}")
    records[key] = value


def read_kaldi_text(path: str | Path) -> dict[str, str]:
    """Read ``utt_id text`` lines (Kaldi ``text``); a line with only an id is an empty transcript.

    Returns:
        ``{utt_id: text}`` in file order.
    """
    texts: dict[str, str] = {}
    for number, line in _lines(path):
        utt_id, *text = line.split(maxsplit=1)
        _add_unique(texts, utt_id, text[0].strip() if text else "", path, number)
    return texts


@dataclass(frozen=True)
class Prediction:
    """One line of ``predictions.jsonl``: ``{"id", "ref", "hyp"}`` plus any other fields (``system``, ...)."""

    id: str
    ref: str
    hyp: str
    extra: dict[str, object] = field(default_factory=dict)


def read_predictions(path: str | Path) -> list[Prediction]:
    """Read ``predictions.jsonl``: one JSON object per line with string ``id``, ``ref`` and ``hyp``.

    A line of ``speechkit transcribe`` / ``speechkit predict`` (``text`` instead of ``hyp``, ``ref`` where the
    manifest had one) is read with ``text`` as the hypothesis.
    """
    seen: dict[str, None] = {}
    predictions = []
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise SpeechkitError(f"{path}:{number}: not a JSON object ({error.msg})") from None
        if not isinstance(record, dict):
            raise SpeechkitError(f"{path}:{number}: expected a JSON object with keys id, ref, hyp")
        if "hyp" not in record and isinstance(record.get("text"), str):  # a transcribe / predict row
            record = {**{k: v for k, v in record.items() if k != "text"}, "hyp": record["text"]}
        for key in PREDICTION_KEYS:
            if not isinstance(record.get(key), str):
                raise SpeechkitError(f"{path}:{number}: key {key!r} missing or not a string")
        _add_unique(seen, record["id"], None, path, number)
        extra = {key: value for key, value in record.items() if key not in PREDICTION_KEYS}
        predictions.append(Prediction(record["id"], record["ref"], record["hyp"], extra))
    return predictions


def check_same_ids(
    first: Mapping[str, object], second: Mapping[str, object], first_name: str, second_name: str
) -> None:
    """Raise ``SpeechkitError`` naming the ids present in one mapping and missing from the other."""
    sides = ((first, second, first_name, second_name), (second, first, second_name, first_name))
    for have, lack, have_name, lack_name in sides:
        missing = [key for key in have if key not in lack]
        if missing:
            shown = ", ".join(repr(key) for key in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise SpeechkitError(f"id {shown}{more} in {have_name} but missing from {lack_name}")


def pair_texts(
    refs: Mapping[str, str], hyps: Mapping[str, str], ref_name: str = "REF", hyp_name: str = "HYP"
) -> list[Prediction]:
    """Join references and hypotheses on their ids (reference order); every id must be in both."""
    check_same_ids(refs, hyps, ref_name, hyp_name)
    return [Prediction(utt_id, text, hyps[utt_id]) for utt_id, text in refs.items()]


def read_pairs(
    ref: str | Path | None = None, hyp: str | Path | None = None, predictions: str | Path | None = None
) -> list[Prediction]:
    """Read either ``ref`` + ``hyp`` Kaldi files or one ``predictions.jsonl``."""
    if predictions is not None:
        if ref is not None or hyp is not None:
            raise SpeechkitError("--predictions: give either --predictions or --ref and --hyp, not both")
        return read_predictions(predictions)
    if ref is None or hyp is None:
        raise SpeechkitError("--ref/--hyp: expected both files (or --predictions predictions.jsonl)")
    return pair_texts(read_kaldi_text(ref), read_kaldi_text(hyp), str(ref), str(hyp))


def read_trec_run(path: str | Path) -> dict[str, dict[str, float]]:
    """Read a TREC run (``qid Q0 docid rank score tag``) into ``{qid: {docid: score}}`` (ranking uses the score)."""
    run: dict[str, dict[str, float]] = {}
    for number, line in _lines(path):
        fields = line.split()
        if len(fields) != 6:
            expected = "expected 6 columns 'qid Q0 docid rank score tag'"
            raise SpeechkitError(f"{path}:{number}: {expected}, got {len(fields)}")
        try:
            score = float(fields[4])
        except ValueError:
            raise SpeechkitError(f"{path}:{number}: score {fields[4]!r} is not a number") from None
        if not math.isfinite(score):
            raise SpeechkitError(
                f"{path}:{number}: score {fields[4]!r} is not a finite number (a NaN or infinite score has no place in "
                "a ranking: the order would depend on the line order)"
            )
        what = f"docid for query {fields[0]!r}:"
        _add_unique(run.setdefault(fields[0], {}), fields[2], score, path, number, what)
    return run


def read_trec_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """Read TREC qrels (``qid 0 docid relevance``) into ``{qid: {docid: relevance}}``."""
    qrels: dict[str, dict[str, int]] = {}
    for number, line in _lines(path):
        fields = line.split()
        if len(fields) != 4:
            raise SpeechkitError(f"{path}:{number}: expected 4 columns 'qid 0 docid relevance', got {len(fields)}")
        try:
            relevance = int(fields[3])
        except ValueError:
            raise SpeechkitError(f"{path}:{number}: relevance {fields[3]!r} is not an integer") from None
        what = f"docid for query {fields[0]!r}:"
        _add_unique(qrels.setdefault(fields[0], {}), fields[2], relevance, path, number, what)
    return qrels
