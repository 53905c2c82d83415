"""ctc_loss time at the old (630) and the new (1747) label width, side by side in one run, on both of its paths:
numpy arrays (the platform's calls and evaluate's: librispeech.ctc) and TensorFlow tensors (a training step:
TensorFlow's kernel).

The width is padding: both paths take only a label's own ids (the kernel gets sparse labels), so the cost follows
the real label length, not the width. Run: .venv/bin/python benchmarks/benchmark_label_width.py [--repeats 10]
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import librispeech  # noqa: E402,F401  first: its telemetry guard runs before anything imports code_loader

import numpy as np  # noqa: E402

from librispeech import metrics, tokenizer  # noqa: E402
from librispeech.config import project_config  # noqa: E402

TEXT = "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG " * 8  # 351 characters once normalised


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    frames = (project_config().max_samples - 400) // 320 + 1
    logits = np.random.default_rng(0).normal(size=(4, frames, 32)).astype(np.float16)  # as the platform passes them
    import tensorflow as tf

    paths = {"numpy": lambda array: array, "tensorflow": tf.constant}
    for path, as_input in paths.items():
        results = {}
        for width in (630, project_config().max_label_length):
            labels = np.stack([tokenizer.encode_transcript(TEXT, width)] * 4).astype(np.float16)
            inputs = as_input(logits), as_input(labels)
            loss = np.asarray(metrics.ctc_loss(*inputs))  # warm-up
            start = time.perf_counter()
            for _ in range(args.repeats):
                again = np.asarray(metrics.ctc_loss(*inputs))
            results[width] = (time.perf_counter() - start) / args.repeats
            assert np.array_equal(loss, again)
            print(f"{path}, width {width}: {results[width] * 1000:.0f} ms per batch of 4 ({frames} frames, "
                  f"{len(TEXT.strip())}-character labels); losses {loss.round(2).tolist()}")
        widths = sorted(results)
        print(f"{path}: ratio {widths[-1]}/{widths[0]}: {results[widths[-1]] / results[widths[0]]:.2f}")


if __name__ == "__main__":
    main()
