"""An offline spoken-query retrieval set built from Multi30k captions: ``speechkit bench squtr-set``.

SQuTR (Li et al., 2026, section 3.1) speaks the queries of NQ, HotpotQA and FiQA; none of them is here offline. This
builds a set of the same shape from Multi30k's English captions: every caption of the ``val`` and
``test_2016_flickr`` parts is a document (2,014), and a seeded sample of them gives one query each, judged relevant
to its source caption only (binary qrels, as NQ's). Queries are what a person would say to find the picture:

* ``keyword``: 3-5 content words of the caption, in order ("boston terrier running grass fence");
* ``paraphrase``: the same with every word that has one swapped for its synonym from a small fixed lexicon
  ("dog" -> "puppy", "man" -> "guy"), so that exact-term matching (BM25) loses what a dense retriever can recover.

The first :data:`DISTRACTOR_LINES` captions of the ``train`` part are added as distractor documents (12,014
documents in all): captions are near-duplicates of each other often enough ("a man in a blue shirt ...") that the
task is not trivial for either retriever. :func:`make_queries` of the rest of ``train`` (disjoint from every
document) is what the end-to-end retriever is trained on.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from speechkit.bench.beir import RetrievalSet, write_beir
from speechkit.data.corpora.multi30k_synth import read_part
from speechkit.errors import SpeechkitError

STOPWORDS = frozenset(
    "a an the is are was were be been being am of in on at to for from with by and or but as into onto over under "
    "while near next through its it his her their there this that these those some one two three four five several "
    "other another each who which what where while has have having does do doing up down out off about front behind "
    "very just while like than then them they he she we you i my our your".split())
SYNONYMS: dict[str, str] = {
    "man": "guy", "men": "guys", "woman": "lady", "women": "ladies", "dog": "puppy", "dogs": "puppies",
    "child": "kid", "children": "kids", "boy": "lad", "girl": "lass", "people": "folks", "person": "individual",
    "shirt": "top", "street": "road", "running": "jogging", "runs": "jogs", "little": "small", "large": "big",
    "big": "large", "small": "little", "sitting": "seated", "walking": "strolling", "walks": "strolls",
    "jumping": "leaping", "jumps": "leaps", "playing": "having fun with", "plays": "has fun with",
    "looking": "gazing", "smiling": "grinning", "water": "lake", "ocean": "sea", "building": "house",
    "picture": "photo", "camera": "lens", "bike": "bicycle", "bicycle": "bike", "car": "vehicle", "hat": "cap",
    "wearing": "dressed in", "holding": "carrying", "crowd": "group", "road": "street", "grass": "lawn",
    "guitar": "instrument", "ball": "toy", "young": "youthful", "old": "elderly", "standing": "upright",
    "talking": "chatting", "food": "meal", "dress": "gown", "jacket": "coat", "city": "town", "rock": "stone",
    "beach": "shore", "field": "meadow", "snow": "powder", "stage": "platform", "baby": "infant",
}
QueryKind = Literal["keyword", "paraphrase"]
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
MULTI30K_DOCUMENT_PARTS = ("val", "test_2016_flickr")
DISTRACTOR_LINES = 10_000  # train captions 0-9,999 are distractor documents; the rest train the end-to-end model


@dataclass(frozen=True)
class GeneratedQuery:
    """A query made from one sentence: its text, kind and the index of the source sentence."""

    text: str
    kind: QueryKind
    source: int


def content_words(sentence: str) -> list[str]:
    """Lower-cased words of ``sentence`` that are not stopwords, in order."""
    return [word for word in _WORD.findall(sentence.lower()) if word not in STOPWORDS]


def query_from(sentence: str, kind: QueryKind, rng: random.Random, min_words: int = 3,
               max_words: int = 5) -> str | None:
    """A keyword or paraphrase query of ``sentence`` (see the module docstring); ``None`` if it has fewer than
    ``min_words`` content words, or (``paraphrase``) none with a synonym."""
    words = list(dict.fromkeys(content_words(sentence)))  # first occurrence of each word, in order
    if len(words) < min_words:
        return None
    count = min(len(words), rng.randint(min_words, max_words))
    kept = sorted(rng.sample(range(len(words)), count))
    chosen = [words[i] for i in kept]
    if kind == "keyword":
        return " ".join(chosen)
    swappable = [i for i, word in enumerate(chosen) if word in SYNONYMS]
    if not swappable:
        swappable = [i for i, word in enumerate(words) if word in SYNONYMS]
        if not swappable:
            return None
        chosen = [words[i] for i in sorted(set(kept) | {swappable[0]})]
        swappable = [i for i, word in enumerate(chosen) if word in SYNONYMS]
    return " ".join(SYNONYMS[word] if i in swappable else word for i, word in enumerate(chosen))


def make_queries(sentences: Sequence[str], count: int, seed: int) -> list[GeneratedQuery]:
    """``count`` distinct queries from a seeded sample of ``sentences``, alternating keyword and paraphrase.

    Raises:
        SpeechkitError: fewer usable sentences than ``count``.
    """
    rng = random.Random(seed)
    order = list(range(len(sentences)))
    rng.shuffle(order)
    queries: list[GeneratedQuery] = []
    seen: set[str] = set()
    for index in order:
        if len(queries) == count:
            break
        kind: QueryKind = "keyword" if len(queries) % 2 == 0 else "paraphrase"
        text = query_from(sentences[index], kind, rng)
        if text is None or text in seen:
            continue
        seen.add(text)
        queries.append(GeneratedQuery(text, kind, index))
    if len(queries) < count:
        raise SpeechkitError(f"only {len(queries)} distinct queries could be made from {len(sentences)} sentences; "
                             f"asked for {count}")
    return queries


def multi30k_sentences(multi30k_dir: str | Path, parts: Sequence[str]) -> list[tuple[str, str]]:
    """``(id, English sentence)`` of the given Multi30k parts (``m30k-<part>-<line>``), empty lines left out."""
    folder = Path(multi30k_dir)
    if not folder.is_dir():
        raise SpeechkitError(f"{folder}: no such folder (expected Multi30k: {{train,val,test_2016_flickr}}.en.gz)")
    rows = []
    for part in parts:
        lines = read_part(folder, part)["en"]
        rows += [(f"m30k-{part}-{i:05d}", line.strip()) for i, line in enumerate(lines) if line.strip()]
    return rows


def build_offline_set(multi30k_dir: str | Path, num_queries: int = 300, seed: int = 0,
                      distractors: int = DISTRACTOR_LINES) -> RetrievalSet:
    """Documents: the captions of Multi30k val + test_2016_flickr (queries: :func:`make_queries` of them) and the
    first ``distractors`` train captions."""
    documents = multi30k_sentences(multi30k_dir, MULTI30K_DOCUMENT_PARTS)
    queries = make_queries([text for _, text in documents], num_queries, seed)
    extra = multi30k_sentences(multi30k_dir, ["train"])[:distractors] if distractors else []
    return RetrievalSet(
        corpus=dict(documents + extra),
        queries={f"q{i:04d}-{q.kind}": q.text for i, q in enumerate(queries)},
        qrels={f"q{i:04d}-{q.kind}": {documents[q.source][0]: 1} for i, q in enumerate(queries)},
        name=f"multi30k-squtr-{num_queries}",
    )


def training_sentences(multi30k_dir: str | Path, distractors: int = DISTRACTOR_LINES) -> list[str]:
    """The train captions that are no document of the offline set (for the end-to-end retriever)."""
    return [text for _, text in multi30k_sentences(multi30k_dir, ["train"])[distractors:]]


def squtr_set(multi30k: str, out_dir: str, num_queries: int = 300, seed: int = 0,
              distractors: int = DISTRACTOR_LINES) -> None:
    """Build the offline SQuTR-style retrieval set from Multi30k captions, in BEIR format.

    Args:
        multi30k: the Multi30k folder (``{train,val,test_2016_flickr}.{en,de,fr,cs}.gz``).
        out_dir: where ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/test.tsv`` are written.
        num_queries: queries to make (one per sampled caption).
        seed: the sample and the query words.
        distractors: Multi30k train captions added as documents no query is about.

    Examples:
        speechkit bench squtr-set $SPEECHKIT_DATA/multi30k exp/squtr/set --num_queries 300
    """
    data = build_offline_set(multi30k, num_queries, seed, distractors)
    write_beir(data, out_dir)
    print(f"{out_dir}: {len(data.corpus)} documents, {len(data.queries)} queries")
