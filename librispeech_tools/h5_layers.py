"""An .h5 export's layers as the ONNX converter reads them, straight from the file with h5py: no Keras, no TensorFlow.

evaluate runs an .h5 with ONNX Runtime by converting it in memory (librispeech_tools/onnx_wav2vec2.py). Through
Keras, that meant importing TensorFlow (~3 s) and building and loading the model (~2.5 s for the base model on the
2-core machine) only to hand its weights over. The converter reads a few attributes of each layer (sizes, strides,
norms, epsilons, activations) and its weights: the objects here carry the same attributes, derived from the file's
Wav2Vec2Config as librispeech/wav2vec2/layers.py derives them, and the weights under the Keras paths the .h5 stores
them by. tests/test_onnx.py checks that the graph made from them equals the one made from the Keras model.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Mapping

import numpy as np

from librispeech.model_file import ENCODER_LAYER_NAME, check_keras_h5
from librispeech.wav2vec2.configuration import BLANK_LOGIT, TORCH_NORM_EPS, as_config, positional_conv_padding

LOGITS_LAYER_NAME = "logits"  # librispeech.wav2vec2.model's Wav2Vec2BlankPaddedFrames layer


class H5Layers:
    """`get_layer(name)` and `name`, as the converter calls them on a keras.Model, over `weights` keyed by Keras
    path ("encoder/layers_0/attention/q_proj/kernel"). KeyError names a weight the file does not hold."""

    def __init__(self, name: str, encoder_config: Mapping, weights: Mapping[str, np.ndarray]):
        self.name, self.weights = name, weights
        c = self.config = as_config(encoder_config)
        self._layers = {
            "feature_extractor": SimpleNamespace(conv_layers=[
                SimpleNamespace(kernel_size=c.conv_kernel[i], stride=c.conv_stride[i], norm=c.conv_norms[i],
                                activation_name=c.feat_extract_activation,
                                conv=self._dense(f"feature_extractor/conv_layers_{i}/conv"),
                                layer_norm=(self._norm(f"feature_extractor/conv_layers_{i}/layer_norm", TORCH_NORM_EPS)
                                            if c.conv_norms[i] else None))
                for i in range(c.num_feat_extract_layers)]),
            "feature_projection": SimpleNamespace(
                layer_norm=self._norm("feature_projection/layer_norm", c.layer_norm_eps),
                projection=self._dense("feature_projection/projection")),
            ENCODER_LAYER_NAME: SimpleNamespace(
                config=c, layer_norm=self._norm(f"{ENCODER_LAYER_NAME}/layer_norm", c.layer_norm_eps),
                pos_conv_embed=SimpleNamespace(
                    conv=self._dense(f"{ENCODER_LAYER_NAME}/pos_conv_embed/conv"),
                    num_conv_pos_embedding_groups=c.num_conv_pos_embedding_groups,
                    padding=positional_conv_padding(c.num_conv_pos_embeddings),
                    activation_name=c.feat_extract_activation),
                layers=[self._encoder_layer(f"{ENCODER_LAYER_NAME}/layers_{i}") for i in range(c.num_hidden_layers)]),
            "lm_head": self._dense("lm_head"),
            # the constant every export has (build_wav2vec2_for_ctc's; load_dynamic_length_model rebuilds with it too)
            LOGITS_LAYER_NAME: SimpleNamespace(blank_id=c.pad_token_id, blank_logit=BLANK_LOGIT),
        }

    def get_layer(self, name: str):
        return self._layers[name]

    def _dense(self, path: str) -> SimpleNamespace:
        """A Dense or Conv1D: kernel, and bias where the layer has one."""
        bias = self.weights.get(f"{path}/bias")
        return SimpleNamespace(name=path.rsplit("/", 1)[-1], kernel=self.weights[f"{path}/kernel"], bias=bias,
                               use_bias=bias is not None)

    def _norm(self, path: str, epsilon: float) -> SimpleNamespace:
        return SimpleNamespace(gamma=self.weights[f"{path}/gamma"], beta=self.weights[f"{path}/beta"],
                               epsilon=float(epsilon))

    def _encoder_layer(self, path: str) -> SimpleNamespace:
        c = self.config
        head_dim = c.hidden_size // c.num_attention_heads
        return SimpleNamespace(
            stable_layer_norm=c.do_stable_layer_norm,
            layer_norm=self._norm(f"{path}/layer_norm", c.layer_norm_eps),
            final_layer_norm=self._norm(f"{path}/final_layer_norm", c.layer_norm_eps),
            attention=SimpleNamespace(
                num_heads=c.num_attention_heads, head_dim=head_dim, scaling=head_dim ** -0.5,
                hidden_size=c.hidden_size, **{name: self._dense(f"{path}/attention/{name}")
                                              for name in ("q_proj", "k_proj", "v_proj", "out_proj")}),
            feed_forward=SimpleNamespace(
                intermediate_dense=self._dense(f"{path}/feed_forward/intermediate_dense"),
                output_dense=self._dense(f"{path}/feed_forward/output_dense"), activation_name=c.hidden_act))


def read_h5_layers(path: Path, name: str | None = None) -> H5Layers:
    """The layers of the wav2vec2 .h5 export at `path` (the runtime's file checks first: ModelFileError). KeyError
    where its weights are not stored under the paths this Keras version gives them."""
    import h5py

    encoder_config = check_keras_h5(path)
    with h5py.File(path, "r") as handle:
        model_config = json.loads(handle.attrs["model_config"])
        group = handle["model_weights"]
        weights = {_text(weight_name): _mapped_or_read(group[_text(layer_name)][_text(weight_name)])
                   for layer_name in group.attrs["layer_names"]
                   for weight_name in group[_text(layer_name)].attrs["weight_names"]}
    return H5Layers(name or model_config["config"].get("name", path.stem), encoder_config, weights)


def _mapped_or_read(dataset) -> np.ndarray:
    """A weight's values, mapped read-only from its file where HDF5 stores them as one written block (as Keras writes
    them), else read (chunked or compressed, never written, or empty). Mapping skips copying the base model's
    360 MiB (0.3-0.6 s of evaluate's start-up)."""
    offset = dataset.id.get_offset()
    if (offset is None or dataset.chunks is not None or not dataset.shape or not dataset.size
            or dataset.id.get_storage_size() != dataset.nbytes):
        return np.asarray(dataset)
    # the dataset's own file: one reached through an external link lives in another
    return np.memmap(dataset.file.filename, dtype=dataset.dtype, mode="r", offset=offset, shape=dataset.shape)


def _text(name) -> str:
    return name.decode("utf-8") if isinstance(name, bytes) else str(name)
