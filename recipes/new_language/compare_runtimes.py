"""The new-language model where users run it: export it both ways, transcribe the same utterances with each client.

Usage: python recipes/new_language/compare_runtimes.py CHECKPOINT CUTS OUT_DIR [--limit N]

Writes OUT_DIR/hf (``speechkit export``), OUT_DIR/ct2_int8 and OUT_DIR/ct2_float32 (``--format ctranslate2``), then
transcribes the cuts with ``speechkit transcribe`` (the checkpoint), ``transformers.pipeline`` (hf, no language
given: the folder's default), ``ctranslate2.models.Whisper`` (int8 and float32, the prompt the folder records) and
faster-whisper (int8, ``language="ky"`` after registering the code, as the model card says; one greedy pass
at temperature 0 like the others, without its sampling fallback), as given and with the audio padded to 30 s of
silence first (:func:`speechkit.inference.runtimes.faster_whisper_transcribe`). Prints the
transcripts side by side and each client's WER; writes OUT_DIR/runtimes.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lhotse import load_manifest_lazy

from speechkit.drivers.export import export_checkpoint
from speechkit.inference import runtimes
from speechkit.inference.transcribe import transcribe
from speechkit.metrics.wer import score_wer
from speechkit.models.whisper_seq2seq import metric_language


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("cuts")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="first N cuts only")
    args = parser.parse_args(argv)
    out: Path = args.out_dir
    cuts = list(load_manifest_lazy(args.cuts))[: args.limit]
    audios = [cut.resample(runtimes.SAMPLE_RATE).load_audio()[0] for cut in cuts]
    refs = [" ".join(s.text for s in cut.supervisions) for cut in cuts]
    language = cuts[0].supervisions[0].language

    hf = export_checkpoint(args.checkpoint, out / "hf")
    ct2 = {q: export_checkpoint(args.checkpoint, out / f"ct2_{q}", format="ctranslate2", quantization=q)
           for q in ("int8", "float32")}
    manifest = out / "cuts.jsonl.gz"
    from lhotse import CutSet

    CutSet.from_cuts(cuts).to_file(manifest)
    transcribe(args.checkpoint, [str(manifest)], out=str(out / "speechkit.jsonl"), progress=False)
    by_id = {row["id"]: row["text"] for row in map(json.loads, (out / "speechkit.jsonl").read_text().splitlines())}
    model = runtimes.faster_whisper_model(ct2["int8"], compute_type="int8")
    hyps = {
        "speechkit transcribe": [by_id.get(cut.id, "") for cut in cuts],
        "pipeline (hf)": runtimes.pipeline_transcribe(hf, audios),
        "ctranslate2 int8": runtimes.ctranslate2_transcribe(ct2["int8"], audios, compute_type="int8"),
        "ctranslate2 float32": runtimes.ctranslate2_transcribe(ct2["float32"], audios, compute_type="float32"),
        "faster-whisper int8": runtimes.faster_whisper_transcribe(model, audios, language=language, temperature=0.0),
        "faster-whisper int8, audio padded": runtimes.faster_whisper_transcribe(
            model, audios, language=language, temperature=0.0, pad_audio_to_30s=True),
    }
    wer = {name: score_wer(refs, texts, language=metric_language(language)).wer for name, texts in hyps.items()}
    print("| reference | " + " | ".join(hyps) + " |")
    print("|---" * (len(hyps) + 1) + "|")
    for i, ref in enumerate(refs):
        print(f"| {ref} | " + " | ".join(texts[i] for texts in hyps.values()) + " |")
    print("| **WER** | " + " | ".join(f"{100 * w:.2f} %" for w in wer.values()) + " |")
    (out / "runtimes.json").write_text(json.dumps({"refs": refs, "hyps": hyps, "wer": wer}, ensure_ascii=False,
                                                  indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
