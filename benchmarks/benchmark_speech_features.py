"""Speed of speech_features against calling each librosa.feature function separately with its defaults.

    .venv/bin/python benchmarks/benchmark_speech_features.py [--audio FILE] [--seconds 15] [--repeats 30]

Both ways run side by side in one process on the same audio (a deterministic 15 s chirp + noise unless a file is
given), after a warm-up call of each (numba compilation, FFT plans, cached mel basis), alternating per repeat so
that background load hits both alike. Reports median and best times, the speed-up as the median of the
per-repeat ratios (and as ratios of medians and of bests), and checks that the statistics agree (rel 1e-5)
before timing anything.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import librosa  # noqa: E402

from librispeech.audio_features import FEATURE_NAMES, speech_features, summarize  # noqa: E402

SAMPLE_RATE = 16000
NEEDS_SAMPLE_RATE = {name for name in FEATURE_NAMES if name not in ("rms", "zero_crossing_rate", "spectral_flatness")}


def synthetic_speech_like(seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A chirp sweeping 100 Hz -> 3 kHz under a syllable-rate envelope, plus a little noise (fixed seed)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    sweep_rate = (3000.0 - 100.0) / (2 * seconds)
    chirp = np.sin(2 * np.pi * (100.0 * t + sweep_rate * t**2))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
    noise = np.random.default_rng(0).standard_normal(t.size)
    return (0.3 * envelope * chirp + 0.02 * noise).astype(np.float32)


def separate_librosa_calls(audio: np.ndarray, sample_rate: int) -> dict[str, float]:
    """The straightforward way: every librosa.feature function on y with its defaults."""
    features: dict[str, float] = {}
    for name in FEATURE_NAMES:
        function = getattr(librosa.feature, name)
        matrix = function(y=audio, sr=sample_rate) if name in NEEDS_SAMPLE_RATE else function(y=audio)
        features.update(summarize(name, matrix))
    return features


def check_agreement(audio: np.ndarray, sample_rate: int) -> None:
    expected = separate_librosa_calls(audio, sample_rate)
    actual = speech_features(audio, sample_rate)
    for key, value in expected.items():
        name = key.rsplit("_", 1)[0]
        # Rounding scales with the feature's magnitude, so values that cancel to ~0 get an absolute slack.
        scale = max(abs(expected[f"{name}_min"]), abs(expected[f"{name}_max"]))
        if not np.isclose(actual[key], value, rtol=1e-5, atol=1e-5 * scale):
            raise SystemExit(f"mismatch for {key}: speech_features {actual[key]!r} vs librosa {value!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--audio", type=Path, help="audio file (mono-mixed, resampled to 16 kHz)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the synthetic signal")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    if args.audio:
        audio, _ = librosa.load(args.audio, sr=SAMPLE_RATE, mono=True)
        source = str(args.audio)
    else:
        audio = synthetic_speech_like(args.seconds)
        source = f"synthetic chirp + noise, seed 0, {args.seconds:g} s"

    warnings.simplefilter("ignore", UserWarning)  # short files: librosa's "n_fft too large" notice
    check_agreement(audio, SAMPLE_RATE)  # also the warm-up of both ways

    separate_times, shared_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        separate_librosa_calls(audio, SAMPLE_RATE)
        separate_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        speech_features(audio, SAMPLE_RATE)
        shared_times.append(time.perf_counter() - start)

    separate_median, shared_median = statistics.median(separate_times), statistics.median(shared_times)
    # Each repeat times both ways back to back, so their ratio is robust to slow drifts in background load.
    paired_ratio = statistics.median(s / f for s, f in zip(separate_times, shared_times))
    print(f"audio: {source}, {audio.size / SAMPLE_RATE:.2f} s at {SAMPLE_RATE} Hz; {args.repeats} repeats after "
          f"warm-up; librosa {librosa.__version__}, numpy {np.__version__}")
    print(f"separate librosa.feature calls: median {separate_median * 1e3:7.2f} ms, "
          f"best {min(separate_times) * 1e3:7.2f} ms")
    print(f"speech_features (shared STFT):  median {shared_median * 1e3:7.2f} ms, "
          f"best {min(shared_times) * 1e3:7.2f} ms")
    print(f"speed-up: {paired_ratio:.1f}x (median of per-repeat ratios), {separate_median / shared_median:.1f}x "
          f"(ratio of medians), {min(separate_times) / min(shared_times):.1f}x (ratio of bests)")


if __name__ == "__main__":
    main()
