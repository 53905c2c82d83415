import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from librispeech import metrics, tokenizer

VOCAB = {t: i for i, t in enumerate(tokenizer.vocabulary_tokens())}


def reference_ctc_nll(log_probs: np.ndarray, label: list[int], blank: int = 0) -> float:
    """The CTC forward algorithm (Graves 2006) in log space, written out for the test."""
    extended = [blank]
    for token in label:
        extended += [token, blank]
    alpha = np.full(len(extended), -np.inf)
    alpha[0] = log_probs[0, blank]
    if len(extended) > 1:
        alpha[1] = log_probs[0, extended[1]]
    for t in range(1, len(log_probs)):
        previous = alpha.copy()
        for s, token in enumerate(extended):
            candidates = [previous[s]]
            if s >= 1:
                candidates.append(previous[s - 1])
            if s >= 2 and token != blank and token != extended[s - 2]:
                candidates.append(previous[s - 2])
            alpha[s] = np.logaddexp.reduce(candidates) + log_probs[t, token]
    return float(-np.logaddexp(alpha[-1], alpha[-2]))


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def label_of(text: str, length: int = 40) -> np.ndarray:
    return tokenizer.encode_transcript(text, length)


def logits_for_path(path: list[str], frames: int, confidence: float = 20.0) -> np.ndarray:
    """Logits that put `confidence` on each token of the path, then blank frames to `frames`."""
    logits = np.zeros((frames, 32), np.float32)
    for t, token in enumerate(path + ["<pad>"] * (frames - len(path))):
        logits[t, VOCAB[token]] = confidence
    return logits


def with_padded_frames(logits: np.ndarray, extra: int) -> np.ndarray:
    """What the model emits past the real audio: a certain blank (pad logit 1e4 above the rest)."""
    blank = np.zeros((extra, 32), np.float32)
    blank[:, 0] = 1e4
    return np.concatenate([logits, blank])


def test_ctc_loss_equals_the_forward_algorithm():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 30, 32)).astype(np.float32) * 3
    labels = np.stack([label_of("CAT"), label_of("A DOG")])
    loss = np.asarray(metrics.ctc_loss(logits, labels))
    assert loss.shape == (2,)
    for sample in range(2):
        ids = [int(i) for i in labels[sample] if i]
        assert loss[sample] == pytest.approx(reference_ctc_nll(log_softmax(logits[sample]), ids), abs=1e-3)


def test_perfect_prediction_is_near_zero_and_wrong_one_is_higher():
    label = label_of("BOOKKEEPER")[None]
    path = ["B", "O", "<pad>", "O", "K", "<pad>", "K", "E", "<pad>", "E", "P", "E", "R"]
    perfect = logits_for_path(path, 20)[None]
    wrong = logits_for_path(["B", "O", "K", "E", "P", "E", "R"], 20)[None]  # doubled letters merged away
    assert float(np.asarray(metrics.ctc_loss(perfect, label))[0]) < 1e-3
    assert float(np.asarray(metrics.ctc_loss(wrong, label))[0]) > 10.0


def test_padded_frames_add_nothing_and_float16_works():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(25, 32)).astype(np.float32)
    label = label_of("HI THERE")[None]
    over_real_frames = float(np.asarray(metrics.ctc_loss(real[None], label))[0])
    padded = with_padded_frames(real, 75)[None]
    assert float(np.asarray(metrics.ctc_loss(padded, label))[0]) == pytest.approx(over_real_frames, abs=1e-3)
    half = np.asarray(metrics.ctc_loss(padded.astype(np.float16), label.astype(np.float16)))
    assert half.dtype == np.float32 and half[0] == pytest.approx(over_real_frames, abs=0.05)


def test_error_rates_on_known_strings():
    perfect = metrics.error_rates_of_pair("BOOKKEEPER IS HERE", "BOOKKEEPER IS HERE")
    assert perfect["wer"] == 0.0 and perfect["cer"] == 0.0 and perfect["wip"] == 1.0 and perfect["word_hits"] == 3
    merged = metrics.error_rates_of_pair("BOOKKEEPER IS HERE", "BOKEPER IS HERE")
    assert merged["wer"] == pytest.approx(1 / 3) and merged["word_substitutions"] == 1
    assert merged["char_deletions"] == 3 and merged["cer"] == pytest.approx(3 / 18)
    inserted = metrics.error_rates_of_pair("A CAT", "A BIG CAT")
    assert inserted["word_insertions"] == 1 and inserted["wer"] == 0.5


def test_empty_hypothesis_is_valid():
    empty = metrics.error_rates_of_pair("HELLO WORLD", "")
    assert empty["wer"] == 1.0 and empty["cer"] == 1.0 and empty["word_deletions"] == 2
    assert empty["wip"] == 0.0 and empty["char_deletions"] == 11


def test_error_rates_from_logits_and_labels():
    path = ["H", "I", "|", "Y", "O", "U"]
    logits = np.stack([logits_for_path(path, 12), logits_for_path([], 12)])
    labels = np.stack([label_of("HI YOU"), label_of("HI YOU")])
    rates = metrics.error_rates(logits, labels)
    assert set(rates) == set(metrics.ERROR_RATE_KEYS)
    assert all(v.dtype == np.float32 and v.shape == (2,) for v in rates.values())
    assert rates["wer"].tolist() == [0.0, 1.0]
    # A single sample without a batch axis is accepted too.
    assert metrics.error_rates(logits[0], labels[0])["cer"].tolist() == [0.0]


def test_a_character_outside_the_vocabulary_counts_as_one_character():
    """ROOM 101: the label holds three <unk>; the rates must be those of the text, not of "<unk>" five times."""
    import jiwer

    hypothesis = ["R", "O", "<pad>", "O", "M", "|", "W", "A", "S"]
    label = label_of("ROOM 101 WAS")
    rates = metrics.error_rates(logits_for_path(hypothesis, 20), label)
    assert rates["cer"][0] == pytest.approx(jiwer.cer("ROOM 101 WAS", "ROOM WAS"))  # 4 of 12 characters
    assert rates["char_deletions"][0] + rates["char_substitutions"][0] == 4
    # the model emitting <unk> reads as one character too
    emitted = tokenizer.decode_greedy(logits_for_path(["A", "<unk>", "B"], 5))
    assert emitted == "A" + tokenizer.UNKNOWN_MARK + "B"


def test_corpus_error_rates_sum_errors_over_all_pairs():
    rates = metrics.corpus_error_rates(["A B C D", "E F"], ["A B C D", "X F"])
    assert rates["wer"] == pytest.approx(1 / 6)  # not the mean of per-sample rates (0.25)


def test_ctc_loss_is_differentiable_for_training():
    tf = pytest.importorskip("tensorflow")
    logits = tf.Variable(np.random.default_rng(2).normal(size=(2, 20, 32)).astype(np.float32))
    labels = np.stack([label_of("AB"), label_of("ABC")])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(metrics.ctc_loss(logits, labels))
    gradient = tape.gradient(loss, logits).numpy()
    assert np.isfinite(gradient).all() and np.abs(gradient).sum() > 0
    # The gradient of a CTC NLL w.r.t. logits is softmax minus the alignment posterior: it sums to 0 per frame.
    np.testing.assert_allclose(gradient.sum(axis=-1), 0.0, atol=1e-4)


def test_label_padding_width_does_not_change_the_loss():
    """Labels arrive padded to a label width (here 630), wider than many logit sequences."""
    logits = np.random.default_rng(3).normal(size=(1, 120, 32)).astype(np.float32)
    narrow, wide = label_of("PADDING", 10)[None], label_of("PADDING", 630)[None]
    expected = reference_ctc_nll(log_softmax(logits[0].astype(np.float64)), [int(i) for i in narrow[0] if i])
    for labels in (narrow, wide):
        assert float(np.asarray(metrics.ctc_loss(logits, labels))[0]) == pytest.approx(expected, abs=1e-3)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (not a dependency)")
def test_jax_ctc_loss_compiles_once_per_frame_step_and_equals_the_forward_algorithm():
    """On JAX the loss is one jax.jit (keras.ops.ctc_loss op by op recompiles its scan at every call), its numpy
    logits padded to a multiple of LOSS_FRAME_STEP frames and masked: 30, 30 and 45 frames share one compiled shape,
    100 frames makes a second, with the forward algorithm's values at the real lengths (the unpadded jit's within
    1e-6 relative) and 0 for non-finite logits; numpy inputs are computed on the CPU, or on the default device where
    JAX_PLATFORMS leaves the CPU out."""
    rng = np.random.default_rng(1)
    logits = [rng.normal(size=(2, frames, 32)).astype(np.float32) * 3 for frames in (30, 30, 45, 100)]
    logits[1][1, 4, 7] = np.nan
    labels = np.stack([label_of("CAT"), label_of("A DOG")])
    script = (
        "import json, sys, numpy as np\n"
        "import librispeech\n"
        "from librispeech import metrics\n"
        "logits, labels = json.loads(sys.stdin.read())\n"
        "losses = [np.asarray(metrics.ctc_loss(np.array(x, np.float32), np.array(labels))).tolist() for x in logits]\n"
        "placed = {d.platform for d in metrics.ctc_loss(np.array(logits[0], np.float32), np.array(labels)).devices()}\n"
        "compiled = metrics._jax_ctc_loss()._cache_size()\n"
        "unpadded = [np.asarray(metrics._jax_ctc_loss()(np.array(x, np.float32), np.array(labels))) for x in logits]\n"
        "assert np.allclose(unpadded, losses, rtol=1e-6, atol=0), (unpadded, losses)\n"
        "import jax\n"
        "def no_cpu(backend=None):  # as with JAX_PLATFORMS=cuda\n"
        "    raise RuntimeError('Unknown backend cpu')\n"
        "jax.devices = no_cpu\n"
        "assert np.allclose(metrics.ctc_loss(np.array(logits[0], np.float32), np.array(labels)), losses[0])\n"
        "print(json.dumps({'losses': losses, 'compiled': compiled, 'placed': sorted(placed)}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], input=json.dumps([[x.tolist() for x in logits],
                                                                             labels.tolist()]),
                            capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent,
                            env={**os.environ, "KERAS_BACKEND": "jax", "TL_DISABLE_ANALYTICS": "true"})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["compiled"] == 2 and report["placed"] == ["cpu"]  # numpy in: the host's CPU, even beside a GPU
    for call, losses in zip(logits, report["losses"]):
        for sample in range(2):
            ids = [int(i) for i in labels[sample] if i]
            expected = (metrics.INFEASIBLE_LOSS if not np.isfinite(call[sample]).all()
                        else reference_ctc_nll(log_softmax(call[sample]), ids))
            assert losses[sample] == pytest.approx(expected, abs=1e-3)
