"""export-model: convert a Hugging Face Wav2Vec2ForCTC checkpoint into the native Keras model, save it, check it.

    export-model --checkpoint facebook/wav2vec2-base-960h --output model/wav2vec.h5 [--max-seconds 34.955]

The conversion itself is librispeech.wav2vec2.convert_hf. The tokenizer's vocab.json is written next to the model.
After saving, the export checks itself: saved -> loaded .h5 gives identical outputs, and (when torch and transformers
are installed) the logits match HF's PyTorch Wav2Vec2ForCTC from the same checkpoint on a short random input.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from librispeech.wav2vec2.convert_hf import (
    TF_FILE, VOCAB_FILE, WEIGHT_FILES, CheckpointError, convert_to_keras, load_checkpoint, resolve_checkpoint)

logger = logging.getLogger("librispeech_tools.export")


class ExportCheckError(RuntimeError):
    """The exported model failed a self-check (save/load equality, blank padding, PyTorch parity)."""


# ---------------------------------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------------------------------

def _random_input(num_samples: int, seed: int = 0) -> np.ndarray:
    audio = np.random.default_rng(seed).normal(0.0, 1.0, num_samples)
    return ((audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)).astype(np.float32)


def _pad(audio: np.ndarray, max_samples: int) -> tuple[np.ndarray, np.ndarray]:
    padded = np.zeros((1, max_samples), dtype=np.float32)
    padded[0, :audio.size] = audio
    return padded, np.array([[audio.size]], dtype=np.float32)


def pytorch_reference_logits(checkpoint_dir: Path, audio: np.ndarray) -> np.ndarray | None:
    """HF Wav2Vec2ForCTC logits [frames, vocab] for one unpadded waveform, or None without torch/transformers."""
    try:
        import torch
        from transformers import Wav2Vec2ForCTC
    except ImportError:
        return None
    reference = Wav2Vec2ForCTC.from_pretrained(str(checkpoint_dir), attn_implementation="eager").eval()
    with torch.inference_mode():
        return reference(torch.from_numpy(audio[None])).logits[0].float().numpy()


def check_export(model, output: Path, checkpoint_dir: Path, seconds: float = 2.0, sample_rate: int = 16000,
                 tolerance: float = 1e-3) -> dict[str, Any]:
    """Saved -> loaded equality and (when available) parity with PyTorch on a short random input padded to the
    model's length. Raises ExportCheckError on a failed check; returns what ran and the measured differences."""
    import keras

    from librispeech.wav2vec2.layers import BLANK_LOGIT
    from librispeech.wav2vec2.model import model_config

    config = model_config(model)
    max_samples = model.inputs[0].shape[1]
    audio = _random_input(min(int(seconds * sample_rate), max(int(0.6 * max_samples), config.receptive_field)))
    frames = config.num_frames(audio.size)
    padded, length = _pad(audio, max_samples)
    logits = np.asarray(model.predict_on_batch([padded, length]))[0]
    report: dict[str, Any] = {}

    loaded = keras.models.load_model(output, compile=False)
    loaded_logits = np.asarray(loaded.predict_on_batch([padded, length]))[0]
    report["save_load_max_abs_diff"] = float(np.abs(loaded_logits - logits).max())
    print(f"check: saved -> loaded {output.name}: max |logits difference| = {report['save_load_max_abs_diff']:.3g}")
    if report["save_load_max_abs_diff"] > 1e-6:
        raise ExportCheckError(f"the loaded model differs from the exported one by {report['save_load_max_abs_diff']}")
    if frames < logits.shape[0]:
        padded_part = logits[frames:]
        margin = padded_part[:, config.pad_token_id] - np.delete(padded_part, config.pad_token_id, axis=1).max(1)
        if margin.min() < BLANK_LOGIT:
            raise ExportCheckError(f"padded frames are not a certain blank (margin {margin.min()})")

    if (checkpoint_dir / TF_FILE).is_file() and not any((checkpoint_dir / name).is_file()
                                                        for name in WEIGHT_FILES if name != TF_FILE):
        print("check: PyTorch reference skipped (transformers cannot read a tf_model.h5-only checkpoint)")
        report["pytorch"] = "skipped"
        return report
    reference = pytorch_reference_logits(checkpoint_dir, audio)
    if reference is None:
        print("check: PyTorch reference skipped (torch and transformers are not installed)")
        report["pytorch"] = "skipped"
        return report
    difference = float(np.abs(reference - logits[:frames]).max())
    scale = max(1.0, float(np.abs(reference).max()))
    agreement = float(np.mean(reference.argmax(-1) == logits[:frames].argmax(-1)))
    report.update(pytorch="ran", pytorch_max_abs_diff=difference, pytorch_argmax_agreement=agreement)
    print(f"check: PyTorch Wav2Vec2ForCTC on {audio.size / sample_rate:.2f} s of random audio ({frames} frames, "
          f"padded to {max_samples} samples here): max |logits difference| = {difference:.3g} "
          f"(largest logit {scale:.3g}), greedy ids agree on {agreement:.1%} of frames")
    if difference > tolerance * scale:
        raise ExportCheckError(f"Keras and PyTorch logits differ by {difference} > {tolerance} * {scale}")
    return report


# ---------------------------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------------------------

def export(checkpoint: str | os.PathLike, output: str | os.PathLike, max_seconds: float | None = None,
           sample_rate: int | None = None, verify: bool = True) -> Path:
    """Convert `checkpoint` (hub id or folder) to a Keras .h5 at `output` with input length max_seconds (default:
    the project's max_samples), write vocab.json next to it, and check the result. Returns the model path."""
    from librispeech.config import project_config

    project = project_config()
    sample_rate = sample_rate or project.sample_rate
    max_samples = project.max_samples if max_seconds is None else int(round(max_seconds * sample_rate))
    output = Path(output)
    if output.suffix != ".h5":
        raise ValueError(f"output must be an .h5 file, got {output}")

    started = time.perf_counter()
    checkpoint_dir = resolve_checkpoint(checkpoint)
    config, weights = load_checkpoint(checkpoint_dir)
    model = convert_to_keras(config, weights, max_samples)
    frames = model.outputs[0].shape[1]
    print(f"converted {checkpoint}: {model.count_params():,} parameters, input {max_samples} samples "
          f"({max_samples / sample_rate:.3f} s) -> logits [{frames}, {model.outputs[0].shape[2]}]")

    output.parent.mkdir(parents=True, exist_ok=True)
    model.save(output)
    vocab_source = checkpoint_dir / VOCAB_FILE
    if not vocab_source.is_file():
        vocab_source = project.vocab_file
    with open(vocab_source, encoding="utf-8") as handle:
        vocab_size = len(json.load(handle))
    if vocab_size != config.get("vocab_size", vocab_size):
        logger.warning("%s has %d tokens but the model's vocab_size is %d", vocab_source, vocab_size,
                       config["vocab_size"])
    vocab_output = output.parent / VOCAB_FILE
    if vocab_source.resolve() != vocab_output.resolve():
        shutil.copyfile(vocab_source, vocab_output)
    print(f"saved {output} ({output.stat().st_size / 2 ** 20:.1f} MiB) and {vocab_output} (from {vocab_source})")
    if verify:
        check_export(model, output, checkpoint_dir, sample_rate=sample_rate)
    print(f"export done in {time.perf_counter() - started:.1f} s")
    return output


def main(argv: list[str] | None = None) -> int:
    from librispeech.config import project_config

    project = project_config()
    parser = argparse.ArgumentParser(prog="export-model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=project.checkpoint,
                        help=f"hub id or local HF checkpoint folder (default {project.checkpoint})")
    parser.add_argument("--output", default="model/wav2vec.h5", help="the .h5 to write (default model/wav2vec.h5)")
    parser.add_argument("--max-seconds", type=float, default=project.max_samples / project.sample_rate,
                        help="fixed input length in seconds (default %(default)s)")
    parser.add_argument("--skip-checks", action="store_true", help="skip the save/load and PyTorch checks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        export(args.checkpoint, args.output, args.max_seconds, verify=not args.skip_checks)
    except (CheckpointError, ExportCheckError) as error:
        print(f"export-model: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
