"""wav2vec2 on LibriSpeech for Tensorleap: data, features, the Keras model, metrics, visualizers and the report."""
from librispeech import modeling_wav2vec2  # noqa: F401  registers the model's custom Keras layers (for load_model)
