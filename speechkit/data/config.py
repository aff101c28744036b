"""Every data-loading option of speechkit and its default, in one dataclass.

``SpeechDataModule(config=DataConfig(...))``; in YAML, ``data.init_args.config.<field>``. jsonargparse rejects an
unknown key before training, naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from speechkit.errors import SpeechkitError

InputKind = Literal["whisper_fbank", "fbank", "waveform"]


@dataclass
class DataConfig:
    """Data options.

    Args:
        train_cuts: Lhotse cut manifest(s) for training (``cuts_train.jsonl.gz``); several are concatenated.
        dev_cuts: manifest(s) for validation.
        test_cuts: manifest(s) for ``speechkit test``.
        sampling_rate: every cut is resampled on load to this rate (Hz).
        input: what the model eats: Whisper log-mel (``whisper_fbank``, 16 kHz only), Kaldi fbank, or waveform.
        num_mel_bins: mel bands for ``whisper_fbank`` (80, or 128 for large-v3) and ``fbank``.
        text_field: ``"text"`` (the transcript) or a key of ``supervision.custom`` (e.g. ``"de"`` for a translation).
        max_duration: seconds of audio per training batch (dynamic batches).
        max_cuts: optional cap on cuts per training batch.
        quadratic_duration: Lhotse's ``quadratic_duration``: a cut of d seconds counts ``d + d^2/Q``.
        num_buckets: duration buckets, when ``bucket_duration_bins`` is not given (bins are then estimated).
        bucket_duration_bins: 1-D ``[d1, d2, ...]`` or 2-D ``[[d, tokens], ...]`` bins (``speechkit bins``).
        bucket_batch_size: fixed batch size per bucket (``speechkit batch-sizes``); requires bins.
        bucket_max_tps: 2-D only: the largest tokens-per-second of each bucket (from ``speechkit bins``); strict
            assignment drops a cut above its bucket's value (counted and reported).
        bucketing_2d_strict: 2-D assignment: strict (the duration block first) or lenient (first bucket that fits).
        num_cuts_for_bins_estimate: cuts read to estimate bins.
        shuffle: shuffle training cuts.
        buffer_size: Lhotse bucketing buffer size (cuts held in memory).
        shuffle_buffer_size: Lhotse shuffle buffer size.
        seed: sampler and augmentation seed.
        drop_last: drop incomplete training batches.
        val_batch_size: validation and test use static batches of this many cuts (no bucketing).
        num_workers: DataLoader workers.
        speed_perturb: speed factors drawn for training cuts (e.g. ``[0.9, 1.1]``); empty = off.
        speed_perturb_prob: probability of perturbing a cut.
        noise_cuts: manifest of noise cuts mixed into training cuts; ``None`` = off.
        noise_snr: SNR range in dB drawn uniformly for each mixed cut.
        noise_prob: probability of mixing noise into a cut.
        spec_augment: SpecAugment on training features (not on waveforms).
        spec_augment_time_warp: SpecAugment time-warp factor (0 = off).
        spec_augment_freq_masks: number of frequency masks.
        spec_augment_freq_width: maximum width of a frequency mask.
        spec_augment_time_masks: number of time masks.
        spec_augment_max_time_fraction: time masks cover at most this fraction of frames.
        drop_too_long: training cuts longer than the task takes are left out, their count and ids logged before
            training; ``False``: they are an error before training. The limit is the task's ``max_input_seconds``
            (30 s for Whisper) times the smallest ``speed_perturb`` factor below 1 (0.9 stretches a cut to 1/0.9).
            Dev and test cuts are never left out.
        allow_language_mismatch: train and evaluate on cuts whose supervision language differs from the task's
            (e.g. ``WhisperFinetune.language``), counting and logging them; ``False``: such a cut is an error
            before training naming the manifest, the cut and both languages.
        video_field: the cut custom field holding mouth-crop video (a uint8 ``(V, H, W)`` ``TemporalArray`` at
            25 fps, e.g. ``mouth`` of ``speechkit prepare synthetic_av``), loaded into ``SpeechBatch.video``;
            ``None``: audio only. Not combinable with ``speed_perturb`` (Lhotse stretches audio, not arrays).
    """

    train_cuts: Optional[Union[str, list[str]]] = None
    dev_cuts: Optional[Union[str, list[str]]] = None
    test_cuts: Optional[Union[str, list[str]]] = None
    sampling_rate: int = 16000
    input: InputKind = "whisper_fbank"
    num_mel_bins: int = 80
    text_field: str = "text"
    max_duration: float = 60.0
    max_cuts: Optional[int] = None
    quadratic_duration: Optional[float] = None
    num_buckets: int = 10
    bucket_duration_bins: Optional[Union[list[float], list[list[float]]]] = None
    bucket_batch_size: Optional[list[int]] = None
    bucket_max_tps: Optional[list[float]] = None
    bucketing_2d_strict: bool = True
    num_cuts_for_bins_estimate: int = 10000
    shuffle: bool = True
    buffer_size: int = 10000
    shuffle_buffer_size: int = 10000
    seed: int = 0
    drop_last: bool = False
    val_batch_size: int = 16
    num_workers: int = 0
    speed_perturb: list[float] = field(default_factory=list)
    speed_perturb_prob: float = 0.5
    noise_cuts: Optional[str] = None
    noise_snr: tuple[float, float] = (10.0, 20.0)
    noise_prob: float = 0.5
    spec_augment: bool = False
    spec_augment_time_warp: int = 0
    spec_augment_freq_masks: int = 2
    spec_augment_freq_width: int = 27
    spec_augment_time_masks: int = 4
    spec_augment_max_time_fraction: float = 0.05
    drop_too_long: bool = False
    allow_language_mismatch: bool = False
    video_field: Optional[str] = None

    def __post_init__(self) -> None:
        if self.input == "whisper_fbank" and self.sampling_rate != 16000:
            raise SpeechkitError(
                f"sampling_rate={self.sampling_rate}: input 'whisper_fbank' (Whisper's log-mel) needs 16000 Hz"
            )
        if self.sampling_rate <= 0:
            raise SpeechkitError(f"sampling_rate must be positive, got {self.sampling_rate}")
        if self.max_duration <= 0:
            raise SpeechkitError(f"max_duration must be positive, got {self.max_duration}")
        if self.bucket_batch_size is not None:
            if self.bucket_duration_bins is None:
                raise SpeechkitError("bucket_batch_size needs bucket_duration_bins (from `speechkit bins`)")
            if len(self.bucket_batch_size) != len(self.bucket_duration_bins):
                raise SpeechkitError(
                    f"bucket_batch_size has {len(self.bucket_batch_size)} entries but bucket_duration_bins has "
                    f"{len(self.bucket_duration_bins)}: give one batch size per bucket"
                )
        low, high = self.noise_snr
        if low > high:
            raise SpeechkitError(f"noise_snr must be (low, high) with low <= high, got {self.noise_snr}")
        for factor in self.speed_perturb:
            if factor <= 0:
                raise SpeechkitError(f"speed_perturb factors must be positive, got {factor}")
        if self.video_field is not None and self.speed_perturb:
            raise SpeechkitError(
                f"speed_perturb {self.speed_perturb} with video_field {self.video_field!r}: speed perturbation "
                "stretches the audio but not the video; remove one of them"
            )

    @property
    def is_2d(self) -> bool:
        """True when the bins are 2-D ``[[duration, tokens], ...]``."""
        bins = self.bucket_duration_bins
        return bool(bins) and isinstance(bins[0], (list, tuple))
