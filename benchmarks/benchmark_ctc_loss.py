"""Speed of the integration's CTC loss: numpy (its numpy-input path) against TensorFlow's kernel and keras.ops.

    .venv/bin/python benchmarks/benchmark_ctc_loss.py [--batch-size 4] [--frames 1747] [--label-width 630]
        [--repeats 3] [--keras-dense]

librispeech.metrics.ctc_loss computes numpy input in numpy (librispeech/ctc.py: the forward algorithm in float64);
on tensors it passes sparse labels to TF's native kernel ("tensorflow kernel"). keras.ops.ctc_loss hands TensorFlow
dense labels, which TF computes with a scan over the frames in graph ops (--keras-dense: minutes at the default
sizes). All run on the same random logits and labels (about 12 characters a second of audio, padded to
--label-width) after one warm-up call each, alternating per repeat, and must agree before anything is timed.
Results: benchmarks/CTC_LOSS_RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import librispeech  # noqa: F401,E402  first: its telemetry guard runs before anything imports code_loader
from librispeech.metrics import ctc_loss  # noqa: E402
from librispeech.tokenizer import BLANK_ID  # noqa: E402


def keras_dense_ctc_loss(logits, labels):
    """keras.ops.ctc_loss as librispeech.metrics.ctc_loss would call it on a backend other than TensorFlow."""
    from keras import ops

    label_lengths = ops.sum(ops.cast(ops.not_equal(labels, BLANK_ID), "int32"), axis=-1)
    logit_lengths = ops.full((labels.shape[0],), logits.shape[1], dtype="int32")
    return ops.ctc_loss(labels, logits, label_lengths, logit_lengths, mask_index=BLANK_ID)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--frames", type=int, default=1747, help="logit frames (1747 = the model's 34.955 s input)")
    parser.add_argument("--label-width", type=int, default=630,
                        help="padded label width (630, the recorded runs'; max_label_length is now 1747)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keras-dense", action="store_true", help="also time keras.ops.ctc_loss (slow)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(args.batch_size, args.frames, 32)).astype(np.float32)
    label_length = min(args.label_width, int(args.frames * 0.02 * 12))  # 20 ms frames, ~12 characters a second
    labels = np.zeros((args.batch_size, args.label_width), np.int32)
    labels[:, :label_length] = rng.integers(1, 32, (args.batch_size, label_length))

    import tensorflow as tf

    ways = {"numpy (ours)": lambda: np.asarray(ctc_loss(logits, labels)),
            "tensorflow kernel": lambda: np.asarray(ctc_loss(tf.constant(logits), tf.constant(labels)))}
    if args.keras_dense:
        ways["keras dense"] = lambda: np.asarray(keras_dense_ctc_loss(logits, labels))
    results = {name: way() for name, way in ways.items()}  # warm-up, and the agreement check
    for name, result in results.items():
        np.testing.assert_allclose(result, results["numpy (ours)"], rtol=1e-4, err_msg=name)
    times = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, way in ways.items():
            started = time.perf_counter()
            way()
            times[name].append(time.perf_counter() - started)
    print(f"batch {args.batch_size}, {args.frames} frames, labels of {label_length} ids padded to "
          f"{args.label_width}, {args.repeats} repeats, {os.cpu_count()} CPUs")
    for name in ways:
        print(f"  {name:17s} median {statistics.median(times[name]):.4f} s, best {min(times[name]):.4f} s")
    for name in list(ways)[1:]:
        ratios = [other / ours for other, ours in zip(times[name], times["numpy (ours)"])]
        print(f"numpy against {name}: {statistics.median(ratios):.2f}x as fast (median of per-repeat ratios)")


if __name__ == "__main__":
    main()
