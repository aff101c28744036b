"""recipes/multi30k_st/run.sh, shrunk (a 24-line Multi30k, tiny models, 2 steps per run, one seed): every stage runs
and writes what the next reads (MT -> text encoder and decoder, CTC / CTC + OT -> ST encoder); the table has the four
rows; a second call trains nothing."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speechkit.data.corpora.multi30k_synth import LANGUAGES, PARTS
from speechkit.testing import shared_data_dir

REPO = Path(__file__).resolve().parents[2]
SHRUNK = dict(TINY="1", MAX_TRAIN="8", MAX_DEV="2", MAX_TEST="3", MT_STEPS="2", MT_BATCH="4", PRE_STEPS="2",
              ST_STEPS="2", SUBWORDS="60")


def small_multi30k(folder: Path, lines: int = 24) -> Path:
    """The first ``lines`` sentences of every Multi30k part and language."""
    source = shared_data_dir() / "multi30k"
    if not source.is_dir():
        pytest.skip(f"Multi30k not found at {source} (set SPEECHKIT_DATA)")
    folder.mkdir(parents=True)
    for part in PARTS.values():
        for language in LANGUAGES:
            with gzip.open(source / f"{part}.{language}.gz", "rt", encoding="utf-8-sig") as file:
                head = file.read().splitlines()[:lines]
            with gzip.open(folder / f"{part}.{language}.gz", "wt", encoding="utf-8") as file:
                file.write("\n".join(head) + "\n")
    return folder


def recipe(out: Path, multi30k: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, **SHRUNK, MULTI30K=str(multi30k), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(["bash", str(REPO / "recipes/multi30k_st/run.sh"), str(out), "0"], env=env,
                          capture_output=True, text=True, timeout=1500, cwd=out.parent)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("multi30k_st")
    multi30k = small_multi30k(root / "multi30k")
    result = recipe(root / "exp", multi30k)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "exp", multi30k


@pytest.mark.slow
def test_every_stage_runs_and_the_table_has_four_rows(run):
    out, _ = run
    report = json.loads((out / "results.json").read_text())
    assert set(report["results"]) == {"st_scratch", "st_ctc", "st_ctc_ot", "mt"}
    assert all(set(seeds) == {"seed0"} for seeds in report["results"].values())
    assert report["results"]["st_ctc"]["seed0"]["segments"] == 3  # the speech test set
    assert report["results"]["mt"]["seed0"]["segments"] == 24  # test 2016 text, shrunk
    for stage in ("data", "subwords", "fit_mt_seed0", "fit_ctc_seed0", "fit_ctc_ot_seed0", "fit_st_scratch_seed0",
                  "fit_st_ctc_seed0", "fit_st_ctc_ot_seed0", "test_st_ctc_ot_seed0", "test_mt_seed0"):
        assert stage in report["times"]
    assert (out / "results.png").stat().st_size > 0
    assert "CTC + OT" in (out / "results.md").read_text()
    fit_log = (out / "st_ctc_ot_seed0" / "fit.log").read_text()
    assert "Traceback" not in fit_log


@pytest.mark.slow
def test_a_second_call_trains_nothing(run):
    out, multi30k = run
    before = (out / "times.tsv").read_text()
    result = recipe(out, multi30k)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "times.tsv").read_text() == before
