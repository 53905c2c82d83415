"""Word level: each hypothesis word's time and confidence from the CTC logits, and jiwer's word alignment of the
hypothesis to the reference (which words are correct, substituted, inserted or deleted).

Timing: the tokenizer's word offsets (Wav2Vec2CTCTokenizer.decode(..., output_word_offsets=True)) give each word's
frames of the greedy path, from its first character's first frame to its last character's last frame; a frame is
frame_seconds() = 320 / 16000 = 0.02 s (the product of wav2vec2's conv strides over the sample rate).
Confidence: the mean, over the word's frames, of the largest softmax probability of each frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jiwer
import numpy as np

from librispeech.config import project_config
from librispeech.data import FRAME_CONFIG
from librispeech.metrics import as_batch
from librispeech.tokenizer import decode_reference, get_tokenizer, greedy_ids, spell_unknown

LOW_CONFIDENCE = 0.5   # below: a low-confidence word
HIGH_CONFIDENCE = 0.9  # at or above, and wrong: a confident error
WORD_KINDS = ("correct", "substitution", "insertion", "deletion")
CONFIDENCE_KEYS = ("mean_word_confidence", "min_word_confidence", "low_confidence_words", "low_confidence_errors",
                   "confident_errors")
HIGHER_IS_BETTER = frozenset({"mean_word_confidence", "min_word_confidence"})


def frame_seconds() -> float:
    return math.prod(FRAME_CONFIG.conv_stride) / project_config().sample_rate


@dataclass(frozen=True)
class HypothesisWord:
    word: str
    start_frame: int
    end_frame: int  # exclusive
    confidence: float

    @property
    def start_seconds(self) -> float:
        return self.start_frame * frame_seconds()

    @property
    def end_seconds(self) -> float:
        return self.end_frame * frame_seconds()


@dataclass(frozen=True)
class AlignedWord:
    kind: str                    # one of WORD_KINDS
    reference: str | None        # None for an insertion
    hypothesis: str | None       # None for a deletion
    hypothesis_index: int | None  # position in the hypothesis' words, None for a deletion


def frame_confidences(logits: np.ndarray) -> np.ndarray:
    """The largest softmax probability of each frame: exp(max - max) / sum(exp(logits - max)) = 1 / sum(exp(logits -
    max)), computed in float32 or wider (float16 logits would overflow exp)."""
    logits = np.asarray(logits)
    logits = logits.astype(np.promote_types(logits.dtype, np.float32))
    return 1.0 / np.exp(logits - logits.max(axis=-1, keepdims=True)).sum(axis=-1)


def hypothesis_words(logits: np.ndarray) -> list[HypothesisWord]:
    """The greedy hypothesis' words of one sample's logits [frames, vocab], with their frames and confidence."""
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"expected one sample's logits [frames, vocab], got shape {logits.shape}")
    confidences = frame_confidences(logits)
    decoded = get_tokenizer().decode(greedy_ids(logits).tolist(), output_word_offsets=True)
    return [HypothesisWord(spell_unknown(offset["word"]), int(offset["start_offset"]), int(offset["end_offset"]),
                           float(confidences[offset["start_offset"]:offset["end_offset"]].mean()))
            for offset in decoded.word_offsets]


def align_words(reference: str, hypothesis: str) -> list[AlignedWord]:
    """jiwer's word alignment, one entry per aligned word, in order (a deletion sits where the word is missing)."""
    if not reference.strip():
        raise ValueError("word alignment needs a non-empty reference transcript")
    output = jiwer.process_words(reference, hypothesis)
    ref_words, hyp_words = output.references[0], output.hypotheses[0]
    aligned = []
    for chunk in output.alignments[0]:
        refs = ref_words[chunk.ref_start_idx:chunk.ref_end_idx]
        hyps = range(chunk.hyp_start_idx, chunk.hyp_end_idx)
        if chunk.type == "delete":
            aligned += [AlignedWord("deletion", word, None, None) for word in refs]
        elif chunk.type == "insert":
            aligned += [AlignedWord("insertion", None, hyp_words[i], i) for i in hyps]
        else:  # equal and substitute chunks pair the words one to one
            kind = "correct" if chunk.type == "equal" else "substitution"
            aligned += [AlignedWord(kind, word, hyp_words[i], i) for word, i in zip(refs, hyps)]
    return aligned


def scored_words(logits: np.ndarray, reference: str) -> list[tuple[AlignedWord, HypothesisWord | None]]:
    """Each aligned word with its hypothesis word's timing and confidence (None for a deletion)."""
    words = hypothesis_words(logits)
    aligned = align_words(reference, " ".join(word.word for word in words))
    return [(entry, None if entry.hypothesis_index is None else words[entry.hypothesis_index]) for entry in aligned]


def confidence_of_sample(logits: np.ndarray, reference: str) -> dict[str, float | int | None]:
    """CONFIDENCE_KEYS of one sample. Only hypothesis words have a confidence: a deletion adds nothing. With no
    hypothesis words the mean and minimum are None (nothing was said) and the counts 0; so too when a word's frames
    hold a NaN or infinite logit (a broken model output has no confidence)."""
    scored = [(entry.kind != "correct", word.confidence) for entry, word in scored_words(logits, reference)
              if word is not None]
    if not all(math.isfinite(confidence) for _, confidence in scored):
        scored = []
    confidences = [confidence for _, confidence in scored]
    return {
        "mean_word_confidence": float(np.mean(confidences)) if confidences else None,
        "min_word_confidence": float(np.min(confidences)) if confidences else None,
        "low_confidence_words": sum(confidence < LOW_CONFIDENCE for _, confidence in scored),
        "low_confidence_errors": sum(wrong and confidence < LOW_CONFIDENCE for wrong, confidence in scored),
        "confident_errors": sum(wrong and confidence >= HIGH_CONFIDENCE for wrong, confidence in scored),
    }


def confidence(logits: np.ndarray, labels: np.ndarray) -> dict[str, list]:
    """The `confidence` metric over a batch: per key, one value per sample (None where undefined, see above)."""
    logits, labels = as_batch(logits, 2), as_batch(labels, 1)
    rows = [confidence_of_sample(sample_logits, decode_reference(label))
            for sample_logits, label in zip(logits, labels)]
    return {key: [row[key] for row in rows] for key in CONFIDENCE_KEYS}
