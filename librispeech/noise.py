"""Recording quality of one utterance, from the audio alone: an SNR estimate, clipping and DC offset.

SNR: speech is intermittent and background noise is steady, so the quietest frames hold the noise alone. The audio is
cut into 20 ms frames, each taken without its own mean (a DC offset is no sound: the model's input normalisation
removes it too; dc_offset reports it); the noise power is the mean power of the quietest NOISE_FRAME_FRACTION (10%) of
them, and the speech power is the mean power of all frames minus that noise power. snr_db = 10 log10(speech / noise)
is then the SNR as it is usually defined when noise is mixed in (signal power over the whole clip against noise
power). It needs some pauses or silence at the edges: when under 10% of the frames are free of speech, the noise
estimate includes quiet speech and the SNR is underestimated. The value is clipped to [SNR_FLOOR_DB, SNR_CEILING_DB],
so it stays finite: speech over digital silence (no noise at all) gives the ceiling, and digital silence and empty
audio give the floor (nothing there for the model to hear). Steady noise alone gives about -9 dB, not the floor: its
20 ms frame powers spread by ~8%, so its quietest tenth is ~11% below its mean (a steady tone reads low likewise).
A clip under 40 ms is a single frame, with none quieter than the rest: it reads as the floor too.

clipping_fraction: the fraction of samples at full scale, |x| >= 32767/32768 (int16's largest value as soundfile
decodes it; 8-bit, mu-law and A-law files: their own loudest value, data.FULL_SCALE_BY_SUBTYPE); the registered
metadata counts the file's own frames with any channel there (data.read_audio), since
averaging channels and resampling move clipped samples off full scale. dc_offset: the mean sample value. The SNR and
the offset describe the 16 kHz mono waveform the model hears.
"""
from __future__ import annotations

import librosa
import numpy as np

from librispeech.data import full_scale_fraction

NOISE_FRAME_SECONDS = 0.020
NOISE_FRAME_FRACTION = 0.10
SNR_FLOOR_DB = -30.0
SNR_CEILING_DB = 100.0

NOISE_TYPES = {"snr_db": "float", "clipping_fraction": "float", "dc_offset": "float"}


def frame_powers(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Power of consecutive, non-overlapping NOISE_FRAME_SECONDS frames (a short clip is one frame), each without
    its own mean: an offset is no sound, and taking out the clip's mean instead would leave that mean in the digital
    silence of a clean recording (its noise)."""
    frame_length = int(round(NOISE_FRAME_SECONDS * sample_rate))
    audio = np.asarray(audio, dtype=np.float32)
    if len(audio) < frame_length:
        audio = np.pad(audio, (0, frame_length - len(audio)))
    frames = librosa.util.frame(audio, frame_length=frame_length, hop_length=frame_length)  # [frame_length, frames]
    return frames.astype(np.float64).var(axis=0)


def estimate_snr_db(audio: np.ndarray, sample_rate: int) -> float:
    powers = frame_powers(audio, sample_rate)
    quiet = max(1, int(round(NOISE_FRAME_FRACTION * len(powers))))
    noise = float(np.partition(powers, quiet - 1)[:quiet].mean())
    speech = float(powers.mean()) - noise
    if speech <= 0.0:
        return SNR_FLOOR_DB
    if noise <= 0.0:
        return SNR_CEILING_DB
    return float(np.clip(10.0 * np.log10(speech / noise), SNR_FLOOR_DB, SNR_CEILING_DB))


def noise_features(audio: np.ndarray, sample_rate: int, clipping_fraction: float | None = None) -> dict[str, float]:
    """clipping_fraction: the source file's (SplitData.clipping_fraction); None: counted on `audio`."""
    audio = np.asarray(audio, dtype=np.float32)
    if not np.isfinite(audio).all():
        raise ValueError("audio has non-finite samples (NaN or inf)")
    if audio.size == 0:
        return {"snr_db": SNR_FLOOR_DB, "clipping_fraction": clipping_fraction or 0.0, "dc_offset": 0.0}
    if clipping_fraction is None:
        clipping_fraction = full_scale_fraction(audio)
    return {
        "snr_db": estimate_snr_db(audio, sample_rate),
        "clipping_fraction": float(clipping_fraction),
        # float64 accumulation: a long float32 sum would lose the digits of a small offset
        "dc_offset": float(np.mean(audio, dtype=np.float64)),
    }
