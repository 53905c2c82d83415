"""What a person looks at per sample: texts, the alignment of hypothesis to reference, spectrogram, waveform, audio.

Every function takes sample-level arrays (a leading batch axis of one is stripped) and returns code-loader's
visualizer data classes.
"""
from __future__ import annotations

import jiwer
import numpy as np
from code_loader.contract.visualizer_classes import LeapAudio, LeapGraph, LeapImage, LeapText, LeapTextMask
from code_loader.visualizers.default_visualizers import default_audio_visualizer

from librispeech.audio_features import HOP_LENGTH, N_FFT, short_clip_stft  # N_FFT, HOP_LENGTH: librosa's defaults too
from librispeech.lm_decoding import lm_decoder
from librispeech.tokenizer import decode_greedy, decode_reference
from librispeech.words import WORD_KINDS, align_words

MEL_BANDS = 128
WAVEFORM_POINTS = 2000
ALIGNMENT_LABELS = ["substitution", "insertion", "deletion"]  # mask 0 = correct character, i = ALIGNMENT_LABELS[i-1]
DELETION_MARK = "[-{}]"


def _sample(array: np.ndarray, sample_ndim: int) -> np.ndarray:
    """Strip a leading batch axis of one."""
    array = np.asarray(array)
    while array.ndim > sample_ndim and array.shape[0] == 1:
        array = array[0]
    if array.ndim != sample_ndim:
        raise ValueError(f"expected one sample with {sample_ndim} axes, got shape {array.shape}")
    return array


def real_audio(audio: np.ndarray, audio_length: np.ndarray) -> np.ndarray:
    """The unpadded part of the model's audio input."""
    waveform = _sample(audio, 1).astype(np.float32)
    length = int(round(float(np.asarray(audio_length, dtype=np.float32).ravel()[0])))
    return waveform[:max(1, min(length, len(waveform)))]


def transcription(logits: np.ndarray) -> LeapText:
    return LeapText(decode_greedy(_sample(logits, 2)).split())


def transcription_lm(logits: np.ndarray) -> LeapText:
    """The beam-search hypothesis with the configured word LM (librispeech/lm_decoding.py)."""
    return LeapText(lm_decoder().decode(_sample(logits, 2)).split())


def reference(transcript: np.ndarray) -> LeapText:
    return LeapText(decode_reference(_sample(transcript, 1)).split())


def alignment(logits: np.ndarray, transcript: np.ndarray) -> LeapTextMask:
    """Hypothesis characters coloured by how they align to the reference; deleted reference characters are shown
    where they are missing, as [-ABC] tokens."""
    ref, hyp = decode_reference(_sample(transcript, 1)), decode_greedy(_sample(logits, 2))
    tokens, mask = [], []
    for chunk in jiwer.process_characters(ref, hyp).alignments[0]:
        if chunk.type == "delete":
            tokens.append(DELETION_MARK.format(ref[chunk.ref_start_idx:chunk.ref_end_idx]))
            mask.append(3)
        else:
            kind = {"equal": 0, "substitute": 1, "insert": 2}[chunk.type]
            characters = hyp[chunk.hyp_start_idx:chunk.hyp_end_idx]
            tokens += list(characters)
            mask += [kind] * len(characters)
    return LeapTextMask(np.array(mask, dtype=np.uint8), tokens, ALIGNMENT_LABELS)


def _mel_db(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    import librosa

    with short_clip_stft(waveform):
        power = librosa.feature.melspectrogram(y=waveform, sr=sample_rate, n_fft=N_FFT, hop_length=HOP_LENGTH,
                                               n_mels=MEL_BANDS)
    return librosa.power_to_db(power, ref=np.max)


def mel_spectrogram(audio: np.ndarray, audio_length: np.ndarray, sample_rate: int) -> LeapImage:
    """dB mel spectrogram of the real audio, low frequencies at the bottom, scaled to 0-255: [mels, frames, 1]."""
    mel_db = _mel_db(real_audio(audio, audio_length), sample_rate)
    low, high = float(mel_db.min()), float(mel_db.max())
    scaled = (mel_db - low) / (high - low) * 255.0 if high > low else np.zeros_like(mel_db)
    return LeapImage(np.flipud(scaled).astype(np.float32)[..., None])


def mel_spectrogram_heatmap(attribution: np.ndarray, audio_length: np.ndarray) -> np.ndarray:
    """Map an attribution over the audio samples onto the spectrogram image: the mean |attribution| inside each
    STFT window (centred frames, as librosa), the same for every mel bin. audio_length is the input's real length
    (not an attribution). Returns [mels, frames]."""
    heat = np.abs(real_audio(attribution, audio_length))
    frames = 1 + len(heat) // HOP_LENGTH
    centres = np.arange(frames) * HOP_LENGTH
    starts = np.clip(centres - N_FFT // 2, 0, len(heat))
    ends = np.clip(centres + N_FFT // 2, 0, len(heat))
    cumulative = np.concatenate([[0.0], np.cumsum(heat, dtype=np.float64)])
    per_frame = (cumulative[ends] - cumulative[starts]) / np.maximum(ends - starts, 1)
    return np.repeat(per_frame[None, :], MEL_BANDS, axis=0).astype(np.float32)


def _waveform_block(samples: int) -> int:
    """Samples per point of the waveform envelope: about WAVEFORM_POINTS points, the last block shorter."""
    return max(1, int(np.ceil(samples / WAVEFORM_POINTS)))


def waveform(audio: np.ndarray, audio_length: np.ndarray, sample_rate: int) -> LeapGraph:
    """Min/max envelope of the real audio in about WAVEFORM_POINTS blocks (what a waveform display draws)."""
    samples = real_audio(audio, audio_length)
    block = _waveform_block(len(samples))
    padded = np.pad(samples, (0, (-len(samples)) % block), mode="edge").reshape(-1, block)
    envelope = np.stack([padded.max(axis=1), padded.min(axis=1)], axis=1).astype(np.float32)
    return LeapGraph(envelope, x_label="time [s]", y_label="amplitude (normalised)",
                     x_range=(0.0, len(samples) / sample_rate), legend=["max", "min"])


def waveform_heatmap(attribution: np.ndarray, audio_length: np.ndarray) -> np.ndarray:
    """Map an attribution over the audio samples onto the waveform graph: the mean |attribution| of each block the
    envelope draws as one point. audio_length is the input's real length. Returns [points]."""
    heat = np.abs(real_audio(attribution, audio_length)).astype(np.float64)
    starts = np.arange(0, len(heat), _waveform_block(len(heat)))
    counts = np.diff(np.append(starts, len(heat)))
    return (np.add.reduceat(heat, starts) / counts).astype(np.float32)


def _playable(samples: np.ndarray) -> np.ndarray:
    """code-loader squeezes a one-sample clip to a scalar (preprocess keeps >= 400 samples anyway): pad to two."""
    return np.pad(samples, (0, max(0, 2 - len(samples))))


def audio_player(audio: np.ndarray, audio_length: np.ndarray, sample_rate: int) -> LeapAudio:
    samples = _playable(real_audio(audio, audio_length))
    # Normalised input can exceed [-1, 1]; scale to full range so it plays without clipping.
    peak = float(np.max(np.abs(samples))) or 1.0
    return default_audio_visualizer(samples / peak, sample_rate)


def audio_player_heatmap(attribution: np.ndarray, audio_length: np.ndarray) -> np.ndarray:
    """|attribution| of each sample the player plays (the real audio). Returns [samples]."""
    return np.abs(_playable(real_audio(attribution, audio_length)))


# ---------------------------------------------------------------- word errors (words.align_words)

SUBSTITUTION_MARK = "{hypothesis}[{reference}]"


def word_errors(logits: np.ndarray, transcript: np.ndarray) -> LeapTextMask:
    """The aligned words, each labelled with its kind: mask i + 1 = words.WORD_KINDS[i] (correct, substitution,
    insertion, deletion; 0 is unused). A correct or inserted word shows the hypothesis word, a substitution the
    hypothesis word with the reference word in brackets (HUMER[HUMOUR]), and a deletion the missing reference word
    as [-NOON], where it is missing."""
    ref, hyp = decode_reference(_sample(transcript, 1)), decode_greedy(_sample(logits, 2))
    tokens, mask = [], []
    for word in align_words(ref, hyp):
        if word.kind == "deletion":
            tokens.append(DELETION_MARK.format(word.reference))
        elif word.kind == "substitution":
            tokens.append(SUBSTITUTION_MARK.format(hypothesis=word.hypothesis, reference=word.reference))
        else:
            tokens.append(word.hypothesis)
        mask.append(WORD_KINDS.index(word.kind) + 1)
    return LeapTextMask(np.array(mask, dtype=np.uint8), tokens, list(WORD_KINDS))
