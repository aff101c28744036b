"""``slurp_synth``: SLURP sentences with synthesized speech carry intent, scenario and action."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechkit.data.corpora import slurp_synth
from speechkit.errors import SpeechkitError


def test_fields_follow_the_source_records(data_dir: Path, tmp_path: Path) -> None:
    cuts = slurp_synth.prepare(data_dir / "slurp", tmp_path, max_utterances=6, speakers=2, seed=1)
    records = {}
    for name in ("devel.jsonl", "test.jsonl"):
        for line in (data_dir / "slurp" / name).read_text().splitlines():
            record = json.loads(line)
            records[f"slurp-{record['slurp_id']}"] = (name, record)
    assert sum(len(c) for c in cuts.values()) == 6 and set(cuts) == {"train", "dev", "test"}
    for split, split_cuts in cuts.items():
        for cut in split_cuts:
            name, record = records[cut.id]
            sup = cut.supervisions[0]
            assert (name == "test.jsonl") == (split == "test")
            assert sup.text == record["sentence"] and sup.language == "en" and cut.duration > 0.3
            assert {k: sup.custom[k] for k in ("intent", "scenario", "action")} == {
                k: record[k] for k in ("intent", "scenario", "action")
            }


def test_not_slurp(tmp_path: Path) -> None:
    (tmp_path / "devel.jsonl").write_text('{"sentence": "hi"}\n')
    with pytest.raises(SpeechkitError, match="test.jsonl"):
        slurp_synth.prepare(tmp_path, tmp_path / "out")
    (tmp_path / "test.jsonl").write_text('{"sentence": "hi"}\n')
    with pytest.raises(SpeechkitError, match=r"devel.jsonl:1 lacks key\(s\) \['slurp_id', 'intent'"):
        slurp_synth.prepare(tmp_path, tmp_path / "out")
