"""Opening the wav2vec2 export that the integration runs (leap_test.load_model, `evaluate --model`).

Every problem with the path is a ModelFileError whose message is one line naming the path and what is wrong:
missing, of another file type, not HDF5, truncated or corrupt, an HDF5 file that is not a wav2vec2 export, weights
with NaN or inf, an ONNX file that does not load or has other inputs and outputs, or an export whose conv stack
differs from the one preprocessing counts frames with, or whose vocabulary size or blank id differ from the
runtime's vocab.json (for an ONNX graph without export-model's recorded config, its frame count and vocabulary size
are checked by running it once; its blank id cannot be).
"""
from __future__ import annotations

import json
from pathlib import Path


class ModelFileError(Exception):
    """A model path that cannot be used; the message is one line naming the path and what is wrong."""


MAKE_ONE = ("make one with `export-model --checkpoint facebook/wav2vec2-base-960h --output model/wav2vec.h5` and "
            "name it with WAV2VEC_MODEL (or evaluate --model), or use the repository's demo model, "
            "model/demo-wav2vec2.h5 (the default; `leap push` uploads the code without it)")
ENCODER_LAYER_NAME = "encoder"  # librispeech.wav2vec2.model.ENCODER_LAYER_NAME (not imported: that loads Keras)
VOCAB_SOURCE = "text.vocab_file in librispeech/config.yaml"
WAV2VEC2_SAMPLE_RATE = 16000  # what every wav2vec2 checkpoint takes (export-model refuses another)
INPUT_NAMES = ("audio", "audio_length")  # the model's inputs; code-loader feeds an ONNX session by these names


def first_line(error: BaseException) -> str:
    """An exception as one line: its type and the first line of its message (many span several)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300]}" if text else type(error).__name__


def require_model_file(path: Path) -> None:
    if not path.is_file():
        raise ModelFileError(f"no wav2vec2 model at {path}: {MAKE_ONE}")


def load_wav2vec2(path: str | Path, input_samples: int | None = None):
    """The model saved at `path` by export-model (or train-demo): a keras.Model for .h5, an
    onnxruntime.InferenceSession for .onnx. input_samples: the length it will be fed (the platform's max_samples);
    a model fixed at another length is refused here rather than failing on the first sample."""
    path = Path(path)
    require_model_file(path)
    if path.suffix.lower() == ".onnx":
        session = load_onnx_session(path)
        check_onnx_export(path, session, input_samples)
        return session
    if path.suffix.lower() in (".h5", ".hdf5"):
        check_h5_export(path)
        model = _load_checked_keras_h5(path)
        check_input_length(path, model.inputs[0].shape[1], input_samples)
        return model
    raise ModelFileError(f"{path}: unsupported model file type {path.suffix or '(no suffix)'!r}; expected a Keras "
                         f".h5 or an .onnx export ({MAKE_ONE})")


def check_input_length(path: Path, fixed, input_samples: int | None) -> None:
    """`fixed`: the model's audio length (a name or None for a dynamic time axis)."""
    if input_samples is not None and isinstance(fixed, int) and fixed != input_samples:
        raise ModelFileError(f"{path} takes {fixed} samples of audio, but the integration feeds max_samples = "
                             f"{input_samples}: export it again with --max-seconds "
                             f"{input_samples / WAV2VEC2_SAMPLE_RATE:g}, or without it (an .h5 then takes "
                             f"max_samples, an .onnx any length)")


def check_keras_h5(path: Path) -> dict:
    """The encoder's Wav2Vec2Config dictionary of a Keras .h5 wav2vec2 export, read from the file's attributes
    without Keras; ModelFileError when the file is not HDF5, cannot be opened, or is not such an export."""
    import h5py

    if not h5py.is_hdf5(path):
        raise ModelFileError(f"{path} is not an HDF5 file, so not a Keras .h5 export ({MAKE_ONE})")
    try:
        with h5py.File(path, "r") as handle:
            raw_config = handle.attrs.get("model_config")
            has_weights = "model_weights" in handle
    except Exception as error:  # h5py names the problem (e.g. "truncated file") but not the file; OSError, KeyError..
        raise ModelFileError(f"{path} is truncated or corrupt: cannot open it as HDF5 ({first_line(error)})") from None
    if raw_config is None or not has_weights:
        raise ModelFileError(f"{path} is an HDF5 file but not a Keras model export (no model_config/model_weights); "
                             f"{MAKE_ONE}")
    try:
        model_config = json.loads(raw_config)
        layers = {layer.get("name") or layer["config"]["name"]: layer for layer in model_config["config"]["layers"]}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ModelFileError(f"{path} has an unreadable Keras model_config ({first_line(error)})") from None
    encoder = layers.get(ENCODER_LAYER_NAME, {})
    input_names = tuple(name for name, layer in layers.items() if layer.get("class_name") == "InputLayer")
    if not str(encoder.get("class_name", "")).endswith("Wav2Vec2Encoder") or input_names != INPUT_NAMES:
        raise ModelFileError(f"{path} is a Keras model ({model_config['config'].get('name', '?')!r}) but not a "
                             f"wav2vec2 export: expected inputs {list(INPUT_NAMES)} and a Wav2Vec2Encoder layer "
                             f"named {ENCODER_LAYER_NAME!r}; {MAKE_ONE}")
    if not str(path).endswith((".h5", ".hdf5")):  # Keras reads an HDF5 model only under these (.H5 fails as corrupt)
        raise ModelFileError(f"{path}: Keras loads an .h5 model only under a lower-case suffix; rename it to "
                             f"{path.with_suffix(path.suffix.lower()).name}")
    return encoder.get("config", {}).get("config", {}) or {}


def check_h5_export(path: Path) -> dict:
    """The runtime's checks of a Keras .h5 export before its weights are read (the file, its conv stack, its
    vocabulary), for every engine that runs one; returns the encoder's Wav2Vec2Config dictionary."""
    encoder_config = check_keras_h5(path)
    check_conv_stack(path, encoder_config)
    check_vocabulary(path, encoder_config)
    return encoder_config


def check_conv_stack(path: Path, encoder_config: dict) -> None:
    """Preprocessing counts frames with the base conv stack (librispeech.data.FRAME_CONFIG); a model with another
    stack would get utterances it cannot align."""
    from librispeech.data import FRAME_CONFIG

    kernel = tuple(int(v) for v in encoder_config.get("conv_kernel", FRAME_CONFIG.conv_kernel))
    stride = tuple(int(v) for v in encoder_config.get("conv_stride", FRAME_CONFIG.conv_stride))
    if (kernel, stride) != (FRAME_CONFIG.conv_kernel, FRAME_CONFIG.conv_stride):
        raise ModelFileError(f"{path}: conv stack kernels {list(kernel)} / strides {list(stride)} differ from the "
                             f"{list(FRAME_CONFIG.conv_kernel)} / {list(FRAME_CONFIG.conv_stride)} that preprocessing "
                             f"counts frames with (wav2vec2-base's and -large's); this integration cannot run it")


def check_vocabulary(path: Path, encoder_config: dict) -> None:
    """The runtime reads logits with its own vocab.json (librispeech.tokenizer), whose `<pad>` is the CTC blank: a
    model must have as many output channels and the same blank id, or every transcript and loss would be wrong."""
    from librispeech.tokenizer import BLANK_ID, vocabulary_tokens

    tokens = vocabulary_tokens()
    size, blank = encoder_config.get("vocab_size", len(tokens)), encoder_config.get("pad_token_id", BLANK_ID)
    if int(size) != len(tokens) or (blank is not None and int(blank) != BLANK_ID):
        raise ModelFileError(f"{path}: the model has {size} output tokens with the CTC blank at id {blank}, but the "
                             f"runtime's vocabulary ({VOCAB_SOURCE}) has {len(tokens)} with the blank "
                             f"{tokens[BLANK_ID]!r} at id {BLANK_ID}; this integration reads wav2vec2-base-960h's "
                             f"character vocabulary")


def load_keras_h5(path: Path):
    """A Keras .h5 wav2vec2 export with its file checks (not the runtime's base-conv-stack rule: export-model also
    converts exports of other stacks)."""
    check_keras_h5(path)
    return _load_checked_keras_h5(path)


def _load_checked_keras_h5(path: Path):
    """The Keras model of an .h5 that check_keras_h5 accepted, its weights checked for NaN and inf."""
    import keras

    import librispeech.wav2vec2.layers  # noqa: F401  registers the model's layers with Keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # h5py/Keras raise many types for a damaged weight group
        raise ModelFileError(f"{path} is a wav2vec2 export but cannot be loaded (damaged or truncated): "
                             f"{first_line(error)}") from None
    check_finite_weights(path, model)
    return model


def check_finite_weights(path: Path, model) -> None:
    """HDF5 keeps no checksums: overwritten weight bytes load silently, and often as NaN or inf. `model`: a Keras
    model, or its weights by Keras path."""
    import numpy as np

    named = model.items() if isinstance(model, dict) else ((weight.path, weight.numpy()) for weight in model.weights)
    for name, values in named:
        if not np.isfinite(values).all():
            raise ModelFileError(f"{path}: weight {name} has NaN or infinite values; the file is damaged, {MAKE_ONE}")


# ---------------------------------------------------------------------------------------------------------------------
# ONNX exports (export-model --output PATH.onnx), run by ONNX Runtime
# ---------------------------------------------------------------------------------------------------------------------

ONNX_CONFIG_KEY = "wav2vec2_config"  # metadata_props key where export-model records the Wav2Vec2Config


def load_onnx_session(path: Path):
    """An onnxruntime.InferenceSession of an ONNX export: inputs `audio`, `audio_length`, one output (logits)."""
    try:
        import onnxruntime
    except ImportError:
        raise ModelFileError(f"{path} is an ONNX model but onnxruntime is not installed "
                             "(it is in requirements.txt)") from None
    providers = [name for name in onnxruntime.get_available_providers()
                 if name in ("CUDAExecutionProvider", "CPUExecutionProvider")]
    try:
        session = onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as error:  # ORT raises its own exception types for a truncated or foreign file
        raise ModelFileError(f"cannot load {path} as an ONNX model ({first_line(error)[:200]}): {MAKE_ONE}") from None
    check_onnx_io(path, [node.name for node in session.get_inputs()], [node.name for node in session.get_outputs()])
    return session


def check_onnx_io(path: Path, inputs: list[str], outputs: list[str]) -> None:
    if tuple(inputs) != INPUT_NAMES or len(outputs) != 1:
        raise ModelFileError(f"{path} has inputs {inputs} and outputs {outputs}; the integration needs inputs "
                             f"{list(INPUT_NAMES)} and one output (logits): {MAKE_ONE}")


def check_onnx_export(path: Path, session, input_samples: int | None = None) -> None:
    """The conv stack and vocabulary of an ONNX export's session (from export-model's recorded config, else by
    running it once), and its input length (see check_input_length)."""
    recorded = onnx_wav2vec2_config(path, session)
    if recorded:
        check_conv_stack(path, recorded)
        check_vocabulary(path, recorded)
    else:
        check_onnx_frames(path, session)
    check_input_length(path, session.get_inputs()[0].shape[1], input_samples)


def check_onnx_frames(path: Path, session) -> None:
    """A graph made elsewhere records no Wav2Vec2Config, so its conv stack is checked by running it once on silence
    (1 s, or its fixed input length): it must give the frames preprocessing counts (the base conv stack)."""
    import numpy as np

    from librispeech.data import model_frames
    from librispeech.tokenizer import vocabulary_tokens

    shape = session.get_inputs()[0].shape
    if len(shape) != 2:
        raise ModelFileError(f"{path} takes `audio` of shape {shape}; the integration feeds [batch, samples]: "
                             f"{MAKE_ONE}")
    num_samples = shape[1] if isinstance(shape[1], int) else WAV2VEC2_SAMPLE_RATE  # a second, for a dynamic axis
    try:
        logits = session.run(None, {"audio": np.zeros((1, num_samples), np.float32),
                                    "audio_length": np.full((1, 1), num_samples, np.float32)})[0]
    except Exception as error:  # ORT's own exception types: wrong input ranks or dtypes, a failing node
        raise ModelFileError(f"{path} records no {ONNX_CONFIG_KEY} and fails on a test input "
                             f"({first_line(error)}); {MAKE_ONE}") from None
    if logits.ndim == 3 and logits.shape[1] == model_frames(num_samples) and logits.shape[2] != len(
            vocabulary_tokens()):
        raise ModelFileError(f"{path} records no {ONNX_CONFIG_KEY} and gives logits over {logits.shape[2]} tokens; "
                             f"the runtime's vocabulary ({VOCAB_SOURCE}) has {len(vocabulary_tokens())}")
    if logits.ndim != 3 or logits.shape[1] != model_frames(num_samples):
        raise ModelFileError(f"{path} records no {ONNX_CONFIG_KEY}, and on {num_samples} samples it gives logits of "
                             f"shape {list(logits.shape)}, not [1, {model_frames(num_samples)}, vocabulary] as the "
                             f"base conv stack that preprocessing counts frames with; {MAKE_ONE}")


def onnx_wav2vec2_config(path: Path, session) -> dict:
    """The Wav2Vec2Config export-model records in an .onnx's metadata ({} for a graph made elsewhere)."""
    recorded = session.get_modelmeta().custom_metadata_map.get(ONNX_CONFIG_KEY)
    try:
        return json.loads(recorded) if recorded else {}
    except ValueError:
        raise ModelFileError(f"{path}: its {ONNX_CONFIG_KEY} metadata is not JSON; {MAKE_ONE}") from None
