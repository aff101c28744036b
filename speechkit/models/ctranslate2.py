"""Import a CTranslate2 (faster-whisper) Whisper folder into Hugging Face ``transformers``, without ``ctranslate2``.

A CTranslate2 Whisper folder holds ``model.bin`` (named tensors), ``config.json`` (suppress ids, language ids,
alignment heads), ``tokenizer.json`` (the Hugging Face tokenizer) and ``vocabulary.txt`` (one token a line, the
timestamp tokens included). ``model.bin`` is written by CTranslate2's ``ModelSpec._serialize``
(``python/ctranslate2/specs/model_spec.py``); its variable names come from ``WhisperSpec`` and the converter
``WhisperLoader`` (``python/ctranslate2/converters/transformers.py``), which fuses q/k/v into one linear layer.
No library reads this format without ``ctranslate2`` itself, so the reader and the name mapping are written here.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration
from transformers import WhisperTokenizerFast

from speechkit.errors import SpeechkitError

SUPPORTED_BINARY_VERSIONS = (5, 6)
# CTranslate2's DataType enum order (include/ctranslate2/types.h; model_spec._dtype_to_type_id).
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
_LANGUAGE_TOKEN = re.compile(r"<\|[a-z]{2,3}(?:[_-][A-Za-z]+)?\|>")
# Set on a model's config (and under config.json's "speechkit" key of a CTranslate2 folder) by an export of a model
# trained on variable-length encoder input, which may then be decoded that way (speechkit.inference.models).
VARIABLE_LENGTH_KEY = "speechkit_variable_length_input"
_NON_LANGUAGE_TOKENS = {
    "<|endoftext|>", "<|startoftranscript|>", "<|translate|>", "<|transcribe|>",
    "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>",
}


@dataclass
class WhisperBundle:
    """A Whisper model with everything needed to run and save it.

    Attributes:
        model: the ``WhisperForConditionalGeneration`` (its ``generation_config`` is ``generation_config``).
        tokenizer: the Whisper tokenizer (timestamp tokens included, so ``len(tokenizer) == vocab_size``).
        feature_extractor: the log-mel feature extractor matching the model's number of mel bins.
        generation_config: Whisper generation settings (``lang_to_id``, ``task_to_id``, suppress lists ...).
    """

    model: WhisperForConditionalGeneration
    tokenizer: WhisperTokenizerFast
    feature_extractor: WhisperFeatureExtractor
    generation_config: GenerationConfig

    def save_pretrained(self, out_dir: str | Path) -> Path:
        """Write a Hugging Face folder that ``from_pretrained`` and ``pipeline`` load."""
        out = Path(out_dir)
        self.model.generation_config = self.generation_config
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        self.feature_extractor.save_pretrained(out)
        return out


# --------------------------------------------------------------------------- reading model.bin


def _read(stream: BinaryIO, fmt: str) -> tuple:
    size = struct.calcsize(fmt)
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return struct.unpack("<" + fmt, data)


def _read_string(stream: BinaryIO) -> str:
    (length,) = _read(stream, "H")  # length includes the trailing NUL byte
    return stream.read(length)[:-1].decode("utf-8")


def _read_array(stream: BinaryIO, path: Path, name: str) -> np.ndarray:
    (rank,) = _read(stream, "B")
    shape = _read(stream, "I" * rank)
    (type_id,) = _read(stream, "B")
    (num_bytes,) = _read(stream, "I")
    if type_id not in _DTYPES:
        raise SpeechkitError(f"{path}: variable {name!r} has unknown CTranslate2 dtype id {type_id}")
    raw = stream.read(num_bytes)
    if len(raw) != num_bytes:
        raise EOFError
    if _DTYPES[type_id] == "bfloat16":  # numpy has no bfloat16: widen the 16 high bits of a float32
        bits = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    return np.frombuffer(raw, dtype=_DTYPES[type_id]).reshape(shape)


def read_model_bin(path: str | Path) -> tuple[str, int, dict[str, np.ndarray]]:
    """Read a CTranslate2 ``model.bin``: ``(spec name, spec revision, {variable name: array})``.

    Layout (little endian, ``model_spec._serialize``): ``uint32`` binary version; string spec name; ``uint32``
    revision; ``uint32`` count, then per variable: string name, ``uint8`` rank, ``uint32`` dims, ``uint8`` dtype id,
    ``uint32`` byte count, raw bytes; ``uint32`` alias count, then (alias, target) string pairs. A string is a
    ``uint16`` length (with the NUL), the UTF-8 bytes and a NUL. Aliases are resolved to their target's array (and
    its ``_scale``: an int8 folder's tied output projection is an alias of the quantized embedding).

    Args:
        path: the ``model.bin`` file.

    Raises:
        SpeechkitError: the file is missing, truncated, or of a binary version this reader does not know.
    """
    path = Path(path)
    if not path.is_file():
        raise SpeechkitError(f"{path}: no such file (a CTranslate2 folder needs model.bin)")
    try:
        with path.open("rb") as stream:
            (version,) = _read(stream, "I")
            if version not in SUPPORTED_BINARY_VERSIONS:
                raise SpeechkitError(
                    f"{path}: CTranslate2 binary version {version} is not supported "
                    f"(expected one of {SUPPORTED_BINARY_VERSIONS}); is this a CTranslate2 model.bin?"
                )
            spec_name = _read_string(stream)
            (revision,) = _read(stream, "I")
            (count,) = _read(stream, "I")
            variables = {}
            for _ in range(count):
                name = _read_string(stream)
                variables[name] = _read_array(stream, path, name)
            (num_aliases,) = _read(stream, "I")
            for _ in range(num_aliases):
                alias, target = _read_string(stream), _read_string(stream)
                variables[alias] = variables[target]
                if target + "_scale" in variables:  # a quantized tied weight: the alias shares its scale too
                    variables[alias + "_scale"] = variables[target + "_scale"]
    except (EOFError, UnicodeDecodeError, KeyError) as error:
        raise SpeechkitError(f"{path}: truncated or malformed CTranslate2 model.bin ({error!r})") from error
    return spec_name, revision, variables


# --------------------------------------------------------------------------- CTranslate2 names -> HF names


def _dequantize(variables: dict[str, np.ndarray], name: str, path: Path) -> torch.Tensor:
    """Float32 tensor of ``name``; int8/int16 weights are divided by their ``<name>_scale`` (model_spec._quantize)."""
    value = variables[name]
    if value.dtype in (np.float32, np.float16):
        return torch.from_numpy(np.array(value)).to(torch.float32)  # copy: the buffer is read-only
    scale = variables.get(name + "_scale")
    if value.dtype in (np.int8, np.int16) and scale is not None:
        scale = scale.astype(np.float32)
        # int8: one scale per output row (127 / row amax); int16: one scalar scale.
        scale = scale.reshape(-1, *([1] * (value.ndim - 1))) if scale.ndim == 1 else scale
        return torch.from_numpy(value.astype(np.float32) / scale)
    raise SpeechkitError(
        f"{path}: variable {name!r} has dtype {value.dtype} without a scale; supported: float32, float16, "
        "bfloat16, int8/int16 with a weight_scale"
    )


def _linear(sd: dict, hf: str, v: dict, ct2: str, path: Path, bias: bool = True) -> None:
    sd[f"{hf}.weight"] = _dequantize(v, f"{ct2}/weight", path)
    if bias:
        sd[f"{hf}.bias"] = _dequantize(v, f"{ct2}/bias", path)


def _layer_norm(sd: dict, hf: str, v: dict, ct2: str, path: Path) -> None:
    sd[f"{hf}.weight"] = _dequantize(v, f"{ct2}/gamma", path)
    sd[f"{hf}.bias"] = _dequantize(v, f"{ct2}/beta", path)


def _split_fused(sd: dict, hf: str, names: list[str], v: dict, ct2: str, path: Path) -> None:
    """Split a fused linear layer (rows ``[q; k; v]`` or ``[k; v]``) into HF's projections.

    HF Whisper's ``k_proj`` has no bias: the converter fused it with a zero bias, which is dropped here.
    """
    weights = _dequantize(v, f"{ct2}/weight", path).chunk(len(names), dim=0)
    biases = _dequantize(v, f"{ct2}/bias", path).chunk(len(names), dim=0)
    for proj, weight, bias in zip(names, weights, biases):
        sd[f"{hf}.{proj}.weight"] = weight
        if proj != "k_proj":
            sd[f"{hf}.{proj}.bias"] = bias


def _encoder_layer(sd: dict, i: int, v: dict, path: Path) -> None:
    hf, ct2 = f"model.encoder.layers.{i}", f"encoder/layer_{i}"
    _layer_norm(sd, f"{hf}.self_attn_layer_norm", v, f"{ct2}/self_attention/layer_norm", path)
    _split_fused(sd, f"{hf}.self_attn", ["q_proj", "k_proj", "v_proj"], v, f"{ct2}/self_attention/linear_0", path)
    _linear(sd, f"{hf}.self_attn.out_proj", v, f"{ct2}/self_attention/linear_1", path)
    _ffn(sd, hf, v, ct2, path)


def _decoder_layer(sd: dict, i: int, v: dict, path: Path) -> None:
    hf, ct2 = f"model.decoder.layers.{i}", f"decoder/layer_{i}"
    _layer_norm(sd, f"{hf}.self_attn_layer_norm", v, f"{ct2}/self_attention/layer_norm", path)
    _split_fused(sd, f"{hf}.self_attn", ["q_proj", "k_proj", "v_proj"], v, f"{ct2}/self_attention/linear_0", path)
    _linear(sd, f"{hf}.self_attn.out_proj", v, f"{ct2}/self_attention/linear_1", path)
    _layer_norm(sd, f"{hf}.encoder_attn_layer_norm", v, f"{ct2}/attention/layer_norm", path)
    _linear(sd, f"{hf}.encoder_attn.q_proj", v, f"{ct2}/attention/linear_0", path)
    _split_fused(sd, f"{hf}.encoder_attn", ["k_proj", "v_proj"], v, f"{ct2}/attention/linear_1", path)
    _linear(sd, f"{hf}.encoder_attn.out_proj", v, f"{ct2}/attention/linear_2", path)
    _ffn(sd, hf, v, ct2, path)


def _ffn(sd: dict, hf: str, v: dict, ct2: str, path: Path) -> None:
    _layer_norm(sd, f"{hf}.final_layer_norm", v, f"{ct2}/ffn/layer_norm", path)
    _linear(sd, f"{hf}.fc1", v, f"{ct2}/ffn/linear_0", path)
    _linear(sd, f"{hf}.fc2", v, f"{ct2}/ffn/linear_1", path)


def _num_layers(variables: dict, stack: str) -> int:
    indices = {int(m.group(1)) for name in variables if (m := re.match(rf"{stack}/layer_(\d+)/", name))}
    return max(indices) + 1 if indices else 0


def _state_dict(variables: dict, n_enc: int, n_dec: int, path: Path) -> dict[str, torch.Tensor]:
    sd: dict[str, torch.Tensor] = {}
    for stack in ("encoder", "decoder"):
        sd[f"model.{stack}.embed_positions.weight"] = _dequantize(variables, f"{stack}/position_encodings/encodings", path)
        _layer_norm(sd, f"model.{stack}.layer_norm", variables, f"{stack}/layer_norm", path)
    for conv in ("conv1", "conv2"):
        _linear(sd, f"model.encoder.{conv}", variables, f"encoder/{conv}", path)
    sd["model.decoder.embed_tokens.weight"] = _dequantize(variables, "decoder/embeddings/weight", path)
    sd["proj_out.weight"] = _dequantize(variables, "decoder/projection/weight", path)
    for i in range(n_enc):
        _encoder_layer(sd, i, variables, path)
    for i in range(n_dec):
        _decoder_layer(sd, i, variables, path)
    return sd


# --------------------------------------------------------------------------- tokenizer, configs


def load_tokenizer(folder: str | Path, vocab_size: int | None = None) -> WhisperTokenizerFast:
    """The tokenizer of a CTranslate2 Whisper folder: ``tokenizer.json`` plus the timestamp tokens of
    ``vocabulary.txt`` (ids past the end of ``tokenizer.json``).

    CTranslate2's Whisper ``tokenizer.json`` stops at ``<|notimestamps|>``; the ``<|0.00|>`` ... ``<|30.00|>``
    tokens exist only in ``vocabulary.txt``. They are added (non-special, as in OpenAI's Hugging Face tokenizers)
    so that every model row has a token and a new token gets the next free id.

    Args:
        folder: the CTranslate2 folder (``tokenizer.json``, ``vocabulary.txt``).
        vocab_size: the model's embedding rows, checked against the tokenizer; ``None``: not checked.
    """
    folder = Path(folder)
    tokenizer = WhisperTokenizerFast(
        tokenizer_file=str(folder / "tokenizer.json"),
        unk_token="<|endoftext|>", bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
    )
    vocabulary_file = folder / "vocabulary.txt"
    if vocabulary_file.is_file():
        tokens = vocabulary_file.read_text(encoding="utf-8").splitlines()
        if vocab_size is not None and len(tokens) != vocab_size:
            raise SpeechkitError(f"{vocabulary_file}: {len(tokens)} tokens, but model.bin has {vocab_size} rows")
        tokenizer.add_tokens(tokens[len(tokenizer):])
    if vocab_size is not None and len(tokenizer) != vocab_size:
        raise SpeechkitError(
            f"{folder}: tokenizer has {len(tokenizer)} tokens but the model has {vocab_size} embedding rows "
            "(vocabulary.txt missing or inconsistent)"
        )
    return tokenizer


def _language_ids(tokenizer: WhisperTokenizerFast, lang_ids: list[int] | None = None) -> dict[str, int]:
    """``{"<|xx|>": id}`` of the language tokens: those a CTranslate2 ``config.json`` lists in ``lang_ids``, else the
    special tokens between ``<|startoftranscript|>`` and ``<|translate|>``. A token Whisper never had (added by
    :func:`speechkit.models.whisper_language.add_language`, after the timestamps) is also keyed by its bare code,
    which ``generate(language="ky")`` looks up.

    Raises:
        SpeechkitError: a listed id that is not a ``<|xx|>`` token of ``tokenizer.json``.
    """
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    if not lang_ids:
        start = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
        stop = tokenizer.convert_tokens_to_ids("<|translate|>")
        lang_ids = [i for i in range(start + 1, stop) if tokenizer.convert_ids_to_tokens(i) not in _NON_LANGUAGE_TOKENS]
    mapping = {}
    for token_id in sorted(set(lang_ids)):
        token = tokenizer.convert_ids_to_tokens(int(token_id))
        if not (isinstance(token, str) and _LANGUAGE_TOKEN.fullmatch(token)) or token in _NON_LANGUAGE_TOKENS:
            raise SpeechkitError(f"config.json: lang_ids lists {token_id}, which is {token!r} in tokenizer.json, not a "
                                 "language token <|xx|>")
        mapping[token] = int(token_id)
        if token[2:-2] not in TO_LANGUAGE_CODE.values():
            mapping[token[2:-2]] = int(token_id)
    return mapping


def whisper_generation_config(
    config: WhisperConfig, tokenizer: WhisperTokenizerFast, ct2: dict | None = None
) -> GenerationConfig:
    """A generation config as OpenAI's Hugging Face Whisper checkpoints carry it.

    Args:
        config: the model config (special token ids, vocabulary size, target length).
        tokenizer: the Whisper tokenizer (language, task and timestamp token ids).
        ct2: a CTranslate2 ``config.json`` (``suppress_ids``, ``suppress_ids_begin``, ``lang_ids``,
            ``alignment_heads``); ``None``: empty suppress list and no alignment heads.
    """
    ct2 = ct2 or {}
    ids = tokenizer.convert_tokens_to_ids
    multilingual = config.vocab_size >= 51865  # the English-only vocabulary has 51864 rows (HF's own test)
    fields = dict(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        max_length=config.max_target_positions,
        suppress_tokens=list(ct2.get("suppress_ids") or []),
        begin_suppress_tokens=list(ct2.get("suppress_ids_begin") or [220, config.eos_token_id]),
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=50,
        return_timestamps=False,
        is_multilingual=multilingual,
        alignment_heads=[list(pair) for pair in ct2.get("alignment_heads") or []],
    )
    if multilingual:
        fields.update(lang_to_id=_language_ids(tokenizer, ct2.get("lang_ids")), task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")})
    return GenerationConfig(**fields)


def _whisper_config(variables: dict, tokenizer: WhisperTokenizerFast) -> WhisperConfig:
    d_model = variables["decoder/embeddings/weight"].shape[1]
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return WhisperConfig(
        vocab_size=variables["decoder/embeddings/weight"].shape[0],
        num_mel_bins=variables["encoder/conv1/weight"].shape[1],
        d_model=d_model,
        encoder_layers=_num_layers(variables, "encoder"),
        decoder_layers=_num_layers(variables, "decoder"),
        encoder_attention_heads=int(variables["encoder/num_heads"].item()),
        decoder_attention_heads=int(variables["decoder/num_heads"].item()),
        encoder_ffn_dim=variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=variables["decoder/position_encodings/encodings"].shape[0],
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=tokenizer.convert_tokens_to_ids("<|startoftranscript|>"),
        begin_suppress_tokens=[220, eot],
    )


def _generation_config(folder: Path, config: WhisperConfig, tokenizer: WhisperTokenizerFast) -> GenerationConfig:
    """The folder's ``generation_config.json`` when it has one (``speechkit export --format ctranslate2`` copies it:
    default language included), else one rebuilt from ``config.json``; the ``"speechkit"`` entry of ``config.json``
    (:mod:`speechkit.models.ctranslate2_writer`) supplies the default language and the variable-length flag."""
    ct2 = json.loads((folder / "config.json").read_text())
    if (folder / "generation_config.json").is_file():
        generation = GenerationConfig.from_pretrained(folder)
    else:
        generation = whisper_generation_config(config, tokenizer, ct2)
    defaults = ct2.get("speechkit") or {}
    if defaults.get("language") and not getattr(generation, "language", None):
        generation.language, generation.task = defaults["language"], defaults.get("task") or "transcribe"
    if defaults.get("variable_length_input"):
        setattr(config, VARIABLE_LENGTH_KEY, True)
    return generation


# --------------------------------------------------------------------------- the public loader


_REQUIRED = ("decoder/embeddings/weight", "encoder/conv1/weight", "encoder/num_heads", "decoder/num_heads",
             "encoder/layer_0/ffn/linear_0/weight", "decoder/layer_0/ffn/linear_0/weight")


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise SpeechkitError(f"{folder}: not a folder (expected a CTranslate2 Whisper folder)")
    for name in ("model.bin", "config.json", "tokenizer.json"):
        if not (folder / name).is_file():
            raise SpeechkitError(f"{folder}: missing {name} (a CTranslate2 Whisper folder has model.bin, "
                                 "config.json, tokenizer.json and vocabulary.txt)")


def load_ctranslate2(model_dir: str | Path, dtype: torch.dtype = torch.float32) -> WhisperBundle:
    """Convert a CTranslate2 (faster-whisper) Whisper folder into a Hugging Face Whisper bundle.

    The architecture comes from the tensors (mel bins from ``conv1``, vocabulary from the embedding, layer
    counts from the variable names, heads from ``num_heads``); suppress lists, language ids and alignment heads
    from ``config.json``. Float16/bfloat16 weights are widened, int8/int16 weights are divided by their scale.

    Args:
        model_dir: folder with ``model.bin``, ``config.json``, ``tokenizer.json`` and ``vocabulary.txt``.
        dtype: parameter dtype of the returned model.

    Returns:
        The model (in eval mode), tokenizer, feature extractor and generation config.

    Raises:
        SpeechkitError: a missing file, a ``model.bin`` that is not a Whisper model, or unsupported weight types.
    """
    folder = Path(model_dir)
    _check_folder(folder)
    spec_name, _, variables = read_model_bin(folder / "model.bin")
    missing = [name for name in _REQUIRED if name not in variables]
    if spec_name != "WhisperSpec" or missing:
        raise SpeechkitError(f"{folder / 'model.bin'}: not a Whisper model (spec {spec_name!r}"
                             + (f", missing {missing}" if missing else "") + "; expected WhisperSpec)")
    tokenizer = load_tokenizer(folder, variables["decoder/embeddings/weight"].shape[0])
    config = _whisper_config(variables, tokenizer)
    state = _state_dict(variables, config.encoder_layers, config.decoder_layers, folder / "model.bin")
    config.tie_word_embeddings = bool(torch.equal(state["proj_out.weight"], state["model.decoder.embed_tokens.weight"]))
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.proj_out.weight = model.model.decoder.embed_tokens.weight
    model.generation_config = _generation_config(folder, config, tokenizer)
    feature_extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    return WhisperBundle(model.eval(), tokenizer, feature_extractor, model.generation_config)
