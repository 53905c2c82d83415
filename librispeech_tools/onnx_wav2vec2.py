"""The Keras Wav2Vec2ForCTC as an ONNX graph, built node by node from the Keras model's weights (onnx helper API).

Why not Keras' `model.export(format="onnx")` (tf2onnx 1.17 on the TF backend): it does convert the tiny models
correctly, but on the base config it peaked above 12 GB of memory and took 46 s for only 2 of the 12 transformer
layers, and the full model was killed for memory on the 23 GB development machine. Its graph also carries the
TF-backend specialisations of the Keras layers (the grouped positional conv split into one conv per group). Building
the graph directly costs one pass over the weights, keeps the tensor names readable, and emits the op patterns ONNX
Runtime fuses on CPU (LayerNorm, GELU, MatMul + bias).

The graph computes what librispeech/wav2vec2/layers.py computes, block by block (tests/test_onnx.py checks each
block against its Keras layer and the whole model against the PyTorch goldens), padding semantics included:
`audio_length` gives the real samples, the first conv layer's GroupNorm uses real frames only, padded frames are
zeroed before the positional conv and masked out of attention, and their logits are a certain blank.

What Tensorleap's ONNX importer (onnx2kerastl, onnx 1.13) reads: opset <= 16 (so LayerNorm is spelled out:
LayerNormalization is opset 17), IR version <= 8, default-domain ops only. `limit_violations` checks all three.

`to_onnx(int8=True)` (export-model --int8) is the fast CPU variant: int8 convs and dense layers as MatMulIntegers,
each activation quantized per utterance from its real frames (see the int8 section below); not float-exact.

    inputs   audio [batch, samples] float32, audio_length [batch, 1] float32
    output   logits [batch, frames, vocab] float32
    inside   last_hidden_state [batch, frames, hidden] (zero on padded frames): not an output, so code-loader sees
             exactly one prediction; `with_hidden_state_output` adds it for the local report's latent space.
"""
from __future__ import annotations

import json
import math
import os
import queue
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from librispeech.model_file import ENCODER_LAYER_NAME
from librispeech.model_file import ONNX_CONFIG_KEY as CONFIG_KEY  # metadata key of the Wav2Vec2Config (JSON)
from librispeech.wav2vec2.configuration import LARGE_NEGATIVE, as_config

OPSET = 16  # the highest opset Tensorleap's importer reads
IR_VERSION = 8  # the highest IR version onnx 1.13 (the importer's) reads
AUDIO, AUDIO_LENGTH, LOGITS, HIDDEN_STATE = "audio", "audio_length", "logits", "last_hidden_state"
PRODUCER = "librispeech_tools.onnx_wav2vec2"
# protobuf cannot serialise a message of 2 GiB or more, so one .onnx file holds at most that much. wav2vec2-large is
# ~1.3 GB in float32; XLS-R 1B (~3.8 GB) and larger are over it.
PROTOBUF_LIMIT_BYTES = 2**31 - 1
GRAPH_ALLOWANCE_BYTES = 64 * 2**20  # nodes, names and metadata beside the weights, far more than they take
IN_MEMORY_WEIGHT_BYTES = 1024  # smaller initializers (shapes, axes, scalars) stay in the graph for shape inference


class OnnxExportError(RuntimeError):
    """The Keras model cannot be written as ONNX, or an ONNX file is not one of this project's exports."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise OnnxExportError("writing or inspecting ONNX needs the `onnx` package, which is in the project's `dev` "
                              "extra") from None
    return onnx


# ---------------------------------------------------------------------------------------------------------------------
# Graph builder
# ---------------------------------------------------------------------------------------------------------------------

@dataclass
class GraphBuilder:
    """Collects nodes and initializers; every op returns the name of its (single) output tensor.

    With `weights_outside`, constants of IN_MEMORY_WEIGHT_BYTES or more are not copied into the graph: each gets an
    initializer marked external ("in-memory") and its array goes to `outside_weights`, which ONNX Runtime then takes
    from memory (add_external_initializers). For a session made in memory (OnnxWithHiddenState.from_keras): copying
    the base model's weights into the graph's protobuf and out again took ~1 s of evaluate's start-up."""

    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)
    weights_outside: bool = False
    outside_weights: dict = field(default_factory=dict)  # initializer name -> array (weights_outside)
    _count: int = 0
    # int8 graphs: the real-frame mask [batch, frames, 1] of the transformer's activations; `dense` quantizes when set
    int8_frame_mask: str | None = None
    int8_cache: dict = field(default_factory=dict)  # (tensor, mask) -> QuantizedRows

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value, hint: str = "const", dtype=np.float32) -> str:
        onnx = _onnx()
        name = self._name(hint)
        value = np.asarray(value, dtype=dtype)
        if self.weights_outside and value.nbytes >= IN_MEMORY_WEIGHT_BYTES:
            self.initializers.append(in_memory_initializer(name, value))
            self.outside_weights[name] = np.ascontiguousarray(value)
        else:
            self.initializers.append(onnx.numpy_helper.from_array(value, name))
        return name

    def int64(self, values, hint: str = "shape") -> str:
        return self.const(values, hint, np.int64)

    def op(self, op_type: str, *inputs: str, output: str | None = None, **attributes) -> str:
        onnx = _onnx()
        output = output or self._name(op_type.lower())
        self.nodes.append(onnx.helper.make_node(op_type, list(inputs), [output], name=output, **attributes))
        return output


def _weight(variable) -> np.ndarray:
    return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable, dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# Blocks (each mirrors one Keras layer or helper of librispeech/wav2vec2/layers.py)
# ---------------------------------------------------------------------------------------------------------------------

def activation(g: GraphBuilder, x: str, name: str) -> str:
    """layers.get_activation(name); "gelu" is exact: 0.5 x (1 + erf(x / sqrt 2)), the pattern ORT fuses to Gelu."""
    if name == "gelu":
        erf = g.op("Erf", g.op("Div", x, g.const(math.sqrt(2.0), "sqrt2")))
        return g.op("Mul", g.op("Mul", x, g.op("Add", erf, g.const(1.0, "one"))), g.const(0.5, "half"))
    if name in ("gelu_new", "gelu_fast", "gelu_pytorch_tanh"):  # keras.ops.gelu(approximate=True)
        cube = g.op("Mul", g.op("Mul", x, x), x)
        inner = g.op("Mul", g.op("Add", x, g.op("Mul", cube, g.const(0.044715, "c"))),
                     g.const(math.sqrt(2.0 / math.pi), "c"))
        return g.op("Mul", g.op("Mul", x, g.const(0.5, "half")), g.op("Add", g.op("Tanh", inner), g.const(1.0, "one")))
    if name == "relu":
        return g.op("Relu", x)
    if name in ("silu", "swish"):
        return g.op("Mul", x, g.op("Sigmoid", x))
    if name == "tanh":
        return g.op("Tanh", x)
    raise OnnxExportError(f"unsupported activation {name!r}")


def layer_norm(g: GraphBuilder, x: str, gamma, beta, epsilon: float, axis: int = -1) -> str:
    """keras.layers.LayerNormalization over one axis, spelled out in opset-16 ops (ORT fuses the last-axis form)."""
    mean = g.op("ReduceMean", x, axes=[axis])
    centered = g.op("Sub", x, mean)
    variance = g.op("ReduceMean", g.op("Pow", centered, g.const(2.0, "two")), axes=[axis])
    std = g.op("Sqrt", g.op("Add", variance, g.const(epsilon, "epsilon")))
    normalized = g.op("Div", centered, std)
    shape = [-1] + [1] * (-axis - 1)  # gamma/beta broadcast along `axis`
    return g.op("Add", g.op("Mul", normalized, g.const(_weight(gamma).reshape(shape), "gamma")),
                g.const(_weight(beta).reshape(shape), "beta"))


def dense(g: GraphBuilder, x: str, layer) -> str:
    """keras.layers.Dense on [..., in]: MatMul + bias (int8_dense when the graph is int8)."""
    if g.int8_frame_mask is not None:
        return int8_dense(g, x, layer, g.int8_frame_mask)
    out = g.op("MatMul", x, g.const(_weight(layer.kernel), f"{layer.name}_kernel"))
    return g.op("Add", out, g.const(_weight(layer.bias), f"{layer.name}_bias")) if layer.use_bias else out


# ---------------------------------------------------------------------------------------------------------------------
# int8 (export-model --int8): int8 weights, symmetric, one scale per output channel; uint8 activations, asymmetric,
# with one scale and zero point per batch row taken from that row's real frames only. So a row's result does not
# depend on its padding or on the other rows of the batch, as in the float model (ONNX Runtime's quantize_dynamic
# takes one min/max over the whole tensor, padded frames and other utterances included).
# ---------------------------------------------------------------------------------------------------------------------

def quantize_weight(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 of a [..., out] kernel, one scale per output channel: (int8 kernel, float32 scales [out])."""
    scale = np.abs(kernel).reshape(-1, kernel.shape[-1]).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    return np.clip(np.round(kernel / scale), -127, 127).astype(np.int8), scale.astype(np.float32)


@dataclass(frozen=True)
class QuantizedRows:
    """x [batch, frames, C] as uint8: x ~ (quantized - zero_point) * scale, with scale and zero_point [batch, 1, 1]."""
    quantized: str
    scale: str
    zero_point: str


def quantize_rows(g: GraphBuilder, x: str, mask: str) -> QuantizedRows:
    """Per batch row, the uint8 range spans that row's real frames (mask [batch, frames, 1]) and 0, as
    DynamicQuantizeLinear does for a whole tensor. Padded frames may saturate: no real frame reads them (convs look
    only backwards from real frames, attention masks padded keys). Memoized: q, k and v share one quantization."""
    key = (x, mask)
    if key not in g.int8_cache:
        masked = g.op("Mul", x, mask)
        high = g.op("Max", g.op("ReduceMax", masked, axes=[1, 2], keepdims=1), g.const(0.0, "zero"))  # [b, 1, 1]
        low = g.op("Min", g.op("ReduceMin", masked, axes=[1, 2], keepdims=1), g.const(0.0, "zero"))
        scale = g.op("Div", g.op("Max", g.op("Sub", high, low), g.const(1e-12, "tiny")), g.const(255.0, "levels"))
        zero_point = g.op("Round", g.op("Div", g.op("Neg", low), scale))  # in [0, 255]: low <= 0 <= high
        flat = g.int64([-1], "flat")  # QuantizeLinear's per-axis parameters are 1-D [batch]
        quantized = g.op("QuantizeLinear", x, g.op("Reshape", scale, flat),
                         g.op("Cast", g.op("Reshape", zero_point, flat), to=2), axis=0)  # 2: uint8
        g.int8_cache[key] = QuantizedRows(quantized, scale, zero_point)
    return g.int8_cache[key]


def dequantize(g: GraphBuilder, products: str, rows: QuantizedRows, kernel: np.ndarray, weight_scale: np.ndarray,
               layer) -> str:
    """int32 products quantized x @ int8 kernel -> float. ONNX Runtime's MatMulInteger takes one scalar zero point
    for x, so the per-row zero point comes off here: (x_q - zp) @ W = x_q @ W - zp * column sums of W, folded with the
    bias into one [batch, 1, out] term. The weight and row scales are two Muls: ONNX Runtime 1.32 fuses
    MatMulInteger + Cast + Mul into MatMulIntegerToFloat, which computes a [batch, 1, out] scale wrongly."""
    column_sums = kernel.reshape(-1, kernel.shape[-1]).astype(np.float32).sum(axis=0) * weight_scale
    bias = _weight(layer.bias) if layer.use_bias else np.zeros_like(weight_scale)
    offset = g.op("Sub", g.const(bias, f"{layer.name}_bias"),
                  g.op("Mul", g.op("Mul", rows.zero_point, rows.scale), g.const(column_sums, "column_sums")))
    out = g.op("Mul", g.op("Cast", products, to=1), g.const(weight_scale, f"{layer.name}_kernel_scale"))
    return g.op("Add", g.op("Mul", out, rows.scale), offset)


def int8_dense(g: GraphBuilder, x: str, layer, mask: str) -> str:
    """keras.layers.Dense on [batch, frames, in] as one MatMulInteger (see quantize_rows)."""
    kernel, weight_scale = quantize_weight(_weight(layer.kernel))
    rows = quantize_rows(g, x, mask)
    products = g.op("MatMulInteger", rows.quantized, g.const(kernel, f"{layer.name}_kernel_int8", np.int8))
    return dequantize(g, products, rows, kernel, weight_scale, layer)


def frames_after_conv(g: GraphBuilder, lengths: str, kernel_size: int, stride: int) -> str:
    """layers.frames_after_conv: max(floor((length - kernel) / stride) + 1, 0) on float counts."""
    shifted = g.op("Sub", lengths, g.const(float(kernel_size), "kernel"))
    frames = g.op("Add", g.op("Floor", g.op("Div", shifted, g.const(float(stride), "stride"))), g.const(1.0, "one"))
    return g.op("Max", frames, g.const(0.0, "zero"))


def length_mask(g: GraphBuilder, lengths: str, reference: str, axis: int) -> str:
    """layers.length_mask: [batch, 1] counts -> [batch, frames] float mask, frames = reference's size on `axis`."""
    num_frames = g.op("Cast", g.op("Gather", g.op("Shape", reference), g.int64(axis, "axis"), axis=0), to=1)
    positions = g.op("Range", g.const(0.0, "zero"), num_frames, g.const(1.0, "one"))
    return g.op("Cast", g.op("Less", positions, lengths), to=1)


SUM_BLOCK_FRAMES = 256


def frame_sums(g: GraphBuilder, values_ncw: str, channels: int) -> str:
    """Sum over the frames axis of [batch, C, F] -> [batch, C, 1]: in blocks of SUM_BLOCK_FRAMES (a depthwise Conv
    with kernels of ones, stride SUM_BLOCK_FRAMES), then over the blocks.

    One float32 sum over the ~110,000 frames of the first conv layer at 35 s (a MatMul or ReduceSum, which ONNX
    Runtime accumulates in order) drifts by ~1e-5 relative, and took the logits 4.7e-4 from PyTorch's float64; in
    blocks they stay as close as PyTorch's own float32 (1.8e-5). The Conv reads the tensor in place (padding it to
    whole blocks for a reshape took 1.8x the memory at the fixed length) and keeps the batch axis, which the
    platform's ONNX importer keeps apart."""
    ones = g.const(np.ones((channels, 1, SUM_BLOCK_FRAMES), np.float32), "blocks_of_ones")  # one per channel
    block_sums = g.op("Conv", values_ncw, ones, strides=[SUM_BLOCK_FRAMES], pads=[0, SUM_BLOCK_FRAMES - 1],
                      group=channels)  # [batch, C, ceil(F / SUM_BLOCK_FRAMES)]
    return g.op("ReduceSum", block_sums, g.int64([2], "blocks_axis"), keepdims=1)


def frame_products(g: GraphBuilder, values_ncw: str, channels: int) -> str:
    """The sums over frames of every product of two channels of [batch, C, F] -> [batch, C, C], in blocks of
    SUM_BLOCK_FRAMES as frame_sums (one MatMul over all frames would leave the order of its float32 sum to the GEMM:
    blocked on ONNX Runtime's CPU, perhaps not elsewhere). Meant for few channels: it pads a copy to whole blocks."""
    frames = g.op("Gather", g.op("Shape", values_ncw), g.int64([2], "frames_axis"), axis=0)  # [1]
    block = g.int64([SUM_BLOCK_FRAMES], "block")
    padding = g.op("Mod", g.op("Sub", block, g.op("Mod", frames, block)), block)
    zero = g.int64([0], "zero")
    padded = g.op("Pad", values_ncw, g.op("Concat", zero, zero, zero, zero, zero, padding, axis=0))
    num_blocks = g.op("Div", g.op("Add", frames, padding), block)
    # the batch as -1, not ONNX's 0 ("keep this dim"): in a shape computed at run time the platform's converter
    # (onnx2kerastl) reads 0 as a size
    shape = g.op("Concat", g.int64([-1], "batch"), g.int64([channels], "channels"), num_blocks, block, axis=0)
    blocks = g.op("Transpose", g.op("Reshape", padded, shape), perm=[0, 2, 1, 3])  # [batch, blocks, C, block]
    products = g.op("MatMul", blocks, g.op("Transpose", blocks, perm=[0, 1, 3, 2]))  # [batch, blocks, C, C]
    return g.op("ReduceSum", products, g.int64([1], "blocks_axis"), keepdims=0)


def dct_basis(size: int) -> np.ndarray:
    """The orthonormal DCT-II basis of `size` points: rows are basis vectors, [size, size]."""
    positions, frequencies = np.arange(size) + 0.5, np.arange(size)[:, None]
    basis = np.cos(np.pi * frequencies * positions / size) * np.sqrt(2.0 / size)
    basis[0] /= np.sqrt(2.0)
    return basis


def first_conv_group_norm(g: GraphBuilder, audio_ncw: str, real_frames: str, conv_layer) -> str:
    """The first conv layer's conv + layers.Wav2Vec2GroupNorm: raw audio [batch, 1, samples] and the real frames
    [batch, 1] of the output -> [batch, C, frames], as the conv output times a per-utterance, per-channel scale plus a
    shift, with the statistics taken from the audio windows rather than from the output.

    The conv is linear: channel c's output at frame t is w_c . x_t (+ bias), x_t the window of `kernel` samples
    under it, so over the real frames its mean is w_c . m and its variance w_c' S w_c, with m and S the windows'
    mean and covariance. They come from the windows' DCT coefficients (a Conv with the DCT basis D as kernels:
    w_c . x_t = (D w_c) . (D x_t)), a tensor kernel / C the size of the output. In that basis the audio's
    covariance is near diagonal (neighbouring samples correlate, the DCT undoes that), so a channel that cancels most
    of its window, say a difference filter on low-frequency speech, reads its few percent of the energy from the
    coefficients that hold it, in full float32 precision; from the samples' own covariance the quadratic form lost
    up to 7e-5 of the normalised output there. Sums over frames run in blocks (frame_sums, frame_products).
    Normalising the output directly took ~9 passes over the model's largest activation (512 channels x 3,200 frames
    per second of audio): 4.7% of a base call on one thread, this 1.6%. All float32: the platform's importer
    (onnx2kerastl) cut the graph short at the first float64 op. Padded frames get the same affine map; no real frame
    of a later layer reads them (each conv's real frames end within its input's), and the model's padded outputs are
    a certain blank either way."""
    conv, norm = conv_layer.conv, conv_layer.layer_norm
    kernel = _weight(conv.kernel)  # [kernel, 1, C]: raw audio has one channel
    if kernel.shape[1] != 1:
        raise OnnxExportError(f"the group-normed conv layer reads raw audio (1 channel), not {kernel.shape[1]}")
    size = kernel.shape[0]
    basis = dct_basis(size)
    coefficients = g.op("Conv", audio_ncw, g.const(basis[:, None, :], "dct_kernels"),
                        strides=[conv_layer.stride])  # [batch, kernel, frames]: D x_t
    mask = g.op("Unsqueeze", length_mask(g, real_frames, coefficients, 2), g.int64([1], "axes"))  # [batch, 1, F]
    count = g.op("Max", g.op("ReduceSum", mask, g.int64([2], "frames_axes"), keepdims=1),
                 g.const(1.0, "one"))  # [batch, 1, 1]: the real frames the input holds
    masked = g.op("Mul", coefficients, mask)
    mean = g.op("Div", frame_sums(g, masked, size), count)  # [batch, kernel, 1]
    centered = g.op("Mul", g.op("Sub", masked, mean), mask)
    covariance = g.op("Div", frame_products(g, centered, size), count)  # [batch, kernel, kernel]
    dct_weights = g.const(basis @ kernel[:, 0, :].astype(np.float64), "dct_weights")  # [kernel, C]: D w_c
    variance = g.op("ReduceSum", g.op("Mul", g.op("MatMul", covariance, dct_weights), dct_weights),
                    g.int64([1], "axes"), keepdims=0)  # [batch, C]
    variance = g.op("Max", variance, g.const(0.0, "zero"))  # a quadratic form in float32 may round below zero
    channel_mean = g.op("MatMul", g.op("Squeeze", mean, g.int64([2], "axes")), dct_weights)  # [batch, C]
    if conv.use_bias:
        channel_mean = g.op("Add", channel_mean, g.const(_weight(conv.bias), "conv_bias"))
    inverse_std = g.op("Div", g.const(1.0, "one"), g.op("Sqrt", g.op("Add", variance, g.const(norm.epsilon, "eps"))))
    scale = g.op("Mul", g.const(_weight(norm.gamma), "gamma"), inverse_std)  # [batch, C]
    shift = g.op("Sub", g.const(_weight(norm.beta), "beta"), g.op("Mul", channel_mean, scale))
    scale, shift = (g.op("Unsqueeze", value, g.int64([2], "axes")) for value in (scale, shift))
    return g.op("Add", g.op("Mul", conv1d(g, audio_ncw, conv, conv_layer.stride), scale), shift)


def conv1d(g: GraphBuilder, x_ncw: str, conv, stride: int = 1, groups: int = 1, pads=(0, 0)) -> str:
    """keras.layers.Conv1D (kernel [k, in / groups, out]) as ONNX Conv on channels-first input."""
    inputs = [x_ncw, g.const(_weight(conv.kernel).transpose(2, 1, 0), f"{conv.name}_kernel")]
    if conv.use_bias:
        inputs.append(g.const(_weight(conv.bias), f"{conv.name}_bias"))
    return g.op("Conv", *inputs, strides=[stride], group=groups, pads=list(pads))


def int8_conv1d(g: GraphBuilder, x_nwc: str, conv, stride: int, mask: str) -> str:
    """keras.layers.Conv1D (no padding) on channels-last [batch, samples, C], int8 (see quantize_rows; mask: the
    input's real samples [batch, samples, 1]), as MatMulIntegers.

    Why not ConvInteger: ONNX Runtime runs it far slower than its int8 GEMM (which uses AMX/VNNI where the CPU has
    them). Reshaping time into blocks of `stride` samples, [batch, blocks, stride * C], turns the strided conv into
    ceil(kernel / stride) matmuls over shifted block rows: output t = sum_j blocks[t + j] @ W_j, where W_j holds taps
    j * stride ... j * stride + stride - 1 (taps past the kernel are zero rows)."""
    kernel = _weight(conv.kernel)  # [kernel, in, out]
    kernel_size, channels, out_channels = kernel.shape
    num_blocks = -(-kernel_size // stride)
    taps = np.zeros((num_blocks * stride, channels, out_channels), np.float32)
    taps[:kernel_size] = kernel
    quantized, weight_scale = quantize_weight(taps)
    rows = quantize_rows(g, x_nwc, mask)
    # pad the samples to whole blocks; padded samples only meet the zero taps
    samples = g.op("Gather", g.op("Shape", x_nwc), g.int64([1], "axis"), axis=0)  # [1]
    stride_const = g.int64([stride], "stride")
    padding = g.op("Mod", g.op("Sub", stride_const, g.op("Mod", samples, stride_const)), stride_const)
    zero = g.int64([0], "zero")
    pads = g.op("Concat", zero, zero, zero, zero, padding, zero, axis=0)
    blocks = g.op("Reshape", g.op("Pad", rows.quantized, pads), g.int64([0, -1, stride * channels], "blocks_shape"))
    frames = g.op("Max", g.op("Add", g.op("Div", g.op("Sub", samples, g.int64([kernel_size], "kernel")),
                                          stride_const), g.int64([1], "one")), zero)
    accumulated = None
    for j in range(num_blocks):
        start = g.int64([j], "start")
        block_rows = g.op("Slice", blocks, start, g.op("Add", frames, start), g.int64([1], "axis"))
        weight = g.const(quantized[j * stride:(j + 1) * stride].reshape(-1, out_channels), f"{conv.name}_kernel_int8",
                         np.int8)
        product = g.op("MatMulInteger", block_rows, weight)
        accumulated = product if accumulated is None else g.op("Add", accumulated, product)
    return dequantize(g, accumulated, rows, quantized, weight_scale, conv)


def feature_encoder(g: GraphBuilder, audio: str, audio_length: str, layer, int8: bool = False) -> tuple[str, str]:
    """layers.Wav2Vec2FeatureEncoder: (features [batch, frames, C], real frames [batch, 1]). int8: the conv layers
    after the first run channels-last as int8_conv1d (the first one, on raw audio, stays float)."""
    hidden = g.op("Unsqueeze", audio, g.int64([1], "axes"))  # [batch, 1, samples]: ONNX convs are channels-first
    lengths = g.op("Round", audio_length)
    channels_last = False
    for index, conv_layer in enumerate(layer.conv_layers):
        input_lengths = lengths
        lengths = frames_after_conv(g, lengths, conv_layer.kernel_size, conv_layer.stride)
        if conv_layer.norm == "group":  # the first layer only (layers.Wav2Vec2FeatureEncoder)
            hidden = first_conv_group_norm(g, hidden, lengths, conv_layer)
        elif int8 and index > 0:
            if not channels_last:
                hidden, channels_last = g.op("Transpose", hidden, perm=[0, 2, 1]), True
            mask = g.op("Unsqueeze", length_mask(g, input_lengths, hidden, 1), g.int64([2], "axes"))
            hidden = int8_conv1d(g, hidden, conv_layer.conv, conv_layer.stride, mask)
        else:
            hidden = conv1d(g, hidden, conv_layer.conv, conv_layer.stride)
        if conv_layer.norm == "layer":
            norm = conv_layer.layer_norm
            hidden = layer_norm(g, hidden, norm.gamma, norm.beta, norm.epsilon, axis=-1 if channels_last else -2)
        hidden = activation(g, hidden, conv_layer.activation_name)
    return (hidden if channels_last else g.op("Transpose", hidden, perm=[0, 2, 1])), lengths


def positional_conv(g: GraphBuilder, hidden: str, layer) -> str:
    """layers.Wav2Vec2PositionalConvEmbedding: one grouped Conv with the layer's asymmetric 'same' padding."""
    x_ncw = g.op("Transpose", hidden, perm=[0, 2, 1])
    out = conv1d(g, x_ncw, layer.conv, groups=layer.num_conv_pos_embedding_groups, pads=layer.padding)
    return g.op("Transpose", activation(g, out, layer.activation_name), perm=[0, 2, 1])


def attention(g: GraphBuilder, hidden: str, attention_bias: str, layer) -> str:
    """layers.Wav2Vec2Attention: scaled dot-product attention over [batch, heads, frames, head_dim]."""
    heads_shape = g.int64([0, 0, layer.num_heads, layer.head_dim], "heads_shape")  # 0 = keep batch and frames

    def split_heads(states: str, perm: list[int]) -> str:
        return g.op("Transpose", g.op("Reshape", states, heads_shape), perm=perm)

    query = split_heads(g.op("Mul", dense(g, hidden, layer.q_proj), g.const(layer.scaling, "scaling")), [0, 2, 1, 3])
    key_t = split_heads(dense(g, hidden, layer.k_proj), [0, 2, 3, 1])  # [batch, heads, head_dim, frames]
    value = split_heads(dense(g, hidden, layer.v_proj), [0, 2, 1, 3])
    scores = g.op("Add", g.op("MatMul", query, key_t), attention_bias)
    context = g.op("MatMul", g.op("Softmax", scores, axis=-1), value)
    context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]),
                   g.int64([0, 0, layer.hidden_size], "hidden_shape"))
    return dense(g, context, layer.out_proj)


def feed_forward(g: GraphBuilder, hidden: str, layer) -> str:
    """layers.Wav2Vec2FeedForward: Dense -> activation -> Dense."""
    return dense(g, activation(g, dense(g, hidden, layer.intermediate_dense), layer.activation_name),
                 layer.output_dense)


def _keras_layer_norm(g: GraphBuilder, x: str, norm) -> str:
    return layer_norm(g, x, norm.gamma, norm.beta, norm.epsilon)


def encoder_layer(g: GraphBuilder, hidden: str, attention_bias: str, layer) -> str:
    """layers.Wav2Vec2EncoderLayer: post-LN (base) or pre-LN (stable_layer_norm)."""
    if layer.stable_layer_norm:
        hidden = g.op("Add", hidden, attention(g, _keras_layer_norm(g, hidden, layer.layer_norm), attention_bias,
                                               layer.attention))
        return g.op("Add", hidden, feed_forward(g, _keras_layer_norm(g, hidden, layer.final_layer_norm),
                                                layer.feed_forward))
    hidden = _keras_layer_norm(g, g.op("Add", hidden, attention(g, hidden, attention_bias, layer.attention)),
                               layer.layer_norm)
    hidden = g.op("Add", hidden, feed_forward(g, hidden, layer.feed_forward))
    return _keras_layer_norm(g, hidden, layer.final_layer_norm)


def encoder(g: GraphBuilder, hidden: str, frame_mask: str, layer, output: str | None = None) -> str:
    """layers.Wav2Vec2Encoder: the last hidden state, zero on padded frames."""
    mask_3d = g.op("Unsqueeze", frame_mask, g.int64([2], "axes"))  # [batch, frames, 1]
    hidden = g.op("Mul", hidden, mask_3d)  # padded frames must not enter the positional conv
    bias = g.op("Mul", g.op("Sub", g.const(1.0, "one"), frame_mask), g.const(LARGE_NEGATIVE, "large_negative"))
    bias = g.op("Unsqueeze", bias, g.int64([1, 2], "axes"))  # [batch, 1, 1, frames]: mask padded keys
    hidden = g.op("Add", hidden, positional_conv(g, hidden, layer.pos_conv_embed))
    stable = layer.config.do_stable_layer_norm
    if not stable:
        hidden = _keras_layer_norm(g, hidden, layer.layer_norm)
    for block in layer.layers:
        hidden = encoder_layer(g, hidden, bias, block)
    if stable:
        hidden = _keras_layer_norm(g, hidden, layer.layer_norm)
    return g.op("Mul", hidden, mask_3d, output=output)


def blank_padded_frames(g: GraphBuilder, logits: str, frame_mask: str, layer, vocab_size: int,
                        output: str | None = None) -> str:
    """layers.Wav2Vec2BlankPaddedFrames: logits on real frames, [blank_logit at blank_id, 0, ...] on padded ones."""
    blank = np.zeros(vocab_size, np.float32)
    blank[layer.blank_id] = layer.blank_logit
    real = g.op("Cast", g.op("Unsqueeze", frame_mask, g.int64([2], "axes")), to=9)  # bool [batch, frames, 1]
    return g.op("Where", real, logits, g.const(blank, "blank_logits"), output=output)


# ---------------------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------------------

def to_onnx(model, max_samples: int | None = None, int8: bool = False, hidden_state_output: bool = False,
            check: bool = True, graph_builder: GraphBuilder | None = None):
    """The onnx.ModelProto of a Keras Wav2Vec2ForCTC (build_wav2vec2_for_ctc, or an .h5 export, or an .h5's layers
    read without Keras: h5_layers.read_h5_layers). Batch is dynamic; samples are dynamic when max_samples is None,
    else fixed (the frames follow). int8: see save_onnx. hidden_state_output: last_hidden_state is a second output
    (for a local session, not for a file the platform reads). check: run onnx's full checker (ONNX Runtime
    validates a graph it loads anyway); it serialises the model, so a model over protobuf's 2 GiB is not checked.
    graph_builder: one with weights_outside keeps the large weights out of the proto (in its outside_weights)."""
    onnx = _onnx()
    config = as_config(model.get_layer(ENCODER_LAYER_NAME).config)  # librispeech.wav2vec2.model.model_config
    g = graph_builder or GraphBuilder()
    if check and g.weights_outside:
        raise ValueError("a graph whose weights are kept outside it cannot be checked: pass check=False")
    features, lengths = feature_encoder(g, AUDIO, AUDIO_LENGTH, model.get_layer("feature_extractor"), int8)
    frame_mask = length_mask(g, lengths, features, 1)  # layers.Wav2Vec2FrameMask
    if int8:
        g.int8_frame_mask = g.op("Unsqueeze", frame_mask, g.int64([2], "axes"))
    projection = model.get_layer("feature_projection")
    hidden = dense(g, _keras_layer_norm(g, features, projection.layer_norm), projection.projection)
    hidden = encoder(g, hidden, frame_mask, model.get_layer(ENCODER_LAYER_NAME), output=HIDDEN_STATE)
    logits = dense(g, hidden, model.get_layer("lm_head"))
    blank_padded_frames(g, logits, frame_mask, model.get_layer("logits"), config.vocab_size, output=LOGITS)

    frames = "frames" if max_samples is None else config.num_frames(max_samples)
    float_type = onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        g.nodes, model.name,
        [onnx.helper.make_tensor_value_info(AUDIO, float_type, ["batch", max_samples or "samples"]),
         onnx.helper.make_tensor_value_info(AUDIO_LENGTH, float_type, ["batch", 1])],
        [onnx.helper.make_tensor_value_info(LOGITS, float_type, ["batch", frames, config.vocab_size])]
        + ([onnx.helper.make_tensor_value_info(HIDDEN_STATE, float_type, ["batch", frames, config.hidden_size])]
           if hidden_state_output else []),
        initializer=g.initializers)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name=PRODUCER, ir_version=IR_VERSION)
    onnx.helper.set_model_props(proto, {CONFIG_KEY: json.dumps(config.to_dict())})
    if check and not exceeds_protobuf_limit(proto):  # the checker serialises the model: under 2 GiB only
        onnx.checker.check_model(proto, full_check=True)
    return proto


def weight_bytes(proto) -> int:
    return sum(len(tensor.raw_data) for tensor in proto.graph.initializer)


def exceeds_protobuf_limit(proto) -> bool:
    """Whether `proto` is too large to serialise as one message (PROTOBUF_LIMIT_BYTES), from its weights' bytes."""
    return weight_bytes(proto) + GRAPH_ALLOWANCE_BYTES > PROTOBUF_LIMIT_BYTES


def in_memory_initializer(name: str, value: np.ndarray):
    """An initializer without its data, marked external: ONNX Runtime is handed `value` itself
    (add_external_initializers replaces the placeholder location before it reads the graph)."""
    onnx = _onnx()
    tensor = onnx.TensorProto(name=name, dims=value.shape, data_type=onnx.helper.np_dtype_to_tensor_dtype(value.dtype),
                              data_location=onnx.TensorProto.EXTERNAL)
    tensor.external_data.add(key="location", value="in-memory")
    return tensor


def without_weights(proto) -> tuple[bytes, list[str], list[np.ndarray]]:
    """`proto` serialised without its weights, which ONNX Runtime takes from memory instead (add_external_initializers,
    each initializer marked external): serialising the base model's 360 MiB of weights took 2.3 s of evaluate's
    start-up, the small graph takes ~1 ms, and a model over protobuf's 2 GiB needs no file. Empties `proto`'s
    weights."""
    onnx = _onnx()
    names, weights = [], []
    for index, tensor in enumerate(proto.graph.initializer):
        if len(tensor.raw_data) < IN_MEMORY_WEIGHT_BYTES:
            continue
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        weights.append(np.frombuffer(tensor.raw_data, dtype=dtype).reshape(tuple(tensor.dims)))
        names.append(tensor.name)
        proto.graph.initializer[index].CopyFrom(in_memory_initializer(tensor.name, weights[-1]))
    return proto.SerializeToString(), names, weights


def save_onnx(model, path: str | Path, max_samples: int | None = None, int8: bool = False) -> Path:
    """Write `model` as ONNX at `path` (one file, what `leap push -m` uploads; the base model is about 360 MiB). A
    model over protobuf's 2 GiB cannot be one file: OnnxExportError, naming the .h5 and --int8 instead.

    int8: a speed option for CPU runs, not float-exact (logits move by ~1e-2..1e-1; the demo model's corpus WER by
    a few tenths of a point). The feature encoder's convs after the first (int8_conv1d) and every Dense (projections,
    feed-forward, CTC head: int8_dense) run as int8 MatMulIntegers; the first conv, norms, softmax, attention scores
    and the positional conv stay float32. Standard opset-16 ops only (MatMulInteger, QuantizeLinear), so the
    importer limits hold, and padding-invariance holds as in the float model (see quantize_rows)."""
    onnx = _onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    proto = to_onnx(model, max_samples, int8)
    if exceeds_protobuf_limit(proto):
        raise OnnxExportError(f"{path.name}: the model's weights take {weight_bytes(proto) / 2**30:.2f} GiB, and one "
                              f".onnx file (what `leap push -m` uploads) holds less than 2 GiB; export it as .h5"
                              + ("" if int8 else ", or try --int8 (int8 weights, about a quarter of the size)"))
    onnx.save_model(proto, str(path))
    return path


def limit_violations(proto) -> list[str]:
    """What in `proto` Tensorleap's importer would not read: opset > 16, IR version > 8, ops outside the default
    domain. Empty when the model is within the limits."""
    problems = []
    if proto.ir_version > IR_VERSION:
        problems.append(f"IR version {proto.ir_version} > {IR_VERSION}")
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > OPSET:
            problems.append(f"opset {opset.version} > {OPSET}")
        elif opset.domain not in ("", "ai.onnx"):
            problems.append(f"imports the non-standard domain {opset.domain!r}")
    custom = sorted({f"{node.domain}:{node.op_type}" for node in proto.graph.node
                     if node.domain not in ("", "ai.onnx")})
    if custom:
        problems.append(f"non-standard ops {', '.join(custom)}")
    return problems


# ---------------------------------------------------------------------------------------------------------------------
# Running an export with its hidden state (the local report's latent space)
# ---------------------------------------------------------------------------------------------------------------------

def with_hidden_state_output(proto):
    """A copy of an export whose second output is the inner `last_hidden_state` tensor."""
    onnx = _onnx()
    if not any(HIDDEN_STATE in node.output for node in proto.graph.node):
        raise OnnxExportError(f"no {HIDDEN_STATE!r} tensor inside: not an export of export-model")
    copy = type(proto)()
    copy.CopyFrom(proto)  # not through SerializeToString, which stops at 2 GiB
    proto = copy
    config = exported_config(proto)
    proto.graph.output.append(onnx.helper.make_tensor_value_info(
        HIDDEN_STATE, onnx.TensorProto.FLOAT, ["batch", "frames", config.hidden_size]))
    return proto


def fixed_input_samples(proto) -> int | None:
    """The samples of an export's audio input (export-model --max-seconds), or None where any length runs."""
    dims = proto.graph.input[0].type.tensor_type.shape.dim if proto.graph.input else []
    return dims[1].dim_value if len(dims) > 1 and dims[1].HasField("dim_value") else None


def exported_config(proto):
    """The Wav2Vec2Config recorded in an export's metadata."""
    from librispeech.wav2vec2.configuration import Wav2Vec2Config

    props = {prop.key: prop.value for prop in proto.metadata_props}
    if CONFIG_KEY not in props:
        raise OnnxExportError(f"no {CONFIG_KEY!r} metadata: not an export of export-model")
    return Wav2Vec2Config.from_dict(json.loads(props[CONFIG_KEY]))


class SessionsError(RuntimeError):
    """The model's first session was made but a further one could not be (memory): not the model's fault."""


class OnnxWithHiddenState:
    """An ONNX export run by ONNX Runtime, returning [logits, last_hidden_state] like model.with_hidden_states:
    `predict_on_batch([audio, audio_length])`, `wav2vec2_config` for frame counts, and `precision` ("int8" for an
    export-model --int8 file, else "float32").

    `sessions` > 1 makes that many sessions of the same graph, each with `threads` // `sessions` intra-op threads
    (`threads`: the cores this process may use), so that as many threads can call predict_on_batch at once, each
    on a session of its own (see model_pass.default_onnx_sessions). Every session holds its own copy of the weights.
    """

    def __init__(self, path: str | Path, sessions: int | Callable[[int | None], int] = 1, threads: int | None = None):
        """`sessions` may be a function of the export's fixed input length (None: any length), read from the file
        before the sessions are made."""
        onnx = _onnx()
        try:
            proto = onnx.load(str(path))
        except Exception as error:  # a truncated or foreign file
            raise OnnxExportError(f"cannot read {path} as ONNX ({type(error).__name__})") from None
        if callable(sessions):
            sessions = sessions(fixed_input_samples(proto))
        self._start(with_hidden_state_output(proto), sessions=sessions, threads=threads)

    @classmethod
    def from_keras(cls, model, sessions: int = 1, threads: int | None = None) -> "OnnxWithHiddenState":
        """A Keras Wav2Vec2ForCTC (or an .h5's layers: h5_layers) converted in memory (float32, dynamic batch and
        time axes), whatever its size: nothing is written (see without_weights)."""
        converted = cls.__new__(cls)
        graph_builder = GraphBuilder(weights_outside=True)
        proto = to_onnx(model, hidden_state_output=True, check=False, graph_builder=graph_builder)
        weights = graph_builder.outside_weights
        converted._start(proto, (proto.SerializeToString(), list(weights), list(weights.values())), sessions, threads)
        return converted

    def _start(self, proto, without_its_weights: tuple[bytes, list[str], list[np.ndarray]] | None = None,
               sessions: int = 1, threads: int | None = None) -> None:
        """The sessions of `proto`; `without_its_weights`: the graph already serialised without its large weights, and
        those weights (else without_weights(proto) makes them). ONNX Runtime copies the weights it is handed (checked
        with 1.32: changing or freeing them after the session is made changes nothing), so nothing keeps them."""
        import onnxruntime

        if sessions < 1:
            raise ValueError(f"sessions must be at least 1, not {sessions}")
        self.wav2vec2_config = exported_config(proto)
        self.precision = "int8" if any(node.op_type == "MatMulInteger" for node in proto.graph.node) else "float32"
        graph, names, weights = without_its_weights or without_weights(proto)

        def new_session():
            options = onnxruntime.SessionOptions()
            if sessions > 1:  # one session keeps ONNX Runtime's own choice (its physical cores)
                options.intra_op_num_threads = max(1, (threads or os.cpu_count() or 1) // sessions)
            options.add_external_initializers(names, [onnxruntime.OrtValue.ortvalue_from_numpy(w) for w in weights])
            return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

        # Made at once: ONNX Runtime releases the GIL while it builds a session (~0.5 s for the base model), so on
        # the 2-core machine two took 0.70 s at once and 1.26 s one after the other; one per core of 16 would
        # otherwise add seconds to the start-up. Those that fail at once (the memory of all being built) are made
        # again one after the other, so that errors read as before: the first session's are the model's.
        with ThreadPoolExecutor(max(1, min(sessions, threads or os.cpu_count() or 1))) as pool:
            futures = [pool.submit(new_session) for _ in range(sessions)]
        self.sessions = [future.result() for future in futures if future.exception() is None]
        while len(self.sessions) < sessions:
            try:
                self.sessions.append(new_session())
            except Exception as error:  # noqa: BLE001  the first session's errors are the model's, later ones not
                if not self.sessions:
                    raise
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise SessionsError(f"ONNX Runtime made {len(self.sessions)} of the {sessions} sessions asked for, "
                                    f"then failed ({first_line}); run fewer with --sessions") from None
        self.session = self.sessions[0]
        self._free_sessions = queue.SimpleQueue()
        for session in self.sessions:
            self._free_sessions.put(session)

    def predict_on_batch(self, inputs: list[Any]) -> list[np.ndarray]:
        audio, audio_length = (np.asarray(x, np.float32) for x in inputs)
        session = self._free_sessions.get()  # blocks while every session runs a call of another thread
        try:
            return session.run([LOGITS, HIDDEN_STATE], {AUDIO: audio, AUDIO_LENGTH: audio_length})
        finally:
            self._free_sessions.put(session)
