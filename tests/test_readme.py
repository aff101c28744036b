"""The README's Python quick-start runs as written, on a tiny random multilingual Whisper instead of whisper base
and a tone corpus labelled ``ky`` instead of the synthesized Kyrgyz manifests (two steps instead of forty)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from speechkit.testing import tiny_whisper_dir, tone_corpus

REPO = Path(__file__).resolve().parents[1]


def quick_start() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python quick-start"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.usefixtures("one_thread")
def test_the_python_quick_start_fine_tunes_and_transcribes(tmp_path, monkeypatch):
    code = quick_start()
    model = tiny_whisper_dir(tmp_path / "tiny", multilingual=True)
    for split in ("train", "dev"):
        tone_corpus(tmp_path / "exp" / "nl" / "manifests", split, num_cuts=12, language="ky")
    tone_corpus(tmp_path / "my_recordings", "other", num_cuts=2)
    for real, tiny in (('"ct2:base"', repr(str(model))), ("max_steps=40, val_check_interval=40", "max_steps=2, val_check_interval=2")):
        assert real in code, f"the quick-start no longer says {real}: update this test"
        code = code.replace(real, tiny)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md quick-start", "exec"), {})
    rows = [json.loads(line) for line in (tmp_path / "exp/nl/transcripts.jsonl").read_text().splitlines()]
    assert sorted(row["id"] for row in rows) == ["audio/other_0000", "audio/other_0001"]
    assert all(row["language"] == "ky" for row in rows)
