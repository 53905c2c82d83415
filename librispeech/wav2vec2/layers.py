"""The Keras layers of Wav2Vec2ForCTC, each the counterpart of a module of Hugging Face's modeling_wav2vec2.py.

Inputs are fixed-length and zero-padded, `audio` [batch, max_samples] plus `audio_length` [batch, 1] (the number of
real samples). The layers compute on the real part exactly what the unpadded model computes:

* the first conv layer's GroupNorm (one group per channel, statistics over time) uses real frames only;
* frame validity follows each conv layer (configuration.conv_output_length), so a frame is real iff its whole
  receptive field lies inside the real samples (those frames never see padding in any conv layer);
* padded frames are zeroed before the positional conv (the unpadded model's conv sees zero "same" padding there);
* padded keys are masked out of self-attention (every other transformer op works frame by frame);
* the last hidden state is zero on padded frames, and their logits are the constant vector
  [BLANK_LOGIT, 0, ..., 0] at the pad / CTC-blank id, so CTC loss and greedy decoding need no lengths.

Dropouts follow the config and are active only in training; SpecAugment masking and LayerDrop (training-only
regularisers) are not implemented.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
from keras import ops

from librispeech.wav2vec2.configuration import (BLANK_LOGIT, LARGE_NEGATIVE, SUPPORTED_ACTIVATIONS, TORCH_NORM_EPS,
                                               Wav2Vec2Config, as_config, conv_output_length, positional_conv_padding)

PACKAGE = "librispeech"  # the registered names in saved models ("librispeech>Wav2Vec2Encoder"): keep it stable
# oneDNN's bfloat16 convolution in TensorFlow 2.21 on a CPU with AMX-BF16 returns wrong values, not merely coarse ones
# (mean error ~100%), for an even number of input channels below 16 when channels x kernel width is a multiple of 32
# (e.g. 8 channels, width 16; measured with plain keras.ops.conv, tests/test_model.py). Positional-conv groups
# narrower than this compute in float32 under a bfloat16 policy; real checkpoints have 24 to 80 channels per group.
MIN_BFLOAT16_CONV_CHANNELS = 16

register = keras.saving.register_keras_serializable(package=PACKAGE)


# ---------------------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------------------

def gelu_exact(x):
    """GELU(x) = x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2))), the exact form PyTorch's nn.GELU() computes."""
    if keras.backend.backend() == "tensorflow":  # tf.nn.gelu goes through erfc, which is slower on CPU
        return (x * 0.5) * (1.0 + ops.erf(x * 0.7071067811865476))
    return ops.gelu(x, approximate=False)


ACTIVATIONS = {  # HF ACT2FN names -> keras.ops functions; the names are configuration.SUPPORTED_ACTIVATIONS
    "gelu": gelu_exact,
    "gelu_new": lambda x: ops.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: ops.gelu(x, approximate=True),
    "gelu_fast": lambda x: ops.gelu(x, approximate=True),  # HF's FastGELU: the same tanh formula
    "relu": ops.relu,
    "silu": ops.silu,
    "swish": ops.silu,
    "tanh": ops.tanh,
}


def get_activation(name: str):
    """The keras.ops function of an HF activation name. "gelu" is the exact (erf) GELU, as in PyTorch."""
    if name not in SUPPORTED_ACTIVATIONS:
        raise ValueError(f"unsupported activation {name!r}; supported: {sorted(SUPPORTED_ACTIVATIONS)}")
    return ACTIVATIONS[name]


def frames_after_conv(lengths, kernel_size: int, stride: int):
    """Real frames after a 'valid' conv, as a float tensor clamped at 0 (the rule is conv_output_length)."""
    return ops.maximum(conv_output_length(lengths, kernel_size, stride), 0.0)


def length_mask(lengths, num_frames, dtype="float32"):
    """[batch, 1] frame counts -> [batch, num_frames] mask, 1 on real frames and 0 on padding."""
    positions = ops.arange(num_frames, dtype="float32")[None, :]
    return ops.cast(positions < ops.cast(lengths, "float32"), dtype)


class FloatLengthInputs:
    """For layers that take sample or frame counts: their inputs stay float32 under a mixed-precision policy, since
    bfloat16 counts exactly only up to 256. Sublayers still compute in the policy's dtype."""

    @property
    def input_dtype(self):
        return "float32"


# ---------------------------------------------------------------------------------------------------------------------
# Conv feature encoder
# ---------------------------------------------------------------------------------------------------------------------

@register
class Wav2Vec2GroupNorm(FloatLengthInputs, keras.layers.Layer):
    """GroupNorm with one group per channel (each channel normalised over time), statistics over real frames only.

    Call: (hidden_states [batch, frames, channels], lengths [batch, 1] real frames) -> same shape as hidden_states.
    """

    def __init__(self, epsilon: float = TORCH_NORM_EPS, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, hidden_states_shape, lengths_shape=None):
        channels = hidden_states_shape[-1]
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones", autocast=False)
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros", autocast=False)

    def call(self, hidden_states, lengths):  # float32 inputs and weights: statistics in float32 under any policy
        num_frames = ops.shape(hidden_states)[1]
        mask = length_mask(lengths, num_frames, "float32")[:, None, :]  # [batch, 1, frames]
        count = ops.maximum(ops.sum(mask, axis=-1, keepdims=True), 1.0)
        # masked sums over time as [1, frames] @ [frames, channels] products: one read of the (large) input each
        mean = ops.matmul(mask, hidden_states) / count  # [batch, 1, channels]
        centered = hidden_states - mean
        variance = ops.matmul(mask, ops.square(centered)) / count
        scale = self.gamma * ops.rsqrt(variance + self.epsilon)
        return ops.cast(centered * scale + self.beta, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@register
class Wav2Vec2ConvLayer(FloatLengthInputs, keras.layers.Layer):
    """One feature-encoder block: Conv1D (valid, strided), optional norm, activation.

    norm = "group" (Wav2Vec2GroupNormConvLayer: masked per-channel GroupNorm), "layer" (Wav2Vec2LayerNormConvLayer:
    LayerNorm over channels), or None (Wav2Vec2NoLayerNormConvLayer). Like PyTorch, the norms use eps 1e-5.
    Call: (hidden_states [batch, samples_or_frames, in_channels], lengths [batch, 1] valid output frames).
    """

    def __init__(self, filters: int, kernel_size: int, stride: int, use_bias: bool = False, norm: str | None = None,
                 activation: str = "gelu", epsilon: float = TORCH_NORM_EPS, **kwargs):
        super().__init__(**kwargs)
        if norm not in (None, "group", "layer"):
            raise ValueError(f"norm must be None, 'group' or 'layer', got {norm!r}")
        self.filters, self.kernel_size, self.stride = int(filters), int(kernel_size), int(stride)
        self.use_bias, self.norm, self.activation_name, self.epsilon = bool(use_bias), norm, activation, float(epsilon)
        self.activation = get_activation(activation)
        self.conv = keras.layers.Conv1D(self.filters, self.kernel_size, strides=self.stride, padding="valid",
                                        use_bias=self.use_bias, name="conv")
        if norm == "group":
            self.layer_norm = Wav2Vec2GroupNorm(epsilon=self.epsilon, name="layer_norm")
        elif norm == "layer":
            self.layer_norm = keras.layers.LayerNormalization(epsilon=self.epsilon, name="layer_norm")
        else:
            self.layer_norm = None

    def build(self, hidden_states_shape, lengths_shape=None):
        self.conv.build(hidden_states_shape)
        output_shape = self.conv.compute_output_shape(hidden_states_shape)
        if self.norm == "group":
            self.layer_norm.build(output_shape, lengths_shape)
        elif self.norm == "layer":
            self.layer_norm.build(output_shape)

    def call(self, hidden_states, lengths=None):
        hidden_states = self.conv(hidden_states)
        if self.norm == "group":
            hidden_states = self.layer_norm(hidden_states, lengths)
        elif self.norm == "layer":
            hidden_states = self.layer_norm(hidden_states)
        return self.activation(hidden_states)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "stride": self.stride, "use_bias": self.use_bias, "norm": self.norm,
                "activation": self.activation_name, "epsilon": self.epsilon}


@register
class Wav2Vec2FeatureEncoder(FloatLengthInputs, keras.layers.Layer):
    """Raw audio -> conv features: Call (audio [batch, samples], audio_length [batch, 1]) -> [batch, frames, C]."""

    def __init__(self, config: Mapping[str, Any] | Wav2Vec2Config, **kwargs):
        super().__init__(**kwargs)
        self.config = as_config(config)
        c = self.config
        self.conv_layers = [
            Wav2Vec2ConvLayer(c.conv_dim[i], c.conv_kernel[i], c.conv_stride[i], use_bias=c.conv_bias,
                              norm=c.conv_norms[i], activation=c.feat_extract_activation, name=f"conv_layers_{i}")
            for i in range(c.num_feat_extract_layers)]

    def build(self, audio_shape, audio_length_shape=None):
        shape = (audio_shape[0], audio_shape[1], 1)
        for layer in self.conv_layers:
            layer.build(shape, (audio_shape[0], 1))
            shape = layer.conv.compute_output_shape(shape)

    def call(self, audio, audio_length):
        hidden_states = ops.expand_dims(audio, -1)
        lengths = ops.round(ops.cast(audio_length, "float32"))
        for layer in self.conv_layers:
            lengths = frames_after_conv(lengths, layer.kernel_size, layer.stride)
            hidden_states = layer(hidden_states, lengths)
        return hidden_states

    def compute_output_shape(self, audio_shape, audio_length_shape=None):
        shape = (audio_shape[0], audio_shape[1], 1)
        for layer in self.conv_layers:
            shape = layer.conv.compute_output_shape(shape)
        return shape

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}


@register
class Wav2Vec2FrameMask(FloatLengthInputs, keras.layers.Layer):
    """Which output frames are real: Call (audio_length [batch, 1], features [batch, frames, C]) -> [batch, frames]
    float (1 real, 0 padded), the length propagated through every conv layer of the feature encoder."""

    def __init__(self, conv_kernel: Sequence[int], conv_stride: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.conv_kernel = [int(k) for k in conv_kernel]
        self.conv_stride = [int(s) for s in conv_stride]

    def call(self, audio_length, features):
        lengths = ops.round(ops.cast(audio_length, "float32"))
        for kernel, stride in zip(self.conv_kernel, self.conv_stride):
            lengths = frames_after_conv(lengths, kernel, stride)
        return length_mask(lengths, ops.shape(features)[1], "float32")

    def compute_output_shape(self, audio_length_shape, features_shape):
        return (features_shape[0], features_shape[1])

    def get_config(self):
        return {**super().get_config(), "conv_kernel": self.conv_kernel, "conv_stride": self.conv_stride}


@register
class Wav2Vec2FeatureProjection(keras.layers.Layer):
    """LayerNorm over the conv channels, then a Dense projection to hidden_size (and dropout)."""

    def __init__(self, hidden_size: int, layer_norm_eps: float = 1e-5, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.layer_norm_eps, self.dropout_rate = int(hidden_size), float(layer_norm_eps), dropout
        self.layer_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_eps, name="layer_norm")
        self.projection = keras.layers.Dense(self.hidden_size, name="projection")
        self.dropout = keras.layers.Dropout(dropout)

    def build(self, features_shape):
        self.layer_norm.build(features_shape)
        self.projection.build(features_shape)

    def call(self, features, training=None):
        return self.dropout(self.projection(self.layer_norm(features)), training=training)

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size, "layer_norm_eps": self.layer_norm_eps,
                "dropout": self.dropout_rate}


# ---------------------------------------------------------------------------------------------------------------------
# Transformer encoder
# ---------------------------------------------------------------------------------------------------------------------

@register
class Wav2Vec2PositionalConvEmbedding(keras.layers.Layer):
    """Relative positions from a wide grouped convolution over time: Conv1D over the frames padded by
    positional_conv_padding (kernel//2 zeros before, kernel//2 - 1 after an even kernel: HF's pad kernel//2 each side
    and drop the last frame), activation. The checkpoint's weight norm is folded into `conv`."""

    def __init__(self, hidden_size: int, num_conv_pos_embeddings: int = 128, num_conv_pos_embedding_groups: int = 16,
                 activation: str = "gelu", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = int(hidden_size)
        self.num_conv_pos_embeddings = int(num_conv_pos_embeddings)
        self.num_conv_pos_embedding_groups = int(num_conv_pos_embedding_groups)
        self.activation_name = activation
        self.activation = get_activation(activation)
        self.conv = keras.layers.Conv1D(self.hidden_size, self.num_conv_pos_embeddings, padding="valid",
                                        groups=self.num_conv_pos_embedding_groups, name="conv")
        self.padding = positional_conv_padding(self.num_conv_pos_embeddings)

    def build(self, hidden_states_shape):
        self.conv.build((hidden_states_shape[0], None, hidden_states_shape[-1]))

    def call(self, hidden_states):
        hidden_states = ops.pad(hidden_states, ((0, 0), self.padding, (0, 0)))
        groups = self.num_conv_pos_embedding_groups
        if keras.backend.backend() == "tensorflow" and groups > 1:
            # TF has no grouped convolution kernel on CPU (Keras runs it as an XLA cluster); one conv per group
            # over its slice of channels is the same computation and about twice as fast.
            dtype = hidden_states.dtype
            if dtype == "bfloat16" and self.hidden_size // groups < MIN_BFLOAT16_CONV_CHANNELS:
                dtype = "float32"  # oneDNN's bfloat16 conv returns wrong values here: see the constant
            inputs = ops.split(ops.cast(hidden_states, dtype), groups, axis=-1)
            kernels = ops.split(ops.cast(self.conv.kernel, dtype), groups, axis=-1)
            hidden_states = ops.concatenate([ops.conv(x, k) for x, k in zip(inputs, kernels)], axis=-1)
            hidden_states = ops.cast(hidden_states + ops.cast(self.conv.bias, dtype), self.compute_dtype)
        else:
            hidden_states = self.conv(hidden_states)
        return self.activation(hidden_states)

    def compute_output_shape(self, hidden_states_shape):
        return tuple(hidden_states_shape[:-1]) + (self.hidden_size,)

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size,
                "num_conv_pos_embeddings": self.num_conv_pos_embeddings,
                "num_conv_pos_embedding_groups": self.num_conv_pos_embedding_groups,
                "activation": self.activation_name}


@register
class Wav2Vec2Attention(keras.layers.Layer):
    """Multi-head self-attention ("Attention Is All You Need") with batched matmuls on [batch, heads, frames, dim].

    Call: (hidden_states [batch, frames, hidden], attention_bias [batch, 1, 1, frames] added to the scores: 0 for
    real keys, a large negative number for padded ones).
    """

    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.dropout_rate = int(hidden_size), int(num_heads), float(dropout)
        self.head_dim = self.hidden_size // self.num_heads
        self.scaling = self.head_dim ** -0.5
        self.q_proj = keras.layers.Dense(self.hidden_size, name="q_proj")
        self.k_proj = keras.layers.Dense(self.hidden_size, name="k_proj")
        self.v_proj = keras.layers.Dense(self.hidden_size, name="v_proj")
        self.out_proj = keras.layers.Dense(self.hidden_size, name="out_proj")
        self.dropout = keras.layers.Dropout(self.dropout_rate)

    def build(self, hidden_states_shape, attention_bias_shape=None):
        for dense in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            dense.build(hidden_states_shape)

    def _split_heads(self, states, num_frames):  # [batch * frames, hidden] -> [batch, heads, frames, head_dim]
        states = ops.reshape(states, (-1, num_frames, self.num_heads, self.head_dim))
        return ops.transpose(states, (0, 2, 1, 3))

    def call(self, hidden_states, attention_bias=None, training=None):
        num_frames = ops.shape(hidden_states)[1]
        # projections on [batch * frames, hidden]: plain 2-D matmuls, which TF fuses with their bias add
        flat = ops.reshape(hidden_states, (-1, self.hidden_size))
        query = self._split_heads(self.q_proj(flat) * self.scaling, num_frames)
        key = self._split_heads(self.k_proj(flat), num_frames)
        value = self._split_heads(self.v_proj(flat), num_frames)
        scores = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2)))  # [batch, heads, frames, frames]
        if attention_bias is not None:
            scores = scores + attention_bias
        probs = self.dropout(ops.softmax(scores, axis=-1), training=training)
        context = ops.transpose(ops.matmul(probs, value), (0, 2, 1, 3))  # [batch, frames, heads, head_dim]
        context = self.out_proj(ops.reshape(context, (-1, self.hidden_size)))
        return ops.reshape(context, (-1, num_frames, self.hidden_size))

    def compute_output_shape(self, hidden_states_shape, attention_bias_shape=None):
        return hidden_states_shape

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size, "num_heads": self.num_heads,
                "dropout": self.dropout_rate}


@register
class Wav2Vec2FeedForward(keras.layers.Layer):
    """Position-wise feed-forward: Dense(intermediate) -> activation -> Dense(hidden), with dropouts."""

    def __init__(self, hidden_size: int, intermediate_size: int, activation: str = "gelu",
                 activation_dropout: float = 0.0, hidden_dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.intermediate_size = int(hidden_size), int(intermediate_size)
        self.activation_name = activation
        self.activation_dropout, self.hidden_dropout = float(activation_dropout), float(hidden_dropout)
        self.activation = get_activation(activation)
        self.intermediate_dense = keras.layers.Dense(self.intermediate_size, name="intermediate_dense")
        self.intermediate_dropout = keras.layers.Dropout(self.activation_dropout)
        self.output_dense = keras.layers.Dense(self.hidden_size, name="output_dense")
        self.output_dropout = keras.layers.Dropout(self.hidden_dropout)

    def build(self, hidden_states_shape):
        self.intermediate_dense.build(hidden_states_shape)
        self.output_dense.build(tuple(hidden_states_shape[:-1]) + (self.intermediate_size,))

    def call(self, hidden_states, training=None):
        shape = ops.shape(hidden_states)
        # on [batch * frames, hidden] the Dense layers are plain 2-D matmuls, which TF fuses with bias and GELU
        hidden_states = ops.reshape(hidden_states, (-1, self.hidden_size))
        hidden_states = self.activation(self.intermediate_dense(hidden_states))
        hidden_states = self.intermediate_dropout(hidden_states, training=training)
        hidden_states = self.output_dropout(self.output_dense(hidden_states), training=training)
        return ops.reshape(hidden_states, shape)

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size, "intermediate_size": self.intermediate_size,
                "activation": self.activation_name, "activation_dropout": self.activation_dropout,
                "hidden_dropout": self.hidden_dropout}


@register
class Wav2Vec2EncoderLayer(keras.layers.Layer):
    """One transformer block. stable_layer_norm=False (base, Wav2Vec2EncoderLayer) is post-LN:
        h = LN(h + Attn(h)); h = LN_final(h + FF(h))
    stable_layer_norm=True (large/lv60, Wav2Vec2EncoderLayerStableLayerNorm) is pre-LN:
        h = h + Attn(LN(h)); h = h + FF(LN_final(h))
    """

    def __init__(self, hidden_size: int, num_attention_heads: int, intermediate_size: int, hidden_act: str = "gelu",
                 layer_norm_eps: float = 1e-5, stable_layer_norm: bool = False, attention_dropout: float = 0.0,
                 activation_dropout: float = 0.0, hidden_dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_attention_heads = int(hidden_size), int(num_attention_heads)
        self.intermediate_size, self.hidden_act = int(intermediate_size), hidden_act
        self.layer_norm_eps, self.stable_layer_norm = float(layer_norm_eps), bool(stable_layer_norm)
        self.attention_dropout, self.activation_dropout = float(attention_dropout), float(activation_dropout)
        self.hidden_dropout = float(hidden_dropout)
        self.attention = Wav2Vec2Attention(self.hidden_size, self.num_attention_heads, self.attention_dropout,
                                           name="attention")
        self.dropout = keras.layers.Dropout(self.hidden_dropout)
        self.layer_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_eps, name="layer_norm")
        self.feed_forward = Wav2Vec2FeedForward(self.hidden_size, self.intermediate_size, hidden_act,
                                                self.activation_dropout, self.hidden_dropout, name="feed_forward")
        self.final_layer_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_eps, name="final_layer_norm")

    def build(self, hidden_states_shape, attention_bias_shape=None):
        self.attention.build(hidden_states_shape, attention_bias_shape)
        self.layer_norm.build(hidden_states_shape)
        self.feed_forward.build(hidden_states_shape)
        self.final_layer_norm.build(hidden_states_shape)

    def call(self, hidden_states, attention_bias=None, training=None):
        residual = hidden_states
        if self.stable_layer_norm:
            hidden_states = self.attention(self.layer_norm(hidden_states), attention_bias, training=training)
            hidden_states = residual + self.dropout(hidden_states, training=training)
            return hidden_states + self.feed_forward(self.final_layer_norm(hidden_states), training=training)
        hidden_states = self.attention(hidden_states, attention_bias, training=training)
        hidden_states = self.layer_norm(residual + self.dropout(hidden_states, training=training))
        hidden_states = hidden_states + self.feed_forward(hidden_states, training=training)
        return self.final_layer_norm(hidden_states)

    def compute_output_shape(self, hidden_states_shape, attention_bias_shape=None):
        return hidden_states_shape

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size,
                "num_attention_heads": self.num_attention_heads, "intermediate_size": self.intermediate_size,
                "hidden_act": self.hidden_act, "layer_norm_eps": self.layer_norm_eps,
                "stable_layer_norm": self.stable_layer_norm, "attention_dropout": self.attention_dropout,
                "activation_dropout": self.activation_dropout, "hidden_dropout": self.hidden_dropout}


@register
class Wav2Vec2Encoder(keras.layers.Layer):
    """Positional conv embedding + transformer layers (Wav2Vec2Encoder / Wav2Vec2EncoderStableLayerNorm).

    Call: (hidden_states [batch, frames, hidden], frame_mask [batch, frames]) -> last_hidden_state, zero on padded
    frames. The LayerNorm comes before the layers (post-LN model) or after them (do_stable_layer_norm).
    """

    def __init__(self, config: Mapping[str, Any] | Wav2Vec2Config, **kwargs):
        super().__init__(**kwargs)
        self.config = as_config(config)
        c = self.config
        self.pos_conv_embed = Wav2Vec2PositionalConvEmbedding(
            c.hidden_size, c.num_conv_pos_embeddings, c.num_conv_pos_embedding_groups, c.feat_extract_activation,
            name="pos_conv_embed")
        self.layer_norm = keras.layers.LayerNormalization(epsilon=c.layer_norm_eps, name="layer_norm")
        self.dropout = keras.layers.Dropout(c.hidden_dropout)
        self.layers = [
            Wav2Vec2EncoderLayer(c.hidden_size, c.num_attention_heads, c.intermediate_size, c.hidden_act,
                                 c.layer_norm_eps, c.do_stable_layer_norm, c.attention_dropout,
                                 c.activation_dropout, c.hidden_dropout, name=f"layers_{i}")
            for i in range(c.num_hidden_layers)]

    def build(self, hidden_states_shape, frame_mask_shape=None):
        self.pos_conv_embed.build(hidden_states_shape)
        self.layer_norm.build(hidden_states_shape)
        bias_shape = (hidden_states_shape[0], 1, 1, hidden_states_shape[1])
        for layer in self.layers:
            layer.build(hidden_states_shape, bias_shape)

    def call(self, hidden_states, frame_mask, training=None):
        frame_mask = ops.cast(frame_mask, hidden_states.dtype)
        hidden_states = hidden_states * frame_mask[:, :, None]  # padded frames must not enter the positional conv
        attention_bias = ((1.0 - frame_mask) * LARGE_NEGATIVE)[:, None, None, :]  # mask padded keys
        hidden_states = hidden_states + self.pos_conv_embed(hidden_states)
        if not self.config.do_stable_layer_norm:
            hidden_states = self.layer_norm(hidden_states)
        hidden_states = self.dropout(hidden_states, training=training)
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_bias, training=training)
        if self.config.do_stable_layer_norm:
            hidden_states = self.layer_norm(hidden_states)
        return hidden_states * frame_mask[:, :, None]

    def compute_output_shape(self, hidden_states_shape, frame_mask_shape=None):
        return hidden_states_shape

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}


# ---------------------------------------------------------------------------------------------------------------------
# CTC head
# ---------------------------------------------------------------------------------------------------------------------

@register
class Wav2Vec2BlankPaddedFrames(keras.layers.Layer):
    """Padded frames output a certain CTC blank: logits there become [.., BLANK_LOGIT at blank_id, ..], 0 elsewhere.

    Call: (logits [batch, frames, vocab], frame_mask [batch, frames]) -> logits.
    """

    def __init__(self, blank_id: int = 0, blank_logit: float = BLANK_LOGIT, **kwargs):
        super().__init__(**kwargs)
        self.blank_id, self.blank_logit = int(blank_id), float(blank_logit)

    def call(self, logits, frame_mask):
        vocab_size = ops.shape(logits)[-1]
        blank = ops.one_hot(self.blank_id, vocab_size, dtype=logits.dtype) * self.blank_logit
        return ops.where(ops.cast(frame_mask, "bool")[:, :, None], logits, blank)

    def compute_output_shape(self, logits_shape, frame_mask_shape=None):
        return logits_shape

    def get_config(self):
        return {**super().get_config(), "blank_id": self.blank_id, "blank_logit": self.blank_logit}
