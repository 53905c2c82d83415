"""Speaking pace of one utterance: where the speech is, its pauses, and words and characters per second.

Silence is found with `librosa.effects.split`: a frame is silent when its RMS is more than SILENCE_TOP_DB (40 dB)
below the utterance's loudest frame, each frame taken without its own mean, and the audio is scaled to unit peak, so
the result depends neither on a DC offset (which the model's input normalisation removes too) nor on the recording's
level (librosa floors frame powers at 1e-10, which would count the silence of a quiet clip as speech). The frame's
mean, not the clip's: speech with an offset of its own between stretches of digital silence (espeak-ng's) would
otherwise turn that silence into a constant as loud as the offset, counted as speech once the offset is within 40 dB
of the speech. Frames are 25 ms long with a 10 ms hop; a frame is speech as soon as its window touches speech, so
librosa's edges (the centre of the first frame of each state) put speech starts 7.5 ms early and ends 17.5 ms late on
average, and every pause a whole window (25 ms) short. Each edge is moved to the middle of the range the frames allow,
which leaves half a hop (5 ms) of error at a loud, sharp edge (a quiet edge must fill more of a window to count; the
check in scripts/check_pace_noise.py measures speech). 40 dB is a compromise: a lower threshold cuts the weak
consonants at a word's edge off the speech, a higher one counts the background of a recording as speech. In a
recording whose noise is within 40 dB of the speech no pauses are found (the `noise` metadata says when). A pause is
an inner silence of at least MIN_PAUSE_SECONDS; shorter gaps (stop closures, the gaps between words) count as speech.

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
    if audio.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    audio = audio - np.mean(audio, dtype=np.float64).astype(np.float32)  # a constant offset alone is digital silence
    peak = float(np.max(np.abs(audio)))
    if peak < DIGITAL_SILENCE_PEAK:
        return np.zeros((0, 2), dtype=np.int64)
    first_frames, end_frames, frames = speech_frame_runs(audio / peak, frame_length, hop_length)
    return _window_corrected(first_frames, end_frames, frames, audio.size, frame_length, hop_length)


def speech_frame_runs(audio: np.ndarray, frame_length: int, hop_length: int) -> tuple[np.ndarray, np.ndarray, int]:
    """librosa.effects.split's decision, in frames, on each frame's RMS without its own mean (its standard
    deviation): the [first, end) frame indices of each run of speech frames, and the number of frames. On audio
    without a DC component split gives the same runs as samples (first * hop, end * hop clipped to the length), where
    an end at the clip's length is ambiguous: speech up to the last frame, or a first silent frame exactly there (a
    length that is a multiple of the hop). The frames are split's (centred, the clip padded by half a frame), padded
    with the edge samples rather than zeros so that an edge frame holds no step of the padding's own."""
    padded = np.pad(audio, frame_length // 2, mode="edge")
    levels = librosa.util.frame(padded, frame_length=frame_length, hop_length=hop_length).std(axis=0)
    speech = librosa.amplitude_to_db(levels, ref=np.max, top_db=None) > -SILENCE_TOP_DB
    changes = np.flatnonzero(np.diff(np.concatenate([[False], speech, [False]]).astype(np.int8)))
    return changes[0::2], changes[1::2], len(speech)


def _window_corrected(first_frames: np.ndarray, end_frames: np.ndarray, frames: int, num_samples: int,
                      frame_length: int, hop_length: int) -> np.ndarray:
    """The runs' edges moved to the middle of the range their frames allow (see the module's docstring).

    With frame i covering [i*hop - frame/2, i*hop + frame/2): speech whose first loud frame is b starts in
    [b*hop + (frame - 2 hop)/2, b*hop + frame/2), and speech whose first silent frame is a ends in
    (a*hop - frame/2 - hop, a*hop - frame/2]. A run from the first frame starts at 0, one to the last frame ends at
    the clip's end. A stretch shorter than one hop after the move (a lone loud frame) keeps one hop around its
    centre (the frame's centre), within the clip.
    """
    from_start, to_end = first_frames == 0, end_frames == frames
    starts = np.where(from_start, 0, first_frames * hop_length + (frame_length - hop_length) // 2)
    ends = np.where(to_end, num_samples, end_frames * hop_length - (frame_length + hop_length) // 2)
    starts, ends = np.clip(starts, 0, num_samples), np.clip(ends, 0, num_samples)
    too_short = ends - starts < hop_length
    centres, half = (starts + ends) // 2, max(1, hop_length // 2)
    starts = np.where(too_short & ~from_start, np.maximum(0, centres - half), starts)
    ends = np.where(too_short & ~to_end, np.minimum(num_samples, centres + half), ends)
    return np.stack([starts, ends], axis=1).astype(np.int64)


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
