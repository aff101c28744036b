"""recipes/slurp_continual/run.sh, shrunk (a 6-scenario SLURP look-alike, 2 steps per task, one seed): the data is
synthesized, every method runs both tasks, the table has its rows and the PNG is written; a second call redoes
nothing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = ("alarm", "music", "news", "iot", "email", "weather")
METHODS = "replay_kd coconut"  # every loss and the buffer; fine-tuning and replay alone: tests/drivers


def write_slurp(folder: Path) -> Path:
    """SLURP's two files with 5 devel and 2 test records per scenario."""
    folder.mkdir(parents=True)
    number = 0
    for name, per_scenario in (("devel.jsonl", 5), ("test.jsonl", 2)):
        lines = []
        for scenario in SCENARIOS:
            for k in range(per_scenario):
                number += 1
                lines.append(json.dumps({"slurp_id": number, "sentence": f"{scenario} request number {number}",
                                         "intent": f"{scenario}_query", "scenario": scenario, "action": "query"}))
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def run_recipe(out: Path, slurp: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, SLURP=str(slurp), STEPS="2", METHODS=METHODS,
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(["bash", str(REPO / "recipes/slurp_continual/run.sh"), str(out), "0"], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("slurp_continual")
    slurp = write_slurp(root / "slurp")
    result = run_recipe(root / "exp", slurp)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "exp", slurp


@pytest.mark.slow
def test_every_method_runs_and_the_table_has_its_rows(run):
    out, _ = run
    summary = json.loads((out / "results.json").read_text())
    assert list(summary) == METHODS.split()
    for method in METHODS.split():
        result = json.loads((out / method / "seed0" / "accuracy.json").read_text())
        assert [len(row) for row in result["matrix"]] == [1, 2] and result["name"] == method
    table = (out / "results.md").read_text()
    assert "| COCONUT (replay + NSPT + MM) | 1 |" in table and table.count("\n") == 4
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_second_call_redoes_nothing(run):
    out, slurp = run
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/seed0/accuracy.json")}
    assert run_recipe(out, slurp).returncode == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/seed0/accuracy.json")} == before
