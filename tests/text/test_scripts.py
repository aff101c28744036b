"""Script detection for the normalizer when no language is given (issue 11, defect 10)."""

from speechkit.metrics.wer import score_wer
from speechkit.text.scripts import letter_script, letter_scripts, normalizer_for_texts


def test_letter_scripts():
    counts = letter_scripts(["Hello naïve Ŧ ʼ", "مرحبا", "नमस्ते", "日本 ひら", "Привет", "ωμέγα", "ｆｕｌｌ"])
    assert counts["LATIN"] == 15  # Latin-1, Extended-A and fullwidth Latin; the modifier letter ʼ counts for none
    assert counts["ARABIC"] == 5 and counts["CYRILLIC"] == 6 and counts["GREEK"] == 5
    assert counts["DEVANAGARI"] == 4 and counts["CJK"] == 2 and counts["HIRAGANA"] == 2
    assert letter_script("ۍ") == "ARABIC" and letter_script("ﻻ") == "ARABIC"  # Pashto letter, presentation form


def test_choice_by_script():
    latin = normalizer_for_texts(["I won't go", "colour"])
    assert latin.normalizer.name == "whisper_en" and latin.language == "en" and "Latin 100 %" in latin.reason
    arabic = normalizer_for_texts(["زه ئې وایم", "hello"])
    assert arabic.normalizer.name == "basic[arabic script]" and arabic.language == "mul"
    assert arabic.normalizer("زه ئې وایم") == "زه ئې وایم"  # the hamza letter is kept, not decomposed to ي
    assert normalizer_for_texts(["Привет, мир!"]).normalizer.name == "basic[mul]"
    assert normalizer_for_texts(["Привет"], "none").normalizer.name == "none"  # an explicit kind is honoured


def test_score_wer_without_language_never_uses_english_on_arabic():
    assert score_wer(["زه ئې"], ["زه يې"], language="en").wer == 0.0  # the English normalizer merges ئ and ي
    report = score_wer(["زه ئې"], ["زه يې"])
    assert report.normalizer == "basic[arabic script]" and report.wer == 0.5
    assert score_wer(["hello, world"], ["Hello world"]).normalizer == "whisper_en"
