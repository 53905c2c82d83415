"""Could a lower-precision matmul make the float32 model pass faster on this CPU and stay float-exact?

Issue 14's model-pass goal (1.5x PyTorch) is above what float32 matmuls reach on the 2-core development CPU
(benchmarks/EVALUATE_RESULTS.md). That CPU has AMX (bfloat16 tiles), so this measures, on wav2vec2-base's
feed-forward matmul ([frames, 768] x [768, 3072], 1,600 frames: 4 utterances of 8 s), the rate and the error
against float64 of:

  numpy float32                        the reference rate
  tensorflow float32 / bfloat16        bfloat16 in and out (oneDNN; AMX where the CPU has it)
  jax float32 / bf16 -> f32            bfloat16 inputs, float32 accumulation and output
  jax preset BF16_BF16_F32_X3          jax.lax.dot's precision preset for that emulation (what XLA's CPU makes of it)
  jax bf16 x3                          float32 emulated by three bfloat16 products (hi*hi + lo*hi + hi*lo): that
                                       algorithm written out
  jax bf16 x3, weights split once      the same with the weights' hi/lo parts made ahead, as a model would keep them

    .venv/bin/python benchmarks/benchmark_matmul_precision.py     # jax is optional: PYTHONPATH=<a jax install>

Rates count 2 * M * K * N flops (for the emulations too: the float32 work they stand for); best of --repeats.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def best_seconds(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def candidates(x: np.ndarray, w: np.ndarray) -> dict:
    """name -> a function returning the product as numpy."""
    found = {"numpy float32": lambda: x @ w}
    try:
        import tensorflow as tf

        tx, tw = tf.constant(x), tf.constant(w)
        bx, bw = tf.cast(tx, tf.bfloat16), tf.cast(tw, tf.bfloat16)
        found["tensorflow float32"] = lambda: tf.matmul(tx, tw).numpy()
        found["tensorflow bfloat16 (bf16 out)"] = lambda: tf.cast(tf.matmul(bx, bw), tf.float32).numpy()
    except ImportError:
        pass
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return found

    def split(a):
        high = a.astype(jnp.bfloat16)
        return high, (a - high.astype(jnp.float32)).astype(jnp.bfloat16)

    def dot(a, b):
        return jax.lax.dot(a, b, preferred_element_type=jnp.float32)

    def bf16_x3(a, b_high, b_low):
        a_high, a_low = split(a)
        return dot(a_high, b_high) + (dot(a_low, b_high) + dot(a_high, b_low))

    jx, jw = jnp.asarray(x), jnp.asarray(w)
    w_high, w_low = split(jw)
    f32 = jax.jit(lambda a, b: a @ b)
    bf16 = jax.jit(lambda a, b: dot(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)))
    x3 = jax.jit(lambda a, b: bf16_x3(a, *split(b)))
    x3_split_weights = jax.jit(bf16_x3)
    preset = jax.jit(lambda a, b: jax.lax.dot(a, b, precision=jax.lax.DotAlgorithmPreset.BF16_BF16_F32_X3,
                                              preferred_element_type=jnp.float32))
    found["jax float32"] = lambda: np.asarray(f32(jx, jw))
    found["jax bf16 -> f32"] = lambda: np.asarray(bf16(jx, jw))
    found["jax preset BF16_BF16_F32_X3"] = lambda: np.asarray(preset(jx, jw))
    found["jax bf16 x3"] = lambda: np.asarray(x3(jx, jw))
    found["jax bf16 x3, weights split once"] = lambda: np.asarray(x3_split_weights(jx, w_high, w_low))
    return found


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1600)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.frames, 768)).astype(np.float32)
    w = (rng.standard_normal((768, 3072)) / np.sqrt(768)).astype(np.float32)
    exact = x.astype(np.float64) @ w.astype(np.float64)
    flops = 2 * x.shape[0] * x.shape[1] * w.shape[1]
    print(f"[{x.shape[0]}, {x.shape[1]}] x [{w.shape[0]}, {w.shape[1]}], {os.cpu_count()} cores")
    print(f"{'product':34} {'GFLOP/s':>8} {'max |error| / max |exact|':>26}")
    for name, function in candidates(x, w).items():
        seconds = best_seconds(function, args.repeats)
        error = np.abs(function() - exact).max() / np.abs(exact).max()
        print(f"{name:34} {flops / seconds / 1e9:8.0f} {error:26.2e}")


if __name__ == "__main__":
    main()
