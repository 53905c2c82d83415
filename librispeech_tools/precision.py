"""Full float32 on a GPU.

From Ampere on, JAX and TensorFlow run float32 matmuls and convolutions in TF32 by default (torch its convolutions):
wav2vec2's logits then move by ~3e-3 (2.7e-3 on an H200, benchmarks/GPU_RESULTS.md), enough to fail the export's
PyTorch check (2.4e-3 > 1e-3 x 2.1 there) and to move evaluate's losses off the CPU's and the platform path's. On a
CPU nothing changes: its float32 is already full.
"""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def full_float32():
    """Keras' float32 matmuls and convolutions in full float32 while the block runs, on its current backend."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        with jax.default_matmul_precision("highest"):  # part of jax.jit's cache key: traced and compiled so
            yield
    elif backend == "tensorflow":
        import tensorflow as tf

        enabled = tf.config.experimental.tensor_float_32_execution_enabled()
        tf.config.experimental.enable_tensor_float_32_execution(False)
        try:
            yield
        finally:
            tf.config.experimental.enable_tensor_float_32_execution(enabled)
    elif backend == "torch":
        import torch

        enabled = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = enabled
    else:
        yield
