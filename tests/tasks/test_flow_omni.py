"""FlowOmni: answer-step wiring, gradient routing by stage and lambda, learning, generation, the units baseline."""

import pytest
import torch

from speechkit.data.batches import SpeechBatch
from speechkit.data.spoken_answers import SpokenAnswerBatch
from speechkit.errors import SpeechkitError
from speechkit.models.spoken_lm import IGNORE, answer_targets, stack_chunks
from speechkit.tasks.flow_omni import FlowOmni

TINY_LM = dict(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
               num_key_value_heads=2, max_position_embeddings=256)
R, BINS = 2, 80


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    from speechkit.testing import tiny_whisper_dir

    return str(tiny_whisper_dir(tmp_path_factory.mktemp("tiny") / "whisper", multilingual=False))


def make(whisper_dir, **overrides) -> FlowOmni:
    torch.manual_seed(0)
    args = dict(frames_per_step=R, adapter_stack=2, num_mel_bins=BINS, flow_width=64, flow_blocks=2, stage=2,
                max_answer_steps=20, num_units=4)
    return FlowOmni(whisper_dir, TINY_LM, **{**args, **overrides})


def make_batch(task: FlowOmni, texts=("tone one", "a high tone two"), frames=(8, 5),
               prompt=(40, 26)) -> SpokenAnswerBatch:
    """Prompts of distinct random features; answer mels: a smooth per-example pattern (distinct levels)."""
    generator = torch.Generator().manual_seed(1)
    feats = torch.randn(len(texts), max(prompt), BINS, generator=generator)
    ids = [torch.tensor(task.tokenize(t)) for t in texts]
    tokens = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=task.eos)
    width = -(-max(frames) // R) * R
    grid = torch.linspace(0, 1, BINS)
    mels = torch.stack([torch.stack([torch.sin(6 * grid * (b + 1) + 0.3 * f) for f in range(width)])
                        for b in range(len(texts))])  # (B, M, F)
    speech = SpeechBatch(feats, torch.tensor(prompt), list(texts), [f"c{i}" for i in range(len(texts))],
                         torch.ones(len(texts)), tokens, torch.tensor([len(i) for i in ids]))
    return SpokenAnswerBatch(speech, mels, torch.tensor(frames))


def test_answer_targets_by_hand():
    tokens, chunks = torch.tensor([[5, 6, 7], [8, 0, 0]]), torch.arange(1.0, 7.0).reshape(2, 3, 1)
    t = answer_targets(tokens, torch.tensor([3, 1]), chunks, torch.tensor([1, 3]), bos=1, eos=2)
    # example 0: 3 tokens + EOS = 4 steps; example 1: 3 chunks + stop = 4 steps; fed: BOS then the targets
    assert t.text_in.tolist() == [[1, 5, 6, 7], [1, 8, 2, 2]]
    assert t.text_target.tolist() == [[5, 6, 7, 2], [8, 2, IGNORE, IGNORE]]
    assert t.speech_target.squeeze(-1).tolist() == [[1, 0, 0, 0], [4, 5, 6, 0]]
    assert t.speech_in.squeeze(-1).tolist() == [[0, 1, 0, 0], [0, 4, 5, 6]]
    assert t.speech_mask.tolist() == [[True, False, False, False], [True, True, True, False]]
    assert t.stop_target.tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]
    assert t.step_mask.all()


def test_stack_chunks_and_bad_shapes():
    mels = torch.arange(24.0).reshape(1, 6, 4)
    chunks, lens = stack_chunks(mels, torch.tensor([5]), 3)
    assert chunks.shape == (1, 2, 12) and lens.tolist() == [2] and chunks[0, 1, :4].tolist() == [12, 13, 14, 15]
    with pytest.raises(SpeechkitError, match="not a multiple of frames_per_step"):
        stack_chunks(mels, torch.tensor([5]), 4)
    with pytest.raises(SpeechkitError, match="expected \\(B, M, F\\)"):
        stack_chunks(mels, torch.tensor([5, 6]), 3)
    with pytest.raises(SpeechkitError, match="the same examples"):
        answer_targets(torch.zeros(2, 3, dtype=torch.long), torch.tensor([3, 3]), torch.zeros(1, 2, 4),
                       torch.tensor([2]), 1, 2)


def test_shapes_and_padding_invariance(whisper_dir, one_thread):
    task = make(whisper_dir).eval()
    batch = make_batch(task)
    hidden, logits, _ = task.answer_states(batch)
    steps = max(len(task.tokenize("a high tone two")) + 1, 3 + 1)
    assert hidden.shape == (2, steps, 32) and logits.shape == (2, steps, len(task.tokenizer))
    # the short prompt alone (no padding) gives the same states as inside the padded batch
    alone = make_batch(task, texts=("a high tone two",), frames=(5,), prompt=(26,))
    alone.speech.inputs, alone.answer_mels = batch.speech.inputs[1:, :26], batch.answer_mels[1:, :6]
    hidden_alone, _, _ = task.answer_states(alone)
    torch.testing.assert_close(hidden_alone[0], hidden[1, :hidden_alone.shape[1]], atol=1e-5, rtol=1e-4)


def _grads(module):
    return [p.grad for p in module.parameters() if p.requires_grad or p.grad is not None]


def test_gradients_by_stage_and_lambda(whisper_dir, one_thread):
    task = make(whisper_dir, stage=2)
    batch = make_batch(task)
    for name in ("text", "speech"):  # each loss alone reaches the LM in stage 2
        task.zero_grad(set_to_none=True)
        task.losses(batch)[name].backward()
        assert sum(float(g.abs().sum()) for g in _grads(task.lm) if g is not None) > 0, name
    frozen = make(whisper_dir, stage=1)
    frozen.losses(batch)["loss"].backward()
    assert all(p.grad is None for p in [*frozen.lm.parameters(), *frozen.encoder.parameters()])
    assert all(p.grad is not None for p in [*frozen.adapter.parameters(), *frozen.flow_head.parameters(),
                                            *frozen.speech_in.parameters(), *frozen.stop_head.parameters()])
    no_cfm = make(whisper_dir, stage=2, cfm_weight=0.0)
    losses = no_cfm.losses(batch)
    losses["loss"].backward()
    assert all(p.grad is None for p in no_cfm.flow_head.parameters()) and float(losses["speech"]) > 0
    assert any(p.grad is not None for p in no_cfm.lm.parameters())


def _evaluate(task, batch, draws=5):
    """Each loss averaged over ``draws`` draws of ``(t, x0)`` (seeded)."""
    torch.manual_seed(1)
    with torch.no_grad():
        runs = [task.losses(batch) for _ in range(draws)]
    return {k: sum(float(r[k]) for r in runs) / draws for k in runs[0]}


def _train(task, batch, steps, lr=3e-3):
    optimizer = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=lr)
    first = _evaluate(task, batch)
    torch.manual_seed(0)
    for _ in range(steps):
        optimizer.zero_grad()
        task.losses(batch)["loss"].backward()
        optimizer.step()
    return first, _evaluate(task, batch)


def _mel_errors(task, batch):
    """Squared error of each generated answer's mels against its reference (over the frames both have)."""
    answers = task.eval().generate(batch.speech.inputs, batch.speech.input_lens,
                                   generator=torch.Generator().manual_seed(0))
    task.train()
    errors = []
    for answer, target in zip(answers, batch.answer_mels):
        n = min(answer.mels.shape[0], target.shape[0])
        errors.append(float(((answer.mels[:n] - target[:n]) ** 2).mean()) if n else float("inf"))
    return answers, errors


def test_overfits_two_answers_and_generates_them(whisper_dir, one_thread):
    task = make(whisper_dir, flow_width=256)
    batch = make_batch(task)
    _, untrained = _mel_errors(task, batch)
    first, last = _train(task, batch, 200)
    assert last["text"] < first["text"] / 20 and last["stop"] < first["stop"] / 10, (first, last)
    assert last["speech"] < first["speech"] / 1.5, (first, last)  # CFM per mel value, 5 draws of (t, x0)
    answers, trained = _mel_errors(task, batch)
    for answer, text, frames, error, before in zip(answers, batch.speech.texts, [8, 5], trained, untrained):
        assert answer.text == text and answer.token_ids == task.tokenize(text)
        chunks = answer.mels.shape[0] // R
        assert answer.mels.shape == (chunks * R, BINS) and abs(chunks - -(-frames // R)) <= 1  # stopped by itself
        assert error < before / 2, (error, before)  # Euler-sampled frames near the answer's, far from noise


def test_generation_stops_at_max_steps_and_checks_input(whisper_dir, one_thread):
    task = make(whisper_dir)
    batch = make_batch(task)
    with torch.no_grad():
        task.stop_head.bias.fill_(-100.0)  # never stops by itself
    answers = task.eval().generate(batch.speech.inputs, batch.speech.input_lens, max_steps=3)
    assert len(answers) == 2
    for answer in answers:
        assert len(answer.token_ids) <= 3 and answer.mels.shape == (3 * R, BINS)
    with pytest.raises(SpeechkitError, match="max_steps: expected >= 1"):
        task.generate(batch.speech.inputs, batch.speech.input_lens, max_steps=0)
    with pytest.raises(SpeechkitError, match="prompt features: expected"):
        task.generate(batch.speech.inputs[..., :40], batch.speech.input_lens)
    with pytest.raises(SpeechkitError, match="ode_steps=0"):
        make(whisper_dir, ode_steps=0)
    bad = make_batch(task)
    bad.answer_mels = bad.answer_mels[:, :7]
    with pytest.raises(SpeechkitError, match="not a multiple of frames_per_step r=2"):
        task.losses(bad)


def test_units_baseline_trains(whisper_dir, one_thread):
    task = make(whisper_dir, speech_head="units")
    batch = make_batch(task)
    with pytest.raises(SpeechkitError, match="no fitted codebook"):
        task.losses(batch)
    chunks, lens = stack_chunks(batch.answer_mels, batch.answer_mel_lens, R)
    task.fit_units(chunks[torch.arange(chunks.shape[1])[None] < lens[:, None]])
    first, last = _train(task, batch, 100)
    assert last["speech"] < first["speech"] / 10 and last["text"] < first["text"] / 20, (first, last)
    answers = task.eval().generate(batch.speech.inputs, batch.speech.input_lens)
    assert [a.text for a in answers] == batch.speech.texts
    for answer in answers:  # every generated chunk is a centroid
        steps = answer.mels.reshape(-1, R * BINS)
        assert torch.cdist(steps, task.codebook).min(-1).values.max() < 1e-4
