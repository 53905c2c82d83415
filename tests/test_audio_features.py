"""speech_features must equal the librosa.feature functions called one by one with their defaults."""
import math
import warnings

import librosa
import numpy as np
import pytest

from librispeech.audio_features import (FEATURE_NAMES, STATISTICS, feature_matrices,
                                        speech_features)

SAMPLE_RATE = 16000
RTOL = 1e-5
# Absolute slack relative to the size of the feature itself: rounding in a sum or a fit scales with the
# magnitudes involved, not with the result, so a value that cancels to ~0 (a near-flat poly_features slope of
# 1e-20, a mean of mfcc coefficients with both signs) can only be compared to the feature's scale.
ATOL_OF_SCALE = 1e-5


def speech_like(seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Syllable-rate amplitude modulation of a harmonic glide, plus noise (fixed seed)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None)
    noise = np.random.default_rng(1).standard_normal(t.size)
    return (0.2 * envelope * voiced + 0.01 * noise).astype(np.float32)


def sine(seconds: float, frequency: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


SIGNALS = {
    "speech_like_2s": (speech_like(2.0), SAMPLE_RATE),
    "speech_like_odd_length": (speech_like(1.0)[:16000 + 123 - 200], SAMPLE_RATE),
    "sine_440": (sine(1.3, 440.0), SAMPLE_RATE),
    "sine_near_nyquist": (sine(0.5, 7900.0), SAMPLE_RATE),  # narrowest band, hardest for the bandwidth moments
    "near_silence": ((1e-6 * np.random.default_rng(2).standard_normal(12000)).astype(np.float32), SAMPLE_RATE),
    "digital_silence": (np.zeros(8000, dtype=np.float32), SAMPLE_RATE),
    "dc_offset": (np.full(5000, 0.25, dtype=np.float32), SAMPLE_RATE),
    "shorter_than_n_fft": (speech_like(0.1)[:700], SAMPLE_RATE),
    "one_sample": (np.array([0.3], dtype=np.float32), SAMPLE_RATE),
    "speech_like_22050_hz": (speech_like(1.0, 22050), 22050),
}


def librosa_matrix(name: str, audio: np.ndarray, sample_rate: int) -> np.ndarray:
    function = getattr(librosa.feature, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "n_fft too large" for the short signals
        if name in ("rms", "zero_crossing_rate", "spectral_flatness"):  # these take no sr
            return function(y=audio)
        return function(y=audio, sr=sample_rate)


@pytest.mark.parametrize("signal", SIGNALS)
def test_feature_matrices_equal_separate_librosa_calls(signal):
    audio, sample_rate = SIGNALS[signal]
    ours = feature_matrices(audio, sample_rate)
    assert set(ours) == set(FEATURE_NAMES)
    for name in FEATURE_NAMES:
        expected = librosa_matrix(name, audio, sample_rate)
        assert ours[name].shape == expected.shape, name
        scale = float(np.max(np.abs(expected)))
        np.testing.assert_allclose(ours[name], expected, rtol=RTOL, atol=ATOL_OF_SCALE * scale, err_msg=name)


@pytest.mark.parametrize("signal", SIGNALS)
def test_statistics_equal_statistics_of_librosa_features(signal):
    audio, sample_rate = SIGNALS[signal]
    features = speech_features(audio, sample_rate)
    for name in FEATURE_NAMES:
        expected_matrix = librosa_matrix(name, audio, sample_rate).astype(np.float64)
        expected = {"min": expected_matrix.min(), "max": expected_matrix.max(),
                    "mean": expected_matrix.mean(), "std": expected_matrix.std()}
        scale = float(np.max(np.abs(expected_matrix)))
        for statistic in STATISTICS:
            assert features[f"{name}_{statistic}"] == pytest.approx(
                expected[statistic], rel=RTOL, abs=ATOL_OF_SCALE * scale), f"{name}_{statistic}"


def test_signal_statistics_and_duration():
    audio = speech_like(1.5)
    features = speech_features(audio, SAMPLE_RATE)
    assert features["duration_seconds"] == pytest.approx(1.5)
    assert features["signal_mean"] == pytest.approx(float(np.mean(audio.astype(np.float64))), rel=1e-9, abs=1e-12)
    assert features["signal_std"] == pytest.approx(float(np.std(audio.astype(np.float64))), rel=1e-9)


EXPECTED_KEYS = ({f"{name}_{statistic}" for name in FEATURE_NAMES for statistic in STATISTICS}
                 | {"duration_seconds", "signal_mean", "signal_std"})


@pytest.mark.parametrize("audio", [*(audio for audio, _ in SIGNALS.values()), np.zeros(0, dtype=np.float32)],
                         ids=[*SIGNALS, "empty"])
def test_every_value_is_a_finite_plain_float(audio):
    features = speech_features(audio, SAMPLE_RATE)
    assert set(features) == EXPECTED_KEYS and len(EXPECTED_KEYS) == 43
    for key, value in features.items():
        assert type(value) is float, key
        assert math.isfinite(value), key


def test_empty_audio_is_analysed_as_one_silent_sample():
    empty = speech_features(np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    one_zero = speech_features(np.zeros(1, dtype=np.float32), SAMPLE_RATE)
    assert empty["duration_seconds"] == empty["signal_mean"] == empty["signal_std"] == 0.0
    assert {k: v for k, v in empty.items() if k != "duration_seconds"} == \
           {k: v for k, v in one_zero.items() if k != "duration_seconds"}
    # librosa itself gives the same single silent frame for empty input (where it does not fail).
    assert empty["rms_max"] == 0.0 and empty["spectral_flatness_mean"] == pytest.approx(1.0, rel=1e-5)


def test_silence_gives_librosa_floor_values():
    features = speech_features(np.zeros(4000, dtype=np.float32), SAMPLE_RATE)
    assert features["rms_max"] == features["zero_crossing_rate_max"] == features["spectral_centroid_max"] == 0.0
    assert features["spectral_contrast_max"] == 0.0  # power_to_db(peak) - power_to_db(valley), both at amin


def test_multichannel_audio_is_rejected():
    with pytest.raises(ValueError, match="mono"):
        speech_features(np.zeros((2, 1000), dtype=np.float32), SAMPLE_RATE)
