"""Speed of the integration's CTC loss (TensorFlow's kernel fed sparse labels) against keras.ops.ctc_loss.

    .venv/bin/python benchmarks/benchmark_ctc_loss.py [--batch-size 4] [--frames 1747] [--label-width 630] [--repeats 3]

keras.ops.ctc_loss hands TensorFlow dense labels, which TF computes with a scan over the frames in graph ops;
librispeech.metrics.ctc_loss passes sparse labels to TF's native kernel instead. Both run on the same random logits and labels
(about 12 characters a second of audio, padded to --label-width) after one warm-up call each, alternating per repeat,
and must agree before anything is timed. Results: benchmarks/CTC_LOSS_RESULTS.md.
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
    parser.add_argument("--label-width", type=int, default=630, help="padded label width (max_label_length)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(args.batch_size, args.frames, 32)).astype(np.float32)
    label_length = min(args.label_width, int(args.frames * 0.02 * 12))  # 20 ms frames, ~12 characters a second
    labels = np.zeros((args.batch_size, args.label_width), np.int32)
    labels[:, :label_length] = rng.integers(1, 32, (args.batch_size, label_length))

    ways = {"sparse (ours)": lambda: np.asarray(ctc_loss(logits, labels)),
            "keras dense": lambda: np.asarray(keras_dense_ctc_loss(logits, labels))}
    results = {name: way() for name, way in ways.items()}  # warm-up, and the agreement check
    np.testing.assert_allclose(results["sparse (ours)"], results["keras dense"], rtol=1e-4)
    times = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, way in ways.items():
            started = time.perf_counter()
            way()
            times[name].append(time.perf_counter() - started)
    print(f"batch {args.batch_size}, {args.frames} frames, labels of {label_length} ids padded to "
          f"{args.label_width}, {args.repeats} repeats, {os.cpu_count()} CPUs")
    for name in ways:
        print(f"  {name:14s} median {statistics.median(times[name]):.3f} s, best {min(times[name]):.3f} s")
    ratios = [dense / sparse for dense, sparse in zip(times["keras dense"], times["sparse (ours)"])]
    print(f"sparse speed-up: {statistics.median(ratios):.0f}x (median of per-repeat ratios)")


if __name__ == "__main__":
    main()
