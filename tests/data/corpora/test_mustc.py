"""MuST-C importer on a fake en-de release: one cut per segment with the English transcript as text and the German
in custom["de"], the segment's audio exactly; misaligned files, a missing talk, a segment past its talk's end are
one-line errors."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechkit.data.corpora import get_importer
from speechkit.errors import SpeechkitError

RATE = 16000


def fake_mustc(root: Path, yaml_lines: list[str] | None = None, en_lines: int = 3) -> Path:
    """``root/en-de/data/dev``: two talks (2.0 s and 1.5 s), three segments."""
    split = root / "en-de" / "data" / "dev"
    (split / "wav").mkdir(parents=True)
    (split / "txt").mkdir()
    rng = np.random.default_rng(0)
    for name, seconds in (("ted_1", 2.0), ("ted_2", 1.5)):
        sf.write(split / "wav" / f"{name}.wav", (0.1 * rng.standard_normal(int(seconds * RATE))).astype(np.float32), RATE)
    yaml_lines = yaml_lines or [
        "- {duration: 0.8, offset: 0.1, rW: 3, uW: 0, speaker_id: spk.1, wav: ted_1.wav}",
        "- {duration: 0.9, offset: 1.0, rW: 4, uW: 0, speaker_id: spk.1, wav: ted_1.wav}",
        "- {duration: 1.2, offset: 0.2, rW: 2, uW: 0, speaker_id: spk.2, wav: ted_2.wav}",
    ]
    (split / "txt" / "dev.yaml").write_text("\n".join(yaml_lines) + "\n")
    (split / "txt" / "dev.en").write_text("\n".join(["Hello there.", "A second one.", "Thank you."][:en_lines]) + "\n")
    (split / "txt" / "dev.de").write_text("Hallo.\nEin zweiter.\nDanke.\n")
    return root


def test_one_cut_per_segment_with_english_text_and_translation(tmp_path):
    source = fake_mustc(tmp_path / "MUSTC")
    cuts = get_importer("mustc").prepare(source, tmp_path / "out", target_language="de")["dev"]
    assert [c.id for c in cuts] == ["ted_1-00000", "ted_1-00001", "ted_2-00000"]
    first = cuts[0]
    assert first.duration == pytest.approx(0.8) and first.start == pytest.approx(0.1)
    supervision = first.supervisions[0]
    assert supervision.text == "Hello there." and supervision.language == "en"
    assert supervision.custom == {"de": "Hallo.", "talk": "ted_1"}
    full, _ = sf.read(source / "en-de/data/dev/wav/ted_1.wav", dtype="float32")
    np.testing.assert_allclose(first.load_audio()[0], full[int(0.1 * RATE):int(0.9 * RATE)], atol=1e-4)
    assert (tmp_path / "out" / "cuts_dev.jsonl.gz").is_file()


def test_bad_releases_are_one_line_errors(tmp_path):
    importer = get_importer("mustc")
    with pytest.raises(SpeechkitError, match=r"not aligned: \{'dev.yaml': 3, 'dev.en': 2, 'dev.de': 3\}"):
        importer.prepare(fake_mustc(tmp_path / "a", en_lines=2), tmp_path / "out_a")
    late = ["- {duration: 1.0, offset: 1.5, speaker_id: s, wav: ted_1.wav}"] * 3
    with pytest.raises(SpeechkitError, match=r"segment 1 ends at 2.50 s, past the end of ted_1.wav \(2.00 s\)"):
        importer.prepare(fake_mustc(tmp_path / "b", late), tmp_path / "out_b")
    missing = ["- {duration: 0.5, offset: 0.0, speaker_id: s, wav: ted_9.wav}"] * 3
    with pytest.raises(SpeechkitError, match=r"segment 1 names .*ted_9.wav, which does not exist"):
        importer.prepare(fake_mustc(tmp_path / "c", missing), tmp_path / "out_c")
    with pytest.raises(SpeechkitError, match="is not MuST-C en-fr"):
        importer.prepare(fake_mustc(tmp_path / "d"), tmp_path / "out_d", target_language="fr")
