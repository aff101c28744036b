"""Corpus importers: ``speechkit prepare <corpus> <source> <out_dir> [--overwrite] [--skip_bad]
[--min_duration 0.1] [options]``.

Each importer is a module with a typed ``prepare(source, out_dir, [options], *, overwrite, skip_bad, min_duration)
-> {split: CutSet}``; its signature and docstring are the options and help of ``speechkit prepare <corpus>``
(``COMMANDS``). ``CORPORA`` maps the corpus name to the module, imported on use. Every importer checks each
recording once (``checks.audio_problems``) and writes its manifests atomically with absolute audio paths
(``base.write_corpus``). Re-running the same command rewrites the corpus it wrote; ``--overwrite`` is needed only
to replace a different one.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from speechkit.data.corpora.base import manifest_path
from speechkit.errors import SpeechkitError

CORPORA: dict[str, str] = {
    "fsdd": "speechkit.data.corpora.fsdd",
    "synthetic": "speechkit.data.corpora.synthetic",
    "synthetic_av": "speechkit.data.corpora.synthetic_av",
    "slurp_synth": "speechkit.data.corpora.slurp_synth",
    "multi30k_synth": "speechkit.data.corpora.multi30k_synth",
    "commonvoice": "speechkit.data.corpora.commonvoice",
    "librispeech": "speechkit.data.corpora.librispeech",
    "mustc": "speechkit.data.corpora.mustc",
    "scenes_synth": "speechkit.data.corpora.scenes_synth",
    "clotho": "speechkit.data.corpora.clotho",
    "audiocaps": "speechkit.data.corpora.audiocaps",
    "musan": "speechkit.data.corpora.musan",
    "lrs3": "speechkit.data.corpora.lrs3",
    "spoken_qa_synth": "speechkit.data.corpora.spoken_qa_synth",
}

# corpus -> its typed importer, the sub-commands of ``speechkit prepare``
COMMANDS: dict[str, str] = {name: f"{module}:prepare" for name, module in CORPORA.items()}

__all__ = ["CORPORA", "COMMANDS", "get_importer", "prepare", "print_manifests", "manifest_path"]


def get_importer(corpus: str) -> ModuleType:
    """The importer module of ``corpus``, or an error listing the known names."""
    if corpus not in CORPORA:
        raise SpeechkitError(f"unknown corpus {corpus!r}; known corpora: {', '.join(sorted(CORPORA))}")
    return importlib.import_module(CORPORA[corpus])


def prepare(corpus: str, source: str, out_dir: str, **options) -> dict:
    """Import ``corpus`` from ``source`` into manifests under ``out_dir``; returns ``{split: CutSet}``."""
    return get_importer(corpus).prepare(source, out_dir, **options)


def print_manifests(cuts: dict, arguments: dict) -> None:
    """What ``speechkit prepare`` prints after an import: each split's cuts and its cut manifest."""
    for split, split_cuts in cuts.items():
        print(f"{split}: {len(split_cuts)} cuts -> {manifest_path(arguments['out_dir'], 'cuts', split)}")
