"""One-line errors from ``speechkit``: what jsonargparse wraps, bad --ckpt_path, unwritable outputs (issue 11, 11).

Before: every error raised while LightningCLI built the task or ``DataConfig`` came out as jsonargparse's 55-90 line
"Does not validate against any of the Union subtypes" traceback (exit 1); a text file given to --ckpt_path was a
``KeyError: 105`` traceback; an unwritable default_root_dir a ``PermissionError`` traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from speechkit.cli import check_ckpt_path, ckpt_path_from, main
from speechkit.errors import SpeechkitError

REPO = Path(__file__).resolve().parent.parent
# Lines that Lightning and transformers print before any error on their own (a seed note, a progress bar); they are
# not part of the error report.
_INFO = re.compile(r"^(Seed set to \d+|.*\d+/\d+ \[[^\]]*\])$")


def problem_lines(stderr: str) -> list[str]:
    """stderr without the progress bars and the seed note that precede the error."""
    return [line for line in stderr.splitlines() if line.strip() and not _INFO.match(line.split("\r")[-1].strip())]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from speechkit.testing import tiny_whisper_dir, tone_corpus

    root = tmp_path_factory.mktemp("cli_errors")
    for split in ("train", "dev", "test"):
        tone_corpus(root / "data", split, num_cuts=4)
    model = tiny_whisper_dir(root / "whisper", multilingual=True)
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 1, "num_sanity_val_steps": 0,
                    "limit_val_batches": 1, "use_distributed_sampler": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "default_root_dir": str(root / "exp")},
        "model": {"class_path": "speechkit.tasks.whisper_finetune.WhisperFinetune",
                  "init_args": {"model_name_or_path": str(model), "language": "en", "max_new_tokens": 4}},
        "data": {"class_path": "speechkit.data.SpeechDataModule", "init_args": {"config": {
            **{f"{split}_cuts": str(root / "data" / f"cuts_{split}.jsonl.gz") for split in ("train", "dev", "test")},
            "input": "whisper_fbank", "max_duration": 10.0, "num_buckets": 2, "val_batch_size": 4}}},
    }  # fmt: skip
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    not_whisper = root / "not_whisper"
    not_whisper.mkdir()
    (not_whisper / "config.json").write_text('{"model_type": "bert"}')
    return {"root": root, "config": str(path), "not_whisper": str(not_whisper)}


BUILD_ERRORS = {
    "lora_target_matching_nothing": (
        ["--model.init_args.strategy", "lora", "--model.init_args.lora_target_modules", "[nonexistent]"],
        "target_modules: ['nonexistent'] match no module",
    ),
    "unknown_language": (["--model.init_args.language", "zz"], "language 'zz': Whisper has no <|zz|> token"),
    "model_folder_not_whisper": (
        ["--model.init_args.model_name_or_path", "NOT_WHISPER"], "cannot load a Hugging Face Whisper"
    ),
    "frozen_encoder_layers_99": (
        ["--model.init_args.strategy", "frozen_encoder", "--model.init_args.frozen_encoder_layers", "99"],
        "frozen_encoder_layers=99: this model has 2 encoder layers",
    ),
    "max_duration_negative": (["--data.init_args.config.max_duration", "-1"], "max_duration must be positive"),
}


@pytest.mark.parametrize("case", list(BUILD_ERRORS))
def test_error_while_building_task_or_data_is_one_line(tiny, capfd, case):
    args, expected = BUILD_ERRORS[case]
    args = [arg.replace("NOT_WHISPER", tiny["not_whisper"]) for arg in args]
    assert main(["fit", "-c", tiny["config"], *args]) == 2
    stderr = capfd.readouterr().err
    assert "Traceback" not in stderr and "Does not validate" not in stderr
    lines = problem_lines(stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith("speechkit fit: error: ") and expected in lines[0]


def test_console_script_prints_exactly_one_line(tiny):
    """The real command in a fresh process: stderr is the one error line (progress bars off), exit status 2."""
    env = dict(os.environ, TQDM_DISABLE="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    args = ["fit", "-c", tiny["config"], "--data.init_args.config.max_duration", "-1"]
    result = subprocess.run([sys.executable, "-m", "speechkit.cli", *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if not line.startswith("Seed set to")]
    assert lines == ["speechkit fit: error: max_duration must be positive, got -1.0"], result.stderr


def test_misspelt_key_is_one_line(tiny, capfd):
    assert main(["fit", "-c", tiny["config"], "--model.init_args.hiddden", "3"]) == 2
    stderr = capfd.readouterr().err
    assert stderr.count("\n") == 1 and "Option 'hiddden' is not accepted" in stderr
    assert stderr.startswith('speechkit fit: error: Parser key "model"')


def test_debug_shows_the_traceback(tiny, monkeypatch):
    monkeypatch.setenv("SPEECHKIT_DEBUG", "1")
    with pytest.raises(ValueError) as raised:  # jsonargparse's wrapper, raised from the SpeechkitError
        main(["fit", "-c", tiny["config"], "--data.init_args.config.max_duration", "-1"])
    assert isinstance(raised.value.__cause__, SpeechkitError)


def checkpoint_line(capfd) -> str:
    stderr = capfd.readouterr().err
    assert stderr.count("\n") == 1, stderr
    return stderr.strip()


def test_non_checkpoint_ckpt_path_is_one_line_naming_it(tiny, tmp_path, capfd):
    text = tmp_path / "notes.ckpt"
    text.write_text("hello\n")
    assert main(["fit", "-c", tiny["config"], "--ckpt_path", str(text)]) == 2
    assert checkpoint_line(capfd) == (
        f"speechkit fit: error: --ckpt_path {text}: not a PyTorch checkpoint (another kind of file, or a truncated "
        "save); expected a .ckpt written by speechkit fit"
    )
    bare = tmp_path / "pytorch_model.bin"  # a bare state_dict: Lightning's KeyError 'pytorch-lightning_version'
    torch.save({"w": torch.zeros(3)}, bare)
    assert main(["fit", "-c", tiny["config"], "--ckpt_path", str(bare)]) == 2
    assert "a PyTorch file but not a Lightning checkpoint" in checkpoint_line(capfd)
    assert main(["test", "-c", tiny["config"], f"--ckpt_path={tmp_path / 'missing.ckpt'}"]) == 2
    assert checkpoint_line(capfd).endswith(f"--ckpt_path {tmp_path / 'missing.ckpt'}: no such file")


def test_truncated_checkpoint_is_refused(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "pytorch-lightning_version": "2.6.6"}, good)
    check_ckpt_path(str(good))
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(SpeechkitError, match="truncated.ckpt: not a PyTorch checkpoint"):
        check_ckpt_path(str(truncated))
    for keyword in ("last", "best", "hpc", "registry:model:latest", "s3://bucket/a.ckpt"):
        check_ckpt_path(keyword)  # resolved by Lightning, not files


def test_ckpt_path_from_config_and_command_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("ckpt_path: from_yaml.ckpt\n")
    assert ckpt_path_from(["-c", str(config)]) == "from_yaml.ckpt"
    assert ckpt_path_from(["-c", str(config), "--ckpt_path", "cli.ckpt"]) == "cli.ckpt"
    assert ckpt_path_from(["--ckpt_path=a.ckpt", "--config", str(config)]) == "from_yaml.ckpt"
    assert ckpt_path_from(["--ckpt_path", "null"]) is None and ckpt_path_from(["-c", "missing.yaml"]) is None


def test_unwritable_default_root_dir_is_one_line_naming_it(tiny, tmp_path, capfd):
    """The output folder below a regular file cannot be created; the error comes when Lightning first writes."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = blocker / "exp"
    assert main(["fit", "-c", tiny["config"], "--trainer.default_root_dir", str(out)]) == 2
    stderr = capfd.readouterr().err
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"speechkit fit: error: {out}: Not a directory"]
    assert stderr.splitlines()[-1] == errors[0]


def permission_denied_dir() -> Path:
    """A path whose creation fails with EPERM/EACCES even for root (/sys), else skip."""
    path = Path("/sys/speechkit_test_unwritable")
    try:
        path.mkdir()
    except PermissionError:
        return path
    except OSError as error:
        pytest.skip(f"/sys does not refuse mkdir here ({error})")
    path.rmdir()
    pytest.skip("/sys accepted a new folder")


def test_unwritable_evaluate_json_is_one_line(tmp_path, capfd):
    texts = tmp_path / "text"
    texts.write_text("u1 hello world\n")
    out = permission_denied_dir() / "wer.json"
    args = ["evaluate", "wer", "--ref", str(texts), "--hyp", str(texts), "--language", "en", "--json", str(out)]
    assert main(args) == 2
    stderr = capfd.readouterr().err
    assert stderr.count("\n") == 1 and stderr.startswith("speechkit evaluate")
    assert str(out.parent) in stderr and ("not permitted" in stderr or "denied" in stderr)


def test_unwritable_prepare_out_dir_is_one_line(tmp_path, capfd):
    from speechkit.testing import shared_data_dir

    fsdd = shared_data_dir() / "fsdd"
    if not fsdd.is_dir():
        pytest.skip(f"{fsdd}: FSDD not found (set SPEECHKIT_DATA)")
    out = permission_denied_dir() / "fsdd"
    assert main(["prepare", "fsdd", str(fsdd), str(out)]) == 2
    stderr = capfd.readouterr().err
    assert "Traceback" not in stderr
    lines = problem_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("speechkit prepare fsdd: error: ")
    assert str(out.parent) in lines[0]


def test_a_bug_keeps_its_traceback(monkeypatch):
    import speechkit.metrics.cli as metrics_cli

    def broken(**kwargs):
        """A command that fails with a bug."""
        raise KeyError("a bug")

    monkeypatch.setattr(metrics_cli, "wer", broken)
    with pytest.raises(KeyError):
        main(["evaluate", "wer"])


def test_unwritable_export_out_is_one_line(tiny, tmp_path, capfd):
    """A real checkpoint (one fit step; its --ckpt_path passes the pre-check) exported below a regular file."""
    root = tmp_path / "run"
    assert main(["fit", "-c", tiny["config"], "--trainer.default_root_dir", str(root)]) == 0
    (checkpoint,) = root.rglob("*.ckpt")
    check_ckpt_path(str(checkpoint))
    capfd.readouterr()
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(blocker / "hf")]) == 2
    lines = problem_lines(capfd.readouterr().err)
    assert lines == [f"speechkit export: error: {blocker / 'hf'}: cannot write here ({blocker} is a file, not a folder)"]



def test_a_closed_pipe_stops_quietly(monkeypatch, tmp_path):
    """``speechkit evaluate ... | head``: the reader went away; exit 141 (128 + SIGPIPE), no traceback."""
    import speechkit.cli as cli

    def write_to_a_closed_pipe(command, args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_run_command", write_to_a_closed_pipe)
    stdout = os.dup(1)  # main points fd 1 at /dev/null; give it back afterwards
    try:
        assert cli.main(["evaluate", "wer", "--predictions", str(tmp_path / "p.jsonl")]) == 141
    finally:
        os.dup2(stdout, 1)
        os.close(stdout)
