"""Opening the wav2vec2 export that the integration runs (leap_test.load_model, `evaluate --model`)."""
from __future__ import annotations

from pathlib import Path


class ModelFileError(Exception):
    """A model path that cannot be used; the message is one line naming the path and what is wrong."""


MAKE_ONE = ("make one with `export-model --checkpoint facebook/wav2vec2-base-960h --output model/wav2vec.h5`, or "
            "leave WAV2VEC_MODEL unset for the bundled demo model")


def load_wav2vec2(path: str | Path):
    """The model saved at `path` by export-model (or train-demo): a keras.Model for .h5, an
    onnxruntime.InferenceSession for .onnx."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no wav2vec2 model at {path}: {MAKE_ONE}")
    if path.suffix.lower() == ".onnx":
        return load_onnx_session(path)
    import keras

    import librispeech.wav2vec2.layers  # noqa: F401  registers the model's layers with Keras

    return keras.models.load_model(path, compile=False)


# ---------------------------------------------------------------------------------------------------------------------
# ONNX exports (export-model --output PATH.onnx), run by ONNX Runtime
# ---------------------------------------------------------------------------------------------------------------------

ONNX_INPUT_NAMES = ["audio", "audio_length"]  # code-loader feeds a session by these names, in this order


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
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelFileError(f"cannot load {path} as an ONNX model ({reason[:200]}): {MAKE_ONE}") from None
    inputs = [node.name for node in session.get_inputs()]
    outputs = [node.name for node in session.get_outputs()]
    if inputs != ONNX_INPUT_NAMES or len(outputs) != 1:
        raise ModelFileError(f"{path} has inputs {inputs} and outputs {outputs}; the integration needs inputs "
                             f"{ONNX_INPUT_NAMES} and one output (logits): {MAKE_ONE}")
    return session
