"""Transcription with Whisper: ``speechkit transcribe`` and the pieces it is made of.

``inputs`` (files, folders, manifests -> items -> waveforms), ``models`` (the MODEL argument), ``decode``
(batched short-form and long-form decoding with Whisper's guards), ``writers`` (JSONL / txt / SRT / VTT, written
atomically) and ``transcribe`` (the command).
"""
