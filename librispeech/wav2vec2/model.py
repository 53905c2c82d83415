"""Wav2Vec2ForCTC as a functional keras.Model, from a Wav2Vec2Config (weights: convert_hf, or a saved export).

    audio --> feature encoder (7 strided Conv1D; GroupNorm on the first, or LayerNorm on each)   "feature_extractor"
          --> feature projection (LayerNorm, Dense to hidden_size)                              "feature_projection"
          --> transformer encoder: + positional conv embedding (grouped Conv1D, GELU),           "encoder"
              post-LN layers ("group" / base) or pre-LN layers (do_stable_layer_norm / large)
          --> LM head (Dense to the vocabulary)                                                  "lm_head"
          --> padded frames forced to a certain blank                                            "logits"
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import keras

from librispeech.wav2vec2.configuration import Wav2Vec2Config, as_config
from librispeech.wav2vec2.layers import (
    Wav2Vec2Attention, Wav2Vec2BlankPaddedFrames, Wav2Vec2ConvLayer, Wav2Vec2Encoder, Wav2Vec2EncoderLayer,
    Wav2Vec2FeatureEncoder, Wav2Vec2FeatureProjection, Wav2Vec2FeedForward, Wav2Vec2FrameMask, Wav2Vec2GroupNorm,
    Wav2Vec2PositionalConvEmbedding)


# Keyed by the name the saved file holds ("librispeech>Wav2Vec2Encoder"): a loader given these as custom_objects
# finds them without this module's registration having run.
CUSTOM_LAYERS = {keras.saving.get_registered_name(cls): cls for cls in (
    Wav2Vec2GroupNorm, Wav2Vec2ConvLayer, Wav2Vec2FeatureEncoder, Wav2Vec2FrameMask, Wav2Vec2FeatureProjection,
    Wav2Vec2PositionalConvEmbedding, Wav2Vec2Attention, Wav2Vec2FeedForward, Wav2Vec2EncoderLayer, Wav2Vec2Encoder,
    Wav2Vec2BlankPaddedFrames)}

ENCODER_LAYER_NAME = "encoder"  # its output is the last hidden state [batch, frames, hidden] (zero on padded frames)
FRAME_MASK_LAYER_NAME = "frame_mask"  # its output is 1 on real frames, 0 on padded ones [batch, frames]


def build_wav2vec2_for_ctc(config: Wav2Vec2Config | Mapping[str, Any], max_samples: int | None,
                           name: str = "wav2vec2_for_ctc") -> keras.Model:
    """Wav2Vec2ForCTC as a functional keras.Model (random weights).

    Inputs, in order: `audio` [batch, max_samples] float32 (normalised, zero-padded) and `audio_length` [batch, 1]
    float32 (real samples). Output: logits [batch, config.num_frames(max_samples), vocab_size]. max_samples=None
    builds a model for any length.
    """
    config = as_config(config)
    config.check_input_length(max_samples)
    audio = keras.Input((max_samples,), dtype="float32", name="audio")
    audio_length = keras.Input((1,), dtype="float32", name="audio_length")
    features = Wav2Vec2FeatureEncoder(config, name="feature_extractor")(audio, audio_length)
    frame_mask = Wav2Vec2FrameMask(config.conv_kernel, config.conv_stride, name=FRAME_MASK_LAYER_NAME)(
        audio_length, features)
    hidden_states = Wav2Vec2FeatureProjection(config.hidden_size, config.layer_norm_eps, config.feat_proj_dropout,
                                              name="feature_projection")(features)
    hidden_states = Wav2Vec2Encoder(config, name=ENCODER_LAYER_NAME)(hidden_states, frame_mask)
    if config.final_dropout > 0:
        hidden_states = keras.layers.Dropout(config.final_dropout, name="dropout")(hidden_states)
    # the CTC head computes in float32 even under a mixed-precision policy (bfloat16 logits are too coarse for CTC)
    logits = keras.layers.Dense(config.vocab_size, dtype="float32", name="lm_head")(hidden_states)
    logits = Wav2Vec2BlankPaddedFrames(config.pad_token_id, dtype="float32", name="logits")(logits, frame_mask)
    return keras.Model([audio, audio_length], logits, name=name)


def build_and_assign(config: Wav2Vec2Config | Mapping[str, Any], max_samples: int | None,
                     assign: Callable[[keras.Model], None], name: str = "wav2vec2_for_ctc") -> keras.Model:
    """build_wav2vec2_for_ctc, then `assign(model)` sets its weights (a saved export's, a checkpoint's).

    On JAX the random initializers those weights replace are skipped: they compile and run a random kernel per
    weight shape (skipping them took 1.6-2.8 s off evaluate's 16-18 s start-up on an H200, 3.4-5.0 s on a 2-core
    CPU: benchmarks/GPU_RESULTS.md, eighth run). Keras leaves variables made in a StatelessScope without a value,
    and a JAX variable takes its first value by assignment. Any variable `assign` leaves unset (a dropout's seed
    state) gets its initializer then, as in a plain build. Other backends build as usual (their variables must exist
    before they are assigned).
    """
    if keras.backend.backend() != "jax":
        model = build_wav2vec2_for_ctc(config, max_samples, name=name)
        assign(model)
        return model
    from keras.src.backend.common import global_state  # Keras' list of variables waiting for their initializer

    with keras.StatelessScope(initialize_variables=False):
        model = build_wav2vec2_for_ctc(config, max_samples, name=name)
    try:
        assign(model)
    finally:  # also when `assign` fails: the variables must not wait in Keras' list for a later scope's exit
        made = {id(variable) for variable in model.variables}
        waiting = global_state.get_global_attribute("uninitialized_variables", [])
        waiting[:] = [variable for variable in waiting if id(variable) not in made]
    for variable in model.variables:
        if variable._value is None:  # noqa: SLF001  not assigned: initialised as a plain build would
            variable._deferred_initialize()  # noqa: SLF001
    return model


def model_config(model: keras.Model) -> Wav2Vec2Config:
    """The Wav2Vec2Config a built or loaded model was made from."""
    config = model.get_layer(ENCODER_LAYER_NAME).config
    return config if isinstance(config, Wav2Vec2Config) else as_config(config)


def with_input_length(model: keras.Model, max_samples: int | None, name: str | None = None) -> keras.Model:
    """The same layers and weights built for another input length (None: any length)."""
    weights = model.get_weights()
    return build_and_assign(model_config(model), max_samples, lambda rebuilt: rebuilt.set_weights(weights),
                            name=name or model.name)


def with_hidden_states(model: keras.Model) -> keras.Model:
    """A keras.Model sharing `model`'s layers and weights that returns [logits, last_hidden_state]; the hidden state
    is the "encoder" layer's output [batch, frames, hidden], zero on padded frames (mean-pool with frame counts)."""
    return keras.Model(model.inputs, [model.outputs[0], model.get_layer(ENCODER_LAYER_NAME).output],
                       name=f"{model.name}_with_hidden_states")
