"""Model building blocks: Whisper import (CTranslate2, packaged weights), languages, variable-length input, adaptation."""

from speechkit.models.adaptation import apply_lora, count_trainable, export, freeze_encoder_layers
from speechkit.models.ctranslate2 import WhisperBundle, load_ctranslate2
from speechkit.models.pretrained import load_whisper, pretrained_dir
from speechkit.models.whisper_encoder import generate_variable_length, variable_length_input
from speechkit.models.whisper_language import add_language, decoder_prompt_ids, language_token_id

__all__ = [
    "WhisperBundle", "add_language", "apply_lora", "count_trainable", "decoder_prompt_ids", "export",
    "freeze_encoder_layers", "generate_variable_length", "language_token_id", "load_ctranslate2", "load_whisper",
    "pretrained_dir", "variable_length_input",
]
