"""Tensorleap integration of wav2vec2 (greedy CTC) on LibriSpeech: every registered function delegates to librispeech/."""
import librispeech  # first: its telemetry guard runs before anything imports code_loader

import importlib.util
import os
from typing import List

import numpy as np
from code_loader.contract.datasetclasses import PreprocessResponse, RawInputsForHeatmap
from code_loader.contract.enums import DatasetMetadataType, DataStateType, LeapDataType, MetricDirection
from code_loader.contract.visualizer_classes import LeapAudio, LeapGraph, LeapImage, LeapText, LeapTextMask
from code_loader.inner_leap_binder.leapbinder_decorators import (
    tensorleap_custom_layer, tensorleap_custom_loss, tensorleap_custom_metric, tensorleap_custom_visualizer,
    tensorleap_gt_encoder, tensorleap_input_encoder, tensorleap_metadata, tensorleap_preprocess)

from librispeech import (
    audio_features, data, lm_decoding, metrics, noise, pace, text_features, tokenizer, visualizers, words)
from librispeech.config import project_config

SUBSET_STATES = {"training": DataStateType.training, "validation": DataStateType.validation,
                 "test": DataStateType.test}

# So the platform can load the .h5's own layers. code-loader checks them against tf.keras, so this needs TensorFlow,
# which the platform has; Keras on JAX without it (evaluate on a GPU image) has no platform to register them for,
# nor has a local run that loads no Keras model (evaluate on ONNX Runtime, which sets WITHOUT_KERAS_ENV).
if not os.environ.get(librispeech.WITHOUT_KERAS_ENV) and importlib.util.find_spec("tensorflow") is not None:
    from librispeech.wav2vec2.model import CUSTOM_LAYERS

    for _layer_name, _layer_class in CUSTOM_LAYERS.items():
        tensorleap_custom_layer(_layer_name)(_layer_class)


@tensorleap_preprocess()
def preprocess() -> List[PreprocessResponse]:
    with data.warnings_on_stdout():  # where the platform's dataset log shows them
        splits = data.configured_splits()
    return [PreprocessResponse(sample_ids=list(split.utterances), data=split, state=SUBSET_STATES[subset],
                               sample_id_type=str)
            for subset, split in splits.items()]


def _directions(keys, higher_is_better) -> dict:
    return {key: MetricDirection.Upward if key in higher_is_better else MetricDirection.Downward for key in keys}


def _metadata_types(types: dict) -> dict:
    """Declared types, so that a None value (e.g. a record the corpus lacks) keeps its column's type."""
    return {key: DatasetMetadataType(kind) for key, kind in types.items()}


def _utterance(sample_id: str, preprocess: PreprocessResponse) -> data.Utterance:
    return preprocess.data.utterances[sample_id]


# ---------------------------------------------------------------- inputs and ground truth

@tensorleap_input_encoder("audio", channel_dim=-1)
def input_audio(sample_id: str, preprocess: PreprocessResponse) -> np.ndarray:
    config = project_config()
    return data.model_input(preprocess.data.audio(sample_id), config.normalize_epsilon, config.max_samples)


@tensorleap_input_encoder("audio_length", channel_dim=-1)
def input_audio_length(sample_id: str, preprocess: PreprocessResponse) -> np.ndarray:
    return np.array([_utterance(sample_id, preprocess).num_samples], dtype=np.float32)  # from the header: no decode


@tensorleap_gt_encoder("transcript")
def gt_transcript(sample_id: str, preprocess: PreprocessResponse) -> np.ndarray:
    return tokenizer.encode_transcript(_utterance(sample_id, preprocess).transcript, project_config().max_label_length)


# ---------------------------------------------------------------- loss and metrics

@tensorleap_custom_loss("ctc_loss")
def ctc_loss(logits: np.ndarray, transcript: np.ndarray) -> np.ndarray:
    return np.asarray(metrics.ctc_loss(logits, transcript), dtype=np.float32)


@tensorleap_custom_metric("error_rates", direction=_directions(metrics.ERROR_RATE_KEYS, metrics.HIGHER_IS_BETTER))
def error_rates(logits: np.ndarray, transcript: np.ndarray) -> dict:
    return metrics.error_rates(logits, transcript)


@tensorleap_custom_metric("confidence", direction=_directions(words.CONFIDENCE_KEYS, words.HIGHER_IS_BETTER))
def confidence(logits: np.ndarray, transcript: np.ndarray) -> dict:
    return words.confidence(logits, transcript)


# ---------------------------------------------------------------- metadata

@tensorleap_metadata("speech")
def metadata_speech(sample_id: str, preprocess: PreprocessResponse) -> dict:
    utterance = _utterance(sample_id, preprocess)
    features = audio_features.speech_features(preprocess.data.audio(sample_id), project_config().sample_rate)
    # ids as strings: the platform groups samples by a string value and bins a number (code-loader reads an int as
    # a float), and speakers 19 and 20 are not neighbours
    return {**features, "speaker_id": str(utterance.speaker_id), "chapter_id": str(utterance.chapter_id)}


@tensorleap_metadata("text", metadata_type=_metadata_types(text_features.TEXT_FEATURE_TYPES))
def metadata_text(sample_id: str, preprocess: PreprocessResponse) -> dict:
    return text_features.text_features(_utterance(sample_id, preprocess).transcript, tokenizer.transcript_characters())


@tensorleap_metadata("readability")
def metadata_readability(sample_id: str, preprocess: PreprocessResponse) -> dict:
    return text_features.readability_features(_utterance(sample_id, preprocess).transcript)


@tensorleap_metadata("records", metadata_type=_metadata_types(data.RECORD_TYPES))
def metadata_records(sample_id: str, preprocess: PreprocessResponse) -> dict:
    return data.record_fields(_utterance(sample_id, preprocess), preprocess.data.corpus_info)


@tensorleap_metadata("pace", metadata_type=_metadata_types(pace.PACE_TYPES))
def metadata_pace(sample_id: str, preprocess: PreprocessResponse) -> dict:
    return pace.pace_features(preprocess.data.audio(sample_id), project_config().sample_rate,
                              _utterance(sample_id, preprocess).transcript)


@tensorleap_metadata("noise", metadata_type=_metadata_types(noise.NOISE_TYPES))
def metadata_noise(sample_id: str, preprocess: PreprocessResponse) -> dict:
    return noise.noise_features(preprocess.data.audio(sample_id), project_config().sample_rate,
                                preprocess.data.clipping_fraction(sample_id))


# ---------------------------------------------------------------- visualizers

@tensorleap_custom_visualizer("transcription", LeapDataType.Text)
def transcription_visualizer(logits: np.ndarray) -> LeapText:
    return visualizers.transcription(logits)


@tensorleap_custom_visualizer("reference", LeapDataType.Text)
def reference_visualizer(transcript: np.ndarray) -> LeapText:
    return visualizers.reference(transcript)


@tensorleap_custom_visualizer("alignment", LeapDataType.TextMask)
def alignment_visualizer(logits: np.ndarray, transcript: np.ndarray) -> LeapTextMask:
    return visualizers.alignment(logits, transcript)


@tensorleap_custom_visualizer("word_errors", LeapDataType.TextMask)
def word_errors_visualizer(logits: np.ndarray, transcript: np.ndarray) -> LeapTextMask:
    return visualizers.word_errors(logits, transcript)


# Tensorleap passes a heatmap function each input's attribution under its name (audio_length's too), and the inputs
# themselves in raw_inputs: the real length is the raw audio_length, not its attribution.
def _raw_audio_length(raw_inputs: RawInputsForHeatmap) -> np.ndarray:
    return raw_inputs.raw_input_by_vizualizer_arg_name["audio_length"]


def mel_spectrogram_heatmap(audio: np.ndarray, audio_length: np.ndarray, raw_inputs: RawInputsForHeatmap
                            ) -> np.ndarray:
    return visualizers.mel_spectrogram_heatmap(audio, _raw_audio_length(raw_inputs))


@tensorleap_custom_visualizer("mel_spectrogram", LeapDataType.Image, heatmap_function=mel_spectrogram_heatmap)
def mel_spectrogram_visualizer(audio: np.ndarray, audio_length: np.ndarray) -> LeapImage:
    return visualizers.mel_spectrogram(audio, audio_length, project_config().sample_rate)


def waveform_heatmap(audio: np.ndarray, audio_length: np.ndarray, raw_inputs: RawInputsForHeatmap) -> np.ndarray:
    return visualizers.waveform_heatmap(audio, _raw_audio_length(raw_inputs))


@tensorleap_custom_visualizer("waveform", LeapDataType.Graph, heatmap_function=waveform_heatmap)
def waveform_visualizer(audio: np.ndarray, audio_length: np.ndarray) -> LeapGraph:
    return visualizers.waveform(audio, audio_length, project_config().sample_rate)


def audio_player_heatmap(audio: np.ndarray, audio_length: np.ndarray, raw_inputs: RawInputsForHeatmap
                         ) -> np.ndarray:
    return visualizers.audio_player_heatmap(audio, _raw_audio_length(raw_inputs))


@tensorleap_custom_visualizer("audio_player", LeapDataType.Audio, heatmap_function=audio_player_heatmap)
def audio_player_visualizer(audio: np.ndarray, audio_length: np.ndarray) -> LeapAudio:
    return visualizers.audio_player(audio, audio_length, project_config().sample_rate)


# ---------------------------------------------------------------- LM decoding: the second hypothesis

@tensorleap_custom_metric("error_rates_lm",
                          direction=_directions(metrics.ERROR_RATE_KEYS, metrics.HIGHER_IS_BETTER))
def error_rates_lm(logits: np.ndarray, transcript: np.ndarray) -> dict:
    return lm_decoding.error_rates_lm(logits, transcript)


@tensorleap_custom_metric("lm_gain", direction=MetricDirection.Upward)
def lm_gain(logits: np.ndarray, transcript: np.ndarray) -> np.ndarray:
    return lm_decoding.lm_gain(logits, transcript)


@tensorleap_custom_visualizer("transcription_lm", LeapDataType.Text)
def transcription_lm_visualizer(logits: np.ndarray) -> LeapText:
    return visualizers.transcription_lm(logits)
