"""Transcription with Whisper: ``speechkit transcribe`` and the pieces it is made of.

``inputs`` (files, folders, manifests -> items -> waveforms), ``models`` (the MODEL argument), ``writers`` (JSONL /
txt / SRT / VTT, written atomically) and ``transcribe`` (the command). The decoding itself (batched short-form and
long-form with Whisper's guards) is a model component, :mod:`speechkit.models.whisper_decode`, which the Whisper
tasks' ``predict_step`` shares.
"""
