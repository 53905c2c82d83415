"""The CTC loss of numpy logits in numpy: the forward algorithm (Graves et al. 2006) in log space, in float64.

Why not TensorFlow's kernel (what metrics.ctc_loss runs on tensors, for training): on numpy input this one is as
exact or more (float64), faster (4 ms against 7 ms for one 8 s utterance, 0.10 s against 0.20 s for four of the
platform's 34.955 s inputs: benchmarks/CTC_LOSS_RESULTS.md), and needs no TensorFlow, whose import alone costs
~3 s of a local run on ONNX Runtime. tests/test_metrics.py checks it against TensorFlow's kernel.
"""
from __future__ import annotations

import numpy as np

from librispeech.tokenizer import BLANK_ID
from librispeech.wav2vec2.configuration import BLANK_LOGIT

# The non-blank tokens of the model's padded frames (logits BLANK_LOGIT = 1e4 below the blank) are impossible, not
# merely unlikely: a label that does not fit the real frames has no path (inf) rather than one through the padding.
# A real frame's log-probabilities stay far above the cut (wav2vec2's lowest are tens below 0), so a confidently wrong
# sample keeps its large, finite loss. TensorFlow's kernel (float32 probabilities) loses a path already below ~-87.
IMPOSSIBLE_LOG_PROBABILITY = -0.1 * BLANK_LOGIT


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis (the vocabulary), in the logits' dtype."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def ctc_negative_log_likelihood(logits: np.ndarray, labels: list[np.ndarray]) -> np.ndarray:
    """-log p(label | logits) per sample: logits [batch, frames, vocab] over all frames; labels one int array per
    sample (no blanks). inf where no alignment fits the frames, or where it has probability 0."""
    batch, frames, _ = logits.shape
    if frames == 0:
        return np.full(batch, np.inf)
    lengths = np.array([len(label) for label in labels], dtype=np.int64)
    states = 2 * int(lengths.max(initial=0)) + 1  # blank, label[0], blank, label[1], ..., blank
    extended = np.full((batch, states), BLANK_ID, dtype=np.int64)
    for row, label in enumerate(labels):
        extended[row, 1:2 * len(label):2] = label
    # a path may skip the blank between two labels unless they repeat; states past a row's label stay blanks,
    # which no state of the label reads (paths only move forward)
    can_skip = np.zeros((batch, states), dtype=bool)
    can_skip[:, 3::2] = extended[:, 3::2] != extended[:, 1:-2:2]
    skip_penalty = np.where(can_skip[:, 2:], 0.0, -np.inf)
    log_probs = log_softmax(logits.astype(np.float64))
    log_probs[log_probs < IMPOSSIBLE_LOG_PROBABILITY] = -np.inf
    emissions = np.take_along_axis(log_probs, np.broadcast_to(extended[:, None, :], (batch, frames, states)), axis=2)

    alpha = np.full((batch, states), -np.inf)
    alpha[:, :2] = emissions[:, 0, :2]
    incoming = np.full((3, batch, states), -np.inf)  # from the same state, the one before, the one two before
    with np.errstate(divide="ignore", invalid="ignore"):
        for frame in range(1, frames):
            incoming[0] = alpha
            incoming[1, :, 1:] = alpha[:, :-1]
            np.add(alpha[:, :-2], skip_penalty, out=incoming[2, :, 2:])
            top = incoming.max(axis=0)
            top[top == -np.inf] = 0.0  # unreachable states stay -inf below
            alpha = np.log(np.exp(incoming - top).sum(axis=0)) + top + emissions[:, frame]
    rows = np.arange(batch)
    ends_on_blank = alpha[rows, 2 * lengths]
    ends_on_label = np.where(lengths > 0, alpha[rows, np.maximum(2 * lengths - 1, 0)], -np.inf)
    return -np.logaddexp(ends_on_blank, ends_on_label)
