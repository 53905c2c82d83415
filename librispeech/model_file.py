"""Opening the wav2vec2 export that the integration runs (leap_test.load_model, `evaluate --model`)."""
from __future__ import annotations

from pathlib import Path


class ModelFileError(Exception):
    """A model path that cannot be used; the message is one line naming the path and what is wrong."""


MAKE_ONE = ("make one with `export-model --checkpoint facebook/wav2vec2-base-960h --output model/wav2vec.h5`, or "
            "leave WAV2VEC_MODEL unset for the bundled demo model")


def load_wav2vec2(path: str | Path):
    """The Keras model saved at `path` by export-model (or train-demo)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no wav2vec2 model at {path}: {MAKE_ONE}")
    import keras

    import librispeech.wav2vec2.layers  # noqa: F401  registers the model's layers with Keras

    return keras.models.load_model(path, compile=False)
