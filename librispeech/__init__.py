"""The runtime of the wav2vec2-on-LibriSpeech Tensorleap integration: what leap_binder.py and leap_test.py import,
and what the platform runs. Offline tools (export, training, synthetic corpora, the local report) are in
librispeech_tools/ and are never uploaded.

Importing this package imports nothing heavy. Its one effect is the telemetry guard: code-loader sends a usage event
when it is imported unless TL_DISABLE_ANALYTICS is set, and every entry point (leap_binder.py, leap_test.py, the
console scripts, the tests) imports this package before code-loader, so that nothing is sent.
"""
import os

os.environ.setdefault("TL_DISABLE_ANALYTICS", "true")

# Set by a local run that loads no Keras model (evaluate on ONNX Runtime), for itself and its worker processes:
# leap_binder then skips registering the .h5's Keras layers, which imports TensorFlow (~3 s)
WITHOUT_KERAS_ENV = "LIBRISPEECH_WITHOUT_KERAS"
