"""Check the `pace` and `noise` metadata on fresh clips whose truth is known (not the repo's audio or tests' clips).

espeak-ng speaks three phrases in each of 8 voices (4 accents, male and female); each phrase is cut to its own
speech (first to last sample within 40 dB of its peak) and the clip is built with random leading and trailing
silences (0.2 to 1.0 s) and two pauses (0.3 to 1.2 s) between the phrases. Then white noise is mixed in at 10, 20
and 30 dB SNR (clip power over the whole clip against noise power). Prints each clip's errors and the worst ones.

    python scripts/check_pace_noise.py [--seed 7]      (needs espeak-ng and sox)
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np

import librispeech  # noqa: F401  telemetry guard first
from librispeech import noise, pace
from librispeech_tools import synthetic

RATE = 16000
PHRASES = ["THE OLD MAN WALKED HOME", "SHE SAID IT WAS NOON", "A STORM ROLLED IN FROM THE SEA",
           "NOBODY KNEW THE ANSWER", "WE READ THE LETTER TWICE", "HIS HUMOUR NEVER FAILED", "THE BELLS RANG AT MIDNIGHT",
           "LIGHT FELL ON THE WATER"]
SNRS = (10.0, 20.0, 30.0)


def trimmed(audio: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) >= 0.01 * np.abs(audio).max())
    return audio[loud[0]:loud[-1] + 1]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * RATE)), np.float32)


def with_noise(clip: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    noise_power = np.mean(clip.astype(np.float64) ** 2) / 10 ** (snr_db / 10)
    return (clip + rng.normal(0, math.sqrt(noise_power), clip.size)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    try:
        synthetic.require_tools()
    except synthetic.MissingToolError as error:
        sys.exit(f"check_pace_noise: {error}")
    rng = np.random.default_rng(args.seed)
    voices = [synthetic.Voice(language, variant) for language in ("en-us", "en", "en-gb-scotland", "en-029")
              for variant in ("m3", "f2")]
    worst = {"leading": 0.0, "trailing": 0.0, "longest pause": 0.0, "snr": 0.0}
    signed = {"leading": [], "trailing": [], "longest pause": []}  # the bias: a systematic error shows in the mean
    pause_counts_right, ranked = 0, 0
    for voice in voices:
        lead, trail = rng.uniform(0.2, 1.0, 2)
        gaps = rng.uniform(0.3, 1.2, 2)
        phrases = [trimmed(synthetic.synthesize(text, voice)) for text in rng.choice(PHRASES, 3, replace=False)]
        clip = np.concatenate([silence(lead), phrases[0], silence(gaps[0]), phrases[1], silence(gaps[1]), phrases[2],
                               silence(trail)])
        values = pace.pace_features(clip, RATE, "")
        errors = {"leading": values["leading_silence_seconds"] - lead,
                  "trailing": values["trailing_silence_seconds"] - trail,
                  "longest pause": values["longest_pause_seconds"] - gaps.max()}
        estimates = [noise.noise_features(with_noise(clip, snr, rng), RATE)["snr_db"] for snr in SNRS]
        errors["snr"] = max(abs(e - t) for e, t in zip(estimates, SNRS))
        pause_counts_right += values["pause_count"] == 2
        ranked += all(b - a > 5 for a, b in zip(estimates, estimates[1:]))
        for key, error in errors.items():
            worst[key] = max(worst[key], abs(error))
            signed.get(key, []).append(error)
        print(f"{voice.espeak_name:18s} pauses {values['pause_count']} (2 inserted); errors [s]: "
              + ", ".join(f"{k} {v:+.3f}" for k, v in errors.items() if k != "snr")
              + f"; SNR estimates {', '.join(f'{e:.1f}' for e in estimates)} dB "
              f"for {', '.join(f'{s:g}' for s in SNRS)}")
    print(f"worst |error|: leading {worst['leading']:.3f} s, trailing {worst['trailing']:.3f} s, longest pause "
          f"{worst['longest pause']:.3f} s, SNR {worst['snr']:.2f} dB; pause count right in {pause_counts_right}/"
          f"{len(voices)}; SNRs ranked and > 5 dB apart in {ranked}/{len(voices)}")
    print("mean error: " + ", ".join(f"{key} {np.mean(values):+.4f} s" for key, values in signed.items()))


if __name__ == "__main__":
    main()
