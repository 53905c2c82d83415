"""Speaking pace of one utterance: where the speech is, its pauses, and words and characters per second.

Silence is found with `librosa.effects.split`: a frame is silent when its RMS is more than SILENCE_TOP_DB (40 dB)
below the utterance's loudest frame. Frames are 25 ms long with a 10 ms hop, so boundaries are found to within
about 20 ms (scripts/check_pace_noise.py measures it). 40 dB is a compromise: a lower threshold cuts the weak
consonants at a word's edge off the speech, a higher one counts the background of a recording as speech. In a
recording whose noise is within 40 dB of the speech no pauses are found (the `noise` metadata says when).
A pause is an inner silence of at least MIN_PAUSE_SECONDS; shorter gaps (stop closures, the gaps between words)
count as speech.

Audio whose peak is below DIGITAL_SILENCE_PEAK (-100 dBFS) has no speech at all: speech_seconds is 0, the whole
duration is leading silence, and the two rates are None (their types are declared). Non-finite samples are an
error.
"""
from __future__ import annotations

import librosa
import numpy as np

SILENCE_TOP_DB = 40.0
FRAME_SECONDS = 0.025
HOP_SECONDS = 0.010
MIN_PAUSE_SECONDS = 0.2
DIGITAL_SILENCE_PEAK = 1e-5

PACE_TYPES = {  # key -> metadata type name (as data.RECORD_TYPES), so the None rates have a declared type
    "speech_seconds": "float", "leading_silence_seconds": "float", "trailing_silence_seconds": "float",
    "pause_count": "int", "pause_seconds": "float", "longest_pause_seconds": "float",
    "words_per_second": "float", "characters_per_second": "float",
}


def speech_intervals(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """[start, end) sample indices of the non-silent stretches ([n, 2] int); empty for digital silence."""
    audio = np.asarray(audio, dtype=np.float32)
    if not np.isfinite(audio).all():
        raise ValueError("audio has non-finite samples (NaN or inf)")
    frame_length = int(round(FRAME_SECONDS * sample_rate))
    hop_length = int(round(HOP_SECONDS * sample_rate))
    if audio.size == 0 or float(np.max(np.abs(audio))) < DIGITAL_SILENCE_PEAK:
        return np.zeros((0, 2), dtype=np.int64)
    return librosa.effects.split(audio, top_db=SILENCE_TOP_DB, frame_length=frame_length, hop_length=hop_length)


def pace_features(audio: np.ndarray, sample_rate: int, transcript: str) -> dict[str, int | float | None]:
    """PACE_TYPES for one utterance; the rates count the transcript's words and non-space characters over
    speech_seconds (from the first to the last speech frame)."""
    duration = len(audio) / sample_rate
    intervals = speech_intervals(audio, sample_rate) / sample_rate
    words = transcript.split()
    if len(intervals) == 0:
        return {"speech_seconds": 0.0, "leading_silence_seconds": float(duration), "trailing_silence_seconds": 0.0,
                "pause_count": 0, "pause_seconds": 0.0, "longest_pause_seconds": 0.0,
                "words_per_second": None, "characters_per_second": None}
    gaps = intervals[1:, 0] - intervals[:-1, 1]
    pauses = gaps[gaps >= MIN_PAUSE_SECONDS - 1e-9]
    speech_seconds = float(intervals[-1, 1] - intervals[0, 0])
    return {
        "speech_seconds": speech_seconds,
        "leading_silence_seconds": float(intervals[0, 0]),
        "trailing_silence_seconds": float(max(0.0, duration - intervals[-1, 1])),
        "pause_count": int(len(pauses)),
        "pause_seconds": float(pauses.sum()),
        "longest_pause_seconds": float(pauses.max(initial=0.0)),
        "words_per_second": len(words) / speech_seconds,
        "characters_per_second": sum(len(word) for word in words) / speech_seconds,
    }
