"""Dataset distillation on FSDD digits: a few learned examples per digit vs the same number of real ones.

    python recipes/fsdd/dataset_distillation.py --out exp/fsdd_dd [--ipc 1 10] [--iterations 300] [--seeds 3]

Features: 40-bin Kaldi fbank of each recording (8 kHz), centred and cropped / padded to 48 frames (0.48 s),
normalised per utterance. Model: two strided Conv1d layers (64 channels), mean pooling, a linear layer. Train =
takes 5-49 (2,700 recordings), test = takes 0-4 (300). Experts: SGD with AST's clipping loss and gradient penalty
(``speechkit.distill.dataset``); the synthetic set starts from real examples drawn per class and is learned by
trajectory matching; its learned rate trains fresh models. Baseline: random real subsets of the same size, trained
the same way at the experts' effective rate (lr / (1 - momentum)). Writes ``results.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import soundfile as sf
import torch
import torchaudio
from torch import nn

from speechkit.distill.dataset import ExpertConfig, TrajectoryMatcher, train_expert
from speechkit.testing import shared_data_dir

FRAMES, BINS, CLASSES = 48, 40, 10


def features(folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, 40, 48) features, digit labels and take numbers of every FSDD recording."""
    xs, ys, takes = [], [], []
    for path in sorted(folder.glob("*.wav")):
        digit, _, take = path.stem.split("_")
        audio, rate = sf.read(path, dtype="float32")
        fbank = torchaudio.compliance.kaldi.fbank(torch.from_numpy(audio)[None] * 32768, num_mel_bins=BINS,
                                                  sample_frequency=rate, dither=0.0)  # (T, 40)
        middle, half = fbank.shape[0] // 2, FRAMES // 2
        fbank = fbank[max(0, middle - half): max(0, middle - half) + FRAMES]
        fbank = torch.nn.functional.pad(fbank, (0, 0, 0, FRAMES - fbank.shape[0]), value=float(fbank.min()))
        fbank = (fbank - fbank.mean()) / (fbank.std() + 1e-5)
        xs.append(fbank.t())
        ys.append(int(digit))
        takes.append(int(take))
    return torch.stack(xs), torch.tensor(ys), torch.tensor(takes)


def make_model() -> nn.Module:
    return nn.Sequential(nn.Conv1d(BINS, 64, 5, stride=2), nn.ReLU(), nn.Conv1d(64, 64, 5, stride=2), nn.ReLU(),
                         nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(64, CLASSES))


def train_and_test(x: torch.Tensor, y: torch.Tensor, lr: float, test_x: torch.Tensor, test_y: torch.Tensor,
                   seed: int, steps: int = 300) -> float:
    """Full-batch SGD on (x, y) for ``steps`` steps from a fresh seed; test accuracy."""
    torch.manual_seed(seed)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float((model(test_x).argmax(-1) == test_y).float().mean())


def real_subset(x: torch.Tensor, y: torch.Tensor, ipc: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.cat([torch.nonzero(y == c)[:, 0][torch.randperm(int((y == c).sum()), generator=generator)[:ipc]]
                       for c in range(CLASSES)])
    return x[index], y[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--experts", type=int, default=5)
    parser.add_argument("--expert-epochs-total", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--expert-lr", type=float, default=0.1)
    parser.add_argument("--momentum", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()
    x, y, takes = features(shared_data_dir() / "fsdd" / "recordings")
    train, test = takes >= 5, takes < 5
    train_x, train_y, test_x, test_y = x[train], y[train], x[test], y[test]
    config = ExpertConfig(epochs=args.expert_epochs_total, lr=args.expert_lr, momentum=args.momentum, batch_size=128,
                          loss_clip=5.0, grad_penalty=0.01)
    trajectories = []
    for seed in range(args.experts):
        torch.manual_seed(seed)
        trajectories.append(train_expert(make_model(), train_x, train_y, config, torch.Generator().manual_seed(seed)))
    expert_seconds = time.perf_counter() - begin
    model = make_model()
    final_expert = trajectories[0][-1]
    model.load_state_dict(final_expert)
    with torch.no_grad():
        expert_accuracy = float((model(test_x).argmax(-1) == test_y).float().mean())
    rows = []
    for ipc in args.ipc:
        generator = torch.Generator().manual_seed(1000 + ipc)
        start_x, start_y = real_subset(train_x, train_y, ipc, generator)
        started = time.perf_counter()
        matcher = TrajectoryMatcher(make_model(), trajectories, start_x, start_y, syn_steps=20, expert_epochs=2,
                                    max_start_epoch=min(10, args.expert_epochs_total - 2),
                                    lr_init=args.expert_lr / (1 - args.momentum),  # momentum's effective rate
                                    lr_syn=0.05, lr_lr=0.01)
        losses = [matcher.step() for _ in range(args.iterations)]
        distill_seconds = time.perf_counter() - started
        syn_x = matcher.syn_x.detach()
        distilled = [train_and_test(syn_x, start_y, matcher.lr, test_x, test_y, seed) for seed in range(args.seeds)]
        real_lr = args.expert_lr / (1 - args.momentum)
        start_only = [train_and_test(start_x, start_y, real_lr, test_x, test_y, seed) for seed in range(args.seeds)]
        random_sets = [train_and_test(*real_subset(train_x, train_y, ipc, torch.Generator().manual_seed(s)),
                                      real_lr, test_x, test_y, s) for s in range(args.seeds)]
        rows.append({"ipc": ipc, "examples": ipc * CLASSES, "distilled": distilled, "start_subset": start_only,
                     "random_subsets": random_sets, "learned_lr": matcher.lr, "matching_loss_first10":
                     sum(losses[:10]) / 10, "matching_loss_last10": sum(losses[-10:]) / 10,
                     "distill_seconds": round(distill_seconds, 1)})
        mean = lambda values: sum(values) / len(values)  # noqa: E731
        print(f"IPC {ipc:>2}: distilled {mean(distilled):.3f}  its real start {mean(start_only):.3f}  random real "
              f"{mean(random_sets):.3f}  (lr {matcher.lr:.4f}, matching loss {rows[-1]['matching_loss_first10']:.3f} "
              f"-> {rows[-1]['matching_loss_last10']:.3f}, {distill_seconds:.0f} s)", flush=True)
    result = {"expert_test_accuracy": expert_accuracy, "expert_seconds": round(expert_seconds, 1), "rows": rows,
              "args": vars(args), "train": int(train.sum()), "test": int(test.sum())}
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"full-data expert: test accuracy {expert_accuracy:.3f} ({expert_seconds:.0f} s for {args.experts} experts)")


if __name__ == "__main__":
    main()
