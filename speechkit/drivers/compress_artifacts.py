"""What ``speechkit compress`` writes and measures beside the simulated model: counted sizes, the packed file
(:mod:`speechkit.compress.packing`) and CTranslate2 float32 / int8 folders decoded by CTranslate2 (see
:mod:`speechkit.drivers.compress` for the methods)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch
from torch import Tensor, nn

from speechkit.compress.packing import (
    MAX_PACKED_BITS,
    pack_weight,
    stored_layout,
    unpack_state_dict,
    unpack_weight,
)
from speechkit.compress.quant import check_group_size
from speechkit.errors import SpeechkitError
from speechkit.inference.writers import write_text_atomic
from speechkit.progress import progress_bar

if TYPE_CHECKING:
    from speechkit.drivers.compress import CompressConfig

PACKED_FORMAT = "speechkit-packed-1"
SCALE_BITS = 16  # one fp16 scale (and one fp16 zero point for INT grids) per group / row, as GPTQ stores them
FLOAT_FORMATS = {"fp8": ("e4m3", "e5m2"), "fp4": ("e2m1",)}


def _group_units(weight: Tensor, group_size: Optional[int]) -> int:
    return weight.numel() // check_group_size(group_size, weight.shape[1])


def _blocks(linears: dict[str, nn.Linear]) -> dict[str, list[str]]:
    """Group target linears by transformer block (``model.decoder.layers.3``); a linear outside a block is its own."""
    groups: dict[str, list[str]] = {}
    for name in linears:
        parts = name.split(".")
        key = ".".join(parts[: parts.index("layers") + 2]) if "layers" in parts[:-1] else name
        groups.setdefault(key, []).append(name)
    return groups


def int_bits(weight: Tensor, bits: int, group_size: Optional[int], symmetric: bool = False) -> float:
    """INT-k weight: ``bits`` per weight + an fp16 scale and (asymmetric grids) an fp16 zero point per group (or
    row)."""
    per_group = (1 if symmetric else 2) * SCALE_BITS
    return float(bits * weight.numel() + per_group * _group_units(weight, group_size))


def sparse_bits(weight: Tensor) -> float:
    """Sparse float32 weight: 32 bits per nonzero + the cheaper index: a 1-bit-per-entry bitmap, or CSR with
    16-bit column indices and 32-bit row pointers."""
    nonzero = int(torch.count_nonzero(weight))
    bitmap = weight.numel()
    csr = 16 * nonzero + 32 * (weight.shape[0] + 1)
    return float(32 * nonzero + min(bitmap, csr))


def size_report(model: nn.Module, target_bits: dict[str, float], folder: Path) -> dict[str, float]:
    """Parameters, nonzeros, the dense file on disk and the counted compressed size (targets by their
    representation, every other parameter and buffer at its stored width)."""
    params = dict(model.named_parameters())
    target_weights = {f"{name}.weight" for name in target_bits}
    other_bits = sum(p.numel() * p.element_size() * 8 for n, p in params.items() if n not in target_weights)
    files = [f for f in folder.glob("*.safetensors")] + [f for f in folder.glob("*.bin")]
    total = sum(p.numel() for p in params.values())
    targeted = sum(params[n].numel() for n in target_weights)
    target_zeros = sum(int((params[n] == 0).sum()) for n in target_weights)
    return {
        "parameters": total,
        "nonzero_parameters": sum(int(torch.count_nonzero(p)) for p in params.values()),
        "target_parameters": targeted,
        "target_sparsity": target_zeros / max(targeted, 1),
        "dense_file_bytes": sum(f.stat().st_size for f in files),
        "compressed_bytes": (other_bits + sum(target_bits.values())) / 8,
        "target_bits_per_weight": sum(target_bits.values()) / max(targeted, 1),
    }


# ------------------------------------------------------------------ artifacts: the packed file, CTranslate2 folders
def packed_layouts(cfg: CompressConfig, linears: dict[str, nn.Linear],
                   column_bits: Optional[dict[str, Tensor]] = None) -> dict[str, dict]:
    """How each target weight is packed (:mod:`speechkit.compress.packing` layouts), keyed ``<linear>.weight`` as in
    the saved state dict. Empty for ``none``; a target wider than 8 bits has no layout (it stays float32)."""
    widths = _qbert_widths(cfg, linears) if cfg.method == "qbert" else {}
    layouts = {}
    for name, linear in linears.items():
        shape = list(linear.weight.shape)
        if cfg.method in ("magnitude", "sparsegpt"):
            layout = {"kind": "sparse", "shape": shape}
        elif cfg.method in ("rtn", "gptq", "qbert"):
            bits = widths.get(name, cfg.bits)
            layout = {"kind": "int", "shape": shape, "bits": bits, "group_size": cfg.group_size}
            layout = layout if bits <= MAX_PACKED_BITS else None
        elif cfg.method == "baq":
            layout = {"kind": "int", "shape": shape, "column_bits": (column_bits or {})[name]}
        elif cfg.method in FLOAT_FORMATS:
            group = cfg.group_size or 32 if cfg.float_scale == "group" else None
            layout = {"kind": "minifloat", "shape": shape, "format": cfg.float_format, "granularity": cfg.float_scale,
                      "group_size": group}
        else:
            layout = None
        if layout is not None:
            layouts[f"{name}.weight"] = layout
    return layouts


def _qbert_widths(cfg: CompressConfig, linears: dict[str, nn.Linear]) -> dict[str, int]:
    """Each target's width from Q-BERT's per-block allocation (``cfg.extra["block_bits"]``)."""
    block_bits = cfg.extra.get("block_bits", {})
    return {name: int(block_bits[block]) for block, names in _blocks(linears).items() for name in names}


def pack_targets(linears: dict[str, nn.Linear], layouts: dict[str, dict]) -> tuple[dict[str, Tensor], dict]:
    """Pack every target weight that has a layout and replace it by its unpacked form, so that the model evaluated,
    saved and packed is one (a GPTQ weight moves by at most a float32 rounding; RTN, minifloat and sparse weights do
    not move). Returns the packed tensors (``<linear>.weight.<part>``) and what the replacement changed."""
    packed, changed, largest = {}, 0, 0.0
    with torch.no_grad():
        for key, layout in layouts.items():
            weight = linears[key.removesuffix(".weight")].weight
            parts = pack_weight(weight.detach(), layout)
            unpacked = unpack_weight(parts, layout).to(weight.dtype)
            moved = unpacked != weight
            if bool(moved.any()):
                changed += int(moved.sum())
                largest = max(largest, float(((unpacked - weight).abs() / weight.abs())[moved].max()))
            weight.copy_(unpacked)
            packed.update({f"{key}.{part}": tensor for part, tensor in parts.items()})
    return packed, {"packed_moved_weights": changed, "packed_max_relative_move": largest}


def write_packed(model_file: Path, packed: dict[str, Tensor], layouts: dict[str, dict], path: Path) -> dict:
    """Write ``path``: the saved ``model_file`` (safetensors) with its target weights replaced by their packed
    tensors, the layouts in the metadata; atomically. Returns its measured size and the packed targets' bytes."""
    from safetensors.torch import load_file, save

    from speechkit.checkpoints import save_atomic

    state = load_file(str(model_file))
    missing = sorted(set(layouts) - set(state))
    if missing:
        raise SpeechkitError(f"{model_file}: no tensor {missing[0]} (a target weight to pack)")
    tensors = {name: tensor for name, tensor in state.items() if name not in layouts}
    tensors.update(packed)
    metadata = {"format": PACKED_FORMAT,
                "layouts": json.dumps({name: stored_layout(layout) for name, layout in layouts.items()})}
    save_atomic(tensors, path, save=lambda obj, file: file.write(save(obj, metadata)))
    return {"packed_file": str(path), "packed_file_bytes": path.stat().st_size,
            "packed_target_bytes": sum(t.numel() * t.element_size() for t in packed.values()),
            "packed_target_weights": len(layouts)}


def read_packed(path: str | Path) -> dict[str, Tensor]:
    """The state dict of a ``model.packed.safetensors`` unpacked: exactly ``model/model.safetensors`` beside it."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as file:
        metadata = file.metadata() or {}
        if metadata.get("format") != PACKED_FORMAT:
            raise SpeechkitError(f"{path}: not a speechkit packed file (metadata format {metadata.get('format')!r}, "
                                 f"expected {PACKED_FORMAT!r})")
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    return unpack_state_dict(tensors, json.loads(metadata["layouts"]))


def folder_sizes(folder: Path) -> dict[str, int]:
    """Bytes on disk of a CTranslate2 folder's ``model.bin`` and of every file in it."""
    return {"model_bin_bytes": (folder / "model.bin").stat().st_size,
            "folder_bytes": sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())}


def ctranslate2_artifacts(task, hf_folder: Path, out: Path, manifest: str, eval_batches: list,
                          cfg: CompressConfig) -> dict[str, dict]:
    """CTranslate2 float32 and int8 folders of ``hf_folder`` (CTranslate2's own converter and quantization),
    each written atomically and decoded by CTranslate2 on the evaluation clips: WER, speed, sizes on disk."""
    from speechkit.checkpoints import staged_folder
    from speechkit.models.ctranslate2_writer import write_ctranslate2

    clips = _eval_clips(manifest, eval_batches)
    rows = {}
    for name, quantization in (("float32", None), ("int8", "int8")):
        folder = out / f"ctranslate2_{name}"
        with staged_folder(folder) as staging:
            write_ctranslate2(hf_folder, staging, quantization)
        predictions = out / f"predictions_ctranslate2_{name}.jsonl"
        rows[name] = {"folder": str(folder), **ctranslate2_evaluate(task, folder, name, clips, cfg, predictions),
                      **folder_sizes(folder)}
    return rows


def _eval_clips(manifest: str, eval_batches: list) -> dict[str, list]:
    """The evaluation cuts in batch order: ``ids``, ``refs`` (the batches' texts) and 16 kHz mono ``audios``."""
    import numpy as np

    from speechkit.data.manifests import load_cuts

    ids = [cut_id for batch in eval_batches for cut_id in batch.cut_ids]
    wanted = set(ids)
    cuts = {cut.id: cut for cut in load_cuts(manifest, "eval_cuts") if cut.id in wanted}
    audios = []
    for cut_id in ids:
        cut = cuts[cut_id] if cuts[cut_id].sampling_rate == 16000 else cuts[cut_id].resample(16000)
        samples = cut.load_audio()  # (channels, samples)
        audios.append(np.ascontiguousarray(samples.mean(axis=0), dtype=np.float32))
    return {"ids": ids, "refs": [text for batch in eval_batches for text in batch.texts], "audios": audios}


def ctranslate2_evaluate(task, folder: Path, compute_type: str, clips: dict[str, list], cfg: CompressConfig,
                         predictions: Optional[Path] = None) -> dict[str, float]:
    """Greedy WER of a CTranslate2 folder (:func:`speechkit.inference.runtimes.ctranslate2_transcribe`: 30 s
    log-mel windows, the folder's prompt, ``batch_size`` clips a call, as many threads as torch uses) scored like
    :func:`evaluate`, and its speed: audio seconds per wall second of the calls (log-mel features included;
    ``features_s`` is their share, measured apart)."""
    from speechkit.inference.runtimes import (
        SAMPLE_RATE,
        ctranslate2_transcribe,
        load_ctranslate2_whisper,
    )

    threads = cfg.threads or torch.get_num_threads()
    runner = load_ctranslate2_whisper(folder, compute_type=compute_type, threads=threads)
    max_length = len(runner.prompt) + task.core.max_new_tokens
    audios, size = clips["audios"], cfg.batch_size
    hyps, wall, features = [], 0.0, 0.0
    for start in progress_bar(range(0, len(audios), size), desc=f"decode ctranslate2 {compute_type}", unit="batch"):
        chunk = audios[start:start + size]
        begin = time.perf_counter()
        hyps += ctranslate2_transcribe(runner, chunk, batch_size=size, max_length=max_length)
        middle = time.perf_counter()
        runner.extractor(chunk, sampling_rate=SAMPLE_RATE, return_tensors="np")
        wall, features = wall + middle - begin, features + time.perf_counter() - middle
    metric = task.core.wer_metric()
    metric.update(clips["refs"], hyps)
    if predictions is not None:
        rows = [{"id": i, "ref": r, "hyp": h} for i, r, h in zip(clips["ids"], clips["refs"], hyps)]
        write_text_atomic(predictions, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    audio = sum(len(a) for a in audios) / SAMPLE_RATE
    return {**{name: float(value) for name, value in metric.compute().items()}, "audio_s": audio,
            "decode_wall_s": wall, "features_s": features, "speed_x": audio / max(wall, 1e-9)}
