"""Audio-visual distillation and CTC fine-tuning (issue 16): frozen teachers, checkpoints, overfitting, errors."""

from dataclasses import asdict

import lightning as L
import pytest
import torch

from speechkit.data.batches import SpeechBatch
from speechkit.errors import SpeechkitError
from speechkit.models.av_student import AVStudentConfig
from speechkit.models.speech_encoder import EncoderConfig, SpeechEncoder
from speechkit.tasks.av_ctc import AVCTCFinetune
from speechkit.tasks.av_distill import AVDistill
from speechkit.testing import tiny_whisper_dir

STUDENT = asdict(AVStudentConfig(dim=32, num_layers=2, num_heads=2, ffn_dim=64, video_channels=4, resnet_widths=(8,),
                                 dropout=0.0, mask_prob=0.2, mask_span=3))
TEXTS = ["one two", "three", "four five", "six"]


def av_batch(texts=TEXTS, seed: int = 0, task=None) -> SpeechBatch:
    """Random audio and video of 0.8-1.2 s per text, with character tokens when ``task`` is given."""
    generator = torch.Generator().manual_seed(seed)
    seconds = [0.8 + 0.4 * i / max(len(texts) - 1, 1) for i in range(len(texts))]
    samples = torch.tensor([int(s * 16000) for s in seconds])
    frames = torch.tensor([round(s * 25) for s in seconds])
    wav = torch.randn(len(texts), int(samples.max()), generator=generator) * 0.1
    video = torch.rand(len(texts), int(frames.max()), 16, 16, generator=generator)
    for row in range(len(texts)):
        wav[row, samples[row]:] = 0
        video[row, frames[row]:] = 0
    tokens = token_lens = None
    if task is not None:
        ids = [torch.tensor(task.tokenize(text)) for text in texts]
        tokens = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)
        token_lens = torch.tensor([len(i) for i in ids])
    return SpeechBatch(inputs=wav, input_lens=samples, texts=list(texts), cut_ids=[f"u{i}" for i in range(len(texts))],
                       durations=torch.tensor(seconds), tokens=tokens, token_lens=token_lens, video=video,
                       video_lens=frames)


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """A tiny random Whisper (supervised teacher) and a tiny MSM encoder checkpoint (self-supervised teacher)."""
    folder = tmp_path_factory.mktemp("teachers")
    whisper = tiny_whisper_dir(folder / "whisper")
    config = EncoderConfig(num_mel_bins=40, dim=24, num_layers=2, num_heads=2, ffn_dim=48)
    torch.manual_seed(0)
    state = {f"encoder.{k}": v for k, v in SpeechEncoder(config).state_dict().items()}
    msm = folder / "msm.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"encoder": asdict(config)}}, msm)
    return [{"name": "whisper", "kind": "whisper", "source": str(whisper), "layers": [1, 2], "weight": 1.0},
            {"name": "msm", "kind": "msm", "source": str(msm), "layers": [2], "weight": 0.5}]


class Batches(L.LightningDataModule):
    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.batches, batch_size=None)


def test_teachers_stay_frozen_in_eval_mode_out_of_optimizer_and_checkpoint(teachers, tmp_path, one_thread):
    torch.manual_seed(0)
    task = AVDistill(teachers, STUDENT, num_clusters=4, cluster_fit_batches=2)
    batches = [av_batch(seed=0), av_batch(seed=1)]
    trainer = L.Trainer(max_steps=12, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    before = {k: v.clone() for k, v in task.teachers.state_dict().items()}
    trainer.fit(task, datamodule=Batches(batches * 6))
    assert bool(task.kd.clusters_fitted) and all(not t.training for t in task.teachers)
    task.train()
    assert task.student.training and not any(m.training for t in task.teachers for m in t.modules())
    assert all(not p.requires_grad and p.grad is None for p in task.teachers.parameters())
    assert all(torch.equal(before[k], v) for k, v in task.teachers.state_dict().items())
    loss, terms = task.distill_loss(batches[0])
    loss.backward()
    assert all(p.grad is None for p in task.teachers.parameters())
    assert set(terms) == {"whisper/0->1", "whisper/1->2", "msm/2->2", "whisper/0->1/kl", "whisper/1->2/kl",
                          "msm/2->2/kl"}
    optimizer = task.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not in_optimizer & {id(p) for p in task.teachers.parameters()}
    assert {id(p) for p in task.student.parameters() if p.requires_grad} <= in_optimizer
    hidden_a, _ = task.teacher_hidden(batches[0])
    hidden_b, _ = task.teacher_hidden(batches[0])
    assert all(torch.equal(a, b) for a, b in zip(hidden_a["whisper"], hidden_b["whisper"]))

    path = tmp_path / "distill.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert not [k for k in saved if k.startswith("teachers.")] and any(k.startswith("student.") for k in saved)
    assert any(k.startswith("kd.centroids__") for k in saved)
    finetune = AVCTCFinetune(student=STUDENT, pretrained=str(path))
    assert all(torch.equal(v, saved[f"student.{k}"]) for k, v in finetune.student.state_dict().items())
    resumed = AVDistill(teachers, STUDENT, num_clusters=4)
    assert resumed.strict_loading is False  # teacher weights are rebuilt from their sources, not loaded
    missing = resumed.load_state_dict(saved, strict=False).missing_keys
    assert missing and all(k.startswith("teachers.") for k in missing) and bool(resumed.kd.clusters_fitted)


def test_two_teacher_distillation_loss_falls_and_hf_encoders_are_teachers(teachers, tmp_path, one_thread):
    from transformers import WavLMConfig, WavLMModel

    config = WavLMConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                         conv_dim=(8,) * 7, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
    WavLMModel(config).save_pretrained(tmp_path / "wavlm")
    hf = {"name": "wavlm", "kind": "hf", "source": str(tmp_path / "wavlm"), "layers": [0, 2]}
    torch.manual_seed(0)
    task = AVDistill([*teachers, hf], STUDENT, num_clusters=4, student_layers="depth")
    assert task.slots == [1, 2, 2, 1, 2]  # depth: whisper 1/2 -> 1, 2/2 -> 2; msm 2/2 -> 2; wavlm 0 -> 1, 2 -> 2
    batch = av_batch()
    task.fit_clusters([batch])
    optimizer = torch.optim.AdamW(task.trainable_parameters(), lr=3e-3)
    task.train()
    losses = []
    for _ in range(25):
        loss, _ = task.distill_loss(batch, mask=False)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.6 * losses[0], losses


def test_tiny_student_overfits_four_utterances_with_ctc(one_thread):
    torch.manual_seed(0)
    task = AVCTCFinetune(alphabet="abcdefghijklmnopqrstuvwxyz ", normalizer="basic",
                         student={**STUDENT, "modality_dropout": 0.0},
                         optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3))
    batch = av_batch(task=task)
    optimizer = task.configure_optimizers()
    task.train()
    for _ in range(150):
        loss, _, _ = task.ctc_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    task.eval()
    with torch.no_grad():
        log_probs, lens = task(batch)
    assert task.decode(log_probs, lens) == TEXTS  # WER 0 % on the four training utterances


def test_bad_inputs_are_clear_errors(teachers, tmp_path):
    task = AVCTCFinetune(student=STUDENT, modalities="audio_video")
    batch = av_batch(task=task)
    no_video = SpeechBatch(**{**batch.__dict__, "video": None, "video_lens": None})
    with pytest.raises(SpeechkitError, match="needs video, but the batch has none"):
        task.ctc_loss(no_video)
    shifted = SpeechBatch(**{**batch.__dict__, "video_lens": batch.video_lens - 5})
    with pytest.raises(SpeechkitError, match="utterance 'u0': audio lasts 20 frames"):
        task.ctc_loss(shifted)
    features = SpeechBatch(**{**batch.__dict__, "inputs": torch.zeros(4, 100, 80)})
    with pytest.raises(SpeechkitError, match="take waveforms"):
        task.ctc_loss(features)
    with pytest.raises(SpeechkitError, match="need noise_cuts"):
        AVCTCFinetune(student=STUDENT, test_snr=0.0)
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {f"student.{k}": v for k, v in task.student.state_dict().items()}}, path)
    with pytest.raises(SpeechkitError, match="does not fit this task's student config"):
        AVCTCFinetune(student={**STUDENT, "dim": 16}, pretrained=str(path))
    with pytest.raises(SpeechkitError, match="out of range"):
        AVDistill([{**teachers[1], "layers": [7]}], STUDENT)
    with pytest.raises(SpeechkitError, match="unknown keys"):
        AVDistill([{**teachers[1], "layer": [1]}], STUDENT)
