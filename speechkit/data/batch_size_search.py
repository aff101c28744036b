"""Per-bucket batch-size search (NeMo's OOMptimizer) for fixed per-bucket batch sizes.

*Training and Inference Efficiency of Encoder-Decoder Speech Models* (Żelasko et al., arXiv 2503.05931; NeMo's
"OOMptimizer"): for each bucket, largest first, run real training
steps (forward, backward, optimizer step) on synthetic batches of the bucket's shape; double the batch size
until a step runs out of memory, then bisect until the largest size that fits and the smallest that failed are
within ``tolerance`` (5 %) of each other; the next, shorter bucket starts from twice the previous answer.

Out of memory means:

- CUDA: ``torch.OutOfMemoryError`` from the caching allocator under
  ``torch.cuda.set_per_process_memory_fraction(budget / device memory)`` (cuFFT's internal error counts too, as in
  NeMo). No ``empty_cache`` between trials, so fragmentation is part of the measurement.
- CPU: PyTorch keeps no statistics for its CPU allocator, so the probe measures the process's peak resident set
  size during the step: glibc is told to ``mmap`` every large block (``mallopt(M_MMAP_THRESHOLD)``) so that freed
  tensors leave the resident set at once, small freed heap is returned (``malloc_trim``), the kernel's high-water
  mark is reset (``/proc/self/clear_refs`` <- ``5``) and ``VmHWM`` is read from ``/proc/self/status`` after the
  step. A step fits when that peak is at most the byte budget. Limits: Linux with glibc; it counts the whole
  process (model, optimizer state, Python, other threads), not only tensors, in touched pages; a long training
  run with glibc's default heap retention can sit somewhat above the measured peak, so leave headroom.

A task takes part by implementing :class:`SyntheticBatchTask` (``synthetic_batch`` + ``training_step``);
:func:`make_training_step` turns it into the ``step(batch_size, duration_s, num_tokens)`` callable that
:func:`find_batch_sizes` probes.
"""

from __future__ import annotations

import ctypes
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence

import torch

from speechkit.errors import SpeechkitError

log = logging.getLogger(__name__)

StepFn = Callable[[int, float, int], None]
Bucket = float | tuple[float, int]


class SyntheticBatchTask(Protocol):
    """What a LightningModule offers so that batch sizes can be searched for it."""

    def synthetic_batch(self, batch_size: int, duration_s: float, num_tokens: int) -> Any:
        """A training batch of ``batch_size`` examples, each ``duration_s`` of audio and ``num_tokens`` targets."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | Mapping[str, torch.Tensor]:
        """The loss (or a mapping with ``"loss"``)."""


class MemoryBudgetExceeded(torch.OutOfMemoryError):
    """A CPU trial whose peak memory went over the byte budget."""


@dataclass
class SearchResult:
    """Outcome of :func:`bisect_batch_size`: the answer and every trial as ``(batch_size, fitted)``."""

    batch_size: int
    trials: list[tuple[int, bool]] = field(default_factory=list)


def bisect_batch_size(
    fits: Callable[[int], bool],
    start: int = 32,
    tolerance: float = 0.05,
    max_batch_size: int = 4096,
    known_fit: int = 0,
) -> SearchResult:
    """Largest batch size that fits, to within ``tolerance``: double from ``start`` until a failure, then bisect.

    OOMptimizer search loop (``speech.md`` 2(a)): on failure ``B = B / 2`` until something fitted, then
    ``(max_ok + min_err) / 2``; on success ``B = 2B`` until something failed, then ``(max_ok + min_err) / 2``;
    stop when ``(min_err - max_ok) / min_err <= tolerance`` or ``min_err - max_ok <= 1``; answer ``max_ok``.
    So the answer ``r`` fits and ``(B* - r) / B* <= tolerance`` for the true largest fitting size ``B*`` (if
    fitting is monotone in the batch size). Sizes above ``max_batch_size`` are never tried; if it fits, it is the
    answer. ``known_fit`` is a size already known to fit (a larger bucket's answer): nothing at or below it is
    tried, so the answer is never smaller.

    Raises:
        SpeechkitError: not even a batch of one fits.
    """
    if start < 1 or max_batch_size < 1:
        raise SpeechkitError(f"start={start}, max_batch_size={max_batch_size}; expected positive integers")
    result = SearchResult(batch_size=0)
    max_ok, min_err = min(max(known_fit, 0), max_batch_size), max_batch_size + 1
    if max_ok == max_batch_size:
        return SearchResult(batch_size=max_ok)
    size = min(max(start, max_ok + 1), max_batch_size)
    while True:
        ok = fits(size)
        result.trials.append((size, ok))
        if ok:
            max_ok = size
        else:
            min_err = size
        if min_err - max_ok <= 1 or (min_err - max_ok) / min_err <= tolerance:
            break
        size = min(_next_size(size, ok, max_ok, min_err, max_batch_size), max_batch_size)
    if max_ok == 0:
        raise SpeechkitError("batch size search: a batch of 1 does not fit the memory budget")
    result.batch_size = max_ok
    return result


def _next_size(size: int, ok: bool, max_ok: int, min_err: int, max_batch_size: int) -> int:
    if ok and min_err > max_batch_size:  # nothing failed yet: double
        return 2 * size
    if max_ok == 0:  # nothing fitted yet: halve
        return size // 2
    return (max_ok + min_err) // 2


def _read_status_kb(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise SpeechkitError(f"/proc/self/status has no {key}; CPU memory measurement needs Linux")


def current_rss_bytes() -> int:
    """Resident set size of this process now (``VmRSS``)."""
    return _read_status_kb("VmRSS") * 1024


def high_water_rss_bytes() -> int:
    """Largest resident set size of this process so far (``VmHWM``; :func:`peak_rss_bytes` resets it)."""
    return _read_status_kb("VmHWM") * 1024


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def use_mmap_for_large_allocations(threshold: int = 128 * 1024) -> None:
    """Make glibc serve every allocation of ``threshold`` bytes or more with its own ``mmap`` and unmap it on free
    (``mallopt(M_MMAP_THRESHOLD)``; fixing it also stops glibc's dynamic threshold from growing). Then freed tensors
    leave the resident set at once and one trial's garbage does not count as the next trial's baseline. Affects
    the whole process from now on (slower large allocations), so call it only for measurements."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD


def peak_rss_bytes(fn: Callable[[], Any]) -> int:
    """Peak resident set size of this process (bytes) while ``fn()`` runs; see the module docstring for limits."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)  # hand freed heap back so that it is not counted again
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # reset VmHWM to the current RSS
    fn()
    return high_water_rss_bytes()


def _is_oom(error: RuntimeError) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return "CUFFT_INTERNAL_ERROR" in text or "can't allocate memory" in text or "DefaultCPUAllocator" in text


def _probe(step: StepFn, device: str, budget: int | None) -> Callable[[int, float, int], bool]:
    """``fits(batch_size, duration_s, num_tokens)``: runs one step and says whether it stayed within memory."""

    def fits(batch_size: int, duration_s: float, num_tokens: int) -> bool:
        try:
            if device == "cuda":
                step(batch_size, duration_s, num_tokens)
                torch.cuda.synchronize()
                peak = torch.cuda.max_memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            elif budget is None:
                step(batch_size, duration_s, num_tokens)
                peak = 0
            else:
                peak = peak_rss_bytes(lambda: step(batch_size, duration_s, num_tokens))
                if peak > budget:
                    raise MemoryBudgetExceeded(f"peak {peak} B > budget {budget} B")
        except RuntimeError as error:
            if not _is_oom(error):
                raise
            log.info("  batch %d: out of memory (%s)", batch_size, str(error).splitlines()[0][:120])
            return False
        log.info("  batch %d: fits (peak %.1f MB)", batch_size, peak / 1e6)
        return True

    return fits


def _shape(bucket: Bucket, tokens_per_second: float) -> tuple[float, int]:
    """(duration, tokens) of a bucket; 1-D buckets get ``ceil(tokens_per_second * duration)`` tokens."""
    if isinstance(bucket, (tuple, list)):
        return float(bucket[0]), int(bucket[1])
    return float(bucket), int(math.ceil(tokens_per_second * float(bucket)))


def _set_cuda_budget(memory_budget: float | None) -> None:
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    fraction = 0.9 if memory_budget is None else memory_budget / total
    if not 0 < fraction <= 1:
        raise SpeechkitError(f"memory_budget={memory_budget} B; expected up to the device's {total} B")
    torch.cuda.set_per_process_memory_fraction(fraction)
    torch.cuda.reset_peak_memory_stats()


def find_batch_sizes(
    step: StepFn,
    buckets: Sequence[Bucket],
    memory_budget: float | None = None,
    device: Literal["cpu", "cuda"] = "cpu",
    start: int = 32,
    tolerance: float = 0.05,
    max_batch_size: int = 4096,
    tokens_per_second: float = 12.0,
) -> list[int]:
    """Largest batch size per bucket that fits the memory budget (OOMptimizer, ``speech.md`` 2(a)).

    Buckets are searched from the last (largest) to the first; the first search starts at ``start``, each
    next one at twice the previous answer. A bucket no longer in duration and tokens than one already searched
    needs no more memory per example, so that bucket's answer is a known fit and the search never goes below it:
    without this floor, measurement noise (on CPU the process's resident set drifts up by tens of MB over a
    search) gave shorter buckets smaller sizes than longer ones when the budget was close to the fixed cost.

    Args:
        step: one real training step on a synthetic batch: ``step(batch_size, duration_s, num_tokens)``
            (see :func:`make_training_step`).
        buckets: sorted bins: durations (1-D) or ``(duration, num_tokens)`` (2-D).
        memory_budget: bytes. CPU: compared with the process's peak RSS during each step (``None``: only
            out-of-memory errors raised by ``step`` itself count, for steps that police their own memory).
            CUDA: the allocator's limit (default 90 % of the device).
        device: where ``step`` runs.
        start: first batch size tried for the largest bucket.
        tolerance: stop when the largest fitting and smallest failing sizes are this close (relative).
        max_batch_size: never try more.
        tokens_per_second: tokens for 1-D buckets (NeMo default 12).

    Returns:
        One batch size per bucket, in the order of ``buckets``.
    """
    if device == "cuda":
        _set_cuda_budget(memory_budget)
    elif memory_budget is not None:
        use_mmap_for_large_allocations()
    fits = _probe(step, device, None if memory_budget is None else int(memory_budget))
    sizes: list[int] = [0] * len(buckets)
    shapes = [_shape(bucket, tokens_per_second) for bucket in buckets]
    next_start = start
    for index in reversed(range(len(buckets))):
        duration, num_tokens = shapes[index]
        known_fit = max((sizes[j] for j in range(index + 1, len(buckets))
                         if shapes[j][0] >= duration and shapes[j][1] >= num_tokens), default=0)
        log.info("bucket %d/%d (%.2f s, %d tokens): search from %d, %d known to fit", index + 1, len(buckets),
                 duration, num_tokens, next_start, known_fit)
        try:
            found = bisect_batch_size(lambda b: fits(b, duration, num_tokens), next_start, tolerance, max_batch_size,
                                      known_fit)
        except SpeechkitError as error:
            raise SpeechkitError(f"bucket {index} ({duration} s, {num_tokens} tokens): {error}") from None
        sizes[index] = found.batch_size
        log.info("bucket %d: batch size %d after %d trials", index + 1, found.batch_size, len(found.trials))
        next_start = 2 * found.batch_size
    return sizes


def _move(batch: Any, device: torch.device) -> Any:
    from lightning.fabric.utilities.apply_func import move_data_to_device

    return move_data_to_device(batch, device)


def _loss(output: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
    return output["loss"] if isinstance(output, Mapping) else output


def make_training_step(
    module: torch.nn.Module,
    device: str = "cpu",
    optimizer_factory: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> StepFn:
    """``step(batch_size, duration_s, num_tokens)``: zero grads, ``module.synthetic_batch``, ``training_step``,
    backward and an optimizer step, as OOMptimizer does.

    Args:
        module: a :class:`SyntheticBatchTask` (moved to ``device``, put in train mode). ``training_step`` runs
            without a Trainer, so ``self.log`` only warns; a task that needs ``self.trainer`` there cannot be
            searched this way.
        device: ``"cpu"`` or ``"cuda"``.
        optimizer_factory: builds the optimizer over the trainable parameters (default AdamW, lr 1e-7, as NeMo;
            its two state tensors per parameter are part of the measured memory).
        autocast_dtype: e.g. ``torch.bfloat16`` to run forward under autocast as mixed-precision training does.
    """
    if not hasattr(module, "synthetic_batch"):
        raise SpeechkitError(f"{type(module).__name__}: expected a synthetic_batch(batch_size, duration_s, "
                             "num_tokens) method for the batch-size search")
    target = torch.device(device)
    module.to(target).train()
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = (optimizer_factory or (lambda ps: torch.optim.AdamW(ps, lr=1e-7)))(params)

    def step(batch_size: int, duration_s: float, num_tokens: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        batch = _move(module.synthetic_batch(batch_size, duration_s, num_tokens), target)
        with torch.autocast(target.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = _loss(module.training_step(batch, 0))
        loss.backward()
        optimizer.step()

    return step


def format_batch_sizes(sizes: Sequence[int], indent: int = 0) -> str:
    """The config line to paste: ``bucket_batch_size: [...]``."""
    return f"{' ' * indent}bucket_batch_size: [{', '.join(str(int(s)) for s in sizes)}]"
