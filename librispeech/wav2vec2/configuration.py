"""Wav2Vec2Config: the hyper-parameters of Wav2Vec2ForCTC (the subset of Hugging Face's config.json it uses) and the
conv stack's length rule. Pure Python: importing it loads neither Keras nor TensorFlow, so preprocessing can count
frames from an audio header."""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any, Mapping

# HF ACT2FN names this implementation has (see layers.get_activation); "gelu" is the exact (erf) GELU.
SUPPORTED_ACTIVATIONS = frozenset({"gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "relu", "silu", "swish",
                                   "tanh"})


def conv_output_length(length, kernel_size: int, stride: int):
    """Frames after one 'valid' strided conv: floor((length - kernel) / stride) + 1 (negative when the input is
    shorter than the kernel; callers clamp at 0). The one copy of the rule: it works on Python numbers and on
    Keras/NumPy tensors alike."""
    return (length - kernel_size) // stride + 1


def positional_conv_padding(kernel: int) -> tuple[int, int]:
    """The positional conv's (left, right) zero padding: HF pads kernel // 2 on both sides and then drops the last
    output of an even kernel, which is the same as padding (kernel // 2, kernel // 2 - 1)."""
    return kernel // 2, kernel // 2 - (1 if kernel % 2 == 0 else 0)


# Constants of this implementation, not of a checkpoint (here, not in layers.py, so that the ONNX converter reads
# them without importing Keras)
BLANK_LOGIT = 1e4  # logit of the pad/blank id on padded frames (every other logit there is 0)
TORCH_NORM_EPS = 1e-5  # torch's nn.GroupNorm / nn.LayerNorm default, used by the conv feature encoder
LARGE_NEGATIVE = -1e9  # attention score bias of padded keys


# ---------------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Wav2Vec2Config:
    """The subset of Hugging Face's Wav2Vec2Config that defines Wav2Vec2ForCTC at inference (and fine-tuning)."""

    vocab_size: int = 32
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    activation_dropout: float = 0.1
    attention_dropout: float = 0.1
    feat_proj_dropout: float = 0.0
    final_dropout: float = 0.1
    layer_norm_eps: float = 1e-5
    feat_extract_norm: str = "group"
    feat_extract_activation: str = "gelu"
    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False
    pad_token_id: int = 0
    add_adapter: bool = False
    adapter_attn_dim: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # unknown keys, kept verbatim

    def __post_init__(self):
        self._check_types()
        if not len(self.conv_dim) == len(self.conv_stride) == len(self.conv_kernel):
            raise ValueError(f"conv_dim, conv_stride and conv_kernel must have the same length, got "
                             f"{len(self.conv_dim)}, {len(self.conv_stride)}, {len(self.conv_kernel)}")
        if self.feat_extract_norm not in ("group", "layer"):
            raise ValueError(f"feat_extract_norm must be 'group' or 'layer', got {self.feat_extract_norm!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                             f"{self.num_attention_heads}")
        if self.hidden_size % self.num_conv_pos_embedding_groups:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_conv_pos_embedding_groups "
                             f"{self.num_conv_pos_embedding_groups}")
        if self.add_adapter or self.adapter_attn_dim is not None:
            raise ValueError("wav2vec2 adapters (add_adapter / adapter_attn_dim) are not supported")
        for name in ("hidden_act", "feat_extract_activation"):
            if getattr(self, name) not in SUPPORTED_ACTIVATIONS:  # fail early, before any layer is built
                raise ValueError(f"unsupported {name} {getattr(self, name)!r}; supported: {sorted(SUPPORTED_ACTIVATIONS)}")

    def _check_types(self) -> None:
        """A config.json value of the wrong kind ("hidden_size": null, "layer_norm_eps": "1e-5") is one ValueError
        here, not a TypeError deep in a layer or, for a string epsilon, a Keras layer built with it; the values
        become plain Python ones (numpy numbers, lists of conv sizes as tuples)."""
        def whole(name, value, least):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
                raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}")

        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "num_conv_pos_embeddings", "num_conv_pos_embedding_groups", "pad_token_id"):
            whole(name, getattr(self, name), 0 if name == "pad_token_id" else 1)
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("conv_dim", "conv_stride", "conv_kernel"):
            values = getattr(self, name)
            if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__") or not values:
                raise ValueError(f"{name} must be a non-empty list of whole numbers, got {values!r}")
            for value in values:
                whole(f"each of {name}", value, 1)
            object.__setattr__(self, name, tuple(int(value) for value in values))
        for name in ("hidden_dropout", "activation_dropout", "attention_dropout", "feat_proj_dropout",
                     "final_dropout", "layer_norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.layer_norm_eps <= 0:
            raise ValueError(f"layer_norm_eps must be above 0, got {self.layer_norm_eps!r}")
        for name in ("conv_bias", "do_stable_layer_norm", "add_adapter"):
            value = getattr(self, name)  # 0 and 1 read as PyTorch reads them
            if not (isinstance(value, bool) or isinstance(value, numbers.Integral) and value in (0, 1)):
                raise ValueError(f"{name} must be true or false, got {value!r}")
            object.__setattr__(self, name, bool(value))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Wav2Vec2Config":
        """From a config.json dictionary; keys this model does not use are kept in `extra` and otherwise ignored."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in values.items() if k in names}
        extra = {k: v for k, v in values.items() if k not in names and k != "extra"}
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The model's hyper-parameters as plain JSON types (unknown keys left out)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @property
    def num_feat_extract_layers(self) -> int:
        return len(self.conv_dim)

    @property
    def conv_norms(self) -> list[str | None]:
        """Each conv layer's norm: "group" on the first only (Wav2Vec2GroupNormConvLayer, then no norm), or "layer"
        on every one (Wav2Vec2LayerNormConvLayer)."""
        if self.feat_extract_norm == "group":
            return ["group"] + [None] * (self.num_feat_extract_layers - 1)
        return ["layer"] * self.num_feat_extract_layers

    def num_frames(self, num_samples: int) -> int:
        """Output frames of the conv feature encoder for `num_samples` samples (0 when shorter than one window)."""
        length = int(num_samples)
        for kernel, stride in zip(self.conv_kernel, self.conv_stride):
            length = max(conv_output_length(length, kernel, stride), 0)
        return length

    def check_input_length(self, max_samples: int | None) -> None:
        """InputTooShortError when a fixed input of `max_samples` gives the conv stack no frame (None: any length)."""
        if max_samples is not None and self.num_frames(max_samples) < 1:
            raise InputTooShortError(f"max_samples={max_samples} is shorter than one frame ({self.receptive_field} "
                                     f"samples)")

    @property
    def receptive_field(self) -> int:
        """Samples seen by one output frame (400 for the base conv stack)."""
        field_, jump = 1, 1
        for kernel, stride in zip(self.conv_kernel, self.conv_stride):
            field_ += (kernel - 1) * jump
            jump *= stride
        return field_


class InputTooShortError(ValueError):
    """An input length that gives the model's conv stack no frame."""


def as_config(config: Wav2Vec2Config | Mapping[str, Any]) -> Wav2Vec2Config:
    return config if isinstance(config, Wav2Vec2Config) else Wav2Vec2Config.from_dict(config)
