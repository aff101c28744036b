"""Representational KD (issue 16): pooling to 25 fps keeps means, the loss is zero at its target, KL terms."""

import numpy as np
import pytest
import torch
from torch import nn

from speechkit.distill.multilayer import TeacherSpec, align_lengths
from speechkit.distill.representational import (
    RepresentationalKD, cluster_key, soft_cluster_targets, soft_label_kl, temperature,
)
from speechkit.errors import SpeechkitError
from speechkit.tensors import lengths_to_mask


def test_pooling_50hz_teacher_frames_to_25fps_preserves_each_utterance_mean():
    torch.manual_seed(0)
    teacher = torch.randn(3, 50, 8)  # 50 Hz frames of 1 s
    lens = torch.tensor([50, 36, 20])
    teacher = teacher * lengths_to_mask(lens, 50)[..., None]
    kd = RepresentationalKD(8, [TeacherSpec("t", 8, {0: 0})])
    pooled, pooled_lens = kd.pooled(teacher, lens, 25)
    assert pooled.shape == (3, 25, 8) and pooled_lens.tolist() == [25, 18, 10]
    for b, (n, m) in enumerate(zip(lens.tolist(), pooled_lens.tolist())):
        assert torch.allclose(pooled[b, :m].mean(0), teacher[b, :n].mean(0), atol=1e-6)
    assert torch.allclose(pooled[0, 3], teacher[0, 6:8].mean(0))  # frame t averages teacher frames 2t, 2t + 1


def test_soft_cluster_targets_match_numpy():
    h = torch.tensor([[[0.0, 0.0], [1.0, 2.0]]])
    mu = torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 0.0]])
    tau = 2.0
    q = soft_cluster_targets(h, mu, tau)
    for t, frame in enumerate(h[0].numpy()):
        logits = -((frame[None] - mu.numpy()) ** 2).sum(-1) / tau
        expected = np.exp(logits) / np.exp(logits).sum()
        assert np.allclose(q[0, t].numpy(), expected, atol=1e-6)
    assert float(temperature(h[0], mu)) == pytest.approx(np.median([0.0, 1.0]))  # nearest distances 0 and 1


def test_soft_label_kl_is_zero_at_log_q_positive_elsewhere_and_masks_padding():
    q = torch.softmax(torch.randn(2, 5, 4), -1)
    assert float(soft_label_kl(q.log(), q)) == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(2, 5, 4)
    p = torch.log_softmax(other, -1)
    expected = (q * (q.log() - p)).sum(-1)[:, :3].mean()
    mask = lengths_to_mask(torch.tensor([3, 3]), 5)
    assert float(soft_label_kl(other, q, mask)) == pytest.approx(float(expected), rel=1e-5)
    assert float(soft_label_kl(other, q)) > 0


class LogQHead(nn.Module):
    """A cluster head that outputs ``log q`` of its input: the student already holds the teacher's features."""

    def __init__(self, centroids: torch.Tensor, tau: float) -> None:
        super().__init__()
        self.centroids, self.tau = centroids, tau

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return soft_cluster_targets(z, self.centroids, self.tau).log()


def identity_kd(weights=(1.0, 0.5), clusters=4):
    specs = [TeacherSpec("a", 6, {0: 1}, weights[0], "cosine"), TeacherSpec("b", 6, {1: 2}, weights[1], "l1")]
    kd = RepresentationalKD(6, specs, num_clusters=clusters)
    for projection in kd.regression.projections.values():
        nn.init.eye_(projection.weight)
        nn.init.zeros_(projection.bias)
    return kd


def test_loss_is_zero_when_heads_reproduce_the_pooled_teacher_and_its_soft_labels():
    torch.manual_seed(0)
    teacher = {"a": [None, torch.randn(2, 20, 6)], "b": [None, None, torch.randn(2, 20, 6)]}
    lens = torch.tensor([20, 14])
    kd = identity_kd()
    student = []
    for name, t in (("a", 1), ("b", 2)):
        pooled, _ = kd.pooled(teacher[name][t], lens, 10)
        student.append(pooled)
    centroids = torch.randn(4, 6)
    kd.set_clusters({cluster_key("a", 0): (centroids, 1.5), cluster_key("b", 1): (centroids, 1.5)})
    for key in kd.cluster_heads:
        kd.cluster_heads[key] = LogQHead(centroids, 1.5)
    s_lens = align_lengths(lens, 20, 10)
    total, terms = kd(student, teacher, s_lens, {"a": lens, "b": lens})
    assert float(total) == pytest.approx(0.0, abs=1e-5)
    assert set(terms) == {"a/0->1", "b/1->2", "a/0->1/kl", "b/1->2/kl"}
    moved, moved_terms = kd([student[0] + 0.3 * torch.randn_like(student[0]), student[1]], teacher, s_lens,
                            {"a": lens, "b": lens})
    assert float(moved_terms["a/0->1"]) > 0 and float(moved_terms["a/0->1/kl"]) > 0
    assert float(moved) == pytest.approx(sum(float(v) * (1.0 if k.startswith("a") else 0.5)
                                             for k, v in moved_terms.items()), rel=1e-5)  # per-teacher weights


def test_cluster_targets_must_be_fitted_and_fit_every_key():
    kd = identity_kd()
    teacher = {"a": [None, torch.randn(1, 4, 6)], "b": [None, None, torch.randn(1, 4, 6)]}
    with pytest.raises(SpeechkitError, match="not fitted"):
        kd([torch.randn(1, 2, 6)] * 2, teacher, torch.tensor([2]), {"a": torch.tensor([4]), "b": torch.tensor([4])})
    with pytest.raises(SpeechkitError, match="cluster keys"):
        kd.set_clusters({cluster_key("a", 0): (torch.randn(4, 6), 1.0)})
    with pytest.raises(SpeechkitError, match="num_clusters"):
        RepresentationalKD(6, [TeacherSpec("a", 6, {0: 1})], num_clusters=1)
