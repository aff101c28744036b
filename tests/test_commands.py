"""Sub-commands from typed signatures (issue 12, item 4): usage lines, examples and ``--version``; the argparse
spellings that recipes and READMEs use still parse to the same values; no hand-written argparse parser is left.

Before: ten hand-written argparse parsers (``usage: sharpness``, ``usage: fit_scaling_law``, ``usage:
compare_strategies``), ``CompressConfig``'s fields declared twice, choices checked by hand, help cut out of module
docstrings by paragraph index, no ``--version``, ``compare-strategies`` not registered.
"""

from __future__ import annotations

import ast
import shlex
import sys
import warnings
from pathlib import Path

import pytest

from speechkit import __version__
from speechkit.cli import SUBCOMMANDS, main, run_lightning_cli, subcommand_target
from speechkit.commands import CommandGroup, examples_of, legacy_argv, parse, schema_of
from speechkit.config import FitArgs

REPO = Path(__file__).resolve().parents[1]


def leaf_commands() -> dict[str, object]:
    """``"bins"``, ``"prepare fsdd"``, ``"evaluate wer"`` ... -> the registered function (or argv main)."""
    found = {}
    for name in SUBCOMMANDS:
        target = subcommand_target(name)
        if isinstance(target, CommandGroup):
            found.update({f"{name} {sub}": target.function(sub) for sub in target.names()})
        else:
            found[name] = target
    return found


LEAVES = leaf_commands()


@pytest.mark.parametrize("command", list(LEAVES))
def test_help_names_the_command_and_gives_an_example(command, capsys):
    assert main([*command.split(), "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: speechkit {command} ")
    examples = out.split("examples:\n", 1)[1].splitlines()
    assert examples[0].strip().startswith(f"speechkit {command}")


@pytest.mark.parametrize("group", ["prepare", "evaluate"])
def test_group_help_lists_each_subcommand_with_an_example(group, capsys):
    assert main([group, "--help"]) == 0
    out = capsys.readouterr().out
    names = subcommand_target(group).names()
    assert out.startswith(f"usage: speechkit {group} <")
    for name in names:
        assert f"\n  {name} " in out and f"\n  speechkit {group} {name} " in out
    assert main([group]) == 2  # no sub-command: the same listing, status 2


def typed_leaves() -> list[str]:
    return [name for name, function in LEAVES.items() if name != "transcribe"]  # transcribe parses its own argv


@pytest.mark.parametrize("command", typed_leaves())
def test_every_docstring_example_parses(command):
    """The examples in --help are command lines that parse (option names, types and choices)."""
    function = LEAVES[command]
    for example in examples_of(function):
        words = shlex.split(example)
        argv = words[len(command.split()) + 1:] if words[0] == "speechkit" else words[2:]
        parse(function, f"speechkit {command}", argv)


def test_version_and_registered_commands(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"speechkit {__version__}"
    assert "compare-strategies" in SUBCOMMANDS
    assert main(["--help"]) == 0
    assert "speechkit --version" in capsys.readouterr().out


def test_compress_options_are_the_config_fields_declared_once():
    from dataclasses import fields

    from speechkit.drivers.compress import CompressConfig, compress_command

    assert schema_of(compress_command) is CompressConfig
    kwargs = parse(compress_command, "speechkit compress", ["--model", "m", "--method", "rtn", "--eval_cuts", "e",
                                                            "--out_dir", "o"])
    config = kwargs["config"]
    assert {f.name for f in fields(CompressConfig) if f.init} == {f for f in vars(config) if f != "extra"}


def parsed(command: str, argv: str) -> dict:
    """The keyword arguments ``speechkit COMMAND ARGV`` gives its function (nothing is run)."""
    return parse(LEAVES[command], f"speechkit {command}", shlex.split(argv))


# Command lines of recipes/*.sh and the READMEs (argparse spellings), and the values they must give.
RECIPE_LINES = {
    "compress rows": (
        "compress", "--model ct2:tiny.en --eval-cuts E --num-eval 100 --calib-cuts C --num-calib 16 --one-pass "
        "--pad-to-30s --max-new-tokens 96 --batch-size 20 --threads 1 --out O --skip-before --method qbert "
        "--avg-bits 4 --group-size 128 --qbert-batches 1 --qbert-iters 10",
        dict(model="ct2:tiny.en", eval_cuts="E", num_eval=100, calib_cuts="C", num_calib=16, sequential=False,
             pad_to_30s=True, max_new_tokens=96, batch_size=20, threads=1, out_dir="O", skip_before=True,
             method="qbert", avg_bits=4.0, group_size=128, qbert_batches=1, qbert_iters=10),
    ),
    "compress lists": (
        "compress", "--model M --method fp4 --eval-cuts E --out O --no-pad-to-30s --choices 2 4 8 --targets "
        "model.encoder.layers.* model.decoder.layers.0.* --calib-spread --float-scale group",
        dict(pad_to_30s=False, choices=(2, 4, 8), targets=("model.encoder.layers.*", "model.decoder.layers.0.*"),
             calib_spread=True, float_scale="group", sequential=True),
    ),
    "prepare synthetic": (
        "prepare synthetic", "recipes/new_language/ky_numbers.txt out/manifests --voice ky --num-utterances 400 "
        "--speakers 4 --seed 0 --dev-fraction 0.05 --test-fraction 0.05",
        dict(source="recipes/new_language/ky_numbers.txt", out_dir="out/manifests", voice="ky", num_utterances=400,
             speakers=4, seed=0, dev_fraction=0.05, test_fraction=0.05),
    ),
    "prepare commonvoice": (
        "prepare commonvoice", "CV out/cv_ps --languages ps ur --splits train dev --skip-bad --min-duration 0.2",
        dict(source="CV", out_dir="out/cv_ps", languages=["ps", "ur"], splits=["train", "dev"], skip_bad=True,
             min_duration=0.2),
    ),
    "evaluate wer": (
        "evaluate wer", "--predictions P --language en --json J", dict(predictions="P", language="en", json="J"),
    ),
    "evaluate recall": ("evaluate recall", "--run R --qrels Q --k 1 2 3", dict(run="R", qrels="Q", k=[1, 2, 3])),
    "evaluate bleu": ("evaluate bleu", "--ref R --hyp H --empty-refs drop", dict(ref="R", hyp="H", empty_refs="drop")),
    "fit-scaling-law": (
        "fit-scaling-law", "--fit a/m.csv b/m.csv --predict c/m.csv --smooth 20 --min-step 20 --warmup-steps 20 "
        "--fit-decay --plot p.png",
        dict(fit=["a/m.csv", "b/m.csv"], predict=["c/m.csv"], smooth=20, min_step=20, warmup_steps=20, fit_decay=True,
             plot="p.png"),
    ),
    "compare-strategies": (
        "compare-strategies", "--config C --train T --dev D --language ky --new-language-init-from kk "
        "--related-train RT --related-dev RD --related-language kk --max-steps 40 --lr lora=1e-3 --lr full=1e-4 "
        "--out-dir O --trainer.num_sanity_val_steps 0 --strategies full lora",
        dict(config=FitArgs(("--config", "C", "--trainer.num_sanity_val_steps", "0")), train="T", dev="D",
             language="ky", new_language_init_from="kk", related_train="RT", related_dev="RD", related_language="kk",
             max_steps=40, lr=("lora=1e-3", "full=1e-4"), out_dir="O", strategies=("full", "lora")),
    ),
    "multistage": (
        "multistage", "recipes/new_language/multistage.yaml --dry-run --out-dir O --trainer.max_steps=3",
        dict(stages="recipes/new_language/multistage.yaml", dry_run=True, out_dir="O",
             config=FitArgs(("--trainer.max_steps=3",))),
    ),
    "export": ("export", "--checkpoint C --out O --merge-lora", dict(checkpoint="C", out_dir="O", merge_lora=True)),
    "merge-lora": ("merge-lora", "--adapter A --out O --base B", dict(adapter="A", out_dir="O", base="B")),
    "sharpness": (
        "sharpness", "run.ckpt --config c.yaml --model-class m:C --batches 1 --iters 100 --tol 1e-10 --samples 3",
        dict(checkpoint="run.ckpt", config=FitArgs(("--config", "c.yaml")), model_class="m:C", batches=1,
             iters=100, tol=1e-10, samples=3),
    ),
    "bins": (
        "bins", "cuts.jsonl.gz --num-buckets 4 --num-subbuckets 2 --tokenizer chars --max-duration 20",
        dict(cuts="cuts.jsonl.gz", num_buckets=4, num_subbuckets=2, tokenizer="chars", max_duration=20.0),
    ),
    "batch-sizes": (
        "batch-sizes", "--model-class m:C --init-args '{\"width\": 64}' --bins '[[2.0, 10], [4.0, 20]]' "
        "--memory-budget-gb 1.5 --device cpu --tolerance 0.25 --start 16 --max-batch-size 64",
        dict(model_class="m:C", init_args='{"width": 64}', bins="[[2.0, 10], [4.0, 20]]", memory_budget_gb=1.5,
             device="cpu", tolerance=0.25, start=16, max_batch_size=64),
    ),
}


@pytest.mark.parametrize("case", list(RECIPE_LINES))
def test_argparse_spellings_of_recipes_still_parse(case):
    command, argv, expected = RECIPE_LINES[case]
    kwargs = parsed(command, argv)
    values = vars(kwargs["config"]) if command == "compress" else kwargs
    assert {key: values[key] for key in expected} == expected


def test_legacy_argv_rewrites_only_what_jsonargparse_would_refuse():
    def schema(*, num_buckets: int = 1, flag: bool = False, items: list[str] = [], lr: float = 0.1):  # noqa: B006
        """Args: num_buckets: n. flag: f. items: i. lr: l."""

    assert legacy_argv(["--num-buckets", "3", "--flag", "--items", "a", "b", "--lr", "-1e-3"], schema, {}) == [
        "--num_buckets", "3", "--flag=true", "--lr", "-1e-3", '--items=["a", "b"]']
    assert legacy_argv(["--flag", "false", "--items", "[x, y]", "--no-flag"], schema, {}) == [
        "--flag=false", "--items", "[x, y]", "--flag=false"]
    assert legacy_argv(["--items=a", "--items", "b", "--unknown-option", "1"], schema, {}) == [
        "--unknown-option", "1", '--items=["a", "b"]']


@pytest.mark.parametrize("argv, names", [
    (["compress", "--model", "m", "--method", "prune", "--eval_cuts", "e", "--out", "o"], ["method", "prune"]),
    (["evaluate", "wer", "--ref", "r", "--hyp", "h", "--normalizer", "whisper"], ["normalizer", "whisper"]),
    (["prepare", "synthetic", "numbers", "out", "--sample-rate", "8000"], ["sample_rate", "8000"]),
    (["bins", "c.jsonl.gz", "--num-bukets", "3"], ["--num-bukets"]),
    (["prepare", "timit", "src", "out"], ["unknown corpus 'timit'", "fsdd"]),
])
def test_a_bad_option_is_one_line_naming_it(argv, names, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"speechkit {argv[0]}")
    assert all(name in err for name in names), err


def test_no_hand_written_argparse_parser_is_left():
    """Every command's parser is built by jsonargparse from a signature (``speechkit.commands``)."""
    found = []
    for path in sorted((REPO / "speechkit").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("ArgumentParser", "add_subparsers", "add_parser"):
                if isinstance(node.value, ast.Name) and node.value.id == "argparse" or node.attr != "ArgumentParser":
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.attr}")
    assert not found, found


def test_lightning_cli_does_not_warn_about_its_argv(monkeypatch, capsys):
    """``run_lightning_cli`` passes argv as ``args``; Lightning's warning that repeats the whole argv when
    ``sys.argv`` is set too (multistage, compare-strategies, a nested command line) is not raised."""
    monkeypatch.setattr(sys, "argv", ["speechkit", "multistage", "plan.yaml"])
    config = str(REPO / "conf" / "classify" / "fsdd_digits.yaml")
    with warnings.catch_warnings(record=True) as caught, pytest.raises(SystemExit) as stop:
        warnings.simplefilter("always")
        run_lightning_cli(["fit", "-c", config, "--print_config"])
    assert stop.value.code in (0, None)
    assert not [w for w in caught if "args parameter is intended" in str(w.message)]


def test_positionals_optional_and_lists():
    """``positional``: a parameter with a default may be left out; a list takes one or more values."""
    from speechkit.commands import command

    @command(positional=("inputs", "extra"))
    def transcribe_like(model: str, inputs: list[str], extra: str = "x", *, out: str) -> None:
        """Transcribe.

        Args:
            model: the model.
            inputs: files.
            extra: optional.
            out: output.
        """

    assert parse(transcribe_like, "speechkit t", ["m", "a.wav", "b.wav", "--out", "o"]) == {
        "model": "m", "out": "o", "inputs": ["a.wav", "b.wav"], "extra": "x"}
    with pytest.raises(Exception, match="inputs"):
        parse(transcribe_like, "speechkit t", ["m", "--out", "o"])
