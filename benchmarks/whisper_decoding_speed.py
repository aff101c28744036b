"""Decoding speed of one Whisper checkpoint: variable-length encoder input vs input padded to 30 s.

Loads a ``WhisperFinetune`` checkpoint once, decodes the same static test batches both ways (batched greedy, or
the checkpoint's beam size), alternating the two modes batch by batch so that machine load hits both alike, and
reports audio seconds per wall second of decoding (model loading and feature extraction excluded) and WER.

    python benchmarks/whisper_decoding_speed.py --checkpoint CKPT --cuts out/fsdd/cuts_test.jsonl.gz --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from speechkit.checkpoints import load_task
from speechkit.data import DataConfig, SpeechDataModule
from speechkit.metrics.wer import score_wer
from speechkit.tasks.whisper_finetune import WhisperFinetune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--cuts", required=True, help="test cut manifest")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-batches", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    task = load_task(args.checkpoint, default_class=WhisperFinetune).eval()
    data = SpeechDataModule(DataConfig(test_cuts=args.cuts, val_batch_size=args.batch_size))
    data.tokenizer = task.tokenize
    seconds = {False: 0.0, True: 0.0}
    hyps: dict[bool, list[str]] = {False: [], True: []}
    refs, audio = [], 0.0
    for i, batch in enumerate(data.test_dataloader()):
        if args.max_batches is not None and i >= args.max_batches:
            break
        refs += batch.texts
        audio += float(batch.durations.sum())
        for pad in (False, True):
            task.core.pad_to_30s = pad
            start = time.perf_counter()
            hyps[pad] += task.core.transcribe(batch)
            seconds[pad] += time.perf_counter() - start
    result = {"utterances": len(refs), "audio_s": audio, "threads": torch.get_num_threads()}
    for pad, name in ((False, "variable"), (True, "padded_30s")):
        report = score_wer(refs, hyps[pad], language="en")
        result.update({f"audio_s_per_s_{name}": audio / seconds[pad], f"wer_{name}": report.wer,
                       f"wer_raw_{name}": report.wer_raw})
    result["speedup"] = result["audio_s_per_s_variable"] / result["audio_s_per_s_padded_30s"]
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
