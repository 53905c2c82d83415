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
    """The reference: scipy's, over the vocabulary axis."""
    from scipy.special import log_softmax as scipy_log_softmax

    return scipy_log_softmax(x, axis=-1)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_runtime_log_softmax_equals_scipys(dtype):
    """librispeech.ctc's log-softmax (numpy, so that the runtime imports no scipy) against scipy's own."""
    from librispeech import ctc

    logits = (np.random.default_rng(3).normal(size=(2, 50, 32)) * 8).astype(dtype)
    logits[0, 3] = 1e4 * (np.arange(32) == 0)  # a certain blank, as past the audio
    ours = ctc.log_softmax(logits)
    assert ours.dtype == dtype
    np.testing.assert_allclose(ours, log_softmax(logits), rtol=1e-3 if dtype == np.float16 else 1e-6,
                               atol=1e-2 if dtype == np.float16 else 1e-5)


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


@pytest.mark.parametrize("gap", [85.0, 100.0, 110.0, 200.0])
def test_a_confidently_wrong_sample_keeps_its_large_loss(gap):
    """Ten frames all saying E by `gap` logits, against the reference A: every path emits A once at ~-gap, so the
    loss is finite and large, not 0 as for a label with no path (whose padding frames are impossible)."""
    logits = np.zeros((1, 10, 32), np.float32)
    logits[0, :, VOCAB["E"]] = gap
    expected = reference_ctc_nll(log_softmax(logits[0].astype(np.float64)), [VOCAB["A"]])
    assert gap < expected < 10 * (gap + 4)
    padded = with_padded_frames(logits[0], 40)[None]
    for frames in (logits, padded):
        assert float(np.asarray(metrics.ctc_loss(frames, label_of("A")[None]))[0]) == pytest.approx(expected,
                                                                                                     rel=1e-6)
    # A label longer than the real frames allow still has no path (its only way is through the padding): 0.
    too_long = with_padded_frames(logits_for_path(["A", "B"], 2), 40)[None]
    assert float(np.asarray(metrics.ctc_loss(too_long, label_of("AAA")[None]))[0]) == metrics.INFEASIBLE_LOSS


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


def tensorflow_ctc_loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """What ctc_loss runs on tensors with TensorFlow: its native kernel (the library's own result)."""
    tf = pytest.importorskip("tensorflow")
    return metrics._ctc_loss(tf.constant(logits), tf.constant(labels)).numpy()


@pytest.mark.parametrize("batch, frames, label_ids, width", [(1, 400, 130, 630), (3, 1747, 419, 630),
                                                             (4, 37, 12, 40)])
def test_numpy_ctc_loss_equals_tensorflows_kernel(batch, frames, label_ids, width):
    """numpy in (the platform's and evaluate's calls) is computed in numpy, in float64: within TensorFlow's own
    float32 rounding of its kernel, on label lengths that differ per row, repeated ids (no skip between them),
    blanks inside a label (dropped, as TF's sparse labels drop them) and the longest input (TF's float32 drifts
    by ~3e-6 relative over its 1,747 frames)."""
    rng = np.random.default_rng(frames)
    logits = (rng.normal(size=(batch, frames, 32)) * 3).astype(np.float32)
    labels = np.zeros((batch, width), np.int32)
    for row in range(batch):
        ids = rng.integers(1, 32, max(1, label_ids - 7 * row))
        if len(ids) > 4:
            ids[3] = ids[2]  # a repeat
        labels[row, :len(ids)] = ids
    if label_ids > 20:
        labels[0, 10] = 0  # a blank inside the label
    ours = np.asarray(metrics.ctc_loss(logits, labels))
    assert ours.dtype == np.float32 and ours.shape == (batch,)
    np.testing.assert_allclose(ours, tensorflow_ctc_loss(logits, labels), rtol=1e-5, atol=1e-4)
    half = np.asarray(metrics.ctc_loss(logits.astype(np.float16), labels.astype(np.float16)))
    np.testing.assert_allclose(half, tensorflow_ctc_loss(logits.astype(np.float16).astype(np.float32), labels),
                               rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("text", ["TOO", ""])  # a repeat (a blank between the O's); no label (TF's kernel refuses it)
def test_numpy_ctc_loss_equals_the_reference(text):
    logits = (np.random.default_rng(4).normal(size=(16, 32)) * 3).astype(np.float32)
    log_probs = log_softmax(logits.astype(np.float64))
    label = label_of(text)
    expected = (reference_ctc_nll(log_probs, [int(i) for i in label if i]) if text
                else -float(log_probs[:, 0].sum()))
    assert float(np.asarray(metrics.ctc_loss(logits, label))[0]) == pytest.approx(expected, rel=1e-7)


def test_ctc_loss_of_numpy_input_imports_no_keras_backend():
    """evaluate on ONNX Runtime imports no TensorFlow (~3 s): the loss of numpy logits must not either."""
    script = ("import sys, numpy as np\n"
              "import librispeech\n"
              "from librispeech import metrics\n"
              "loss = metrics.ctc_loss(np.zeros((1, 20, 32), np.float32), np.array([[5, 6, 0]]))\n"
              "print(float(loss[0]), sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parent.parent,
                            env={**os.environ, "TL_DISABLE_ANALYTICS": "true"})
    assert result.returncode == 0, result.stderr[-2000:]
    loss, imported = result.stdout.strip().split(" ", 1)
    assert float(loss) > 0 and imported == "[]"


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (not a dependency)")
def test_jax_ctc_loss_on_tensors_equals_the_forward_algorithm():
    """On JAX a traced or JAX-array loss (a training step) is one jax.jit (keras.ops.ctc_loss op by op recompiles
    its scan at every call), compiled once per shape, with the forward algorithm's values and 0 for non-finite
    logits; numpy logits take the numpy path."""
    rng = np.random.default_rng(1)
    logits = [rng.normal(size=(2, frames, 32)).astype(np.float32) * 3 for frames in (30, 30, 45)]
    logits[1][1, 4, 7] = np.nan
    labels = np.stack([label_of("CAT"), label_of("A DOG")])
    script = (
        "import json, sys, numpy as np\n"
        "import librispeech\n"
        "from librispeech import metrics\n"
        "import jax.numpy as jnp\n"
        "logits, labels = json.loads(sys.stdin.read())\n"
        "losses = [np.asarray(metrics.ctc_loss(jnp.array(x, jnp.float32), jnp.array(labels))).tolist()\n"
        "          for x in logits]\n"
        "numpy_losses = [np.asarray(metrics.ctc_loss(np.array(x, np.float32), np.array(labels))).tolist()\n"
        "                for x in logits]\n"
        "print(json.dumps({'losses': losses, 'numpy': numpy_losses,\n"
        "                  'compiled': metrics._jax_ctc_loss()._cache_size()}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], input=json.dumps([[x.tolist() for x in logits],
                                                                             labels.tolist()]),
                            capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent,
                            env={**os.environ, "KERAS_BACKEND": "jax", "TL_DISABLE_ANALYTICS": "true"})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["compiled"] == 2
    for call, losses, numpy_losses in zip(logits, report["losses"], report["numpy"]):
        for sample in range(2):
            ids = [int(i) for i in labels[sample] if i]
            expected = (metrics.INFEASIBLE_LOSS if not np.isfinite(call[sample]).all()
                        else reference_ctc_nll(log_softmax(call[sample]), ids))
            assert losses[sample] == pytest.approx(expected, abs=1e-3)
            assert numpy_losses[sample] == pytest.approx(expected, abs=1e-3)
