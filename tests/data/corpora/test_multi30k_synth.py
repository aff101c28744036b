"""``multi30k_synth``: English captions synthesized, German/French/Czech translations on the supervision."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from speechkit.data.corpora import multi30k_synth
from speechkit.errors import SpeechkitError


def test_translations_are_the_aligned_lines(data_dir: Path, tmp_path: Path) -> None:
    source = data_dir / "multi30k"
    cuts = multi30k_synth.prepare(source, tmp_path, max_train=2, max_dev=1, max_test=1, speakers=2)
    assert {split: len(c) for split, c in cuts.items()} == {"train": 2, "dev": 1, "test": 1}
    for split, part in multi30k_synth.PARTS.items():
        lines = {
            lang: gzip.open(source / f"{part}.{lang}.gz", "rt").read().splitlines() for lang in ("en", "de", "fr", "cs")
        }
        for cut in cuts[split]:
            sup, line = cut.supervisions[0], cut.supervisions[0].custom["line"]
            assert cut.id == f"multi30k-{split}-{line:05d}" and sup.text == lines["en"][line].strip()
            assert {lang: sup.custom[lang] for lang in ("de", "fr", "cs")} == {
                lang: lines[lang][line] for lang in ("de", "fr", "cs")
            }


def test_missing_language_file(tmp_path: Path) -> None:
    for lang in ("en", "de", "fr"):
        with gzip.open(tmp_path / f"train.{lang}.gz", "wt") as file:
            file.write("a dog\n")
    with pytest.raises(SpeechkitError, match="train.cs.gz"):
        multi30k_synth.prepare(tmp_path, tmp_path / "out")
