"""Per-utterance acoustic summary features (loudness, spectral shape, ...) for Tensorleap metadata.

`speech_features` gives, for each of ten `librosa.feature` functions, the min / max / mean / std of the matrix
that function returns when called with its defaults (`y=audio, sr=sample_rate`). Calling the ten functions one
by one computes the same STFT eight times and runs a few slow generic routines (an SVD least-squares fit per
call, per-frame normalisation copies, overlapping-frame zero-crossing counts); here one STFT is shared and those
steps are replaced by equivalent closed forms. tests/test_audio_features.py checks every matrix against the
library's own call.

Edge cases:
- Audio shorter than librosa's n_fft (2048 samples) is analysed exactly as librosa does: centred zero padding
  gives 1 + len // 512 frames (the "n_fft too large" warning is silenced, the short input is expected).
- Empty audio is analysed as one silent sample: librosa turns both into a single all-zero frame, and this keeps
  zero_crossing_rate defined (librosa's edge padding fails on an empty signal). Its duration, mean and std are 0.
- Silence gives finite values (librosa clamps logs with amin); any statistic that is still not finite is
  reported as 0.0, so every value is a finite plain float.
- Non-finite samples (NaN, inf) raise librosa's ParameterError, as the separate librosa calls would.
"""
from __future__ import annotations

import contextlib
import functools
import warnings

import librosa
import numpy as np

# librosa.feature defaults (0.11) that the shared spectrogram must reproduce.
N_FFT = 2048
HOP_LENGTH = 512
ROLL_PERCENT = 0.85
POLY_ORDER = 1

FEATURE_NAMES = (
    "spectral_flatness", "spectral_contrast", "melspectrogram", "mfcc", "rms", "spectral_centroid",
    "spectral_bandwidth", "spectral_rolloff", "poly_features", "zero_crossing_rate",
)
STATISTICS = ("min", "max", "mean", "std")


def speech_features(audio: np.ndarray, sample_rate: int) -> dict[str, float]:
    """`{feature}_{statistic}` for every librosa feature in FEATURE_NAMES, plus duration_seconds, signal_mean
    and signal_std. Statistics run over the whole feature matrix (all rows and frames)."""
    audio = _validated(audio)
    features = {
        "duration_seconds": audio.size / sample_rate,
        # float64 accumulation: a long float32 sum would lose digits of a near-zero DC offset.
        "signal_mean": float(np.mean(audio, dtype=np.float64)) if audio.size else 0.0,
        "signal_std": float(np.std(audio, dtype=np.float64)) if audio.size else 0.0,
    }
    for name, matrix in feature_matrices(audio, sample_rate).items():
        features.update(summarize(name, matrix))
    return {key: _finite_float(value) for key, value in features.items()}


def feature_matrices(audio: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
    """The matrices `librosa.feature.<name>(y=audio, sr=sample_rate)` returns, computed from one shared STFT."""
    audio = _analysable(_validated(audio))
    magnitude, power = _spectrograms(audio)
    mel_power = _mel_power(power, sample_rate)
    magnitude64 = magnitude.astype(np.float64)  # shared by the fits and moments below
    normalizers = _normalizers(magnitude)
    centroid = _spectral_centroid(magnitude64, normalizers, sample_rate)
    return {
        # power=1.0 on a power spectrogram is what the default power=2.0 does to a magnitude spectrogram.
        "spectral_flatness": librosa.feature.spectral_flatness(S=power, power=1.0),
        "spectral_contrast": librosa.feature.spectral_contrast(S=magnitude, sr=sample_rate),
        "melspectrogram": mel_power,
        # mfcc's default input is the dB-scaled mel power spectrogram.
        "mfcc": librosa.feature.mfcc(S=librosa.power_to_db(mel_power), sr=sample_rate),
        # rms on y frames the signal itself (no window), so it cannot come from the Hann STFT; it is cheap.
        "rms": librosa.feature.rms(y=audio, frame_length=N_FFT, hop_length=HOP_LENGTH),
        "spectral_centroid": centroid,
        "spectral_bandwidth": _spectral_bandwidth(magnitude64, normalizers, centroid, sample_rate),
        "spectral_rolloff": _spectral_rolloff(magnitude, sample_rate),
        "poly_features": _poly_fit_operator(sample_rate) @ magnitude64,
        "zero_crossing_rate": _zero_crossing_rate(audio),
    }


def summarize(name: str, matrix: np.ndarray) -> dict[str, float]:
    """STATISTICS of a whole feature matrix (mean and std accumulated in float64)."""
    values = {"min": np.min(matrix), "max": np.max(matrix), "mean": np.mean(matrix, dtype=np.float64),
              "std": np.std(matrix, dtype=np.float64)}
    return {f"{name}_{statistic}": float(values[statistic]) for statistic in STATISTICS}


def _validated(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio of shape [samples], got shape {audio.shape}")
    return audio


def _analysable(audio: np.ndarray) -> np.ndarray:
    # librosa pads empty audio and one zero sample to the same single silent frame; only zero_crossing_rate
    # needs a sample to pad from.
    return np.zeros(1, dtype=audio.dtype) if audio.size == 0 else audio


def _finite_float(value: float) -> float:
    value = float(value)
    return value if np.isfinite(value) else 0.0


@contextlib.contextmanager
def short_clip_stft(audio: np.ndarray):
    """librosa warns "n_fft=2048 is too large" on a clip shorter than its window: expected for short clips, whose
    centred padding still yields valid frames, so not said once per such clip."""
    with warnings.catch_warnings():
        if audio.size < N_FFT:
            warnings.filterwarnings("ignore", message=r"n_fft=\d+ is too large", category=UserWarning)
        yield


def _spectrograms(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|STFT| and |STFT|**2 exactly as librosa's feature functions compute them from y."""
    with short_clip_stft(audio):
        magnitude = np.abs(librosa.stft(audio, n_fft=N_FFT, hop_length=HOP_LENGTH))
    return magnitude, magnitude**2


@functools.lru_cache(maxsize=8)
def _mel_basis(sample_rate: int) -> np.ndarray:
    # Built once per rate (librosa.feature.melspectrogram rebuilds it on every call).
    basis = librosa.filters.mel(sr=sample_rate, n_fft=N_FFT)
    basis.flags.writeable = False
    return basis


def _mel_power(power: np.ndarray, sample_rate: int) -> np.ndarray:
    # The same contraction librosa.feature.melspectrogram performs, so the result is bit-identical.
    return np.einsum("...ft,mf->...mt", power, _mel_basis(sample_rate), optimize=True)


@functools.lru_cache(maxsize=8)
def _frequencies(sample_rate: int) -> np.ndarray:
    frequencies = librosa.fft_frequencies(sr=sample_rate, n_fft=N_FFT)
    frequencies.flags.writeable = False
    return frequencies


def _normalizers(magnitude: np.ndarray) -> np.ndarray:
    """Per-frame L1 norms as librosa.util.normalize(S, norm=1, axis=0) uses them: frames whose norm is below
    the dtype's tiny value are left unnormalised (divided by 1)."""
    totals = np.sum(magnitude, axis=0, dtype=np.float64)
    return np.where(totals < np.finfo(magnitude.dtype).tiny, 1.0, totals)


def _spectral_centroid(magnitude64: np.ndarray, normalizers: np.ndarray, sample_rate: int) -> np.ndarray:
    # sum(f * S / |S|_1) as one matrix-vector product instead of a normalised copy of S.
    return (_frequencies(sample_rate) @ magnitude64 / normalizers)[np.newaxis, :]


def _spectral_bandwidth(magnitude64: np.ndarray, normalizers: np.ndarray, centroid: np.ndarray,
                        sample_rate: int) -> np.ndarray:
    """librosa's default p=2, sqrt(sum(S / |S|_1 * (f - centroid)**2)), expanded into moments:
    E[f**2] - centroid**2 (the weights sum to 1), so no [bins, frames] deviation matrix is built. In float64 the
    cancellation costs about eps * centroid**2 / bandwidth**2 of relative error, below 1e-9 even for a pure tone
    near Nyquist (the Hann window keeps the bandwidth above ~10 Hz). Frames librosa leaves unnormalised are
    digital silence (|S|_1 < 1e-38): both forms give ~0 there, and the clip keeps rounding from going negative."""
    frequencies = _frequencies(sample_rate)
    second_moment = np.square(frequencies) @ magnitude64 / normalizers
    return np.sqrt(np.maximum(second_moment - np.square(centroid), 0.0))


def _spectral_rolloff(magnitude: np.ndarray, sample_rate: int) -> np.ndarray:
    # librosa takes the lowest frequency whose cumulative energy reaches roll_percent of the frame's total;
    # the same float32 cumulative sum keeps the chosen bin identical, argmax finds it without a NaN mask.
    cumulative = np.cumsum(magnitude, axis=0)
    reached = cumulative >= ROLL_PERCENT * cumulative[-1]
    return _frequencies(sample_rate)[np.argmax(reached, axis=0)][np.newaxis, :]


@functools.lru_cache(maxsize=8)
def _poly_fit_operator(sample_rate: int) -> np.ndarray:
    # Every frame is fitted against the same frequencies, so the least-squares solution is one fixed linear
    # map: the pseudo-inverse of the Vandermonde matrix np.polyfit builds (highest power first, as polyfit).
    operator = np.linalg.pinv(np.vander(_frequencies(sample_rate), POLY_ORDER + 1))
    operator.flags.writeable = False
    return operator


def _zero_crossing_rate(audio: np.ndarray) -> np.ndarray:
    """librosa.feature.zero_crossing_rate with defaults: edge-pad by n_fft // 2, frame (2048, hop 512), count
    crossings between neighbouring samples inside each frame and divide by the frame length. The crossings are
    found once on the whole signal (librosa.zero_crossings, same threshold rule) and counted per frame by binary
    search over their positions, instead of re-testing every sample in four overlapping frames."""
    padded = np.pad(audio, N_FFT // 2, mode="edge")
    # Position i marks a crossing between padded[i - 1] and padded[i] (position 0 has no predecessor).
    positions = np.flatnonzero(librosa.zero_crossings(padded, pad=False))
    frame_starts = np.arange(1 + (padded.size - N_FFT) // HOP_LENGTH) * HOP_LENGTH
    # A frame [s, s + n_fft) holds the crossings at s + 1 .. s + n_fft - 1 (its first sample has none).
    counts = np.searchsorted(positions, frame_starts + N_FFT) - np.searchsorted(positions, frame_starts + 1)
    return (counts / N_FFT)[np.newaxis, :]
