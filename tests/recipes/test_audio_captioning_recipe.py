"""recipes/audio_captioning/run.sh, shrunk (12 training scenes, tiny models, 4 steps each): every stage runs and
writes what the next reads; the table has both models' four rows and the captioning metrics; a second call redoes
nothing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SIZES = {"TINY": "1", "STEPS": "4", "NUM_TRAIN": "12", "NUM_DEV": "3", "NUM_TEST": "4", "PARALLEL": "0"}


def run_recipe(out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, **SIZES, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(["bash", str(REPO / "recipes/audio_captioning/run.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=900, cwd=out.parent)


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir) -> Path:
    out = tmp_path_factory.mktemp("audio_captioning") / "exp"
    result = run_recipe(out)
    assert result.returncode == 0, result.stderr[-3000:] + "".join(
        p.read_text()[-2000:] for p in out.glob("*.log"))
    return out


@pytest.fixture(scope="module")
def data_dir() -> Path:
    from speechkit.testing import shared_data_dir

    return shared_data_dir()


@pytest.mark.slow
def test_every_stage_runs_and_the_table_has_both_models(run):
    results = json.loads((run / "results.json").read_text())
    assert results["audios"] == 4 and results["captions"] == 20
    for model in ("captioner", "dual_encoder"):
        assert set(results[model]["retrieval"]) == {"t2a raw", "t2a normalised", "a2t raw", "a2t normalised"}
        assert all(0.0 <= value <= 1.0 for row in results[model]["retrieval"].values()
                   for key, value in row.items() if key != "queries")
    assert set(results["captioner"]["captioning"]) == {"cider_d", "bleu4", "meteor_exact"}
    assert len((run / "captioner" / "predictions.jsonl").read_text().splitlines()) == 4
    assert (run / "results.png").stat().st_size > 0 and "| dual_encoder | A2T | normalised |" in (
        run / "results.md").read_text()
    stages = (run / "times.tsv").read_text()
    for stage in ("data", "fit_captioner", "fit_dual_encoder", "test_captioner", "retrieve"):
        assert f"{stage}\t" in stages


@pytest.mark.slow
def test_a_second_call_redoes_nothing(run):
    before = (run / "times.tsv").read_text()
    result = run_recipe(run)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "times.tsv").read_text() == before
