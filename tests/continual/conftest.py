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
