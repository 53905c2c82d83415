"""CTC loss (numpy on numpy input; on tensors TensorFlow's kernel, else keras.ops: shared by the integration and
training) and jiwer error rates."""
from __future__ import annotations

import functools

import jiwer
import numpy as np

from librispeech.ctc import ctc_negative_log_likelihood
from librispeech.tokenizer import BLANK_ID, decode_greedy, decode_reference

# Rates and error counts go down as the model improves; word information preserved and hits go up.
ERROR_RATE_KEYS = (
    "wer", "cer", "mer", "wil", "wip",
    "word_hits", "word_substitutions", "word_deletions", "word_insertions",
    "char_hits", "char_substitutions", "char_deletions", "char_insertions",
)
HIGHER_IS_BETTER = frozenset({"wip", "word_hits", "char_hits"})
INFEASIBLE_LOSS = 0.0  # ctc_loss of a sample with no finite CTC loss (HF's ctc_zero_infinity)


def ctc_loss(logits, labels):
    """Per-sample CTC negative log-likelihood ("sum" reduction over a sample, as wav2vec2's CTC head).

    logits [batch, frames, vocab] over the full fixed-length input: frames past the audio are a certain blank,
    so they add ~0 and no output lengths are needed. labels [batch, max_label_length]: token ids padded with the
    blank (0); a label's length is its number of non-zero ids. float16 inputs are computed in float32 (numpy
    input: float64).
    Differentiable: the demo model trains with this same function.

    Never inf or NaN: a sample whose loss is not finite gets 0 (INFEASIBLE_LOSS), as Hugging Face's
    ctc_zero_infinity does; with TensorFlow its gradient is 0 too. That happens when no CTC path fits the audio's
    real frames (fewer frames than the label needs; preprocessing excludes such utterances and reports them) or when
    the logits themselves are not finite. A confidently wrong sample keeps its large loss: in numpy, a token is
    impossible only below a log-probability of -1,000 (a padded frame's, ctc.IMPOSSIBLE_LOG_PROBABILITY); the
    tensor path's kernels work with float32 probabilities, which lose a path below ~-87 (a training step's concern).

    numpy in (the platform's calls, evaluate's): computed in numpy (librispeech.ctc), on the CPU, without importing
    a Keras backend. Tensors (a training step): with the backend, where the step runs.
    """
    if isinstance(logits, np.ndarray):
        return _numpy_ctc_loss(logits, np.asarray(labels))
    from keras import backend

    if backend.backend() != "jax":
        return _ctc_loss(logits, labels)
    return _jax_ctc_loss()(logits, labels)


def _numpy_ctc_loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    logits, labels = as_batch(logits, 2), np.rint(as_batch(labels, 1).astype(np.float32)).astype(np.int64)
    finite_logits = np.isfinite(logits).all(axis=(1, 2))
    loss = ctc_negative_log_likelihood(np.where(finite_logits[:, None, None], logits, 0),
                                       [label[label != BLANK_ID] for label in labels])
    return np.where(finite_logits & np.isfinite(loss), loss, INFEASIBLE_LOSS).astype(np.float32)


@functools.cache
def _jax_ctc_loss():
    """_ctc_loss as one jax.jit, compiled once per input shape. Called op by op, keras.ops.ctc_loss's lax.scan over
    a closure made at each call is traced and compiled again at every call: 0.19 s a call on a CPU against 0.004 s
    jitted (0.4 s per new shape)."""
    import jax

    return jax.jit(_ctc_loss)


def _ctc_loss(logits, labels):
    from keras import backend, ops

    logits = ops.cast(logits, "float32")
    labels = ops.cast(ops.round(ops.cast(labels, "float32")), "int32")
    # non-finite logits are replaced before the CTC kernel, so they reach neither the loss nor the gradient
    finite_logits = ops.all(ops.isfinite(logits), axis=(1, 2))
    logits = ops.where(finite_logits[:, None, None], logits, ops.zeros_like(logits))
    if backend.backend() == "tensorflow":
        loss = _tensorflow_ctc_loss(logits, labels)
    else:
        batch, frames = ops.shape(logits)[0], ops.shape(logits)[1]
        label_lengths = ops.sum(ops.cast(ops.not_equal(labels, BLANK_ID), "int32"), axis=-1)
        logit_lengths = ops.full((batch,), frames, dtype="int32")
        loss = ops.ctc_loss(labels, logits, label_lengths, logit_lengths, mask_index=BLANK_ID)
    return ops.where(ops.logical_and(finite_logits, ops.isfinite(loss)), loss, ops.full_like(loss, INFEASIBLE_LOSS))


def _tensorflow_ctc_loss(logits, labels):
    """TensorFlow's native CTC kernel, fed sparse labels. keras.ops.ctc_loss hands TF dense labels, which TF
    computes with a scan over the frames in graph ops, far slower: benchmarks/CTC_LOSS_RESULTS.md."""
    import tensorflow as tf

    frames = tf.fill(tf.shape(logits)[:1], tf.shape(logits)[1])
    return tf.nn.ctc_loss(tf.sparse.from_dense(labels), logits, label_length=None, logit_length=frames,
                          logits_time_major=False, blank_index=BLANK_ID)


def as_batch(array: np.ndarray, sample_ndim: int) -> np.ndarray:
    """Add a batch axis when a single sample is given."""
    array = np.asarray(array)
    return array[None] if array.ndim == sample_ndim else array


def transcription_pairs(logits: np.ndarray, labels: np.ndarray) -> list[tuple[str, str]]:
    """(reference, greedy hypothesis) for each sample of a batch."""
    logits, labels = as_batch(logits, 2), as_batch(labels, 1)
    return [(decode_reference(label), decode_greedy(sample_logits)) for sample_logits, label in zip(logits, labels)]


def error_rates_of_pair(reference: str, hypothesis: str) -> dict[str, float]:
    """jiwer's word and character measures for one pair. An empty hypothesis is valid (everything deleted)."""
    if not reference.strip():
        raise ValueError("error rates need a non-empty reference transcript")
    words = jiwer.process_words(reference, hypothesis)
    chars = jiwer.process_characters(reference, hypothesis)
    return {
        "wer": words.wer, "cer": chars.cer, "mer": words.mer, "wil": words.wil, "wip": words.wip,
        "word_hits": words.hits, "word_substitutions": words.substitutions,
        "word_deletions": words.deletions, "word_insertions": words.insertions,
        "char_hits": chars.hits, "char_substitutions": chars.substitutions,
        "char_deletions": chars.deletions, "char_insertions": chars.insertions,
    }


def error_rates(logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Each measure as a float32 array with one value per sample."""
    rows = [error_rates_of_pair(reference, hypothesis) for reference, hypothesis in transcription_pairs(logits, labels)]
    return {key: np.array([row[key] for row in rows], dtype=np.float32) for key in ERROR_RATE_KEYS}


def corpus_error_rates(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """Corpus-level WER and CER: jiwer over all pairs at once (errors summed, then divided), as HF's recipe does."""
    return {"wer": float(jiwer.wer(references, hypotheses)), "cer": float(jiwer.cer(references, hypotheses))}
