"""Whisper inference speed: ``speechkit transcribe`` against faster-whisper, CTranslate2 and ``transformers.pipeline``.

One fine-tuned Whisper checkpoint (``recipes/fsdd``: tiny.en trained on variable-length encoder input) is exported
to a Hugging Face folder and to CTranslate2 (int8 and float32) with :func:`speechkit.drivers.export.export_checkpoint`,
then every system transcribes the same audio files, end to end (audio files in, text out):

- ``speechkit``: :func:`speechkit.inference.transcribe.transcribe`, as ``speechkit transcribe CKPT FILES...`` runs
  it (file headers, reading + resampling, log-mel features, batched variable-length greedy decoding with Whisper's
  guards at their defaults, JSONL written); ``speechkit_30s`` the same with ``input_length="30s"`` (stock padding).
  The model is loaded once before the clock starts (``transcribe``'s own ``load_model`` is handed that model).
- ``fw_int8`` / ``fw_fp32``: faster-whisper's ``WhisperModel.transcribe`` on the int8 / float32 CTranslate2 export
  (compute type int8 / float32), one file at a time (it takes one input a call); ``fw_*_batched``: its
  ``BatchedInferencePipeline`` (``batch_size`` = ``--batch-size``), which batches the chunks of ONE file (VAD
  segments, or the whole file of at most 30 s when VAD is off): on clips under 30 s a batch holds one chunk. Both:
  ``beam_size=1``, ``without_timestamps=True``, ``vad_filter=False``, ``condition_on_previous_text=False``, its
  temperature fallback and thresholds at their defaults, faster-whisper reading the files itself (``decode_audio``).
  ``fw_int8_best`` in the report is the faster of ``fw_int8`` and ``fw_int8_batched`` (wall-clock rate).
- ``ct2_int8_batched``: ``ctranslate2.models.Whisper.generate`` on the int8 export, ``--batch-size`` files a call
  (30 s windows: CTranslate2's Whisper encoder takes 3000 frames only) - what a user could write on CTranslate2
  directly to batch across files, which faster-whisper does not.
- ``pipeline``: ``transformers.pipeline("automatic-speech-recognition")`` on the Hugging Face export, float32,
  ``batch_size`` = ``--batch-size`` (30 s windows).
- ``speechkit_int8`` (only when named in ``--systems``): a measured proposal, not a ``transcribe`` option: the same
  call on the model with its ``Linear`` layers made dynamic int8 (``torch.ao.quantization.quantize_dynamic``).

Every system runs in a fresh process per shard (``--rounds``: the clips, longest first, are cut into that many runs of
whole batches, and each round runs every system on one shard, the system order rotated each round, so that a change
in the machine's load hits every system alike). In each process: threads set (torch ``set_num_threads``,
CTranslate2 / faster-whisper ``intra_threads`` / ``cpu_threads``, ``OMP_NUM_THREADS`` all equal to ``--threads``),
the model loaded (timed apart: ``load_s``), one untimed warm-up file, then the shard timed: wall clock
(``perf_counter``) and process CPU time (``process_time``: every thread of the process). Reported per system:
audio seconds per wall second and per CPU second, peak resident memory (the largest ``VmHWM`` of its processes:
runtime, model and work), WER (``score_wer``, English, normalized with Whisper's English normalizer; raw too), and the
ratios of ``speechkit`` to ``fw_int8_best`` (the issue's targets: >= 20x on the FSDD test takes, >= 2x on the
1-15 s sentences, at the same WER).

Corpora: ``fsdd``: the FSDD test split (takes 0-4, 300 clips of 0.1-2.3 s; ``speechkit prepare fsdd``, as
``recipes/fsdd`` and ``benchmarks/whisper_decoding_speed.py`` use it); ``sentences``: Multi30k captions read by
eSpeak NG, 1-15 s, the corpus of ``benchmarks/whisper_training_throughput.py`` (its ``prepare_corpus``, cached under
``--work-dir``), ``--sentences`` of them drawn with the seed.

    python benchmarks/whisper_inference.py --checkpoint CKPT --json inference.json [--corpora fsdd sentences]
        [--threads 1] [--rounds 3] [--batch-size 16] [--systems ...] [--profile]

``--profile`` instead profiles ``speechkit transcribe`` alone over each whole corpus, in a fresh process: stage
timers (headers, reading audio, features, encoder; the decoder and the LM head inside ``generate`` and inside the
first-step logits; the rest of ``generate``; token log-probabilities; writing; what is left), then cProfile's top
functions by own time. ``benchmarks/whisper_greedy_probe.py`` measures a proposal made from it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
HOW_TO_MAKE_A_CHECKPOINT = """{problem}. Make the fine-tuned tiny.en FSDD checkpoint first:

    recipes/fsdd/run.sh exp/fsdd        # prepare -> fine-tune (150 steps) -> test; SKIP_ZERO_SHOT=1 skips zero-shot
    # or: speechkit fit -c conf/whisper/fsdd_tiny_en.yaml --trainer.max_steps 75 ...  (fewer steps)

then pass --checkpoint exp/fsdd/lightning_logs/version_0/checkpoints/best-*.ckpt"""


@dataclass(frozen=True)
class System:
    """One way of transcribing: its runtime, the model folder it runs and its settings."""

    name: str
    runtime: str  # speechkit | faster_whisper | ctranslate2 | pipeline
    model: str  # checkpoint | hf | ct2_int8 | ct2_float32
    options: dict = field(default_factory=dict)
    description: str = ""


SYSTEMS = {s.name: s for s in [
    System("speechkit", "speechkit", "checkpoint", {"input_length": "variable"},
           "speechkit transcribe, variable-length, batched"),
    System("speechkit_30s", "speechkit", "checkpoint", {"input_length": "30s"},
           "speechkit transcribe, padded to 30 s, batched"),
    System("speechkit_int8", "speechkit", "checkpoint", {"input_length": "variable", "quantize": "dynamic_int8"},
           "PROPOSAL: speechkit transcribe on torch dynamic int8 Linear layers (not a transcribe option)"),
    System("fw_int8", "faster_whisper", "ct2_int8", {"compute_type": "int8", "batched": False},
           "faster-whisper int8, WhisperModel.transcribe"),
    System("fw_int8_batched", "faster_whisper", "ct2_int8", {"compute_type": "int8", "batched": True},
           "faster-whisper int8, BatchedInferencePipeline"),
    System("fw_fp32", "faster_whisper", "ct2_float32", {"compute_type": "float32", "batched": False},
           "faster-whisper fp32, WhisperModel.transcribe"),
    System("fw_fp32_batched", "faster_whisper", "ct2_float32", {"compute_type": "float32", "batched": True},
           "faster-whisper fp32, BatchedInferencePipeline"),
    System("ct2_int8_batched", "ctranslate2", "ct2_int8", {"compute_type": "int8"},
           "CTranslate2 int8 generate, batched across files"),
    System("pipeline", "pipeline", "hf", {}, "transformers.pipeline, fp32, batched"),
]}
DEFAULT_SYSTEMS = [name for name in SYSTEMS if name != "speechkit_int8"]
TARGETS = {"fsdd": 20.0, "sentences": 2.0}  # speechkit / faster-whisper int8, audio s per wall s (issue 13)


@dataclass(frozen=True)
class Clip:
    """One audio file to transcribe, with its reference."""

    id: str
    path: str
    duration: float
    ref: str


# ------------------------------------------------------------------------------------------------ corpora


def default_data_dir() -> Path:
    return Path(os.environ.get("SPEECHKIT_DATA", str(REPO.parent / "shared/data")))


def _clip(cut) -> Clip:
    """The whole-file clip of a single-recording cut (its recording's file, its supervision's text)."""
    from speechkit.errors import SpeechkitError

    source = cut.recording.sources[0]
    if source.type != "file" or cut.start != 0 or abs(cut.duration - cut.recording.duration) > 1e-3:
        raise SpeechkitError(f"cut {cut.id}: expected a cut covering a whole audio file")
    return Clip(cut.id, str(Path(source.source).resolve()), float(cut.duration),
                " ".join(s.text for s in cut.supervisions))


def fsdd_clips(data_dir: Path, work: Path) -> list[Clip]:
    """The FSDD test split (takes 0-4 of every digit and speaker: 300 clips)."""
    from lhotse import CutSet

    manifest = work / "cuts_test.jsonl.gz"
    if manifest.is_file():
        cuts = CutSet.from_file(manifest)
    else:
        from speechkit.data.corpora.fsdd import prepare

        cuts = prepare(data_dir / "fsdd", work, overwrite=True)["test"]
    return sorted((_clip(c) for c in cuts), key=lambda c: c.id)


def sentence_clips(data_dir: Path, work: Path, count: int, pool_seconds: float, dev_size: int,
                   seed: int) -> list[Clip]:
    """``count`` synthesized sentences of 1-15 s, drawn with ``seed`` from the training-throughput benchmark's corpus
    (``whisper_training_throughput.prepare_corpus``: its pool and dev cuts; the model never trained on them)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from whisper_training_throughput import prepare_corpus

    work.mkdir(parents=True, exist_ok=True)
    train, dev = prepare_corpus("sentences", data_dir, work, pool_seconds, dev_size, seed)
    clips = sorted((_clip(c) for c in [*train, *dev]), key=lambda c: c.id)
    random.Random(seed).shuffle(clips)
    return sorted(clips[:count], key=lambda c: c.id)


def shards(clips: list[Clip], rounds: int, batch_size: int) -> list[list[Clip]]:
    """``rounds`` runs of consecutive clips by duration (longest first), each a whole number of batches.

    A batched system sorts its inputs by duration and batches them in that order, so these shards give it the
    batches it would make of the whole set in one call; dealing clips round-robin instead would mix short and
    long clips in a batch and inflate the padding of variable-length input (measured: -30 % speed on the
    sentences with 3 rounds).
    """
    ordered = sorted(clips, key=lambda c: (-c.duration, c.id))
    batches = -(-len(ordered) // batch_size)
    per_shard = -(-batches // rounds) * batch_size
    return [ordered[k:k + per_shard] for k in range(0, len(ordered), per_shard)]


# ------------------------------------------------------------------------------------------------ models


def prepare_models(checkpoint: Path, work: Path, needed: set[str]) -> dict[str, str]:
    """The checkpoint and its exports (``hf``, ``ct2_int8``, ``ct2_float32``), exported once per checkpoint."""
    from speechkit.drivers.export import export_checkpoint

    stat = checkpoint.stat()
    stamp = {"checkpoint": str(checkpoint.resolve()), "size": stat.st_size, "mtime": stat.st_mtime}
    work.mkdir(parents=True, exist_ok=True)
    stamp_file = work / "exports.json"
    fresh = stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp
    how = {"hf": ("hf", None), "ct2_int8": ("ctranslate2", "int8"), "ct2_float32": ("ctranslate2", "float32")}
    paths = {"checkpoint": str(checkpoint.resolve())}
    for name in sorted(needed - {"checkpoint"}):
        folder = work / name
        if not (fresh and folder.is_dir()):
            fmt, quantization = how[name]
            print(f"exporting {checkpoint} -> {folder} ({fmt}{', ' + quantization if quantization else ''})",
                  flush=True)
            export_checkpoint(checkpoint, folder, format=fmt, quantization=quantization)
        paths[name] = str(folder)
    stamp_file.write_text(json.dumps(stamp))
    return paths


# ------------------------------------------------------------------------------------------------ the systems
# Each runner loads its model and returns ``transcribe(paths) -> texts``. It runs in the worker process only.


def _speechkit_runner(system: System, spec: dict) -> Callable[[list[str]], list[str]]:
    from unittest import mock

    from transformers.utils import logging as transformers_logging

    from speechkit.inference import transcribe as command
    from speechkit.inference.models import load_model

    transformers_logging.disable_progress_bar()
    checkpoint = spec["models"]["checkpoint"]
    model = load_model(checkpoint)
    options = dict(system.options)
    if options.pop("quantize", None) == "dynamic_int8":  # a measured proposal, see README
        import warnings

        import torch

        with warnings.catch_warnings():  # torch.ao.quantization's deprecation notice (torchao's quantize_ is next)
            warnings.simplefilter("ignore", DeprecationWarning)
            model.bundle.model = torch.ao.quantization.quantize_dynamic(model.bundle.model, {torch.nn.Linear},
                                                                        dtype=torch.qint8)
    out = Path(spec["scratch"]) / f"{system.name}.jsonl"

    def run(paths: list[str]) -> list[str]:
        with mock.patch.object(command, "load_model", lambda name: model):  # loaded once, before the clock
            command.transcribe(checkpoint, paths, out=str(out), batch_size=spec["batch_size"], progress=False,
                               max_new_tokens=spec["max_new_tokens"], device="cpu", **options)
        texts = {row["path"]: row["text"] for row in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
        return [texts.get(path, "") for path in paths]

    run.model = model  # for the profile's hooks
    return run


def _ct2_language(folder: str) -> Optional[str]:
    return (json.loads((Path(folder) / "config.json").read_text()).get("speechkit") or {}).get("language")


def _faster_whisper_runner(system: System, spec: dict) -> Callable[[list[str]], list[str]]:
    from speechkit.inference.runtimes import faster_whisper_model, faster_whisper_transcribe

    folder = spec["models"][system.model]
    model = faster_whisper_model(folder, compute_type=system.options["compute_type"], cpu_threads=spec["threads"])
    batch_size = spec["batch_size"] if system.options["batched"] else 0
    return lambda paths: faster_whisper_transcribe(model, paths, language=_ct2_language(folder),
                                                   batch_size=batch_size, max_new_tokens=spec["max_new_tokens"])


def _read(paths: list[str]) -> list:
    """16 kHz mono float32 waveforms, read as ``speechkit transcribe`` reads files (soundfile, soxr resampling)."""
    from speechkit.inference.inputs import AudioItem, load_waveform

    return [load_waveform(AudioItem(path, path, 0.0)) for path in paths]


def _ctranslate2_runner(system: System, spec: dict) -> Callable[[list[str]], list[str]]:
    from speechkit.inference.runtimes import ctranslate2_transcribe, load_ctranslate2_whisper

    runner = load_ctranslate2_whisper(spec["models"][system.model], compute_type=system.options["compute_type"],
                                      threads=spec["threads"])
    prompt = len(runner.prompt)
    return lambda paths: ctranslate2_transcribe(runner, _read(paths), batch_size=spec["batch_size"],
                                                max_length=prompt + spec["max_new_tokens"])


def _pipeline_runner(system: System, spec: dict) -> Callable[[list[str]], list[str]]:
    from transformers.utils import logging as transformers_logging

    from speechkit.inference.runtimes import load_pipeline, pipeline_transcribe

    transformers_logging.set_verbosity_error()  # one warning per batch otherwise
    asr = load_pipeline(spec["models"][system.model], threads=spec["threads"])
    return lambda paths: pipeline_transcribe(asr, _read(paths), batch_size=spec["batch_size"],
                                             max_new_tokens=spec["max_new_tokens"])


RUNNERS = {"speechkit": _speechkit_runner, "faster_whisper": _faster_whisper_runner,
           "ctranslate2": _ctranslate2_runner, "pipeline": _pipeline_runner}


def _status_mb(key: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MB (``VmHWM``: the peak; unlike ``ru_maxrss`` it starts afresh at
    ``exec``, so it does not count the parent's pages a forked child held before)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(f"{key}:")) / 1024


def worker(spec: dict) -> dict:
    """In a fresh process: load one system, warm it up on one file, time it on the shard."""
    system = SYSTEMS[spec["system"]]
    if system.runtime in ("speechkit", "pipeline"):
        import torch

        torch.set_num_threads(spec["threads"])
    start = time.perf_counter()
    run = RUNNERS[system.runtime](system, spec)
    load_s = time.perf_counter() - start
    run(spec["paths"][:1])  # warm-up: first-call allocations and kernel selection, untimed
    rss_ready = _status_mb("VmRSS")
    wall, cpu = time.perf_counter(), time.process_time()
    texts = run(spec["paths"])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall_s": wall, "cpu_s": cpu, "load_s": load_s, "texts": texts, "rss_ready_mb": rss_ready,
            "peak_rss_mb": _status_mb("VmHWM"),
            "load_average": os.getloadavg()[0]}


def run_worker(spec: dict) -> dict:
    """:func:`worker` in a fresh Python process (its own peak RSS), threads fixed through the environment too."""
    threads = str(spec["threads"])
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
           "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryDirectory(prefix="whisper-inference-") as scratch:
        spec_file, result_file = Path(scratch) / "spec.json", Path(scratch) / "result.json"
        spec_file.write_text(json.dumps({**spec, "scratch": scratch}))
        done = subprocess.run([sys.executable, __file__, "--worker", str(spec_file), str(result_file)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{spec['system']} failed (exit {done.returncode}):\n{done.stdout[-4000:]}")
        return json.loads(result_file.read_text())


# ------------------------------------------------------------------------------------------------ the run


def measure(corpus: str, clips: list[Clip], systems: list[str], args: argparse.Namespace,
            models: dict[str, str]) -> dict[str, Any]:
    """Every system on every shard, round-robin; totals, rates, WER and ratios of one corpus."""
    from speechkit.metrics.wer import score_wer

    parts = shards(clips, args.rounds, args.batch_size)
    texts: dict[str, dict[str, str]] = {name: {} for name in systems}
    runs: dict[str, list[dict]] = {name: [] for name in systems}
    for r, shard in enumerate(parts):
        order = systems[r % len(systems):] + systems[:r % len(systems)]
        for name in order:
            spec = {"system": name, "paths": [c.path for c in shard], "models": models, "threads": args.threads,
                    "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens}
            result = run_worker(spec)
            texts[name].update(zip((c.path for c in shard), result.pop("texts"), strict=True))
            audio = sum(c.duration for c in shard)
            runs[name].append({**result, "audio_s": audio})
            print(f"  {corpus} round {r + 1}/{len(parts)} {name}: {audio / result['wall_s']:.2f} audio-s/s "
                  f"({result['wall_s']:.1f} s wall, {result['cpu_s']:.1f} s CPU, load {result['load_average']:.1f})",
                  flush=True)
    refs = [c.ref for c in clips]
    rows = {}
    for name in systems:
        audio, wall, cpu = (sum(run[key] for run in runs[name]) for key in ("audio_s", "wall_s", "cpu_s"))
        report = score_wer(refs, [texts[name][c.path] for c in clips], language="en")
        rows[name] = {"description": SYSTEMS[name].description, "audio_s": audio, "wall_s": wall, "cpu_s": cpu,
                      "audio_s_per_s": audio / wall, "audio_s_per_cpu_s": audio / cpu,
                      "peak_rss_mb": max(run["peak_rss_mb"] for run in runs[name]),
                      "rss_ready_mb": max(run["rss_ready_mb"] for run in runs[name]),
                      "load_s": sum(run["load_s"] for run in runs[name]) / len(runs[name]),
                      "wer": report.wer, "wer_raw": report.wer_raw, "runs": runs[name]}
    result = {"clips": len(clips), "audio_s": sum(c.duration for c in clips), "systems": rows,
              "hyps": {name: [texts[name][c.path] for c in clips] for name in systems}, "refs": refs,
              "ids": [c.id for c in clips]}
    result.update(ratios(rows, TARGETS.get(corpus)))
    return result


def ratios(rows: dict[str, dict], target: Optional[float]) -> dict[str, Any]:
    """``fw_int8_best`` (the faster faster-whisper int8 mode) and every system's speed relative to it."""
    modes = [name for name in ("fw_int8", "fw_int8_batched") if name in rows]
    if not modes:
        return {}
    best = max(modes, key=lambda name: rows[name]["audio_s_per_s"])
    out: dict[str, Any] = {"fw_int8_best": best, "target_vs_fw_int8": target}
    for row in rows.values():
        row["vs_fw_int8_wall"] = row["audio_s_per_s"] / rows[best]["audio_s_per_s"]
        row["vs_fw_int8_cpu"] = row["audio_s_per_cpu_s"] / rows[best]["audio_s_per_cpu_s"]
    if "speechkit" in rows:
        out["speedup_vs_fw_int8"] = rows["speechkit"]["vs_fw_int8_wall"]
        out["speedup_vs_fw_int8_cpu"] = rows["speechkit"]["vs_fw_int8_cpu"]
        out["target_met"] = None if target is None else out["speedup_vs_fw_int8"] >= target
    return out


def table(corpus: str, result: dict[str, Any]) -> str:
    """Markdown table of one corpus, with the ratios to faster-whisper int8 and the target."""
    best = result.get("fw_int8_best")
    lines = [f"**{corpus}**: {result['clips']} clips, {result['audio_s']:.1f} s of audio",
             "", ("| system | audio s / wall s | audio s / CPU s | peak RSS MB | load s | WER | WER raw | "
                  f"x {best or 'fw int8'} (wall) | (CPU) |"), "|---|---|---|---|---|---|---|---|---|"]
    for name, row in result["systems"].items():
        ratio = (f"{row['vs_fw_int8_wall']:.2f} | {row['vs_fw_int8_cpu']:.2f}" if "vs_fw_int8_wall" in row
                 else "- | -")
        lines.append(f"| {name}: {row['description']} | {row['audio_s_per_s']:.2f} | {row['audio_s_per_cpu_s']:.2f} | "
                     f"{row['peak_rss_mb']:.0f} | {row['load_s']:.1f} | {row['wer']:.4f} | {row['wer_raw']:.4f} | "
                     f"{ratio} |")
    if "speedup_vs_fw_int8" in result:
        target = result["target_vs_fw_int8"]
        verdict = "" if target is None else f"; target >= {target:g}x: {'met' if result['target_met'] else 'NOT met'}"
        lines.append(f"\nspeechkit / faster-whisper int8 ({best}): {result['speedup_vs_fw_int8']:.2f}x wall, "
                     f"{result['speedup_vs_fw_int8_cpu']:.2f}x CPU{verdict}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ profile


# Stages of ``speechkit transcribe``, timed by wrapping these callables (inclusive times; where one stage runs
# inside another, the outer one is reported net of it below). (module, attribute) -> stage name. The encoder and
# decoder are timed at ``__call__``: ``variable_length_input`` replaces the encoder's ``forward`` per instance.
STAGES = {
    ("speechkit.inference.transcribe", "collect_inputs"): "headers",
    ("speechkit.inference.transcribe", "load_waveform"): "read_audio",
    ("speechkit.inference.transcribe", "short_features"): "features",
    ("speechkit.inference.transcribe", "write_transcripts"): "write",
    ("transformers.models.whisper.modeling_whisper", "WhisperEncoder.__call__"): "encoder",
    ("transformers.models.whisper.modeling_whisper", "WhisperDecoder.__call__"): "decoder",
    ("speechkit.models.whisper_decode", "first_step_logits"): "first_step",
    ("transformers.models.whisper.modeling_whisper", "WhisperForConditionalGeneration.generate"): "generate",
    ("speechkit.models.whisper_decode", "_token_logprobs"): "token_logprobs",
}


class StageTimer:
    """Inclusive wall and CPU seconds and call counts of the :data:`STAGES` (patched in place) and of one module
    instance (``lm_head``: Whisper's ``proj_out``, by forward hooks), each also split by the stage it ran inside."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.inside: dict[tuple[str, str], list[float]] = {}  # (stage, enclosing stage) -> [wall, CPU, calls]
        self.active: list[str] = []
        self.patched: list[tuple[Any, str, Any]] = []  # (owner, attribute, what its __dict__ held or None)
        self.hooks: list[Any] = []

    def start(self, name: str) -> tuple[float, float]:
        self.active.append(name)
        return time.perf_counter(), time.process_time()

    def stop(self, name: str, started: tuple[float, float]) -> None:
        wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
        self.active.pop()
        self.wall[name] = self.wall.get(name, 0.0) + wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu
        self.calls[name] = self.calls.get(name, 0) + 1
        for parent in ("generate", "first_step"):
            if parent in self.active:
                total = self.inside.setdefault((name, parent), [0.0, 0.0, 0])
                total[0] += wall
                total[1] += cpu
                total[2] += 1
                break

    def wrap(self, name: str, function: Callable) -> Callable:
        import functools

        @functools.wraps(function)
        def timed(*args, **kwargs):
            started = self.start(name)
            try:
                return function(*args, **kwargs)
            finally:
                self.stop(name, started)

        return timed

    def install(self, lm_head: Any = None) -> list[str]:
        """Patch every stage found (and hook ``lm_head``, a module); returns the stages not found (a renamed
        function: left out, not guessed)."""
        import importlib

        missing = []
        for (module_name, attribute), name in STAGES.items():
            owner = importlib.import_module(module_name)
            *path, leaf = attribute.split(".")
            for part in path:
                owner = getattr(owner, part)
            if not hasattr(owner, leaf):
                missing.append(f"{module_name}.{attribute}")
                continue
            self.patched.append((owner, leaf, vars(owner).get(leaf)))
            setattr(owner, leaf, self.wrap(name, getattr(owner, leaf)))
        if lm_head is not None:
            started: list[tuple[float, float]] = []
            self.hooks = [lm_head.register_forward_pre_hook(lambda *_: started.append(self.start("lm_head"))),
                          lm_head.register_forward_hook(lambda *_: self.stop("lm_head", started.pop()))]
        return missing

    def uninstall(self) -> None:
        """Put back what :meth:`install` replaced."""
        for owner, leaf, original in reversed(self.patched):
            if original is None:
                delattr(owner, leaf)
            else:
                setattr(owner, leaf, original)
        for hook in self.hooks:
            hook.remove()
        self.patched, self.hooks = [], []

    def breakdown(self, total_wall: float, total_cpu: float) -> dict[str, dict[str, float]]:
        """Net seconds per stage (wall, CPU, share of the wall total): the decoder and the LM head inside
        ``generate`` and inside the first-step logits (language / no-speech) apart, each parent net of them;
        ``python_and_other`` what no stage covers (batching, guards, tokenizer decoding, glue)."""
        rows: dict[str, dict[str, float]] = {}
        for k, (clock, table, total) in enumerate((("wall", self.wall, total_wall), ("cpu", self.cpu, total_cpu))):
            inner = {key: value[k] for key, value in self.inside.items()}
            net = {"headers": table.get("headers", 0.0), "read_audio": table.get("read_audio", 0.0),
                   "features": table.get("features", 0.0), "encoder": table.get("encoder", 0.0)}
            for parent in ("first_step", "generate"):
                decoder, head = inner.get(("decoder", parent), 0.0), inner.get(("lm_head", parent), 0.0)
                net.update({f"{parent}_decoder": decoder, f"{parent}_lm_head": head,
                            f"{parent}_other": table.get(parent, 0.0) - decoder - head})
            net.update({"token_logprobs": table.get("token_logprobs", 0.0), "write": table.get("write", 0.0)})
            net["python_and_other"] = total - sum(net.values())
            for stage, seconds in net.items():
                rows.setdefault(stage, {})[clock] = seconds
                if clock == "wall":
                    rows[stage]["share"] = seconds / total if total else 0.0
        for stage, key in (("encoder", "encoder"), ("features", "features"), ("generate_other", "generate"),
                           ("first_step_other", "first_step")):
            rows[stage]["calls"] = self.calls.get(key, 0)
        for (name, parent), (_, _, calls) in self.inside.items():
            if f"{parent}_{name}" in rows:
                rows[f"{parent}_{name}"]["calls"] = calls
        return rows


def profile_worker(spec: dict) -> dict:
    """In a fresh process: ``speechkit transcribe`` (one system) with stage timers, then again under cProfile."""
    import cProfile
    import io
    import pstats

    import torch

    system = SYSTEMS[spec["system"]]
    torch.set_num_threads(spec["threads"])
    run = _speechkit_runner(system, spec)
    run(spec["paths"][:1])
    timer = StageTimer()
    missing = timer.install(lm_head=run.model.bundle.model.get_output_embeddings())
    wall, cpu = time.perf_counter(), time.process_time()
    run(spec["paths"])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    timer.uninstall()
    profiler = cProfile.Profile()
    profiler.runcall(run, spec["paths"])
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(spec.get("top", 25))
    return {"wall_s": wall, "cpu_s": cpu, "stages": timer.breakdown(wall, cpu), "missing_stages": missing,
            "calls": timer.calls, "cprofile_tottime": text.getvalue()}


def profile(corpus: str, clips: list[Clip], args: argparse.Namespace, models: dict[str, str]) -> dict[str, Any]:
    """Where ``speechkit transcribe`` spends its time on ``clips``: stage timers and cProfile, in a fresh process."""
    spec = {"system": args.profile_system, "paths": [c.path for c in clips], "models": models,
            "threads": args.threads, "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
            "profile": True}
    result = run_worker(spec)
    audio = sum(c.duration for c in clips)
    return {"clips": len(clips), "audio_s": audio, "audio_s_per_s": audio / result["wall_s"], **result}


def profile_table(corpus: str, result: dict[str, Any]) -> str:
    """Markdown table of the stages, largest first."""
    lines = [(f"**{corpus}**: {result['clips']} clips, {result['audio_s']:.1f} s of audio, {result['wall_s']:.2f} s "
              f"wall ({result['audio_s_per_s']:.1f} audio-s/s), {result['cpu_s']:.2f} s CPU"),
             "", "| stage | wall s | share | CPU s | calls |", "|---|---|---|---|---|"]
    for stage, row in sorted(result["stages"].items(), key=lambda item: -item[1]["wall"]):
        lines.append(f"| {stage} | {row['wall']:.3f} | {row['share']:.1%} | {row['cpu']:.3f} | "
                     f"{row.get('calls', '')} |")
    if result["missing_stages"]:
        lines.append(f"\nnot timed (not found): {', '.join(result['missing_stages'])}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None,
                        help="the fine-tuned tiny.en FSDD checkpoint (.ckpt); without one: how to make it")
    parser.add_argument("--json", default=None, help="output JSON path")
    parser.add_argument("--corpora", nargs="+", choices=["fsdd", "sentences"], default=["fsdd", "sentences"])
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=DEFAULT_SYSTEMS,
                        help="default: all but the speechkit_int8 proposal")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads of every system (torch, CTranslate2, OpenMP); default 1")
    parser.add_argument("--rounds", type=int, default=3, help="shards, each run by every system in turn")
    parser.add_argument("--batch-size", type=int, default=16, help="files per batch of the batched systems")
    parser.add_argument("--max-new-tokens", type=int, default=224, help="decoded tokens per file at most, every system")
    parser.add_argument("--max-clips", type=int, default=None, help="first N clips of each corpus (a quick run)")
    parser.add_argument("--sentences", type=int, default=100, help="sentences drawn from the synthesized corpus")
    parser.add_argument("--sentences-pool-seconds", type=float, default=480.0,
                        help="the training-throughput benchmark's --audio-seconds: size of the synthesized corpus")
    parser.add_argument("--sentences-dev", type=int, default=50, help="its --dev-utterances")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=str(default_data_dir()))
    parser.add_argument("--work-dir", default=str(REPO / "exp" / "benchmarks" / "inference"),
                        help="manifests, synthesized audio and exports")
    parser.add_argument("--exports-dir", default=None,
                        help="where the checkpoint's exports go (default WORK_DIR/exports; one checkpoint a folder)")
    parser.add_argument("--profile", action="store_true", help="profile speechkit transcribe instead")
    parser.add_argument("--profile-system", choices=["speechkit", "speechkit_30s", "speechkit_int8"],
                        default="speechkit")
    return parser.parse_args(argv)


def load_corpus(corpus: str, args: argparse.Namespace, work: Path) -> list[Clip]:
    data = Path(args.data_dir)
    if corpus == "fsdd":
        clips = fsdd_clips(data, work / "fsdd")
    else:
        clips = sentence_clips(data, work / "sentences", args.sentences, args.sentences_pool_seconds,
                               args.sentences_dev, args.seed)
    return clips[:args.max_clips] if args.max_clips else clips


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    checkpoint = Path(args.checkpoint or "")
    if not args.checkpoint or not checkpoint.is_file():
        problem = f"no checkpoint at {checkpoint}" if args.checkpoint else "no --checkpoint given"
        print(HOW_TO_MAKE_A_CHECKPOINT.format(problem=problem), file=sys.stderr)
        return 2
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    exports = Path(args.exports_dir) if args.exports_dir else work / "exports"
    models = prepare_models(checkpoint, exports, {SYSTEMS[name].model for name in args.systems})
    corpora = {corpus: load_corpus(corpus, args, work) for corpus in args.corpora}
    if args.profile:
        report = {corpus: profile(corpus, clips, args, models) for corpus, clips in corpora.items()}
        if args.json:
            Path(args.json).write_text(json.dumps({"settings": vars(args), **report}, indent=2, default=float))
        for corpus, result in report.items():
            print(f"\n{profile_table(corpus, result)}\n\ncProfile, by own time:\n{result['cprofile_tottime']}")
        return 0
    load_before = os.getloadavg()
    results = {}
    for corpus, clips in corpora.items():
        print(f"{corpus}: {len(clips)} clips, {sum(c.duration for c in clips):.1f} s of audio", flush=True)
        results[corpus] = measure(corpus, clips, args.systems, args, models)
    settings = {**{k: v for k, v in vars(args).items() if k != "json"}, "load_average_before": load_before,
                "load_average_after": os.getloadavg(), "cpu_count": os.cpu_count(), "models": models}
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": settings, **results}, indent=2, default=float))
    print(f"\nthreads {args.threads}, batch {args.batch_size}, {args.rounds} rounds; load average before "
          f"{' '.join(f'{x:.2f}' for x in load_before)}, after {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("\n\n".join(table(corpus, result) for corpus, result in results.items()))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        task = json.loads(Path(sys.argv[2]).read_text())
        Path(sys.argv[3]).write_text(json.dumps((profile_worker if task.get("profile") else worker)(task)))
        sys.exit(0)
    sys.exit(main())
