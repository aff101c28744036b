"""SpokenAnswerDataModule: prompt features, answer tokens and answer mels in one batch; FlowOmni trains on it."""

import lightning as L
import pytest
import soundfile
import torch
from lhotse import CutSet
from lhotse.utils import fastcopy

from speechkit.data import DataConfig
from speechkit.data.spoken_answers import SpokenAnswerDataModule, SpokenAnswerDataset
from speechkit.data.dataset import SpeechDataset
from speechkit.errors import SpeechkitError
from speechkit.testing import tiny_whisper_dir, tone_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Tone prompts whose spoken answer is another tone clip (the prompt of the next cut) and whose answer text
    names the prompt's class."""
    root = tmp_path_factory.mktemp("spoken_answers")
    cuts = list(tone_corpus(root, "train", num_cuts=6, max_duration=0.6))
    answered = []
    for i, cut in enumerate(cuts):
        answer_cut = cuts[(i + 1) % len(cuts)]
        sup = cut.supervisions[0]
        custom = {**sup.custom, "answer": f"it is {sup.text}", "answer_audio": answer_cut.recording.sources[0].source}
        answered.append(fastcopy(cut, supervisions=[fastcopy(sup, custom=custom)]))
    CutSet.from_cuts(answered).to_file(root / "answers_train.jsonl.gz")
    return root


def test_batch_carries_prompt_tokens_and_answer_mels(corpus):
    cuts = CutSet.from_file(corpus / "answers_train.jsonl.gz").subset(first=3)
    speech = SpeechDataset(DataConfig(text_field="answer"), tokenizer=lambda text: [len(w) for w in text.split()])
    batch = SpokenAnswerDataset(speech, frames_per_step=4)[cuts]
    assert batch.speech.inputs.shape[2] == 80 and batch.answer_mels.shape[2] == 80
    assert batch.answer_mels.shape[1] % 4 == 0 and batch.answer_mels.shape[1] - int(batch.answer_mel_lens.max()) < 4
    by_id = {cut.id: cut for cut in cuts}
    for row, cut_id in enumerate(batch.speech.cut_ids):
        answer = by_id[cut_id].supervisions[0].custom["answer_audio"]
        seconds = soundfile.info(answer).duration
        assert abs(int(batch.answer_mel_lens[row]) - round(seconds * 100)) <= 1  # 10 ms frames of the answer audio
        assert batch.speech.texts[row].startswith("it is tone")
    broken = CutSet.from_cuts([fastcopy(c, supervisions=[fastcopy(c.supervisions[0], custom={"answer": "x"})])
                               for c in cuts])
    with pytest.raises(SpeechkitError, match="has no 'answer_audio'"):
        SpokenAnswerDataset(speech)[broken]


def test_flow_omni_fits_with_the_data_module_and_units_head(corpus, tmp_path, one_thread):
    from speechkit.tasks.flow_omni import FlowOmni

    whisper = str(tiny_whisper_dir(tmp_path / "whisper", multilingual=False))
    lm = dict(model_type="gpt2", n_embd=32, n_layer=1, n_head=2, n_positions=256)
    task = FlowOmni(whisper, lm, frames_per_step=4, speech_head="units", num_units=8, unit_fit_batches=2, stage=2)
    data = SpokenAnswerDataModule(DataConfig(train_cuts=str(corpus / "answers_train.jsonl.gz"), text_field="answer",
                                             max_cuts=3, num_buckets=2))
    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, use_distributed_sampler=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(task, datamodule=data)
    assert bool(task.units_fitted) and task.codebook.abs().sum() > 0  # fitted on the answers at the start of fit
    assert trainer.global_step == 3 and torch.isfinite(trainer.callback_metrics["train_loss"])
    trainer.save_checkpoint(tmp_path / "stage1.ckpt")  # stage 2 starts from stage 1's weights
    stage2 = FlowOmni(whisper, lm, frames_per_step=4, speech_head="units", num_units=8, stage=2,
                      init_from=str(tmp_path / "stage1.ckpt"))
    for name, value in task.state_dict().items():
        assert torch.equal(value, stage2.state_dict()[name]), name
    with pytest.raises(SpeechkitError, match="not a checkpoint of this configuration"):
        FlowOmni(whisper, lm, frames_per_step=4, speech_head="flow", init_from=str(tmp_path / "stage1.ckpt"))
