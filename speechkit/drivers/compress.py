"""``speechkit compress``: prune or quantize a Whisper checkpoint, then measure WER, size and CPU decode speed.

One configured method is applied to the ``nn.Linear`` weights matched by ``targets`` (default: every linear of the
encoder and decoder blocks; the conv stem, embeddings / tied output projection and norms stay float32):

* ``magnitude`` / ``sparsegpt`` at ``sparsity`` (per layer; SparseGPT calibrated, Frantar & Alistarh 2023);
* ``rtn`` / ``gptq`` at ``bits`` with ``group_size`` (GPTQ, Frantar et al. 2023, Alg. 1);
* ``baq``: per-column bits at ``avg_bits`` average by BAQ's closed form inside GPTQ (Zhang et al. 2025);
* ``qbert``: per-block bits at ``avg_bits`` average ranked by Q-BERT's Hessian spectrum ``|mean l| + std l``
  (Shen et al. 2020), each block then quantized by ``quantizer`` (RTN or GPTQ);
* ``fp8`` / ``fp4``: minifloat weights (E4M3 / E5M2 / E2M1) with a per-``float_scale`` scale.

Every quantizer is simulated (fake-quant: weights are dequantized to float32), so the saved folder is a normal
Whisper and decode speed on CPU measures dense float32 GEMMs; speed changes only when shapes change.
The size report gives the dense file as saved, a *counted* compressed size (see ``int_bits`` / ``sparse_bits``) and
the *measured* size of the artifacts written beside it:

* ``model.packed.safetensors`` for every method with a packed format (sparse, INT-k up to 8 bits, BAQ, FP8 / FP4;
  :mod:`speechkit.compress.packing`): the target weights packed, everything else as saved. :func:`read_packed` gives
  back ``model/model.safetensors`` exactly (the target weights are first replaced by their unpacked form, which
  changes a GPTQ weight by at most a float32 rounding, so the evaluated, saved and packed weights are one model).
* ``--format ctranslate2`` (INT8 RTN per row): ``ctranslate2_float32/`` and ``ctranslate2_int8/``, CTranslate2's
  own converter on the uncompressed model (its int8: symmetric per-row absmax, 127 levels a side, the grid of
  ``--method rtn --bits 8 --symmetric``; it also quantizes the embeddings, the output projection and the conv stem,
  and on CPU computes int8 GEMMs with dynamically quantized activations), both decoded by CTranslate2 on the
  evaluation clips: WER, speed and ``model.bin`` size beside the simulated row.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional, get_args

import torch
from lhotse import CutSet
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from speechkit.commands import command
from speechkit.compress.prune import find_linears, magnitude_prune, sparsegpt
from speechkit.compress.prune.magnitude import check_sparsity
from speechkit.compress.quant import (
    allocate_bits,
    check_bits,
    check_group_size,
    compress_linears,
    fake_quant_float,
    gptq,
    gptq_baq,
    quantize_rtn,
    quantize_weights,
)
from speechkit.drivers.compress_artifacts import (
    FLOAT_FORMATS,
    SCALE_BITS,
    _blocks,
    ctranslate2_artifacts,
    int_bits,
    pack_targets,
    packed_layouts,
    read_packed,  # noqa: F401  (speechkit.drivers.compress.read_packed: the reader of what compress writes)
    size_report,
    sparse_bits,
    write_packed,
)
from speechkit.errors import SpeechkitError
from speechkit.inference.writers import write_text_atomic
from speechkit.progress import progress_bar
from speechkit.tensors import IGNORE_INDEX

Method = Literal["none", "magnitude", "sparsegpt", "rtn", "gptq", "baq", "qbert", "fp8", "fp4"]
Quantizer = Literal["rtn", "gptq"]
FloatFormat = Literal["e4m3", "e5m2", "e2m1"]
FloatScale = Literal["none", "tensor", "channel", "group"]
ArtifactFormat = Literal["hf", "ctranslate2"]
INT_METHODS = ("rtn", "gptq", "baq", "qbert")
PACKED_FILE = "model.packed.safetensors"
METHODS: tuple[str, ...] = get_args(Method)
DEFAULT_TARGETS = ("model.encoder.layers.*", "model.decoder.layers.*")


@dataclass
class CompressConfig:
    """Prune or quantize a Whisper checkpoint, then measure WER, size and CPU decode speed.

    The fields are the options of ``speechkit compress`` (declared once, here). The compressed Hugging Face folder
    goes to ``<out>/model``, its packed weights to ``<out>/model.packed.safetensors`` (methods with a packed format),
    CTranslate2 folders to ``<out>/ctranslate2_{float32,int8}`` (``--format ctranslate2``), the numbers to
    ``<out>/report.json``; the table of before / after (and CTranslate2) rows is printed.

    Args:
        model: ``ct2:tiny.en``, a Hugging Face Whisper folder, or a ``WhisperFinetune`` / ``WhisperDistill`` .ckpt.
        method: what to apply (``none`` measures the model as it is).
        eval_cuts: cut manifest WER and speed are measured on.
        out_dir: where the compressed Hugging Face folder and ``report.json`` go.
        calib_cuts: manifest of calibration utterances (default: ``eval_cuts``; prefer the training split).
        num_calib: calibration utterances (the first N of ``calib_cuts``, or N spread over it with ``calib_spread``).
        calib_spread: take every ``len / N``-th cut instead of the first N (a manifest sorted by label, as FSDD's
            is, would otherwise calibrate on one class).
        num_eval: evaluate on the first N of ``eval_cuts`` only (``None`` = all).
        sparsity: fraction of each target weight set to 0, in [0, 1).
        bits: INT bit width (``rtn`` / ``gptq``), in [2, 16].
        group_size: inputs sharing one scale (``None`` = one per output row); must divide every target's row.
        avg_bits: average-bits budget of ``baq`` / ``qbert``.
        choices: bit widths ``qbert`` may give a block (``baq`` uses 2..8).
        quantizer: how ``qbert`` quantizes a block at its allocated width.
        symmetric: INT grids (``rtn`` / ``gptq`` / ``baq`` / ``qbert``) symmetric around 0, no zero point
            (CTranslate2's int8 grid at 8 bits per row) instead of GPTQ's asymmetric min/max grid.
        format: ``hf``: the Hugging Face folder (+ the packed file); ``ctranslate2`` also writes CTranslate2
            float32 and int8 folders of the uncompressed model and decodes the clips with them (needs
            ``--method rtn --bits 8`` per row and the ``ctranslate2`` package).
        float_format: ``e4m3`` / ``e5m2`` for ``fp8`` (default e4m3), ``e2m1`` for ``fp4``.
        float_scale: scale granularity of ``fp8`` / ``fp4`` (``group`` uses ``group_size``, default 32).
        targets: glob patterns of ``nn.Linear`` names to compress.
        sequential: GPTQ / SparseGPT calibrate each layer after the earlier ones were compressed (``--one-pass``:
            false, every layer on the uncompressed model: faster, less accurate).
        qbert_batches: calibration batches for the Q-BERT eigenvalues.
        qbert_iters: power iterations for the Q-BERT eigenvalues.
        batch_size: utterances per decoding / calibration batch.
        pad_to_30s: override the task's input padding (stock Whisper: ``True``).
        max_new_tokens: override the decoding length limit.
        threads: torch CPU threads (0 = torch's default).
        skip_before: do not evaluate the uncompressed model.

    Attributes:
        extra: filled by the method (``qbert``: bits and Omega per block), saved in the report.

    Examples:
        speechkit compress --model ct2:tiny.en --method magnitude --sparsity 0.5 \\
            --eval_cuts out/fsdd/cuts_test.jsonl.gz --out exp/compress/magnitude50
        python tools/compress.py --model exp/fsdd/last.ckpt --method gptq --bits 4 --group-size 128 \\
            --eval-cuts cuts_test.jsonl.gz --calib-cuts cuts_train.jsonl.gz --one-pass --out exp/compress/gptq4
        speechkit compress --model exp/fsdd/last.ckpt --method rtn --bits 8 --symmetric --format ctranslate2 \\
            --eval-cuts cuts_test.jsonl.gz --out exp/compress/int8_ct2
    """

    model: str
    method: Method
    eval_cuts: str
    out_dir: str
    calib_cuts: Optional[str] = None
    num_calib: int = 32
    calib_spread: bool = False
    num_eval: Optional[int] = None
    sparsity: float = 0.5
    bits: int = 4
    group_size: Optional[int] = None
    avg_bits: float = 4.0
    choices: tuple[int, ...] = (2, 3, 4, 8)
    quantizer: Quantizer = "rtn"
    symmetric: bool = False
    format: ArtifactFormat = "hf"
    float_format: Optional[FloatFormat] = None
    float_scale: FloatScale = "channel"
    targets: tuple[str, ...] = DEFAULT_TARGETS
    sequential: bool = True
    qbert_batches: int = 1
    qbert_iters: int = 10
    batch_size: int = 16
    pad_to_30s: Optional[bool] = None
    max_new_tokens: Optional[int] = None
    threads: int = 0
    skip_before: bool = False
    extra: dict = field(default_factory=dict, init=False)

    def validate(self) -> None:
        """Raise ``SpeechkitError`` naming the first bad option (before any model is loaded)."""
        if self.method not in METHODS:
            raise SpeechkitError(f"method {self.method!r}: expected one of {', '.join(METHODS)}")
        check_sparsity(self.sparsity)
        check_bits(self.bits)
        for choice in self.choices:
            check_bits(int(choice), "choices")
        if self.method in ("baq", "qbert") and not min(self.choices) <= self.avg_bits <= 16:
            raise SpeechkitError(f"avg_bits={self.avg_bits} must be in [{min(self.choices)}, 16]")
        if self.method == "baq" and float(self.avg_bits) != int(self.avg_bits):
            raise SpeechkitError(f"avg_bits={self.avg_bits}: baq needs a whole number (its uniform GPTQ pass)")
        if self.quantizer not in get_args(Quantizer):  # the CLI checks the Literal types; library callers here
            raise SpeechkitError(f"quantizer {self.quantizer!r}: expected rtn or gptq")
        if self.method in FLOAT_FORMATS:
            self.float_format = self.float_format or FLOAT_FORMATS[self.method][0]
            if self.float_format not in FLOAT_FORMATS[self.method]:
                raise SpeechkitError(f"float_format {self.float_format!r}: {self.method} takes "
                                     f"{', '.join(FLOAT_FORMATS[self.method])}")
        if self.float_scale not in get_args(FloatScale):
            raise SpeechkitError(f"float_scale {self.float_scale!r}: expected none, tensor, channel or group")
        for name in ("num_calib", "batch_size", "qbert_batches", "qbert_iters"):
            if getattr(self, name) < 1:
                raise SpeechkitError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.num_eval is not None and self.num_eval < 1:
            raise SpeechkitError(f"num_eval must be at least 1, got {self.num_eval}")
        self._validate_artifacts()

    def _validate_artifacts(self) -> None:
        """``symmetric`` and ``format`` fit the method (one line naming the options)."""
        if self.symmetric and self.method not in INT_METHODS:
            raise SpeechkitError(f"--symmetric applies to the INT methods ({', '.join(INT_METHODS)}), "
                                 f"not --method {self.method}")
        if self.format not in get_args(ArtifactFormat):
            raise SpeechkitError(f"format {self.format!r}: expected hf or ctranslate2")
        if self.format == "ctranslate2":
            if (self.method, self.bits, self.group_size) != ("rtn", 8, None):
                got = f"--method {self.method}" + (f" --bits {self.bits}" if self.method in INT_METHODS else "") + \
                    (f" --group-size {self.group_size}" if self.group_size is not None else "")
                raise SpeechkitError(f"--format ctranslate2 writes CTranslate2's int8 (per-row absmax): it goes with "
                                     f"--method rtn --bits 8 and no --group-size, got {got}")
            import importlib.util

            if importlib.util.find_spec("ctranslate2") is None:
                raise SpeechkitError("--format ctranslate2 needs the ctranslate2 package: "
                                     'pip install "speechkit[deploy]"')


# ------------------------------------------------------------------ model and data
def load_task(model: str, pad_to_30s: Optional[bool] = None, max_new_tokens: Optional[int] = None):
    """A ``WhisperFinetune`` (or ``WhisperDistill`` for a distilled checkpoint) in eval mode on CPU."""
    from speechkit.tasks.whisper_finetune import WhisperFinetune

    overrides = {k: v for k, v in (("pad_to_30s", pad_to_30s), ("max_new_tokens", max_new_tokens)) if v is not None}
    if model.endswith(".ckpt"):
        from speechkit.checkpoints import load_task as load_checkpoint_task

        # The class the checkpoint names (a distilled student rebuilds its shrunk shapes); weights_only.
        task = load_checkpoint_task(model, default_class=WhisperFinetune, **overrides)
    else:
        task = WhisperFinetune(model_name_or_path=model, **overrides)
    return task.eval()


def check_targets(model: nn.Module, cfg: CompressConfig) -> None:
    """Every target pattern matches an ``nn.Linear`` and ``group_size`` (where used) divides every target's row."""
    linears = find_linears(model, list(cfg.targets))
    grouped = cfg.method in ("rtn", "gptq", "qbert") or cfg.method in FLOAT_FORMATS and cfg.float_scale == "group"
    if grouped and cfg.group_size is not None:
        for m in linears.values():
            check_group_size(cfg.group_size, m.in_features)


def subset_manifest(manifest: str, n: Optional[int], out: Path, name: str, spread: bool = False) -> str:
    """Path of a manifest holding the first ``n`` cuts of ``manifest``, or with ``spread`` ``n`` cuts evenly spaced
    over it (written under ``out``); ``manifest`` itself when ``n`` is ``None``."""
    from speechkit.data.datamodule import load_cuts

    cuts = load_cuts(manifest, name)
    if n is None:
        return manifest
    if spread:
        every = list(cuts)
        chosen = [every[i * len(every) // n] for i in range(min(n, len(every)))]
        subset, tag = CutSet.from_cuts(chosen), f"spread{n}"
    else:
        subset, tag = CutSet.from_cuts(list(cuts.subset(first=n))), f"first{n}"
    path = out / f"{name}_{tag}.jsonl.gz"
    subset.to_file(path)
    return str(path)


def batches(task, manifest: str, batch_size: int, desc: str = "load batches") -> list:
    """Static batches of ``manifest`` with the task's token ids (test-split loader of ``SpeechDataModule``), read
    under a progress bar named ``desc``."""
    from speechkit.data import SpeechDataModule
    from speechkit.data.config import DataConfig

    data = SpeechDataModule(config=DataConfig(test_cuts=manifest, val_batch_size=batch_size))
    data.tokenizer, data.pad_token_id = task.tokenize, task.pad_token_id
    return list(progress_bar(data.test_dataloader(), desc=desc, unit="batch"))


@torch.no_grad()
def evaluate(task, eval_batches: list, predictions: Optional[Path] = None, desc: str = "evaluate") -> dict[str, float]:
    """Greedy WER (normalized and raw), decode speed (audio seconds per wall second of ``transcribe``) and
    ``loss``, the teacher-forced cross-entropy per transcript token (nats; finer than WER when few words are
    wrong); ``{"id", "ref", "hyp"}`` lines go to ``predictions`` when given. The batches go under a progress bar
    named ``desc``."""
    from speechkit.models.whisper_seq2seq import prediction_rows

    metric = task.core.wer_metric()
    audio, wall, rows, nats, tokens = 0.0, 0.0, [], 0.0, 0
    for batch in progress_bar(eval_batches, desc=desc, unit="batch"):
        start = time.perf_counter()
        hyps = task.core.transcribe(batch)
        wall += time.perf_counter() - start
        audio += float(batch.durations.sum())
        metric.update(batch.texts, hyps)
        rows += prediction_rows(batch, hyps)
        count = int((task.core.shift_labels(batch)[1] != IGNORE_INDEX).sum())
        nats, tokens = nats + float(task(batch)) * count, tokens + count  # task(batch): mean over its tokens
    if predictions is not None:
        write_text_atomic(predictions, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    scores = {name: float(value) for name, value in metric.compute().items()}
    return {**scores, "loss": nats / max(tokens, 1), "audio_s": audio, "decode_wall_s": wall,
            "speed_x": audio / max(wall, 1e-9)}


# ------------------------------------------------------------------ methods
def _calibrate(task, calib: list) -> Callable[[nn.Module], None]:
    """Teacher-forced forward passes of the task over the calibration batches (the Hessian hooks see them)."""
    return lambda _model: [task(batch) for batch in calib]


def _compress_linears(task, targets: list[str], calib: list, compress: Callable[[Tensor, object], Tensor],
                      sequential: bool) -> None:
    """``compress_linears`` on ``task.model`` under a progress bar over the target linears (each: its calibration
    pass when ``sequential``, then ``compress``)."""
    with progress_bar(desc="calibrate and compress", total=len(find_linears(task.model, targets)),
                      unit="linear") as bar:
        def counted(weight: Tensor, hessian: object) -> Tensor:
            compressed = compress(weight, hessian)
            bar.update()
            return compressed

        compress_linears(task.model, targets, _calibrate(task, calib), counted, sequential)


def apply_method(task, cfg: CompressConfig, calib: list,
                 column_bits: Optional[dict[str, Tensor]] = None) -> dict[str, float]:
    """Compress ``task.model`` in place; returns the counted bits of every target weight (``int_bits``,
    ``sparse_bits``, or the method's own count). ``baq`` puts each target's ``(in,)`` bits per column into
    ``column_bits`` when given (its packed layout)."""
    model, targets, method = task.model, list(cfg.targets), cfg.method
    linears = find_linears(model, targets)  # fails early, naming a pattern that matches nothing
    if method == "none":
        return {name: 32.0 * m.weight.numel() for name, m in linears.items()}
    if method in ("magnitude", "sparsegpt"):
        if method == "magnitude":
            quantize_weights(model, targets, lambda w: magnitude_prune(w, cfg.sparsity))
        else:
            _compress_linears(task, targets, calib, lambda w, h: sparsegpt(w, h, cfg.sparsity), cfg.sequential)
        return {name: sparse_bits(m.weight) for name, m in linears.items()}
    if method in ("rtn", "gptq"):
        bits, size, symmetric = cfg.bits, cfg.group_size, cfg.symmetric
        if method == "rtn":
            quantize_weights(model, targets, lambda w: quantize_rtn(w, bits, size, symmetric))
        else:
            _compress_linears(task, targets, calib, lambda w, h: gptq(w, h, bits, size, symmetric), cfg.sequential)
        return {name: int_bits(m.weight, bits, size, symmetric) for name, m in linears.items()}
    if method == "baq":
        return _baq(task, cfg, calib, linears, {} if column_bits is None else column_bits)
    if method == "qbert":
        return _qbert(task, cfg, calib, linears)
    return _minifloat(model, cfg, linears)


def _baq(task, cfg: CompressConfig, calib: list, linears: dict[str, nn.Linear],
         columns: dict[str, Tensor]) -> dict[str, float]:
    """BAQ inside each layer: per-column widths whose weighted mean is at most ``avg_bits`` (into ``columns``)."""

    def compress(weight: Tensor, hessian) -> Tensor:
        q, bits = gptq_baq(weight, hessian, cfg.avg_bits, symmetric=cfg.symmetric)
        columns[_name_of(linears, weight)] = bits
        return q

    _compress_linears(task, list(linears), calib, compress, cfg.sequential)
    # one (scale, zero) per row, shared by every column width (gptq_with_losses' BAQ grid); symmetric: no zero
    per_row = (1 if cfg.symmetric else 2) * SCALE_BITS
    return {name: float(columns[name].sum()) * m.out_features + per_row * m.out_features
            for name, m in linears.items()}


def _name_of(linears: dict[str, nn.Linear], weight: Tensor) -> str:
    """The target whose weight ``compress_linears`` handed over (a detached view of the same storage)."""
    for name, m in linears.items():
        if m.weight.data_ptr() == weight.data_ptr():
            return name
    raise SpeechkitError("internal: compressed weight matches no target")


def _qbert(task, cfg: CompressConfig, calib: list, linears: dict[str, nn.Linear]) -> dict[str, float]:
    """Q-BERT: block sensitivity ``Omega = |mean lambda| + std lambda`` (all parameters of the block), rank
    allocation within ``avg_bits`` (cost = the block's target weights), then each block quantized at its width."""
    from speechkit.compress.quant import qbert_sensitivity

    blocks = _blocks(linears)  # block module name -> its target linears
    with sdpa_kernel([SDPBackend.MATH]):  # the fused CPU attention kernels have no double backward (HVP)
        omega = qbert_sensitivity(task.model, lambda _m, batch: task(batch), calib[: cfg.qbert_batches],
                                  list(blocks), iters=cfg.qbert_iters)
    cost = [sum(linears[n].weight.numel() for n in names) for names in blocks.values()]
    bits = [int(b) for b in allocate_bits(omega, cost, cfg.avg_bits, method="qbert", choices=cfg.choices).tolist()]
    cfg.extra.update(block_bits=dict(zip(blocks, bits)), block_omega=dict(zip(blocks, omega.tolist())))
    for names, b in zip(blocks.values(), bits):
        if cfg.quantizer == "rtn":
            quantize_weights(task.model, names, lambda w, b=b: quantize_rtn(w, b, cfg.group_size, cfg.symmetric))
        else:
            _compress_linears(task, names, calib, lambda w, h, b=b: gptq(w, h, b, cfg.group_size, cfg.symmetric),
                              cfg.sequential)
    width = {n: b for names, b in zip(blocks.values(), bits) for n in names}
    return {n: int_bits(m.weight, width[n], cfg.group_size, cfg.symmetric) for n, m in linears.items()}


def _minifloat(model: nn.Module, cfg: CompressConfig, linears: dict[str, nn.Linear]) -> dict[str, float]:
    fmt, granularity = cfg.float_format, cfg.float_scale
    group = cfg.group_size or 32 if granularity == "group" else None
    quantize_weights(model, list(cfg.targets), lambda w: fake_quant_float(w, fmt, granularity, group))
    width = 8 if cfg.method == "fp8" else 4
    scales = {"none": lambda m: 0, "tensor": lambda m: 1, "channel": lambda m: m.out_features,
              "group": lambda m: m.weight.numel() // check_group_size(group, m.in_features)}[granularity]
    return {name: float(width * m.weight.numel() + SCALE_BITS * scales(m)) for name, m in linears.items()}


# ------------------------------------------------------------------ size accounting
# ------------------------------------------------------------------ driver
def compress(cfg: CompressConfig) -> dict:
    """Evaluate, compress, save, evaluate again; returns the report (also written to ``out_dir/report.json``)."""
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    eval_manifest = subset_manifest(cfg.eval_cuts, cfg.num_eval, out, "eval_cuts")
    calib_manifest = subset_manifest(cfg.calib_cuts or cfg.eval_cuts, cfg.num_calib, out, "calib_cuts", cfg.calib_spread)
    task = load_task(cfg.model, cfg.pad_to_30s, cfg.max_new_tokens)
    check_targets(task.model, cfg)  # a pattern that matches nothing or a bad group size fails before decoding
    eval_batches = batches(task, eval_manifest, cfg.batch_size, "load eval_cuts")
    report: dict = {"config": None, "before": None}
    if not cfg.skip_before:
        report["before"] = {**evaluate(task, eval_batches, out / "predictions_before.jsonl", "evaluate before"),
                            **_dense_size(task, out / "uncompressed")}
    if cfg.format == "ctranslate2":
        uncompressed = out / "uncompressed" if not cfg.skip_before else _save(task, out / "uncompressed")
        report["ctranslate2"] = ctranslate2_artifacts(task, uncompressed, out, eval_manifest, eval_batches, cfg)
    start = time.perf_counter()
    column_bits: dict[str, Tensor] = {}
    target_bits = apply_method(task, cfg, batches(task, calib_manifest, cfg.batch_size, "load calib_cuts"),
                               column_bits)
    compress_s = time.perf_counter() - start
    report["after"] = {**_save_compressed(task, cfg, column_bits, target_bits, eval_batches), "compress_s": compress_s}
    report["config"] = asdict(cfg)
    report["counting"] = ("compressed_bytes: targets as stored by the method (INT-k: k bits/weight + fp16 scale and "
                          "zero per group; sparse: fp32 nonzeros + min(bitmap, CSR 16-bit indices); FP8/FP4: 8/4 "
                          "bits + fp16 scale per unit); everything else at its float32 width. packed_file_bytes: "
                          f"{PACKED_FILE} measured on disk (codes bit-packed, float32 scale and k-bit zero per grid; "
                          "sparse: float32 nonzeros + 1-bit mask)")
    write_text_atomic(out / "report.json", json.dumps(report, indent=2))
    return report


def _save_compressed(task, cfg: CompressConfig, column_bits: dict[str, Tensor], target_bits: dict[str, float],
                     eval_batches: list) -> dict:
    """Pack the targets (each replaced by its unpacked form), save ``<out>/model`` and the packed file, evaluate
    the model: the ``after`` row."""
    out, linears = Path(cfg.out_dir), find_linears(task.model, list(cfg.targets))
    layouts = packed_layouts(cfg, linears, column_bits)
    packed, moved = pack_targets(linears, layouts)
    folder = _save(task, out / "model")
    artifact: dict = {"packed_file": None}
    if layouts:
        artifact = write_packed(folder / "model.safetensors", packed, layouts, out / PACKED_FILE)
        dense = sum(m.weight.numel() * m.weight.element_size() for n, m in linears.items()
                    if f"{n}.weight" not in layouts)  # a target too wide to pack stays float32 in the file
        targets = sum(m.weight.numel() for m in linears.values())
        artifact["packed_bits_per_target_weight"] = 8 * (artifact["packed_target_bytes"] + dense) / max(targets, 1)
    return {**evaluate(task, eval_batches, out / "predictions_after.jsonl", "evaluate after"),
            **size_report(task.model, target_bits, folder), **artifact, **moved}


def _save(task, folder: Path) -> Path:
    from speechkit.models.adaptation import export

    return export(task.model, task.tokenizer, task.feature_extractor, task.generation_config, folder, merge_lora=True)


def _dense_size(task, folder: Path) -> dict[str, float]:
    """Size of the uncompressed model: every parameter at its stored width (``compressed_bytes`` = the raw size)."""
    report = size_report(task.model, {}, _save(task, folder))
    report.pop("target_bits_per_weight")
    return report


# (header, report key, format, width); a row without the key shows "-"
TABLE_COLUMNS = (("WER", "wer", "{:.4f}", 7), ("WER raw", "wer_raw", "{:.4f}", 8), ("CE/token", "loss", "{:.4f}", 8),
                 ("params", "parameters", "{:,}", 11), ("nonzero", "nonzero_parameters", "{:,}", 11),
                 ("file MB", "file_bytes", "{:.2f}", 8), ("counted MB", "compressed_bytes", "{:.2f}", 10),
                 ("packed MB", "packed_file_bytes", "{:.2f}", 9), ("x realtime", "speed_x", "{:.2f}", 10))


def table_rows(report: dict) -> dict[str, dict]:
    """The rows of the table: ``before`` / ``after`` (file: the dense ``model.safetensors``) and each CTranslate2
    folder (file: its ``model.bin``), byte counts in MB."""
    rows = {}
    for name in ("before", "after"):
        if report.get(name) is not None:
            rows[name] = {**report[name], "file_bytes": report[name]["dense_file_bytes"]}
    for name, row in (report.get("ctranslate2") or {}).items():
        rows[f"ct2 {name}"] = {**row, "file_bytes": row["model_bin_bytes"]}
    megabytes = ("file_bytes", "compressed_bytes", "packed_file_bytes")
    return {name: {k: v / 1e6 if k in megabytes and v is not None else v for k, v in row.items()}
            for name, row in rows.items()}


def format_table(report: dict) -> str:
    """A plain-text table of the before / after rows and the CTranslate2 rows; the file MB of a CTranslate2 row is
    its ``model.bin``, packed MB the measured ``model.packed.safetensors``."""
    lines = [f"{'':<12} " + " ".join(f"{header:>{width}}" for header, _, _, width in TABLE_COLUMNS)]
    for name, row in table_rows(report).items():
        cells = [(fmt.format(row[key]) if row.get(key) is not None else "-").rjust(width)
                 for _, key, fmt, width in TABLE_COLUMNS]
        lines.append(f"{name:<12} " + " ".join(cells))
    return "\n".join(lines)


@command(aliases={"--out": "--out_dir", "--one-pass": "--sequential=false"})
def compress_command(config: CompressConfig) -> None:
    """``speechkit compress``: prints the table and writes ``<out>/report.json`` (options: ``CompressConfig``)."""
    report = compress(config)
    print(format_table(report))
    print(f"target sparsity {report['after']['target_sparsity']:.4f}, "
          f"{report['after']['target_bits_per_weight']:.3f} counted bits per target weight")
    after = report["after"]
    if after.get("packed_file"):
        print(f"packed {after['packed_target_weights']} target weights: {after['packed_file']} "
              f"({after['packed_file_bytes'] / 1e6:.2f} MB on disk; "
              f"{after['packed_bits_per_target_weight']:.3f} bits per target weight)")
    for name, row in (report.get("ctranslate2") or {}).items():
        print(f"CTranslate2 {name}: {row['folder']} (model.bin {row['model_bin_bytes'] / 1e6:.2f} MB, "
              f"folder {row['folder_bytes'] / 1e6:.2f} MB)")
    print(f"wrote {Path(config.out_dir) / 'report.json'}")
