"""Offline tools around the runtime package `librispeech`: the HF export (`export-model`), the local analysis report
(`evaluate`), demo-model training (`train-demo`) and the synthetic espeak-ng corpora. Tensorleap never runs them;
leap.yaml does not upload them."""
import librispeech  # noqa: F401  the telemetry guard, before any tool imports code_loader
