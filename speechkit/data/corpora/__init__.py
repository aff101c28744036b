"""Corpus importers: ``speechkit prepare <corpus> <source> <out_dir> [--overwrite] [--skip-bad]
[--min-duration 0.1] [options]``.

Each importer is a module with ``prepare(source, out_dir, *, overwrite, skip_bad, min_duration, **options) ->
{split: CutSet}`` and ``add_arguments(parser)`` for its own options; ``CORPORA`` maps the corpus name to the
module, imported on use. Every importer checks each recording once (``checks.audio_problems``) and writes its
manifests atomically with absolute audio paths (``base.write_corpus``). Re-running the same command rewrites
the corpus it wrote; ``--overwrite`` is needed only to replace a different one.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from types import ModuleType
from typing import Sequence

from speechkit.data.corpora.base import add_common_arguments, manifest_path
from speechkit.errors import SpeechkitError

CORPORA: dict[str, str] = {
    "fsdd": "speechkit.data.corpora.fsdd",
    "synthetic": "speechkit.data.corpora.synthetic",
    "slurp_synth": "speechkit.data.corpora.slurp_synth",
    "multi30k_synth": "speechkit.data.corpora.multi30k_synth",
    "commonvoice": "speechkit.data.corpora.commonvoice",
    "librispeech": "speechkit.data.corpora.librispeech",
}

__all__ = ["CORPORA", "get_importer", "prepare", "main", "manifest_path"]


def get_importer(corpus: str) -> ModuleType:
    """The importer module of ``corpus``, or an error listing the known names."""
    if corpus not in CORPORA:
        raise SpeechkitError(f"unknown corpus {corpus!r}; known corpora: {', '.join(sorted(CORPORA))}")
    return importlib.import_module(CORPORA[corpus])


def prepare(corpus: str, source: str, out_dir: str, **options) -> dict:
    """Import ``corpus`` from ``source`` into manifests under ``out_dir``; returns ``{split: CutSet}``."""
    return get_importer(corpus).prepare(source, out_dir, **options)


def main(argv: Sequence[str] | None = None) -> int:
    """``speechkit prepare <corpus> <source> <out_dir> [options]``."""
    parser = argparse.ArgumentParser(prog="speechkit prepare", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="corpus", metavar="corpus", required=True)
    for name in CORPORA:
        sub = commands.add_parser(name, help=f"import {name}")
        sub.add_argument("source", help="the corpus folder (or text file, for synthesized corpora)")
        sub.add_argument("out_dir", help="where the manifests are written")
        add_common_arguments(sub)
        try:
            get_importer(name).add_arguments(sub)
        except ModuleNotFoundError:
            pass  # an importer still being written must not break the others
    argv = list(argv or [])
    if argv and not argv[0].startswith("-") and argv[0] not in CORPORA:
        raise SpeechkitError(f"unknown corpus {argv[0]!r}; known corpora: {', '.join(sorted(CORPORA))}")
    args = vars(parser.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    corpus, source, out_dir = args.pop("corpus"), args.pop("source"), args.pop("out_dir")
    cuts = prepare(corpus, source, out_dir, **args)
    for split, split_cuts in cuts.items():
        print(f"{split}: {len(split_cuts)} cuts -> {manifest_path(out_dir, 'cuts', split)}")
    return 0
