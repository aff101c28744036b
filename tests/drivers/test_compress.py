"""``speechkit compress`` end to end on a tiny random Whisper and a tone corpus: the reported sparsity, bit counts
and saved weights match the configuration; bad options are ``SpeechkitError`` naming the option."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from speechkit.cli import main as speechkit_main
from speechkit.commands import command_main
from speechkit.drivers.compress import CompressConfig, compress
from speechkit.errors import SpeechkitError

main = command_main("speechkit.drivers.compress:compress_command", "speechkit compress")

TARGET_PREFIXES = ("model.encoder.layers.", "model.decoder.layers.")


pytestmark = pytest.mark.usefixtures("one_thread")

@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from speechkit.testing import tiny_whisper_dir, tone_corpus

    root = tmp_path_factory.mktemp("compress")
    tone_corpus(root / "data", "train", num_cuts=4)
    tone_corpus(root / "data", "test", num_cuts=3, seed=1)
    return {"model": str(tiny_whisper_dir(root / "whisper", multilingual=False)),
            "eval": str(root / "data" / "cuts_test.jsonl.gz"), "calib": str(root / "data" / "cuts_train.jsonl.gz"),
            "root": str(root)}


@pytest.fixture(autouse=True)
def load_once(setup: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each run gets a fresh copy of the tiny model but shares the (slow to load, read-only) tokenizer."""
    from speechkit.models.ctranslate2 import WhisperBundle
    from speechkit.models.pretrained import load_whisper

    if "bundle" not in setup:
        setup["bundle"] = load_whisper(setup["model"])
    cached = setup["bundle"]

    def load(name: str, cache: bool = True) -> WhisperBundle:
        assert name == setup["model"]
        return WhisperBundle(copy.deepcopy(cached.model), cached.tokenizer, cached.feature_extractor,
                             copy.deepcopy(cached.generation_config))

    monkeypatch.setattr("speechkit.models.whisper_seq2seq.load_whisper", load)


def target_weights(folder: Path) -> dict[str, torch.Tensor]:
    state = load_file(str(folder / "model.safetensors"))
    return {k: v for k, v in state.items()
            if k.startswith(TARGET_PREFIXES) and k.endswith(".weight") and "layer_norm" not in k}


def run(setup: dict, method: str, name: str, **kwargs) -> dict:
    cfg = CompressConfig(model=setup["model"], method=method, eval_cuts=setup["eval"], calib_cuts=setup["calib"],
                         num_calib=2, out_dir=str(Path(setup["root"]) / name), max_new_tokens=3, skip_before=True,
                         **kwargs)
    return compress(cfg)


def test_magnitude_cli_reports_and_saves_the_configured_sparsity(setup: dict, capsys) -> None:
    out = Path(setup["root"]) / "magnitude"
    assert main(["--model", setup["model"], "--method", "magnitude", "--sparsity", "0.5", "--eval-cuts", setup["eval"],
                 "--out", str(out), "--max-new-tokens", "3", "--num-calib", "2"]) == 0
    assert "before" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    before, after = report["before"], report["after"]
    weights = target_weights(out / "model")
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    total = sum(w.numel() for w in weights.values())
    assert zeros == total // 2 and after["target_sparsity"] == 0.5
    assert all(int((w == 0).sum()) == w.numel() // 2 for w in weights.values())  # per layer, not just overall
    assert after["target_parameters"] == total and after["parameters"] == before["parameters"]
    assert before["nonzero_parameters"] - after["nonzero_parameters"] == zeros - _zeros_before(setup["model"])
    assert after["target_bits_per_weight"] == 32 * 0.5 + 1  # fp32 nonzeros + a 1-bit bitmap
    for row, part in ((before, "before"), (after, "after")):
        assert 0 <= row["wer"] and row["speed_x"] > 0 and row["audio_s"] > 0
        lines = [json.loads(line) for line in (out / f"predictions_{part}.jsonl").read_text().splitlines()]
        assert len(lines) == 3 and {"id", "ref", "hyp"} <= set(lines[0])


def _zeros_before(model_dir: str) -> int:
    return sum(int((w == 0).sum()) for w in target_weights(Path(model_dir)).values())


def test_sparsegpt_prunes_exactly_the_configured_fraction(setup: dict) -> None:
    report = run(setup, "sparsegpt", "sparsegpt", sparsity=0.25)
    weights = target_weights(Path(setup["root"]) / "sparsegpt" / "model")
    assert all(int((w == 0).sum()) == w.numel() // 4 for w in weights.values())
    assert report["after"]["target_sparsity"] == 0.25


def test_rtn_groups_hold_at_most_2_to_the_bits_levels(setup: dict) -> None:
    report = run(setup, "rtn", "rtn", bits=3, group_size=16)
    for w in target_weights(Path(setup["root"]) / "rtn" / "model").values():
        groups = w.reshape(-1, 16)
        assert max(len(torch.unique(g)) for g in groups) <= 8
    assert report["after"]["target_bits_per_weight"] == 3 + 2 * 16 / 16  # + fp16 scale and zero per group of 16


@pytest.mark.parametrize("argv, message", [
    (["--method", "prune"], "\"method\": Expected a typing.Literal\\['none', 'magnitude'.*Got value: prune"),
    (["--method", "magnitude", "--sparsity", "1.0"], "sparsity"),
    (["--method", "sparsegpt", "--sparsity", "-0.1"], "sparsity"),
    (["--method", "gptq", "--bits", "1"], "bits"),
])
def test_bad_options_fail_before_loading(setup: dict, argv: list[str], message: str, capsys) -> None:
    """One line naming the option, before the model is loaded (the method's choices are its Literal type)."""
    args = ["--model", "/no/such/model", "--eval-cuts", setup["eval"], "--out", setup["root"] + "/bad", *argv]
    assert speechkit_main(["compress", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("speechkit compress: error: ")
    assert re.search(message, err), err


def test_target_pattern_matching_nothing_and_bad_group_size(setup: dict) -> None:
    with pytest.raises(SpeechkitError, match="model.decoder.blocks"):
        run(setup, "rtn", "bad_pattern", targets=("model.decoder.blocks.*",))
    with pytest.raises(SpeechkitError, match="group_size=24"):
        run(setup, "rtn", "bad_group", group_size=24)


def test_eval_loss_is_the_token_weighted_cross_entropy_whatever_the_batching(setup: dict) -> None:
    from speechkit.drivers.compress import batches, evaluate, load_task

    task = load_task(setup["model"], max_new_tokens=3)
    pairs = batches(task, setup["eval"], 2)  # 3 cuts: a batch of 2, then a batch of 1
    singles = batches(task, setup["eval"], 1)
    per_cut = [(float(task(b)), int((task.core.shift_labels(b)[1] != -100).sum())) for b in singles]
    by_hand = sum(loss * n for loss, n in per_cut) / sum(n for _, n in per_cut)
    mean_of_batches = sum(float(task(b)) for b in pairs) / len(pairs)
    assert [len(b) for b in pairs] == [2, 1] and abs(mean_of_batches - by_hand) > 1e-4  # the weighting matters here
    assert evaluate(task, pairs)["loss"] == pytest.approx(by_hand, rel=1e-5)
    assert evaluate(task, singles)["loss"] == pytest.approx(by_hand, rel=1e-6)


def test_calibration_subset_is_the_first_cuts_or_spread_over_the_manifest(tmp_path: Path) -> None:
    from lhotse import CutSet
    from lhotse.testing.dummies import dummy_cut

    from speechkit.drivers.compress import subset_manifest

    manifest = tmp_path / "cuts.jsonl.gz"
    CutSet.from_cuts(dummy_cut(i) for i in range(10)).to_file(manifest)
    first = CutSet.from_file(subset_manifest(str(manifest), 3, tmp_path, "calib_cuts"))
    spread = CutSet.from_file(subset_manifest(str(manifest), 3, tmp_path, "calib_cuts", spread=True))
    ids = [c.id for c in CutSet.from_file(manifest)]
    assert [c.id for c in first] == ids[:3]
    assert [c.id for c in spread] == [ids[0], ids[3], ids[6]]


# ------------------------------------------------------------------ artifacts: the packed file, CTranslate2 folders
PACKED_RUNS = {
    "magnitude50": ("magnitude", {"sparsity": 0.5}),
    "rtn4_g16": ("rtn", {"bits": 4, "group_size": 16}),
    "gptq3": ("gptq", {"bits": 3}),
    "baq3": ("baq", {"avg_bits": 3}),
    "fp4_g16": ("fp4", {"float_scale": "group", "group_size": 16}),
    "fp8": ("fp8", {}),
}


@pytest.mark.parametrize("name", list(PACKED_RUNS))
def test_the_packed_file_unpacks_to_the_saved_and_evaluated_model_exactly(setup: dict, name: str) -> None:
    from speechkit.drivers.compress import PACKED_FILE, read_packed

    method, options = PACKED_RUNS[name]
    report = run(setup, method, f"packed_{name}", **options)
    out = Path(setup["root"]) / f"packed_{name}"
    saved = load_file(str(out / "model" / "model.safetensors"))
    unpacked = read_packed(out / PACKED_FILE)
    assert unpacked.keys() == saved.keys()
    assert all(torch.equal(unpacked[key], saved[key]) for key in saved)
    after = report["after"]
    assert after["packed_file_bytes"] == (out / PACKED_FILE).stat().st_size
    assert after["packed_target_weights"] == len(target_weights(out / "model"))
    assert after["packed_max_relative_move"] < 1e-6  # GPTQ / BAQ: float64 results moved by one float32 rounding
    if method in ("magnitude", "rtn", "fp4", "fp8"):
        assert after["packed_moved_weights"] == 0  # computed in float32: already on a float32 grid


def test_a_4_bit_packed_file_takes_under_0_3_of_the_float32_weights_on_disk(setup: dict) -> None:
    after = run(setup, "rtn", "packed_size", bits=4)["after"]
    dense_targets = 4 * after["target_parameters"]
    # the packed file minus everything it stores as saved: the packed targets and their header entries / layouts
    on_disk = after["packed_file_bytes"] - (after["dense_file_bytes"] - dense_targets)
    assert on_disk < 0.3 * dense_targets, on_disk / dense_targets
    assert after["packed_bits_per_target_weight"] == pytest.approx(4 + 36 / 32, abs=0.5)  # rows of 32 or 64 inputs


def test_no_packed_file_for_a_method_without_one(setup: dict) -> None:
    from speechkit.drivers.compress import PACKED_FILE

    report = run(setup, "none", "packed_none")
    assert report["after"]["packed_file"] is None and not (Path(setup["root"]) / "packed_none" / PACKED_FILE).exists()


def test_ctranslate2_int8_folder_loads_is_small_and_holds_the_symmetric_rtn_grid(setup: dict, capsys) -> None:
    pytest.importorskip("ctranslate2")
    from speechkit.models.ctranslate2 import load_ctranslate2

    out = Path(setup["root"]) / "ct2"
    assert main(["--model", setup["model"], "--method", "rtn", "--bits", "8", "--symmetric", "--format",
                 "ctranslate2", "--eval-cuts", setup["eval"], "--out", str(out), "--max-new-tokens", "3",
                 "--num-calib", "1", "--skip-before"]) == 0
    printed = capsys.readouterr().out
    assert "ct2 float32" in printed and "ct2 int8" in printed and "packed MB" in printed
    report = json.loads((out / "report.json").read_text())["ctranslate2"]
    float32, int8 = report["float32"], report["int8"]
    assert int8["model_bin_bytes"] == (out / "ctranslate2_int8" / "model.bin").stat().st_size
    assert int8["model_bin_bytes"] < 0.35 * float32["model_bin_bytes"]
    for row in (float32, int8):
        assert 0 <= row["wer"] and row["speed_x"] > 0 and row["audio_s"] > 0 and row["folder_bytes"] > 0
    # CTranslate2's int8 of the uncompressed model holds the grid of speechkit's symmetric INT8 RTN per row
    import ctranslate2

    ctranslate2.models.Whisper(str(out / "ctranslate2_int8"), compute_type="int8")
    ours, theirs = target_weights(out / "model"), load_ctranslate2(out / "ctranslate2_int8").model.state_dict()
    for key, weight in ours.items():
        assert torch.allclose(theirs[key], weight, rtol=1e-6, atol=1e-9), key


@pytest.mark.parametrize("argv, message", [
    (["--method", "gptq", "--format", "ctranslate2"], "--format ctranslate2 writes CTranslate2's int8 .*--method gptq"),
    (["--method", "rtn", "--bits", "4", "--format", "ctranslate2"], "--method rtn --bits 4"),
    (["--method", "rtn", "--bits", "8", "--group-size", "16", "--format", "ctranslate2"], "--group-size 16"),
    (["--method", "magnitude", "--symmetric"], "--symmetric applies to the INT methods"),
    (["--method", "rtn", "--format", "onnx"], "format"),
])
def test_bad_artifact_options_are_one_line(setup: dict, argv: list[str], message: str, capsys) -> None:
    args = ["--model", "/no/such/model", "--eval-cuts", setup["eval"], "--out", setup["root"] + "/bad", *argv]
    assert speechkit_main(["compress", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("speechkit compress: error: ")
    assert re.search(message, err), err
