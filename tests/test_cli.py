"""The speechkit command: help, sub-command dispatch, config validation of every shipped YAML."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from speechkit.cli import main
from speechkit.testing import shipped_configs

REPO = Path(__file__).resolve().parent.parent
CONFIGS = shipped_configs("fit")
CONTINUAL = shipped_configs("continual")  # validated by tests/drivers/test_continual.py


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


PLANS = sorted(REPO.glob("recipes/*/multistage.yaml"))


def test_every_shipped_yaml_is_validated_here():
    """Each YAML of the repository is a `speechkit fit` or `speechkit continual` config (conf/) or a multistage plan
    (recipes/)."""
    listed = subprocess.run(["git", "ls-files", "*.yaml", "*.yml"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    assert {REPO / line for line in listed.stdout.split()} <= set(CONFIGS) | set(CONTINUAL) | set(PLANS)


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(REPO)) for c in CONFIGS])
def test_every_shipped_config_validates(config):
    """``--print_config`` parses and type-checks the whole YAML (classes, init args) without training."""
    result = run("fit", "-c", str(config), "--print_config")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "args parameter is intended" not in result.stderr  # no LightningCLI warning repeating the argv


def plan_tokenizer(name: str):
    """The tokenizer of a plan's base model (the packaged CTranslate2 folders: no weights loaded)."""
    from transformers import WhisperTokenizerFast

    from speechkit.models.ctranslate2 import load_tokenizer
    from speechkit.models.pretrained import pretrained_dir

    return load_tokenizer(pretrained_dir(name[4:])) if name.startswith("ct2:") else (
        WhisperTokenizerFast.from_pretrained(name))


@pytest.mark.parametrize("plan", PLANS, ids=[str(p.relative_to(REPO)) for p in PLANS])
def test_every_shipped_multistage_plan_validates(plan, monkeypatch, capsys):
    """The stage file's keys, every stage's `speechkit fit` arguments resolved against the base config (as the
    dry run prints them), and the language tokens it adds (a new language needs new_language_init_from, and no
    stage may drop one)."""
    from speechkit.config import resolve_fit_config
    from speechkit.drivers.multistage import added_languages, read_plan
    from speechkit.models.whisper_language import has_language

    monkeypatch.chdir(REPO)  # paths in plans are relative to the repository root
    assert main(["multistage", str(plan.relative_to(REPO)), "--dry-run"]) == 0
    commands = capsys.readouterr().out.splitlines()
    stages = read_plan(plan)
    assert len(commands) == len(stages.stages) and all(c.startswith("speechkit fit -c ") for c in commands)
    resolved = resolve_fit_config(["-c", stages.base_config, *stages.overrides])
    tokenizer = plan_tokenizer(resolved.get("model.init_args.model_name_or_path"))
    added_languages(stages, lambda code: has_language(tokenizer, code))


def test_misspelt_key_fails_before_training_and_names_it(tmp_path):
    config = yaml.safe_load(CONFIGS[0].read_text())
    config["model"]["init_args"]["hiddden"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = run("fit", "-c", str(bad))
    assert result.returncode != 0
    assert "hiddden" in result.stderr
    assert not (REPO / "exp" / "should_not_exist").exists()
