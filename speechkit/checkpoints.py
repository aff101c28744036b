"""The one way to read and write a speechkit checkpoint.

Reading: :func:`load_checkpoint` opens a ``.ckpt`` with ``torch.load(weights_only=True)`` (memory-mapped), so a
checkpoint can hold tensors and plain values but never code: a crafted pickle is refused before anything in it runs.
A real ``speechkit fit`` checkpoint of ``WhisperFinetune``, ``WhisperDistill`` or ``AudioClassifier`` needs nothing
more (LightningCLI stores the hyper-parameters as plain dicts, lists and strings); ``SAFE_GLOBALS`` adds the two
harmless types a task built in Python may store (a ``pathlib`` path given as an argument, Lightning's
``AttributeDict``). :func:`load_task` rebuilds any task from its file through the class path the file names.

Tasks: every speechkit task calls :func:`record_task_class` in its ``on_save_checkpoint``, so a checkpoint saved
outside LightningCLI (``Trainer.fit`` in Python, which stores no ``hyper_parameters._class_path``) still names its
class. A task whose weights change shape after ``__init__`` (a pruned student) stores what it did in its own
``on_save_checkpoint`` and replays it in ``on_load_checkpoint``, Lightning's documented hooks: :func:`load_task`
calls ``on_load_checkpoint`` before loading the weights, as Lightning does on resume. This module knows no task.

Writing: :class:`AtomicCheckpointIO` (the default of every ``speechkit`` Lightning command) writes a checkpoint to a
hidden temporary file beside its destination, fsyncs it and renames it into place, so a full disk or a crash never
leaves a partial file under a checkpoint's name nor destroys the previous good one.

Interruption: :class:`SignalCheckpoint` saves a resumable ``last.ckpt`` when ``speechkit fit`` is stopped by SIGTERM
or SIGINT (the command then exits 143 / 130, see :func:`speechkit.lightning_cli.run`).

Overrides: :func:`split_hparams` decides, for ``--ckpt_path``, which saved hyper-parameters the config and command
line may replace (output paths, decoding options, ...) and which they may not (``checkpoint_fixed_args`` of a task:
shapes and vocabulary).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import inspect
import logging
import os
import pathlib
import pickle
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping, Optional, Union

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.data import AttributeDict
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from speechkit.errors import SpeechkitError

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

# Non-tensor types a checkpoint may hold besides what torch's weights_only unpickler accepts by default (tensors,
# dicts, lists, tuples, sets, str, numbers, None, OrderedDict). A LightningCLI checkpoint needs none of them.
SAFE_GLOBALS: tuple[type, ...] = (pathlib.PosixPath, pathlib.PurePosixPath, AttributeDict)

# Lightning's instantiator for LightningCLI-saved hyper-parameters: the only one a checkpoint may name.
_CLI_INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"

# Where a task records its own class path (see record_task_class).
TASK_CLASS_KEY = "speechkit_task_class"


# ------------------------------------------------------------------ reading
def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint file safely: ``torch.load(weights_only=True)``, memory-mapped where the format allows.

    Args:
        path: a ``.ckpt`` / ``.pt`` file written by ``torch.save`` (Lightning or speechkit).
        map_location: where tensors go (default CPU).

    Returns:
        The checkpoint dictionary.

    Raises:
        SpeechkitError: one line naming ``path`` and what is wrong: missing, a directory, empty, not written by
            ``torch.save`` (text, another zip, truncated), holding a type that needs code to rebuild (a crafted
            pickle: refused before it runs), or not a dictionary.
    """
    path = Path(path)
    if not path.exists():
        raise SpeechkitError(f"checkpoint {path}: no such file")
    if path.is_dir():
        raise SpeechkitError(f"checkpoint {path}: is a directory, expected a checkpoint file (.ckpt)")
    if path.stat().st_size == 0:
        raise SpeechkitError(f"checkpoint {path}: the file is empty (0 bytes): not a checkpoint")
    try:
        is_zip = zipfile.is_zipfile(path)
        if is_zip:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
            if not any(name.endswith("data.pkl") for name in names):
                raise SpeechkitError(f"checkpoint {path}: a zip archive without data.pkl: not written by torch.save")
    except (OSError, zipfile.BadZipFile) as error:
        raise SpeechkitError(f"checkpoint {path}: cannot read: {getattr(error, 'strerror', None) or error}") from None
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL (\S+)", str(error))
        if refused:
            raise SpeechkitError(
                f"checkpoint {path}: refused: it asks to rebuild {refused.group(1)}, which a checkpoint never needs "
                "(only tensors and plain values load; nothing in the file was run)") from None
        raise SpeechkitError(f"checkpoint {path}: not a torch checkpoint ({_first_line(error)})") from None
    except PermissionError as error:
        raise SpeechkitError(f"checkpoint {path}: cannot read: {error.strerror}") from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, IndexError, TypeError, AttributeError) as error:
        raise SpeechkitError(f"checkpoint {path}: not a readable torch checkpoint: truncated, corrupted or not "
                             f"written by torch.save ({_first_line(error)})") from None
    if not isinstance(checkpoint, dict):
        raise SpeechkitError(f"checkpoint {path}: holds a {type(checkpoint).__name__}, expected a checkpoint "
                             "dictionary")
    return checkpoint


def checkpoint_file_problem(path: Path) -> str | None:
    """Why ``path`` is not a Lightning checkpoint, or None; cheap: reads the archive's index and pickle, no tensors.

    A ``torch.save`` zip archive whose ``data.pkl`` names ``pytorch-lightning_version`` passes (the legacy non-zip
    format, a protocol-2 pickle, is left to Lightning); a truncated archive, another kind of file or a bare
    ``state_dict`` (``pytorch_model.bin``) does not.
    """
    with path.open("rb") as handle:
        if handle.read(2) == b"\x80\x02":
            return None
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name == "data.pkl" or name.endswith("/data.pkl")]
            if not pickles:
                return "a zip archive but not a PyTorch checkpoint"
            if b"pytorch-lightning_version" not in archive.read(pickles[0]):
                return "a PyTorch file but not a Lightning checkpoint (no pytorch-lightning_version: a state_dict?)"
    except (zipfile.BadZipFile, OSError, EOFError):
        return "not a PyTorch checkpoint (another kind of file, or a truncated save)"
    return None


def checkpoint_state_dict(checkpoint: Mapping[str, Any], path: PathLike) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a loaded checkpoint; its absence is an error naming ``path``."""
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict):
        raise SpeechkitError(f"checkpoint {path}: no state_dict (keys: {sorted(checkpoint)[:8]}): not a model "
                             "checkpoint")
    return state


def prefixed_weights(path: PathLike, prefix: str, expected: str) -> dict[str, torch.Tensor]:
    """The ``<prefix>*`` weights of a checkpoint (``encoder.``, ``student.``), prefix removed; a checkpoint with
    none is an error naming ``path`` and the ``expected`` kind of checkpoint."""
    state = checkpoint_state_dict(load_checkpoint(path), path)
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not weights:
        raise SpeechkitError(f"checkpoint {path}: no {prefix}* weights (keys: {sorted(state)[:5]}); expected "
                             f"{expected}")
    return weights


def load_part(module: torch.nn.Module, weights: Mapping[str, torch.Tensor], path: PathLike, part: str) -> None:
    """Load a pretrained ``part`` (``encoder``, ``student``) by name; a missing, extra or misshapen weight is an
    error naming ``path`` and the first few of each."""
    own = module.state_dict()
    missing, extra = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    wrong = [k for k in own if k in weights and weights[k].shape != own[k].shape]
    if missing or extra or wrong:
        raise SpeechkitError(f"pretrained {path}: its {part} does not fit this task's {part} config (missing "
                             f"{missing[:3]}, unexpected {extra[:3]}, other shapes {wrong[:3]}); give the "
                             f"pretraining run's {part} sizes")
    module.load_state_dict(weights)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= 160 else line[:157] + "..."


# ------------------------------------------------------------------ tasks
def record_task_class(task: LightningModule, checkpoint: dict[str, Any]) -> None:
    """Store ``task``'s class path in ``checkpoint`` (call it from the task's ``on_save_checkpoint``).

    LightningCLI stores ``hyper_parameters._class_path`` only for the tasks it builds; with this record a task built
    in Python loads back through :func:`load_task` as well.
    """
    cls = type(task)
    checkpoint[TASK_CLASS_KEY] = f"{cls.__module__}.{cls.__qualname__}"


def task_class(checkpoint: Mapping[str, Any], path: PathLike, default: Optional[type] = None) -> type:
    """The ``LightningModule`` class a checkpoint was saved from.

    The class path LightningCLI stores (``hyper_parameters._class_path``); else the one the task recorded itself
    (:func:`record_task_class`); else ``default``. A class path is imported only when it lies in ``speechkit`` or its
    module is already imported: a checkpoint never makes speechkit import new code.

    Raises:
        SpeechkitError: no class can be found, or the class path is not an importable ``LightningModule``.
    """
    hparams = checkpoint.get("hyper_parameters") or {}
    class_path = hparams.get("_class_path") if isinstance(hparams, Mapping) else None
    if class_path is not None:
        return import_task_class(str(class_path), f"checkpoint {path}: hyper_parameters._class_path")
    recorded = checkpoint.get(TASK_CLASS_KEY)
    if recorded is not None:
        return import_task_class(str(recorded), f"checkpoint {path}: {TASK_CLASS_KEY}")
    if default is not None:
        return default
    raise SpeechkitError(f"checkpoint {path}: no hyper_parameters._class_path (not saved by `speechkit fit`) and no "
                         f"{TASK_CLASS_KEY}; name the task class (--model-class package.module:Class)")


def import_task_class(class_path: str, what: str, trusted: bool = False) -> type:
    """``package.module.Class`` / ``package.module:Class`` -> the class, a ``LightningModule`` subclass.

    A class path read from a file (``trusted=False``) imports only ``speechkit`` modules or modules already
    imported; one the user typed (``trusted=True``) may import any module.
    """
    module_name, _, class_name = class_path.replace(":", ".").rpartition(".")
    if not module_name:
        raise SpeechkitError(f"{what}: {class_path!r} is not a class path (package.module.Class)")
    if module_name in sys.modules:
        module = sys.modules[module_name]
    elif trusted or module_name == "speechkit" or module_name.startswith("speechkit."):
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise SpeechkitError(f"{what}: cannot import {module_name} ({error})") from None
    else:
        raise SpeechkitError(f"{what}: {class_path!r} is outside speechkit and its module is not imported; "
                             "import it first (a checkpoint never makes speechkit import code)")
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, LightningModule)):
        raise SpeechkitError(f"{what}: {class_path!r} is not a LightningModule class")
    return cls


def load_task(path: PathLike, cls: Union[type, str, None] = None, default_class: Optional[type] = None,
              **overrides: Any) -> LightningModule:
    """Rebuild a task from its checkpoint: class, hyper-parameters, shape hooks, then the weights (strict).

    Args:
        path: the ``.ckpt`` file.
        cls: force this class (or ``package.module:Class``) instead of the one the checkpoint names.
        default_class: the class when the checkpoint names none (saved outside LightningCLI).
        **overrides: init arguments replacing the saved hyper-parameters (e.g. ``max_new_tokens=8``); an argument
            the class does not take is an error. The arguments a class lists in ``checkpoint_source_args`` (where
            its starting weights come from: ``init_checkpoint``, ``student_init``) are ``None`` unless given here:
            the checkpoint's weights replace whatever they would load, and the files they name may be gone.

    Returns:
        The task, in train mode on CPU, with the checkpoint's weights; ``on_load_checkpoint`` has run (so a
        distilled student has its shrunk shapes).

    Raises:
        SpeechkitError: an unreadable or unsafe file (see :func:`load_checkpoint`), no class, an unknown override,
            or weights that do not fit the rebuilt task.
    """
    checkpoint = load_checkpoint(path)
    state = checkpoint_state_dict(checkpoint, path)
    if isinstance(cls, str):
        cls = import_task_class(cls, "task class", trusted=True)
    elif cls is None:
        cls = task_class(checkpoint, path, default_class)
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    instantiator = hparams.pop("_instantiator", None)
    hparams.pop("_class_path", None)
    parameters = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = sorted(k for k in overrides if k not in parameters and not takes_any)
    if unknown:
        raise SpeechkitError(f"{cls.__name__} takes no argument {', '.join(unknown)}")
    sources = {name: None for name in source_args(cls) if takes_any or name in parameters}
    kwargs = {k: v for k, v in {**hparams, **sources, **overrides}.items() if takes_any or k in parameters}
    try:
        if instantiator == _CLI_INSTANTIATOR and _has_class_paths(kwargs):
            from lightning.pytorch.cli import instantiate_module

            task = instantiate_module(cls, {"_class_path": f"{cls.__module__}.{cls.__qualname__}", **kwargs})
        else:
            task = cls(**kwargs)
    except SpeechkitError as error:
        raise SpeechkitError(f"checkpoint {path}: rebuilding {cls.__name__}: {error}") from None
    task.on_load_checkpoint(checkpoint)
    try:
        task.load_state_dict(state, strict=task.strict_loading)
    except RuntimeError as error:
        raise SpeechkitError(f"checkpoint {path}: its weights do not fit {cls.__name__} built from its "
                             f"hyper-parameters ({_first_line(error)})") from None
    return task


def _has_class_paths(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "class_path" in value or any(_has_class_paths(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_class_paths(v) for v in value)
    return False


# ------------------------------------------------------------------ overrides on --ckpt_path
def fixed_args(cls: type) -> tuple[str, ...]:
    """Init arguments of ``cls`` that fix the shapes or vocabulary of its weights (``checkpoint_fixed_args``)."""
    return tuple(getattr(cls, "checkpoint_fixed_args", ()))


def source_args(cls: type) -> tuple[str, ...]:
    """Init arguments of ``cls`` that only name where its starting weights come from (``checkpoint_source_args``)."""
    return tuple(getattr(cls, "checkpoint_source_args", ()))


def split_hparams(cls: type, saved: Mapping[str, Any], given: Mapping[str, Any],
                  checkpoint: str = "--ckpt_path") -> tuple[dict[str, Any], dict[str, tuple[Any, Any]]]:
    """Which saved hyper-parameters stay when a run starts from a checkpoint, and which the user's values replace.

    What the user gave (config file or command line) wins, except for the arguments that fix the weights' shapes or
    vocabulary (``cls.checkpoint_fixed_args``): giving one of those a value other than the checkpoint's is refused.

    Args:
        cls: the task class.
        saved: the checkpoint's ``hyper_parameters`` (without ``_class_path`` / ``_instantiator``).
        given: the init arguments the user gave explicitly.
        checkpoint: how to name the checkpoint in errors (``--ckpt_path <file>``).

    Returns:
        ``(kept, replaced)``: the saved values to apply over the config, and ``{name: (saved, given)}`` for each
        saved value a given one replaces.

    Raises:
        SpeechkitError: a fixed argument is given a different value (one line naming it and both values).
    """
    fixed = set(fixed_args(cls))
    kept, replaced = {}, {}
    for name, value in saved.items():
        if name not in given or _same(given[name], value):
            kept[name] = value
        elif name in fixed:
            raise SpeechkitError(
                f"{checkpoint}: the config / command line sets {name}={given[name]!r} but the checkpoint was "
                f"trained with {name}={value!r}; {name} fixes the weights' shapes or vocabulary, so it cannot "
                f"change here (remove it or give {value!r})")
        else:
            replaced[name] = (value, given[name])
    return kept, replaced


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple):
        a = list(a)
    if isinstance(b, tuple):
        b = list(b)
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - tensors, exotic types: treat as different
        return False


# ------------------------------------------------------------------ writing
def _open_for_write(path: Path) -> IO[bytes]:
    """The temporary file a save writes to (a seam for tests that simulate a full disk)."""
    return open(path, "xb")  # noqa: SIM115 - closed by save_atomic


class _Sink:
    """A write-only file wrapper that keeps the first ``OSError`` (torch reports it as a bare RuntimeError)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file, self.error = file, None

    def write(self, data: bytes) -> int:
        try:
            n = self.file.write(data)
        except OSError as error:
            self.error = self.error or error
            raise
        return len(data) if n is None else n

    def flush(self) -> None:
        self.file.flush()


def temporary_name(path: PathLike) -> Path:
    """``<dir>/.<name>.tmp-<pid>``: hidden, and matching neither ``*.ckpt`` nor ``best-*.ckpt``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def save_atomic(obj: Any, path: PathLike, save: Callable[[Any, Any], None] = torch.save) -> None:
    """``save(obj, file)`` into ``path`` atomically: temporary file in the same folder, flush, fsync, rename.

    On any failure the temporary file is removed and whatever was under ``path`` before is left as it was.

    Raises:
        SpeechkitError: the disk is full (``ENOSPC``), naming ``path`` and the free space.
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    temporary = temporary_name(path)
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()  # left by a process of the same id that was killed mid-write
    try:
        with _open_for_write(temporary) as file:
            sink = _Sink(file)
            try:
                save(obj, sink)
            except RuntimeError:
                if sink.error is not None:
                    raise sink.error from None
                raise
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise SpeechkitError(
                f"checkpoint {path}: no space left on device: {_size(shutil.disk_usage(folder).free)} free in "
                f"{folder} is not enough for it (partial file removed; nothing written under the name, a previous "
                "file there is unchanged)") from None
        raise
    _fsync_folder(folder)


@contextlib.contextmanager
def staged_folder(final: PathLike) -> Iterator[Path]:
    """Build an output folder (an export, a converted model) in a hidden sibling and move it into place at the end.

    Yields the staging folder. On success a folder already under ``final`` is replaced (moved aside, the new one
    renamed in, the old one removed); on any error the staging folder is removed and ``final`` is left as it was,
    so a failed export never leaves a half-written folder under its name.

    Raises:
        SpeechkitError: ``final`` is a file, or its parent cannot be written.
    """
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise SpeechkitError(f"{final}: exists and is not a folder")
    blocker = next((p for p in final.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise SpeechkitError(f"{final}: cannot write here ({blocker} is a file, not a folder)")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    except OSError as error:
        raise SpeechkitError(f"{final}: cannot write here ({error.strerror or error})") from None
    try:
        yield staging
        staging.chmod(0o755)  # mkdtemp makes 0700 folders
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        if final.exists():
            os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
        _fsync_folder(final.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be opened / synced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning ``CheckpointIO`` that never leaves a partial checkpoint under a checkpoint's name.

    Saving writes ``.<name>.tmp-<pid>`` in the destination folder (not ``TMPDIR``), flushes, fsyncs and
    ``os.replace``-s it onto the name (:func:`save_atomic`); a full disk is a one-line ``SpeechkitError`` naming the
    path and the free space. Loading (``--ckpt_path``, resume) goes through :func:`load_checkpoint`
    (``weights_only=True``). YAML: ``trainer.plugins: [{class_path: speechkit.checkpoints.AtomicCheckpointIO}]``.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: PathLike,
                        storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        save_atomic(checkpoint, path)

    def load_checkpoint(self, path: PathLike, map_location: Any = None,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        """Always :func:`load_checkpoint` (``weights_only``), whatever ``weights_only`` asks."""
        return load_checkpoint(path, "cpu" if map_location is None or callable(map_location) else map_location)


# ------------------------------------------------------------------ interruption
class SignalCheckpoint(Callback):
    """Save a resumable ``last.ckpt`` (atomically) when fitting is stopped by SIGTERM or SIGINT.

    Lightning turns SIGTERM into ``SIGTERMException`` at the next batch boundary (``trainer.received_sigterm``) and
    calls ``on_exception``; ``speechkit fit`` routes SIGINT the same way. The file goes to the run's checkpoint
    folder (the ``ModelCheckpoint``'s ``dirpath``, else ``<log_dir>/checkpoints``); resume with
    ``--ckpt_path <that file>``. Other exceptions save nothing: a crashed run's state may be bad, and a bare
    ``KeyboardInterrupt`` can land mid-step (``speechkit fit`` turns the first Ctrl-C into a SIGTERM-style stop at the
    next batch boundary; a second one stops at once, without saving).
    """

    def __init__(self) -> None:
        self.saved: Optional[Path] = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        from lightning.pytorch.trainer.states import TrainerFn
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return
        path = self.last_path(trainer)
        try:
            trainer.save_checkpoint(path, False)  # False: the whole state (optimizers, loops), not only the weights
        except Exception as error:  # noqa: BLE001 - the interruption must still end the run
            if trainer.is_global_zero:
                log.warning("interrupted at step %d: could not save %s: %s", trainer.global_step, path, error)
            return
        self.saved = path
        rank_zero_info(f"interrupted at step {trainer.global_step}: saved {path}; resume with --ckpt_path {path}")

    @staticmethod
    def last_path(trainer: Trainer) -> Path:
        """``<checkpoint dir>/last.ckpt`` of this run."""
        from lightning.pytorch.callbacks import ModelCheckpoint

        callback = trainer.checkpoint_callback
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
        return Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints" / "last.ckpt"
