"""The end-to-end row of SQuTR: a speech encoder that embeds a spoken query in a text retriever's space.

SQuTR (Li et al., 2026, section 4.1) scores end-to-end retrievers that embed the spoken query directly and search the
text corpus's index (Omni-Embed-Nemotron). Here a small one is trained by distillation from the dense retriever's
text embedder: the student :class:`SpeechEmbedder` (Lhotse fbank -> :class:`speechkit.models.speech_encoder.
SpeechEncoder` -> masked mean over frames -> linear to the text embedding width) learns, on synthesized speech,
to produce the teacher's embedding ``t`` of the spoken text. Loss per batch of ``B`` (``s`` the student's unit
embedding, ``t`` the teacher's)::

    L = mean_b (1 - cos(s_b, t_b)) + InfoNCE(s, t),  InfoNCE = -mean_b log softmax_j(s_b . t_j / tau)_b

(cosine distillation, plus in-batch contrast against the other queries' teacher embeddings, tau = 0.05, as in
speech-text embedding alignment, e.g. SAMU-XLSR, Khurana et al. 2022, section 3). At test time the student's
embeddings search the same document index as the text queries (``DenseRetriever.search_embeddings``).
``speechkit bench squtr-train-e2e`` builds the training set: :func:`speechkit.bench.offline_set.make_queries` of
Multi30k's train captions (disjoint from the offline set's documents), spoken by several eSpeak NG voices, half of
them with offline noise at 0-20 dB (clips drawn with another seed than the benchmark's).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from speechkit.errors import SpeechkitError
from speechkit.models.speech_encoder import EncoderConfig, SpeechEncoder, encoder_config
from speechkit.tensors import lengths_to_mask

log = logging.getLogger(__name__)
SAMPLE_RATE = 16000
TEMPERATURE = 0.05
CHECKPOINT_KIND = "speechkit-squtr-speech-embedder"


def fbank(waveform: np.ndarray, num_mel_bins: int = 80) -> torch.Tensor:
    """Lhotse's Kaldi-style log-mel fbank of a 16 kHz waveform: ``(T, num_mel_bins)`` at 10 ms."""
    from lhotse.features import Fbank, FbankConfig

    return torch.from_numpy(Fbank(FbankConfig(num_mel_bins=num_mel_bins)).extract(waveform, SAMPLE_RATE))


def pad_features(features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T, F)`` zero-padded features and ``(B,)`` lengths."""
    lengths = torch.tensor([len(f) for f in features])
    return nn.utils.rnn.pad_sequence(list(features), batch_first=True), lengths


class SpeechEmbedder(nn.Module):
    """fbank ``(B, T, F)`` -> unit embeddings ``(B, E)``: encoder, masked mean over its frames, linear."""

    def __init__(self, encoder: EncoderConfig, embedding_dim: int) -> None:
        super().__init__()
        self.encoder = SpeechEncoder(encoder)
        self.head = nn.Linear(encoder.dim, embedding_dim)

    def forward(self, feats: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        hidden, out_lens = self.encoder(feats, lens)  # (B, T', D)
        mask = lengths_to_mask(out_lens, hidden.shape[1]).unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / out_lens.clamp(min=1)[:, None].to(hidden.dtype)
        return F.normalize(self.head(pooled), dim=-1)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """``mean(1 - cos(s_b, t_b)) + InfoNCE(s, t)`` of unit ``(B, E)`` embeddings (see the module docstring)."""
    teacher = F.normalize(teacher, dim=-1)
    cosine = (student * teacher).sum(-1)
    logits = student @ teacher.T / temperature  # (B, B)
    return (1 - cosine).mean() + F.cross_entropy(logits, torch.arange(len(student), device=student.device))


def train_speech_embedder(features: Sequence[torch.Tensor], teacher: np.ndarray, encoder: EncoderConfig,
                          steps: int = 1000, batch_size: int = 32, lr: float = 1e-3, warmup_steps: int = 100,
                          seed: int = 0, progress: bool = True) -> tuple[SpeechEmbedder, list[float]]:
    """Train a :class:`SpeechEmbedder` to the teacher's embeddings; returns it (eval mode) and the step losses.

    Args:
        features: fbank ``(T, F)`` of each training utterance.
        teacher: ``(N, E)`` text embeddings of the utterances' texts.
        encoder: sizes of the speech encoder.
        steps: optimizer steps (AdamW, linear warm-up then linear decay).
        batch_size: utterances per step (drawn without replacement, reshuffled every pass).
        lr: peak learning rate.
        warmup_steps: warm-up steps.
        seed: initialisation and batch order.
        progress: show a progress bar with the loss.
    """
    from speechkit.optim.warmup import adamw_warmup_decay
    from speechkit.progress import progress_bar

    if len(features) != len(teacher) or len(features) < 2:
        raise SpeechkitError(f"{len(features)} utterances and {len(teacher)} teacher embeddings: expected the same "
                             "number, at least 2")
    torch.manual_seed(seed)
    model = SpeechEmbedder(encoder, teacher.shape[1])
    optim = adamw_warmup_decay(model.parameters(), steps, lr, weight_decay=0.01, warmup_steps=warmup_steps)
    optimizer, schedule = optim["optimizer"], optim["lr_scheduler"]["scheduler"]
    targets = torch.from_numpy(np.asarray(teacher, dtype=np.float32))
    rng, order, losses = random.Random(seed), [], []
    model.train()
    with progress_bar(range(steps), desc="squtr e2e: distill", unit="step", enabled=progress) as bar:
        for _ in bar:
            if len(order) < batch_size:
                order += rng.sample(range(len(features)), len(features))
            batch, order = order[:batch_size], order[batch_size:]
            feats, lens = pad_features([features[i] for i in batch])
            loss = distillation_loss(model(feats, lens), targets[batch])
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    return model.eval(), losses


def save_speech_embedder(model: SpeechEmbedder, path: str | Path, text_model: str, extra: Optional[dict] = None) -> None:
    """Write the model, its sizes and its teacher's name atomically (``speechkit.checkpoints.save_atomic``)."""
    from speechkit.checkpoints import save_atomic

    save_atomic({"kind": CHECKPOINT_KIND, "encoder": asdict(model.encoder.config),
                 "embedding_dim": model.head.out_features, "text_model": text_model, "state_dict": model.state_dict(),
                 "info": extra or {}}, path)


def load_speech_embedder(path: str | Path) -> tuple[SpeechEmbedder, str]:
    """A saved :class:`SpeechEmbedder` (loaded with ``weights_only=True``) and its teacher's retriever spec."""
    from speechkit.checkpoints import load_checkpoint

    checkpoint = load_checkpoint(path)
    if checkpoint.get("kind") != CHECKPOINT_KIND:
        raise SpeechkitError(f"{path}: not a speech embedder written by speechkit bench squtr-train-e2e")
    model = SpeechEmbedder(encoder_config(checkpoint["encoder"]), int(checkpoint["embedding_dim"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), str(checkpoint["text_model"])


@torch.no_grad()
def embed_speech(model: SpeechEmbedder, waveforms: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
    """``(N, E)`` unit embeddings of 16 kHz waveforms."""
    features = [fbank(w, model.encoder.config.num_mel_bins) for w in waveforms]
    out = []
    for start in range(0, len(features), batch_size):
        out.append(model(*pad_features(features[start:start + batch_size])).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.head.out_features), np.float32)


def _training_audio(texts: Sequence[str], speakers: int, noise_dir: Path, seed: int,
                    audio_dir: Path) -> list[np.ndarray]:
    """The training utterances: eSpeak NG voices, every other one with offline noise at 0-20 dB."""
    from lhotse import Recording

    from speechkit.bench.asr import read_audio
    from speechkit.bench.noise import build_noise_set, mix_noise
    from speechkit.data.synth import Synthesizer, draw_styles, synthesize_to_file
    from speechkit.progress import progress_bar

    synth, styles = Synthesizer(), draw_styles("en", speakers, seed + 1)
    noise = list(build_noise_set(noise_dir, seed=seed + 1))
    rng, waveforms = random.Random(seed), []
    for i, text in enumerate(progress_bar(texts, desc="squtr e2e: synthesize", unit="utt")):
        path = synthesize_to_file(synth, text, styles[i % len(styles)], audio_dir, SAMPLE_RATE)
        if i % 2:
            cut = Recording.from_file(path).to_cut()
            waveforms.append(mix_noise(cut, noise, rng.uniform(0, 20), rng).load_audio()[0])
        else:
            waveforms.append(read_audio(path))
    return waveforms


def squtr_train_e2e(multi30k: str, out: str, num_queries: int = 4000, speakers: int = 8, steps: int = 2000,
                    batch_size: int = 32, lr: float = 1e-3, dim: int = 144, num_layers: int = 4, seed: int = 0,
                    work_dir: Optional[str] = None) -> None:
    """Train the end-to-end speech retriever of ``speechkit bench squtr`` by distillation from the dense retriever.

    Args:
        multi30k: the Multi30k folder; queries are made from its train captions (not the benchmark's documents).
        out: the checkpoint to write (``--speech_retriever`` of ``speechkit bench squtr``).
        num_queries: training utterances.
        speakers: eSpeak NG speaker styles.
        steps: optimizer steps.
        batch_size: utterances per step.
        lr: peak learning rate.
        dim: encoder width.
        num_layers: Conformer blocks.
        seed: queries, voices, noise and training.
        work_dir: cache of the synthesized audio and training noise (default ``<out>.work``).

    Examples:
        speechkit bench squtr-train-e2e $SPEECHKIT_DATA/multi30k exp/squtr/e2e.pt --num_queries 4000 --steps 2000
    """
    from speechkit.bench.offline_set import make_queries, training_sentences
    from speechkit.bench.retrievers import DenseRetriever

    start = time.perf_counter()
    work = Path(work_dir or f"{out}.work")
    texts = [q.text for q in make_queries(training_sentences(multi30k), num_queries, seed)]
    teacher = DenseRetriever().embed(texts)
    waveforms = _training_audio(texts, speakers, work / "noise", seed, work / "audio")
    features = [fbank(w) for w in waveforms]
    config = EncoderConfig(dim=dim, num_layers=num_layers, num_heads=4, ffn_dim=4 * dim, dropout=0.1)
    model, losses = train_speech_embedder(features, teacher, config, steps, batch_size, lr, seed=seed)
    minutes = (time.perf_counter() - start) / 60
    info = {"num_queries": num_queries, "speakers": speakers, "steps": steps, "first_loss": losses[0],
            "last_loss": float(np.mean(losses[-50:])), "minutes": round(minutes, 1)}
    save_speech_embedder(model, out, "dense", info)
    print(f"{out}: loss {losses[0]:.3f} -> {info['last_loss']:.3f} in {steps} steps, {minutes:.1f} min")

