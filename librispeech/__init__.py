"""The runtime of the wav2vec2-on-LibriSpeech Tensorleap integration: what leap_binder.py and leap_test.py import,
and what the platform runs. Offline tools (export, training, synthetic corpora, the local report) are in
librispeech_tools/ and are never uploaded.

Importing this package imports nothing heavy. Its effects are two guards, as every entry point (leap_binder.py,
leap_test.py, the console scripts, the tests) imports this package before anything else:
- telemetry: code-loader sends a usage event when it is imported unless TL_DISABLE_ANALYTICS is set, so it is set;
- numba's cache: where librosa's code and the user's cache folder are both read-only, `import librosa` fails, so
  NUMBA_CACHE_DIR is then pointed at a temporary folder (numba_cache.py).
"""
import os

from librispeech import numba_cache

os.environ.setdefault("TL_DISABLE_ANALYTICS", "true")
numba_cache.guard()

# Set by a local run that loads no Keras model (evaluate on ONNX Runtime), for itself and its worker processes:
# leap_binder then skips registering the .h5's Keras layers, which imports TensorFlow (~3 s)
WITHOUT_KERAS_ENV = "LIBRISPEECH_WITHOUT_KERAS"
