"""``speechkit evaluate wer|bleu|recall`` (also ``tools/evaluate_{wer,bleu,recall}.py``): :func:`wer`, :func:`bleu` and
:func:`recall`, whose signatures and docstrings are the options and help of the three sub-commands.

Each prints a table and, with ``--json OUT``, writes the numbers (rates as fractions, not percent; BLEU and chrF on
sacrebleu's 0-100 scale; undefined values as ``null``). Choices made for the user (the normalizer when ``--language``
is not given, the treatment of empty references) are stated on stderr; errors are one line naming the file.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from speechkit.errors import SpeechkitError, os_error_message
from speechkit.metrics.analysis import ErrorAnalysis, analyze_errors
from speechkit.metrics.bleu import EmptyRefs, empty_reference_indices, score_bleu
from speechkit.metrics.io import Prediction, read_pairs, read_trec_qrels, read_trec_run
from speechkit.metrics.retrieval import retrieval_metrics
from speechkit.metrics.wer import WERReport, score_wer
from speechkit.text.normalizers import Normalizer, NormalizerKind, get_normalizer
from speechkit.text.scripts import normalizer_for_texts

GROUP_FIELDS = ("system", "condition")


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    return value


def write_json(data: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_clean(data), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as error:
        raise SpeechkitError(f"--json {path}: cannot write it ({os_error_message(error) or error})") from error


def note(metric: str, message: str) -> None:
    """One line on stderr about a choice made for the user (the table itself goes to stdout)."""
    print(f"speechkit evaluate {metric}: note: {message}", file=sys.stderr)


def _percent(value: float) -> str:
    return f"{100 * value:.2f}" if math.isfinite(value) else "n/a"


def format_wer_table(report: WERReport) -> str:
    """Raw and normalized columns side by side."""
    rows = [
        ("WER %", _percent(report.wer_raw), _percent(report.wer)),
        ("CER %", _percent(report.cer_raw), _percent(report.cer)),
    ]
    for name in ("substitutions", "deletions", "insertions", "ref_len"):
        label = name.replace("ref_len", "ref words")
        rows.append((label, str(getattr(report.words_raw, name)), str(getattr(report.words, name))))
    rows.append(("empty refs", str(report.empty_refs_raw), str(report.empty_refs)))
    lines = [f"utterances: {report.utterances}   normalizer: {report.normalizer}"]
    lines.append(f"{'':<14}{'raw':>12}{'normalized':>12}")
    return "\n".join(lines + [f"{name:<14}{raw:>12}{norm:>12}" for name, raw, norm in rows])


def _groups(predictions: Sequence[Prediction]) -> dict[str, list[Prediction]]:
    """Predictions by their ``system`` / ``condition`` fields (empty when no prediction has either)."""
    groups: dict[str, list[Prediction]] = {}
    if not any(field in p.extra for p in predictions for field in GROUP_FIELDS):
        return groups
    for prediction in predictions:
        label = "/".join(str(prediction.extra[f]) for f in GROUP_FIELDS if f in prediction.extra) or "(none)"
        groups.setdefault(label, []).append(prediction)
    return groups


def _print_analysis(groups: dict[str, WERReport], details: dict[str, Any]) -> None:
    for label, group in groups.items():
        print(f"  {label}: WER {_percent(group.wer_raw)} raw / {_percent(group.wer)} normalized ({group.utterances} utts)")
    top = ", ".join(f"{ref} -> {hyp}: {count}" for ref, hyp, count in details["top_substitutions"][:5])
    print(f"top substitutions (ref -> hyp: count): {top}")
    print(
        f"suffix confusions: {details['suffix_confusions']}   insertion rate: {_percent(details['insertion_rate'])} %"
        f"   repetition rate: {_percent(details['repetition_rate'])} %"
        f"   looping utterances: {details['looping_utterances']}"
    )


def _plot_wer(path: str, report: WERReport, groups: dict[str, WERReport], analysis: ErrorAnalysis) -> None:
    from speechkit.metrics.plots import plot_wer

    classes = {
        "substitutions": report.words.substitutions,
        "deletions": report.words.deletions,
        "insertions": report.words.insertions,
        "suffix conf.": sum(analysis.suffixes.values()),
        "repeated ins.": analysis.repeated_insertions,
    }
    bars = {label: group.to_dict() for label, group in groups.items()} or {"all": report.to_dict()}
    print(f"plot: {plot_wer(bars, path, classes, title=f'WER ({report.normalizer})')}")


def choose_normalizer(language: str | None, kind: NormalizerKind, texts: Sequence[str]) -> tuple[Normalizer, str]:
    """The normalizer and the language code for error analysis; without ``--language``, chosen by script and stated."""
    if language is not None:
        return get_normalizer(language, kind), language
    choice = normalizer_for_texts(texts, kind)
    note("wer", f"{choice.reason}; give --language to choose")
    return choice.normalizer, choice.language


def _finish(result: dict[str, Any], json_out: Optional[str]) -> None:
    if json_out:
        write_json(result, json_out)
        print(f"json: {json_out}")


def wer(
    *,
    ref: Optional[str] = None,
    hyp: Optional[str] = None,
    predictions: Optional[str] = None,
    language: Optional[str] = None,
    normalizer: NormalizerKind = "auto",
    plot: Optional[str] = None,
    json: Optional[str] = None,
) -> None:
    """WER/CER, raw and normalized, with error analysis.

    Prints the table (raw and normalized side by side), the WER per ``system`` / ``condition`` when the predictions
    carry those fields, the top substitutions and suffix confusions, repetition and looping rates.

    Args:
        ref: reference file, ``utt_id text`` per line (Kaldi style).
        hyp: hypothesis file, ``utt_id text`` per line.
        predictions: ``predictions.jsonl`` with ``{"id", "ref", "hyp"}`` per line (instead of ``--ref`` / ``--hyp``).
        language: language code choosing the normalizer (default: from the text's script, stated on stderr: Latin
            -> English, Arabic script -> basic with Arabic-script rules, any other script -> basic).
        normalizer: the normalizer kind (``auto``: by language).
        plot: write a PNG: WER by system/condition (predictions fields) and error classes.
        json: write the numbers to this JSON file.

    Examples:
        speechkit evaluate wer --predictions exp/fsdd/predictions.jsonl --language en --json exp/fsdd/wer.json
        speechkit evaluate wer --ref ref.txt --hyp hyp.txt --language ps --plot wer.png
    """
    pairs = read_pairs(ref, hyp, predictions)
    refs, hyps = [p.ref for p in pairs], [p.hyp for p in pairs]
    normalize, code = choose_normalizer(language, normalizer, [*refs, *hyps])
    report = score_wer(refs, hyps, code, normalize)
    analysis = analyze_errors([normalize(text) for text in refs], [normalize(text) for text in hyps], code)
    groups = {
        label: score_wer([p.ref for p in members], [p.hyp for p in members], code, normalize)
        for label, members in _groups(pairs).items()
    }
    print(format_wer_table(report))
    details = analysis.to_dict(top=10)
    _print_analysis(groups, details)
    if plot:
        _plot_wer(plot, report, groups, analysis)
    _finish(report.to_dict() | {"analysis": details, "groups": {label: g.to_dict() for label, g in groups.items()}},
            json)


def bleu(
    *,
    ref: Optional[str] = None,
    hyp: Optional[str] = None,
    predictions: Optional[str] = None,
    empty_refs: EmptyRefs = "keep",
    json: Optional[str] = None,
) -> None:
    """sacrebleu BLEU and chrF, with their signatures.

    Args:
        ref: reference file, ``utt_id text`` per line (Kaldi style).
        hyp: hypothesis file, ``utt_id text`` per line.
        predictions: ``predictions.jsonl`` with ``{"id", "ref", "hyp"}`` per line (instead of ``--ref`` / ``--hyp``).
        empty_refs: segments with an empty reference: ``keep`` (sacrebleu: they lower BLEU, chrF ignores them) or
            ``drop`` them; their number is reported either way.
        json: write the numbers to this JSON file.

    Examples:
        speechkit evaluate bleu --predictions exp/st/predictions.jsonl --json exp/st/bleu.json
        speechkit evaluate bleu --ref ref.de --hyp hyp.de --empty_refs drop
    """
    pairs = read_pairs(ref, hyp, predictions)
    refs = [p.ref for p in pairs]
    result = score_bleu(refs, [p.hyp for p in pairs], empty_refs=empty_refs)
    empty_ids = [pairs[index].id for index in empty_reference_indices(refs)]
    segments = f"segments: {result['segments']}"
    if empty_ids:
        shown = ", ".join(empty_ids[:5]) + (f" and {len(empty_ids) - 5} more" if len(empty_ids) > 5 else "")
        treatment = result["empty_refs_treatment"]
        segments += f"   empty references: {len(empty_ids)} ({treatment})"
        note("bleu", f"{len(empty_ids)} of {result['segments']} references are empty ({shown}); {treatment}")
    print(f"{segments}\nBLEU  {result['bleu']:.2f}   {result['signature']}")
    print(f"chrF  {result['chrf']:.2f}   {result['chrf_signature']}\n{result['bleu_details']}")
    _finish(result | {"empty_ref_ids": empty_ids}, json)


def recall(
    *,
    run: str,
    qrels: str,
    k: list[int] = [1, 5, 10],  # noqa: B006 - jsonargparse shows the literal default
    plot: Optional[str] = None,
    json: Optional[str] = None,
) -> None:
    """recall@k, hit@k, map@10, ndcg@10 and mrr@10 of a TREC run against TREC qrels.

    Args:
        run: TREC run: ``qid Q0 docid rank score tag`` per line.
        qrels: TREC qrels: ``qid 0 docid relevance`` per line.
        k: recall / hit cut-offs.
        plot: write a PNG bar chart of the metrics.
        json: write the numbers to this JSON file.

    Examples:
        speechkit evaluate recall --run exp/retrieval/run.txt --qrels data/qrels.txt --k 1 5 10 --json recall.json
    """
    result = retrieval_metrics(read_trec_run(run), read_trec_qrels(qrels), ks=k, cutoff=10)
    print(f"queries: {result['queries']}   without a relevant item (not scored): {result['queries_without_relevant']}")
    for name, value in result.items():
        if "@" in name:
            print(f"{name:<12}{value:.4f}")
    if plot:
        from speechkit.metrics.plots import plot_metrics

        print(f"plot: {plot_metrics({k: v for k, v in result.items() if '@' in k}, plot, 'retrieval')}")
    _finish(result, json)
