"""CTC loss (TensorFlow's kernel, else keras.ops; shared by the integration and training) and jiwer error rates."""
from __future__ import annotations

import contextlib
import functools

import jiwer
import numpy as np

from librispeech.tokenizer import BLANK_ID, decode_greedy, decode_reference

# Rates and error counts go down as the model improves; word information preserved and hits go up.
ERROR_RATE_KEYS = (
    "wer", "cer", "mer", "wil", "wip",
    "word_hits", "word_substitutions", "word_deletions", "word_insertions",
    "char_hits", "char_substitutions", "char_deletions", "char_insertions",
)
HIGHER_IS_BETTER = frozenset({"wip", "word_hits", "char_hits"})
INFEASIBLE_LOSS = 0.0  # ctc_loss of a sample with no finite CTC loss (HF's ctc_zero_infinity)
# JAX compiles the loss per shape: numpy logits are padded to a multiple of this many frames (1.28 s of wav2vec2's
# 20 ms frames), so test-clean's ~2,600 lengths (up to 1,747 frames) share 28 compiled shapes instead of one each
LOSS_FRAME_STEP = 64


def ctc_loss(logits, labels):
    """Per-sample CTC negative log-likelihood ("sum" reduction over a sample, as wav2vec2's CTC head).

    logits [batch, frames, vocab] over the full fixed-length input: frames past the audio are a certain blank,
    so they add ~0 and no output lengths are needed. labels [batch, max_label_length]: token ids padded with the
    blank (0); a label's length is its number of non-zero ids. float16 inputs are computed in float32.
    Differentiable: the demo model trains with this same function.

    Never inf or NaN: a sample whose loss is not finite gets 0 (INFEASIBLE_LOSS), as Hugging Face's
    ctc_zero_infinity does; with TensorFlow its gradient is 0 too. That happens when no CTC path fits the audio's
    real frames (fewer frames than the label needs; preprocessing excludes such utterances and reports them) or when
    the logits themselves are not finite.
    """
    from keras import backend

    if backend.backend() != "jax":
        return _ctc_loss(logits, labels)
    import jax

    if not isinstance(logits, np.ndarray):  # traced (a training step): where the step runs
        return _jax_ctc_loss()(logits, labels)
    # numpy in (the platform's calls, evaluate's): on the host's CPU, and with the frames padded up to a multiple of
    # LOSS_FRAME_STEP and masked as padding, so that utterances of any length share a few compiled shapes
    frames = logits.shape[1]
    padded = np.pad(logits, ((0, 0), (0, -frames % LOSS_FRAME_STEP), (0, 0)))
    try:
        placement = jax.default_device(jax.devices("cpu")[0])
    except RuntimeError:  # JAX_PLATFORMS leaves the CPU out: the default device
        placement = contextlib.nullcontext()
    with placement:
        return _jax_ctc_loss()(padded, labels, np.int32(frames))


@functools.cache
def _jax_ctc_loss():
    """_ctc_loss as one jax.jit, compiled once per input shape. Called op by op, keras.ops.ctc_loss's lax.scan over
    a closure made at each call is traced and compiled again at every call: 0.19 s a call on a CPU against 0.004 s
    jitted (0.4 s per new shape). Numpy inputs stay on the CPU even where a GPU is the default device: the scan's
    hundreds of small sequential steps suit it, and XLA compiles for a GPU far more slowly (on an H200, evaluate
    spent most of its 220 s in this loss when it ran there op by op: benchmarks/GPU_RESULTS.md)."""
    import jax

    return jax.jit(_ctc_loss)


def _ctc_loss(logits, labels, logit_length=None):
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
        # frames past logit_length are padding: the scan carries its state over them unchanged
        logit_lengths = ops.full((batch,), frames if logit_length is None else logit_length, dtype="int32")
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
