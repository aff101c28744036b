
import pytest
from lhotse import CutSet, Recording, SupervisionSegment

from speechkit.data import load_cuts
from speechkit.distill.self_data import accept_rewrites, same_normalized
from speechkit.drivers.self_data import ORIGINAL_TEXT, self_data
from speechkit.errors import SpeechkitError
from speechkit.metrics.wer import resolve_normalizer

NORMALIZE = resolve_normalizer("en", "auto")


def test_rewrites_are_kept_only_when_verified():
    targets = accept_rewrites(["seven", "two", "nine", "four"], ["Seven.", "Too.", "", "4"],
                              same_normalized(NORMALIZE))
    assert targets.texts == ["Seven.", "two", "nine", "4"]
    assert targets.accepted == [True, False, False, True] and targets.acceptance == 0.5
    with pytest.raises(SpeechkitError, match="rewrites"):
        accept_rewrites(["a"], [], same_normalized(NORMALIZE))


@pytest.mark.slow
def test_self_data_rewrites_fsdd_transcripts_with_whisper_tiny_en(fsdd_dir, tiny_en, tmp_path, one_thread):
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    cuts = []
    for digit in (3, 7, 8, 9):
        recording = Recording.from_file(fsdd_dir / f"{digit}_jackson_0.wav")
        cut = recording.to_cut()
        cut.supervisions = [SupervisionSegment(id=recording.id, recording_id=recording.id, start=0.0,
                                               duration=recording.duration, text=words[digit], language="en",
                                               custom={"digit": digit})]
        cuts.append(cut)
    manifest, out = tmp_path / "cuts.jsonl.gz", tmp_path / "self.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(manifest)
    summary = self_data("ct2:tiny.en", str(manifest), str(out), batch_size=4, max_new_tokens=8, progress=False)
    rewritten = list(load_cuts(str(out), "out"))
    assert summary["cuts"] == 4 and summary["rewritten"] >= 1
    kept = 0
    for original, cut in zip(cuts, rewritten):
        supervision = cut.supervisions[0]
        assert supervision.custom["digit"] == original.supervisions[0].custom["digit"]
        if ORIGINAL_TEXT in supervision.custom:  # a verified rewrite: same words after normalization
            assert NORMALIZE(supervision.text) == NORMALIZE(supervision.custom[ORIGINAL_TEXT])
            kept += 1
        else:
            assert supervision.text == original.supervisions[0].text
    assert kept == summary["rewritten"]
