"""The `pace` and `noise` metadata against audio whose truth is known by construction: speech-like bursts (and, where
espeak-ng is installed, real synthetic speech) with silences and pauses of known length, and noise mixed in at known
SNRs."""
import math

import librosa
import numpy as np
import pytest

from librispeech import noise, pace

RATE = 16000
TIMING_TOLERANCE = 0.01  # s: edges within half a 10 ms hop once the 25 ms window's spread is taken out


def speech_like(seconds: float, level: float, rng: np.random.Generator) -> np.ndarray:
    """A voiced 'word': a harmonic complex (f0 120-180 Hz, 12 harmonics falling as 1/k) whose loudness moves like
    syllables (4 Hz, between 40% and 100%), with 5 ms ramps at its edges."""
    t = np.arange(int(round(seconds * RATE))) / RATE
    f0 = rng.uniform(120, 180)
    voiced = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 13))
    envelope = 0.4 + 0.6 * np.sin(np.pi * 4 * t) ** 2
    ramp = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.005)
    word = voiced * envelope * ramp
    return (level * word / np.max(np.abs(word))).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * RATE)), np.float32)


# Lead 0.5 s, four words, a 0.1 s gap (too short to be a pause), pauses of 0.35 and 0.8 s, trail 0.3 s.
LAYOUT = [("silence", 0.5), ("word", 0.6), ("silence", 0.1), ("word", 0.4), ("silence", 0.35), ("word", 0.7),
          ("silence", 0.8), ("word", 0.5), ("silence", 0.3)]
TRANSCRIPT = "ONE TWO THREE FOUR"


def known_clip(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    levels = iter([0.5, 0.2, 0.05, 0.3])  # words up to 20 dB quieter than the loudest
    return np.concatenate([speech_like(s, next(levels), rng) if kind == "word" else silence(s) for kind, s in LAYOUT])


def with_noise(clip: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    """White Gaussian noise at snr_db: the clip's mean power over its whole length against the noise's."""
    noise_power = np.mean(clip.astype(np.float64) ** 2) / 10 ** (snr_db / 10)
    return (clip + np.random.default_rng(seed).normal(0, math.sqrt(noise_power), clip.size)).astype(np.float32)


def test_silences_pauses_and_rates_of_a_known_clip():
    values = pace.pace_features(known_clip(), RATE, TRANSCRIPT)
    assert set(values) == set(pace.PACE_TYPES)
    speech = sum(s for _, s in LAYOUT) - 0.5 - 0.3
    assert values["leading_silence_seconds"] == pytest.approx(0.5, abs=TIMING_TOLERANCE)
    assert values["trailing_silence_seconds"] == pytest.approx(0.3, abs=TIMING_TOLERANCE)
    assert values["speech_seconds"] == pytest.approx(speech, abs=2 * TIMING_TOLERANCE)
    assert values["pause_count"] == 2
    assert values["pause_seconds"] == pytest.approx(0.35 + 0.8, abs=2 * TIMING_TOLERANCE)
    assert values["longest_pause_seconds"] == pytest.approx(0.8, abs=TIMING_TOLERANCE)
    assert values["words_per_second"] == pytest.approx(4 / speech, rel=0.03)
    assert values["characters_per_second"] == pytest.approx(len("ONETWOTHREEFOUR") / speech, rel=0.03)


def test_a_faint_background_is_still_silence():
    """Noise 50 dB under the speech (a quiet recording room) does not hide the pauses."""
    values = pace.pace_features(with_noise(known_clip(), 50.0), RATE, TRANSCRIPT)
    assert values["pause_count"] == 2
    assert values["leading_silence_seconds"] == pytest.approx(0.5, abs=TIMING_TOLERANCE)
    assert values["longest_pause_seconds"] == pytest.approx(0.8, abs=TIMING_TOLERANCE)


def test_a_pause_must_last_the_minimum():
    rng = np.random.default_rng(3)
    for gap, expected in ((0.15, 0), (0.25, 1)):
        clip = np.concatenate([speech_like(0.5, 0.5, rng), silence(gap), speech_like(0.5, 0.5, rng)])
        assert pace.pace_features(clip, RATE, "A B")["pause_count"] == expected, gap


@pytest.mark.parametrize("audio", [np.zeros(RATE, np.float32), np.zeros(0, np.float32)])
def test_digital_silence_has_no_speech_and_declared_none_rates(audio):
    values = pace.pace_features(audio, RATE, "SOME WORDS")
    assert values["speech_seconds"] == 0.0 and values["pause_count"] == 0
    assert values["leading_silence_seconds"] == pytest.approx(len(audio) / RATE)
    assert values["words_per_second"] is None and values["characters_per_second"] is None
    assert pace.PACE_TYPES["words_per_second"] == "float"
    # noise.py: digital silence and empty audio have no speech above their noise: exactly the floor.
    assert noise.noise_features(audio, RATE)["snr_db"] == noise.SNR_FLOOR_DB


def test_a_clip_below_minus_100_dbfs_is_digital_silence():
    """pace.py's DIGITAL_SILENCE_PEAK (-100 dBFS): the known clip at peak 0.5e-6 (-126 dBFS) has no speech, while at
    0.5e-3 (-66 dBFS) its two pauses are still found."""
    faint = known_clip() * np.float32(1e-6)
    assert 20 * math.log10(float(np.abs(faint).max())) == pytest.approx(-126, abs=0.1)
    values = pace.pace_features(faint, RATE, TRANSCRIPT)
    assert values["speech_seconds"] == 0.0 and values["pause_count"] == 0
    assert values["leading_silence_seconds"] == pytest.approx(len(faint) / RATE)
    assert values["words_per_second"] is None and values["characters_per_second"] is None
    assert pace.pace_features(known_clip() * np.float32(1e-3), RATE, TRANSCRIPT)["pause_count"] == 2


def test_snr_estimate_on_known_mixtures():
    clip = known_clip()
    estimates = [noise.noise_features(with_noise(clip, snr), RATE)["snr_db"] for snr in (10.0, 20.0, 30.0)]
    # The clip has pauses, so the quietest frames are noise alone: the estimate is close to the truth.
    for truth, estimate in zip((10.0, 20.0, 30.0), estimates):
        assert estimate == pytest.approx(truth, abs=2.0), (truth, estimates)
    assert estimates[0] + 7 < estimates[1] < estimates[2] - 7


def test_snr_is_capped_on_digital_silence_and_floored_on_noise_alone():
    assert noise.noise_features(known_clip(), RATE)["snr_db"] == noise.SNR_CEILING_DB  # exact-zero pauses
    steady = np.random.default_rng(0).normal(0, 0.1, 2 * RATE).astype(np.float32)
    # nothing louder than the noise floor: about -9 dB (the spread of its 20 ms frame powers), as the docstring says
    assert -11.0 < noise.noise_features(steady, RATE)["snr_db"] < -7.0
    assert noise.noise_features(np.zeros(RATE, np.float32), RATE)["snr_db"] == noise.SNR_FLOOR_DB


def test_clipping_fraction_and_dc_offset():
    clip = known_clip() * 0.5
    clipped = clip.copy()
    clipped[1000:1100] = 1.0
    clipped[5000:5060] = -1.0
    values = noise.noise_features(clipped, RATE)
    assert values["clipping_fraction"] == pytest.approx(160 / clip.size)
    assert noise.noise_features(clip, RATE)["clipping_fraction"] == 0.0
    # soundfile decodes int16 +full scale as 32767/32768: still clipped
    assert noise.noise_features(np.full(100, 32767 / 32768, np.float32), RATE)["clipping_fraction"] == 1.0
    shifted = noise.noise_features(clip + np.float32(0.05), RATE)["dc_offset"]
    assert shifted == pytest.approx(0.05 + float(np.mean(clip, dtype=np.float64)), abs=1e-6)


@pytest.mark.parametrize("rate, channels", [(16000, 1), (44100, 1), (16000, 2)])
def test_clipping_is_counted_in_the_file_before_the_downmix_and_resampling(tmp_path, rate, channels):
    """A clipped channel averaged with a clean one, or resampled, leaves full scale: the registered metadata counts
    the file's frames with a channel at full scale (SplitData.clipping_fraction), which the waveform alone loses."""
    from conftest import make_config, write_utterance
    from librispeech import data

    t = np.arange(rate) / rate
    clipped = np.clip(1.5 * np.sin(2 * np.pi * 220 * t), -1.0, 1.0)
    wave = clipped[:, None] if channels == 1 else np.stack([clipped, 0.1 * np.sin(2 * np.pi * 330 * t)], axis=1)
    root = tmp_path / "LibriSpeech"
    sample_id = write_utterance(root, "dev-clean", 1, 2, 0, "HELLO THERE", wave.astype(np.float32), sample_rate=rate)
    split = data.load_split("validation", make_config(root, data__samples_per_split="all"))
    in_file = float(np.mean(np.abs(clipped) >= 0.99999))  # written as 16-bit: full scale is 32767
    assert 0.3 < in_file and split.clipping_fraction(sample_id) == pytest.approx(in_file, abs=1e-4)
    registered = noise.noise_features(split.audio(sample_id), RATE, split.clipping_fraction(sample_id))
    assert registered["clipping_fraction"] == split.clipping_fraction(sample_id)
    from_waveform = noise.noise_features(split.audio(sample_id), RATE)["clipping_fraction"]
    if (rate, channels) == (16000, 1):
        assert from_waveform == pytest.approx(in_file)
    else:
        assert from_waveform < 0.8 * in_file  # what the waveform alone would say


def test_non_finite_audio_is_an_error():
    bad = known_clip()
    bad[10] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        pace.pace_features(bad, RATE, "A")
    with pytest.raises(ValueError, match="non-finite"):
        noise.noise_features(bad, RATE)


# ---------------------------------------------------------------- real synthetic speech (espeak-ng)

from librispeech_tools import synthetic  # noqa: E402

needs_espeak = pytest.mark.skipif(bool(synthetic.missing_tools()),
                                  reason="espeak-ng and sox are not installed (apt-get install espeak-ng sox)")


def _trimmed_word(text: str, voice) -> np.ndarray:
    """espeak-ng's word with its own silence cut off: from the first to the last sample within 40 dB of its peak."""
    audio = synthetic.synthesize(text, voice)
    loud = np.flatnonzero(np.abs(audio) >= 0.01 * np.abs(audio).max())
    return audio[loud[0]:loud[-1] + 1]


@needs_espeak
def test_espeak_words_with_known_pauses_and_noise():
    voice = synthetic.Voice("en-us", "m3")
    words = [_trimmed_word(word, voice) for word in ("MORNING", "ALWAYS", "MEMORY", "RAINBOW")]
    gaps = [0.6, 0.4, 1.0]
    parts = [silence(0.7)]
    for word, gap in zip(words, gaps + [None]):
        parts += [word, silence(gap)] if gap is not None else [word]
    parts.append(silence(0.45))
    clip = np.concatenate(parts)
    values = pace.pace_features(clip, RATE, "MORNING ALWAYS MEMORY RAINBOW")
    tolerance = 0.06  # the words' own weak edges
    assert values["leading_silence_seconds"] == pytest.approx(0.7, abs=tolerance)
    assert values["trailing_silence_seconds"] == pytest.approx(0.45, abs=tolerance)
    assert values["pause_count"] == 3
    assert values["longest_pause_seconds"] == pytest.approx(1.0, abs=tolerance)
    assert values["pause_seconds"] == pytest.approx(sum(gaps), abs=2 * tolerance)
    speech = len(clip) / RATE - 0.7 - 0.45
    assert values["speech_seconds"] == pytest.approx(speech, abs=2 * tolerance)

    estimates = [noise.noise_features(with_noise(clip, snr), RATE)["snr_db"] for snr in (10.0, 20.0, 30.0)]
    for truth, estimate in zip((10.0, 20.0, 30.0), estimates):
        assert estimate == pytest.approx(truth, abs=2.0), (truth, estimates)


@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e-4])
@pytest.mark.parametrize("dc_offset", [0.0, 0.01])
def test_pace_and_snr_do_not_depend_on_level_or_dc_offset(scale, dc_offset):
    """A quiet recording (peak -86 dBFS at 1e-4, where librosa's 1e-10 power floor used to hide its silences) and a
    DC offset (no sound; the model's input normalisation removes it) change neither the pauses nor the SNR."""
    clip = known_clip()
    reference = pace.pace_features(clip, RATE, TRANSCRIPT)
    shifted = (clip + np.float32(dc_offset)) * np.float32(scale)
    values = pace.pace_features(shifted, RATE, TRANSCRIPT)
    assert values["pause_count"] == reference["pause_count"] == 2
    for key in ("leading_silence_seconds", "trailing_silence_seconds", "longest_pause_seconds", "speech_seconds"):
        assert values[key] == pytest.approx(reference[key], abs=0.011), key
    assert noise.noise_features(shifted, RATE)["snr_db"] == pytest.approx(noise.noise_features(clip, RATE)["snr_db"])


@pytest.mark.parametrize("gap", [0.21, 0.3, 0.5])
def test_a_gap_between_sharp_edged_tones_is_measured_at_its_length(gap):
    """Frames touching a tone count as speech, so a raw frame count puts every pause a window (25 ms) short and
    misses a 0.21 s pause; the corrected edges find it at its length."""
    t = np.arange(int(0.5 * RATE)) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    values = pace.pace_features(np.concatenate([tone, silence(gap), tone]), RATE, "A B")
    assert values["pause_count"] == 1
    assert values["longest_pause_seconds"] == pytest.approx(gap, abs=TIMING_TOLERANCE)
    assert values["leading_silence_seconds"] == 0.0 and values["trailing_silence_seconds"] == 0.0


def test_speech_with_its_own_offset_over_digital_silence_has_no_noise():
    """Speech whose samples have a mean of their own (espeak-ng's do) between stretches of exact zeros: the silence
    holds no sound, so the SNR is the ceiling, whatever the clip's overall mean."""
    clip = known_clip()
    offset_speech = np.where(clip != 0, clip + np.float32(0.003), clip).astype(np.float32)
    assert noise.noise_features(offset_speech, RATE)["snr_db"] == noise.SNR_CEILING_DB


@pytest.mark.parametrize("offset", [0.003, 0.03])
def test_speech_with_its_own_offset_over_digital_silence_keeps_its_pauses(offset):
    """The same clip with an offset on its speech only (espeak-ng's speech has a mean of its own; its silences are
    exact zeros): the clip's mean taken out, the silences would become a constant as loud as the offset, speech once
    within 40 dB of the speech's loudest frame (0.03 here: -27 dB)."""
    clip = known_clip()
    reference = pace.pace_features(clip, RATE, TRANSCRIPT)
    values = pace.pace_features(np.where(clip != 0, clip + np.float32(offset), clip).astype(np.float32), RATE,
                                TRANSCRIPT)
    assert values["pause_count"] == reference["pause_count"] == 2
    for key in ("leading_silence_seconds", "trailing_silence_seconds", "longest_pause_seconds", "speech_seconds"):
        assert values[key] == pytest.approx(reference[key], abs=0.011), key


@pytest.mark.parametrize("length", [16000, 16001, 15999, 12345])
def test_speech_frame_runs_are_librosas_split(length):
    """On bursts of noise (no DC component) the runs in frames give librosa.effects.split's own intervals (ends
    clipped to the length)."""
    rng = np.random.default_rng(length)
    audio = np.zeros(length, np.float32)
    for start in rng.integers(0, length - 800, 6):
        size = rng.integers(50, 800)
        audio[start:start + size] = rng.normal(0, rng.uniform(0.01, 1.0), size)
    audio /= np.abs(audio).max()
    first, end, frames = pace.speech_frame_runs(audio, 400, 160)
    expected = librosa.effects.split(audio, top_db=pace.SILENCE_TOP_DB, frame_length=400, hop_length=160)
    np.testing.assert_array_equal(np.stack([first * 160, np.minimum(end * 160, length)], axis=1), expected)
    assert frames == 1 + length // 160


def test_a_constant_stretch_is_silence_and_a_step_is_not_a_pause_edge():
    """A frame's level is its standard deviation: a block at a constant value (an offset, no sound) is silent apart
    from the frames that hold its steps, and the clip's edges add no step of the padding's."""
    audio = np.full(16000, 0.2, np.float32)
    audio[4000:8000] = 0.0
    first, end, frames = pace.speech_frame_runs(audio, 400, 160)
    assert frames == 101
    steps = [(first[i] * 160, end[i] * 160) for i in range(len(first))]
    assert steps == [(3840, 4320), (7840, 8320)]  # the frames touching sample 4000 or 8000 (each 400 long, centred)


@pytest.mark.parametrize("length", [16000, 16001])
def test_speech_that_stops_just_before_the_end_leaves_trailing_silence(length):
    """A length that is a multiple of the hop puts librosa's edge for a first silent last frame exactly at the
    length, like speech running to the end: the frames tell them apart."""
    t = np.arange(12560) / RATE
    audio = np.zeros(length, np.float32)
    audio[3200:15760] = 0.5 * np.sin(2 * np.pi * 220 * t)
    values = pace.pace_features(audio, RATE, "A")
    assert values["trailing_silence_seconds"] == pytest.approx((length - 15760) / RATE, abs=TIMING_TOLERANCE)
    assert values["leading_silence_seconds"] == pytest.approx(0.2, abs=TIMING_TOLERANCE)


@pytest.mark.parametrize("file_format, subtype", [
    ("FLAC", "PCM_S8"), ("WAV", "PCM_U8"), ("WAV", "ULAW"), ("WAV", "ALAW"), ("FLAC", "PCM_16"), ("FLAC", "PCM_24"),
    ("WAV", "PCM_32"), ("WAV", "FLOAT")])
def test_a_full_scale_square_wave_is_all_clipped_at_every_sample_format(file_format, subtype):
    """8-bit PCM's loudest sample decodes to 127/128 and mu-law's and A-law's to less, below int16's full scale:
    without their own full scale only the negative half of their clipping would count."""
    import io

    import soundfile

    from librispeech import data

    square = np.sign(np.sin(np.arange(RATE) / 10.0)).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, square, RATE, format=file_format, subtype=subtype)
    buffer.seek(0)
    assert data.read_audio(buffer, RATE).clipping_fraction == pytest.approx(1.0, abs=1e-3)
    quieter = io.BytesIO()
    soundfile.write(quieter, 0.9 * square, RATE, format=file_format, subtype=subtype)
    quieter.seek(0)
    assert data.read_audio(quieter, RATE).clipping_fraction == 0.0
