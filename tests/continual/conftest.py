"""Cuts without audio for the scenario and buffer tests: ``intent`` in ``supervision.custom``."""

import pytest
from lhotse import CutSet
from lhotse.testing.dummies import dummy_cut, dummy_supervision


def intent_cuts(per_class: dict[str, int]) -> CutSet:
    """``per_class[name]`` cuts labelled ``name``, ids ``<name>-<k>``."""
    cuts = []
    for name, count in per_class.items():
        for k in range(count):
            index = len(cuts)
            supervision = dummy_supervision(index, text=f"say {name}")
            supervision.custom = {"intent": name}
            cut = dummy_cut(index, supervisions=[supervision])
            cut.id = f"{name}-{k}"
            cuts.append(cut)
    return CutSet.from_cuts(cuts)


@pytest.fixture
def fsc_like_cuts() -> CutSet:
    """31 intents (as Fluent Speech Commands), 4 cuts each."""
    return intent_cuts({f"intent{i:02d}": 4 for i in range(31)})


def switch_tone_corpus(out_dir, split: str, per_class: int, num_classes: int = 4, seed: int = 0) -> CutSet:
    """Noisy two-part tones: class ``k`` jumps from ``300 (k+1)`` Hz to ``300 (num_classes - k)`` Hz half-way (the
    reverse order for the mirrored class), so a per-bin utterance-normalized encoder still hears the class.
    ``custom["intent"]`` is ``"c<k>"`` and the text ``"tone c<k>"``; written as ``cuts_<split>.jsonl.gz``."""
    from pathlib import Path

    import numpy as np
    import soundfile as sf
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    from speechkit.data.corpora.base import write_split

    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    recordings, supervisions = [], []
    for i in range(per_class * num_classes):
        k = i % num_classes
        duration = float(rng.uniform(0.4, 0.7))
        t = np.arange(int(duration * 16000)) / 16000
        frequency = np.where(t < duration / 2, 300 * (k + 1), 300 * (num_classes - k) + 150)
        audio = 0.5 * np.sin(2 * np.pi * frequency * t) + 0.05 * rng.standard_normal(t.shape)
        path = out_dir / "audio" / f"{split}_{i:04d}.wav"
        sf.write(path, audio.astype(np.float32), 16000)
        recordings.append(Recording.from_file(path, recording_id=path.stem))
        supervisions.append(SupervisionSegment(
            id=path.stem, recording_id=path.stem, start=0.0, duration=recordings[-1].duration, channel=0,
            text=f"tone c{k}", language="en", speaker="spk0", custom={"intent": f"c{k}"}))
    return write_split(out_dir, split, RecordingSet.from_recordings(recordings),
                       SupervisionSet.from_segments(supervisions))
