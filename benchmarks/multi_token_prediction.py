"""Multi-token prediction on a small causal LM: speculative decoding's tokens per pass and speed against greedy.

    python benchmarks/multi_token_prediction.py --json exp/mtp.json [--k 4] [--base-steps 1500] [--mtp-steps 1500]

A 4-layer Llama (d = 128) learns Multi30k's English captions (SentencePiece, 1,000 pieces); then its k mask tokens,
gated LoRA (rank 16 on q/k/v/o) and a sampler head are trained with ``speechkit.models.mtp.mtp_loss`` on the same
text, the base frozen. On the first ``--prompts`` test-2016 captions (their first three pieces as the prompt), up to
``--max-new-tokens`` tokens are decoded by plain greedy and by speculative decoding (with the sampler head, and with
each mask's own argmax), all without a KV cache, one after another, each run twice. Prints tokens per forward pass,
accepted speculated tokens per verifying pass, wall-time speed-up, and checks that every output equals greedy's.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from speechkit.models.gated_lora import apply_gated_lora
from speechkit.models.mtp import (
    SamplerHead,
    add_mask_tokens,
    causal_lm_forward,
    greedy_generate,
    mtp_batch,
    mtp_loss,
    speculative_generate,
)
from speechkit.testing import shared_data_dir
from speechkit.text.subwords import BOS, EOS, PAD, train_subwords


def lines(name: str) -> list[str]:
    with gzip.open(shared_data_dir() / "multi30k" / name, "rt", encoding="utf-8") as file:
        return [line.strip() for line in file if line.strip()]


def batches(sequences: list[list[int]], size: int, rng: random.Random):
    while True:
        rng.shuffle(sequences)
        for start in range(0, len(sequences) - size + 1, size):
            yield sequences[start: start + size]


def pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), PAD)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    return ids, (ids != PAD).long()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--base-steps", type=int, default=1500)
    parser.add_argument("--mtp-steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--vocab", type=int, default=1000, help="SentencePiece pieces")
    parser.add_argument("--train-lines", type=int, default=0, help="first N training captions only (0: all 29,000)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = random.Random(0)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    train_text, test_text = lines("train.en.gz"), lines("test_2016_flickr.en.gz")
    train_text = train_text[: args.train_lines or None]
    import sentencepiece

    pieces = sentencepiece.SentencePieceProcessor(model_file=str(train_subwords(train_text, out.with_suffix(".spm.model"),
                                                                              args.vocab)))
    sequences = [[BOS] + pieces.encode(text) + [EOS] for text in train_text]
    config = LlamaConfig(vocab_size=pieces.get_piece_size(), hidden_size=128, intermediate_size=256,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=128, tie_word_embeddings=True, pad_token_id=PAD)
    model = LlamaForCausalLM(config)
    timings = {}
    start = time.perf_counter()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    stream = batches(sequences, args.batch, rng)
    for step in range(args.base_steps):
        ids, mask = pad(next(stream))
        loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 250 == 0:
            print(f"base step {step}: loss {loss.item():.3f}", flush=True)
    base_loss = loss.item()
    timings["base_training_s"] = time.perf_counter() - start
    model.eval()
    apply_gated_lora(model, rank=16, alpha=32)
    mask_ids = add_mask_tokens(model, args.k)
    sampler = SamplerHead(128, model.get_input_embeddings(), model.get_output_embeddings())
    trainable = [p for p in model.parameters() if p.requires_grad] + list(sampler.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=2e-3, weight_decay=0.0)
    forward = causal_lm_forward(model)
    start = time.perf_counter()
    for step in range(args.mtp_steps):
        out_loss = mtp_loss(forward, sampler, mtp_batch(next(stream), mask_ids, PAD, rng), mask_ids)
        optimizer.zero_grad()
        out_loss.loss.backward()
        optimizer.step()
        if step % 250 == 0:
            print(f"mtp step {step}: mtp {out_loss.mtp.item():.3f} sampler {out_loss.sampler.item():.3f} "
                  f"lcm {out_loss.lcm.item():.4f}", flush=True)
    timings["mtp_training_s"] = time.perf_counter() - start
    prompts = [[BOS] + pieces.encode(text)[:3] for text in test_text[: args.prompts]]
    runs: dict[str, dict] = {}
    for repeat in range(2):
        for name in ("greedy", "speculative_sampler", "speculative_mask_argmax"):
            start = time.perf_counter()
            outputs, passes, accepted = [], 0, []
            for prompt in prompts:
                if name == "greedy":
                    tokens = greedy_generate(forward, prompt, args.max_new_tokens, EOS, banned_ids=mask_ids)
                    outputs.append(tokens)
                    passes += len(tokens)
                else:
                    result = speculative_generate(forward, sampler if name == "speculative_sampler" else None,
                                                  prompt, mask_ids, args.max_new_tokens, EOS)
                    outputs.append(result.tokens)
                    passes += result.forward_passes
                    accepted += result.accepted
            seconds = time.perf_counter() - start
            row = runs.setdefault(name, {"seconds": []})
            row["seconds"].append(seconds)
            row.update(outputs=outputs, passes=passes, tokens=sum(map(len, outputs)),
                       accepted_per_verify=sum(accepted) / max(len(accepted), 1) if name != "greedy" else None)
    greedy = runs["greedy"]
    table = []
    for name, row in runs.items():
        entry = {"decoder": name, "tokens": row["tokens"], "forward_passes": row["passes"],
                 "tokens_per_pass": row["tokens"] / row["passes"], "accepted_per_verify": row["accepted_per_verify"],
                 "seconds": min(row["seconds"]), "speedup": min(greedy["seconds"]) / min(row["seconds"]),
                 "equals_greedy": row["outputs"] == greedy["outputs"]}
        table.append(entry)
        print(f"{name:<24} tokens/pass {entry['tokens_per_pass']:.2f}  accepted/verify "
              f"{entry['accepted_per_verify'] if entry['accepted_per_verify'] is None else round(entry['accepted_per_verify'], 2)}"
              f"  {entry['seconds']:.1f} s  x{entry['speedup']:.2f}  equals greedy: {entry['equals_greedy']}")
    result = {"k": args.k, "base_final_loss": base_loss, "timings": timings, "rows": table, "args": vars(args),
              "example": pieces.decode(prompts[0][1:] + greedy["outputs"][0][:-1])}
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
