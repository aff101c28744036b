"""Probe for a speed-up proposal: speechkit's short-form decoding (``decode_short``) against a lean greedy loop.

Same model, same variable-length batches (the clips of ``benchmarks/whisper_inference.py``'s corpora, longest
first); the features are computed once per batch for both. The lean loop: the encoder once; the decoder's prefill on
the prompt with a KV cache; one token a step, argmax after the model's ``suppress_tokens`` (and
``begin_suppress_tokens`` at the first step); the LM head on the last position only; the chosen token's
log-probability summed as it goes (no stored logits); the no-speech probability read from the prefill's first
position (no extra first-step pass); stop when every row has ended. It skips what ``decode_short`` adds for
Whisper's guards (fallback temperatures, the no-speech rule), so it stands for the temperature-0 pass only, which
is every pass when no output fails a guard (the case on these corpora). Both run twice, alternating; it prints the
audio seconds per second of each, their WER and how many transcripts are identical.

    python benchmarks/whisper_greedy_probe.py --checkpoint CKPT --corpus fsdd [--batch-size 16] [--int8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import whisper_inference as bench  # noqa: E402


def lean_greedy(bundle, features, lengths, max_new_tokens: int) -> list[str]:
    """Greedy transcripts of one batch, ``features`` ``(B, n_mels, T)`` with ``lengths`` ``(B,)`` real frames."""
    import torch
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    from speechkit.models.whisper_decode import whisper_of
    from speechkit.models.whisper_encoder import variable_length_input

    whisper, config = whisper_of(bundle), bundle.generation_config
    prompt = [config.decoder_start_token_id, config.no_timestamps_token_id]  # English-only models
    suppress = torch.tensor(sorted(set(config.suppress_tokens or [])), dtype=torch.long)
    begin = torch.tensor(sorted(set(config.begin_suppress_tokens or [])), dtype=torch.long)
    eos = config.eos_token_id
    with torch.no_grad(), variable_length_input(whisper, lengths):
        hidden = whisper.model.encoder(features).last_hidden_state  # (B, S, D)
        rows = hidden.shape[0]
        out = whisper.model.decoder(input_ids=torch.tensor([prompt] * rows), encoder_hidden_states=hidden,
                                    cache=EncoderDecoderCache(DynamicCache(), DynamicCache()), use_cache=True)
        first = whisper.proj_out(out.last_hidden_state[:, 0]).float()  # after <|startoftranscript|>
        no_speech = first.softmax(-1)[:, config.no_timestamps_token_id - 1]  # noqa: F841  (what the guard reads)
        logits = whisper.proj_out(out.last_hidden_state[:, -1]).float()  # (B, V)
        done, tokens = torch.zeros(rows, dtype=torch.bool), []
        logprob = torch.zeros(rows)
        for step in range(max_new_tokens):
            logits[:, suppress] = -float("inf")
            if step == 0 and len(begin):
                logits[:, begin] = -float("inf")
            scores = logits.log_softmax(-1)
            chosen = torch.where(done, torch.full((rows,), eos), scores.argmax(-1))
            logprob += torch.where(done, 0.0, scores.gather(1, chosen[:, None])[:, 0])
            tokens.append(chosen)
            done |= chosen == eos
            if done.all():
                break
            out = whisper.model.decoder(input_ids=chosen[:, None], encoder_hidden_states=hidden, cache=out.cache,
                                        use_cache=True)
            logits = whisper.proj_out(out.last_hidden_state[:, -1]).float()
    texts = []
    for row in torch.stack(tokens, 1).tolist():
        row = row[:row.index(eos)] if eos in row else row
        texts.append(bundle.tokenizer.decode(row, skip_special_tokens=True).strip())
    return texts


def main(argv: list[str] | None = None) -> int:
    import torch

    from speechkit.inference.inputs import AudioItem, load_waveform
    from speechkit.inference.models import load_model
    from speechkit.metrics.wer import score_wer
    from speechkit.errors import SpeechkitError
    from speechkit.models.whisper_decode import DecodeOptions, decode_short, short_features
    from speechkit.models.whisper_language import is_multilingual

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--corpus", choices=["fsdd", "sentences"], default="fsdd")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=224)
    parser.add_argument("--int8", action="store_true", help="dynamic int8 Linear layers for both")
    parser.add_argument("--max-clips", type=int, default=None, help="the first N clips (a quick run)")
    parser.add_argument("--data-dir", default=str(bench.default_data_dir()))
    parser.add_argument("--work-dir", default=str(bench.REPO / "exp" / "benchmarks" / "inference"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clips = bench.load_corpus(args.corpus, argparse.Namespace(data_dir=args.data_dir, sentences=100,
                                                              sentences_pool_seconds=480.0, sentences_dev=50, seed=0,
                                                              max_clips=args.max_clips), Path(args.work_dir))
    bundle = load_model(args.checkpoint).bundle
    if is_multilingual(bundle.tokenizer):
        raise SpeechkitError(f"{args.checkpoint}: a multilingual model; the probe's prompt is English-only Whisper's")
    if args.int8:
        import warnings

        with warnings.catch_warnings():  # torch.ao.quantization's deprecation notice
            warnings.simplefilter("ignore", DeprecationWarning)
            bundle.model = torch.ao.quantization.quantize_dynamic(bundle.model, {torch.nn.Linear}, dtype=torch.qint8)
    waves = [load_waveform(AudioItem(c.path, c.path, 0.0)) for c in clips]
    order = sorted(range(len(clips)), key=lambda i: -len(waves[i]))
    batches = [order[k:k + args.batch_size] for k in range(0, len(order), args.batch_size)]
    options = DecodeOptions(input_length="variable", max_new_tokens=args.max_new_tokens)
    audio = sum(c.duration for c in clips)
    texts: dict[str, dict[int, str]] = {}
    for way in ("decode_short", "lean", "decode_short", "lean"):
        start, out = time.perf_counter(), {}
        for batch in batches:
            features, lengths = short_features(bundle, [waves[i] for i in batch], "variable")
            if way == "lean":
                decoded = lean_greedy(bundle, features, lengths, args.max_new_tokens)
            else:
                decoded = [d.text for d in decode_short(bundle, features, lengths, options, "en")]
            out.update(zip(batch, decoded, strict=True))
        print(f"{way}: {audio / (time.perf_counter() - start):.1f} audio s / s", flush=True)
        texts[way] = out
    for way, out in texts.items():
        print(f"{way}: WER {score_wer([c.ref for c in clips], [out[i] for i in range(len(clips))], 'en').wer:.4f}")
    same = sum(texts["decode_short"][i] == texts["lean"][i] for i in range(len(clips)))
    print(f"identical transcripts: {same} / {len(clips)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
