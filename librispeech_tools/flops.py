"""The arithmetic of a Wav2Vec2ForCTC forward pass, and the float32 matrix-multiply rate of this machine: together
they say how close an engine runs to the hardware (benchmarks/benchmark_evaluate.py), and so how much faster any
float32 engine could be at all.

FLOPs count 2 per multiply-add of the conv stack, the feature projection, the positional conv, the attention
projections and products, the feed-forward layers and the CTC head: everything done by matrix engines. Norms,
activations, softmax and masks (under 1% of it for base) are left out.
"""
from __future__ import annotations

import time

from librispeech.wav2vec2.configuration import Wav2Vec2Config, conv_output_length


def forward_flops(config: Wav2Vec2Config, num_samples: int) -> int:
    """Floating-point operations of one utterance of `num_samples` samples (batch 1, no padding)."""
    flops, length, channels = 0, num_samples, 1
    for out_channels, kernel, stride in zip(config.conv_dim, config.conv_kernel, config.conv_stride):
        length = max(0, conv_output_length(length, kernel, stride))
        flops += 2 * length * channels * out_channels * kernel
        channels = out_channels
    frames, hidden = length, config.hidden_size
    flops += 2 * frames * channels * hidden  # feature projection
    # positional conv: grouped, one output per frame (PyTorch's even kernel computes one more and drops it)
    flops += 2 * frames * hidden * (hidden // config.num_conv_pos_embedding_groups) * config.num_conv_pos_embeddings
    per_layer = (2 * frames * hidden * hidden * 4            # query, key, value and output projections
                 + 2 * frames * frames * hidden * 2          # scores (Q K^T) and the weighted sum of values, all heads
                 + 2 * frames * hidden * config.intermediate_size * 2)  # feed-forward in and out
    flops += config.num_hidden_layers * per_layer
    flops += 2 * frames * hidden * config.vocab_size  # CTC head
    return flops


def float32_matmul_rate(rows: int = 512, inner: int = 768, columns: int = 3072, seconds: float = 1.0) -> float:
    """FLOP/s of numpy's float32 matrix product [rows, inner] x [inner, columns] on all cores (default: wav2vec2
    base's feed-forward shape for a 10 s utterance), the best of repeated calls over about `seconds`."""
    import numpy as np

    rng = np.random.default_rng(0)
    left = rng.standard_normal((rows, inner), dtype=np.float32)
    right = rng.standard_normal((inner, columns), dtype=np.float32)
    left @ right  # warm-up: thread pool and caches
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        left @ right
        best = min(best, time.perf_counter() - started)
    return 2 * rows * inner * columns / best
