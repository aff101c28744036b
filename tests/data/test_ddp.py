"""Two DDP ranks (a real 2-process CPU ``ddp`` run) train on disjoint, equal shares of the cuts."""

import json
import subprocess
import sys
from pathlib import Path

from speechkit.testing import tone_corpus


def test_two_ranks_get_disjoint_equal_shares(tmp_path):
    corpus = tmp_path / "corpus"
    cuts = tone_corpus(corpus, "train", num_cuts=40, seed=4)
    out = tmp_path / "seen"
    out.mkdir()
    worker = Path(__file__).with_name("ddp_worker.py")
    result = subprocess.run([sys.executable, str(worker), str(corpus), str(out)], capture_output=True, text=True,
                            timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert len(rank0) == len(rank1) > 0  # the same number of steps: no rank waits for another
    ids0, ids1 = [c for b in rank0 for c in b], [c for b in rank1 for c in b]
    assert not set(ids0) & set(ids1)  # distinct shares
    assert len(ids0) == len(set(ids0)) and len(ids1) == len(set(ids1))
    assert set(ids0) | set(ids1) == {cut.id for cut in cuts}  # nothing lost
