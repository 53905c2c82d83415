"""Speed of one demo-model training step in float32 against mixed_bfloat16 (`train-demo --precision`).

    .venv/bin/python benchmarks/benchmark_training_step.py [--batch-size 6] [--seconds 5] [--repeats 20]

Both models have the demo config (librispeech_tools/training.py) and the same weights, compiled as train-demo compiles
them (AdamW, the integration's CTC loss), and train on the same batch of noise with random labels. After warm-up
steps (tracing), the two alternate step by step so that background load hits both alike. Reports the median and
best step times and the speed-up as the median of the per-step ratios. bfloat16 pays off on CPUs with native
bfloat16 (AVX512-BF16 or AMX) and on GPUs; elsewhere it can be slower.
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
from librispeech_tools.training import LABEL_STEP, build_trainable_model  # noqa: E402

PRECISIONS = ("float32", "mixed_bfloat16")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0, help="audio length of every sample")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)

    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    samples = int(args.seconds * 16000)
    audio = (0.1 * rng.standard_normal((args.batch_size, samples))).astype(np.float32)
    lengths = np.full((args.batch_size, 1), samples, np.float32)
    label_length = int(args.seconds * 12)  # about 12 characters a second, as read speech
    labels = np.zeros((args.batch_size, -(-label_length // LABEL_STEP) * LABEL_STEP), np.int32)
    labels[:, :label_length] = rng.integers(1, 32, (args.batch_size, label_length))

    models = {precision: build_trainable_model(precision, 1e-6) for precision in PRECISIONS}
    models["mixed_bfloat16"].set_weights(models["float32"].get_weights())
    for model in models.values():
        for _ in range(args.warmup):
            model.train_on_batch([audio, lengths], labels)
    times = {precision: [] for precision in PRECISIONS}
    for _ in range(args.repeats):
        for precision in PRECISIONS:
            started = time.perf_counter()
            models[precision].train_on_batch([audio, lengths], labels)
            times[precision].append(time.perf_counter() - started)

    print(f"demo model, batch {args.batch_size} x {args.seconds:g} s, {args.repeats} steps each, "
          f"backend {keras.backend.backend()}, {os.cpu_count()} CPUs")
    for precision in PRECISIONS:
        print(f"  {precision:15s} median {statistics.median(times[precision]):.3f} s/step, "
              f"best {min(times[precision]):.3f} s/step")
    ratios = [f32 / bf16 for f32, bf16 in zip(times["float32"], times["mixed_bfloat16"])]
    print(f"mixed_bfloat16 speed-up: {statistics.median(ratios):.2f}x (median of per-step ratios)")


if __name__ == "__main__":
    main()
