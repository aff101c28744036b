"""The speechkit command: help, sub-command dispatch, config validation of every shipped YAML."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from speechkit.cli import main

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted((REPO / "conf").rglob("*.yaml"))


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "speechkit.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "prepare", "evaluate"):
        assert f"  {command} " in out


def test_unknown_command_fails(capsys):
    assert main(["fitt"]) == 2
    assert "unknown command 'fitt'" in capsys.readouterr().err


def test_prepare_missing_folder_is_one_line_naming_it(tmp_path):
    result = run("prepare", "fsdd", "/no/such/dir", str(tmp_path / "x"))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "/no/such/dir" in lines[0]


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(REPO)) for c in CONFIGS])
def test_every_shipped_config_validates(config):
    """``--print_config`` parses and type-checks the whole YAML (classes, init args) without training."""
    result = run("fit", "-c", str(config), "--print_config")
    assert result.returncode == 0, result.stderr[-2000:]


def test_misspelt_key_fails_before_training_and_names_it(tmp_path):
    config = yaml.safe_load(CONFIGS[0].read_text())
    config["model"]["init_args"]["hiddden"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = run("fit", "-c", str(bad))
    assert result.returncode != 0
    assert "hiddden" in result.stderr
    assert not (REPO / "exp" / "should_not_exist").exists()
