"""export-model: convert a Hugging Face Wav2Vec2ForCTC checkpoint into the native Keras model, save it, check it.

    export-model --checkpoint facebook/wav2vec2-base-960h --output model/wav2vec.h5 [--max-seconds 34.955]
    export-model --checkpoint facebook/wav2vec2-base-960h --output model/wav2vec.h5 --output model/wav2vec.onnx
    export-model --checkpoint model/demo-wav2vec2.h5 --output model/demo-wav2vec2.onnx

The output's suffix picks the format: `.h5` (Keras) or `.onnx` (ONNX, opset 16, run by ONNX Runtime); `--output` may
repeat, so one conversion writes both. `--checkpoint` is a hub id, an HF checkpoint folder, or one of this project's
own `.h5` exports. The `.h5` input length is fixed (default: the project's max_samples); the `.onnx` time axis is
dynamic unless `--max-seconds` is given. The conversion itself is librispeech.wav2vec2.convert_hf (HF -> Keras) and
librispeech_tools.onnx_wav2vec2 (Keras -> ONNX). The tokenizer's vocab.json is written next to each model.
After saving, the export checks itself: saved -> loaded .h5 gives identical outputs; the .onnx is within Tensorleap's
importer limits and ONNX Runtime gives Keras' logits, padded and unpadded; and (when torch and transformers are
installed) the logits match HF's PyTorch Wav2Vec2ForCTC from the same checkpoint, on the bundled corpus' speech (2 s
for the .h5, up to 21 s for the .onnx).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from librispeech.wav2vec2.convert_hf import (
    CONFIG_FILE, TF_FILE, VOCAB_FILE, WEIGHT_FILES, CheckpointError, check_feature_extractor, convert_to_keras,
    load_checkpoint, read_json, resolve_checkpoint)
from librispeech_tools.precision import full_float32

logger = logging.getLogger("librispeech_tools.export")


class ExportCheckError(RuntimeError):
    """The exported model failed a self-check (save/load equality, blank padding, PyTorch parity)."""


# ---------------------------------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------------------------------

CHECK_FRAMES = 1500  # 30 s of wav2vec2-base's 20 ms frames


def _check_input(num_samples: int, sample_rate: int) -> np.ndarray:
    """Speech for the export checks: the bundled corpus' dev-clean utterances end to end, normalised as the model
    input. Speech, not noise: noise hid a float32 drift of the ONNX graph's group norm on long inputs (2e-5 from
    Keras on 21 s of noise, 3.3e-4 on 21 s of speech). Without the corpus (a copy of the package alone), noise,
    with a warning."""
    from librispeech.config import BUNDLED_CORPUS, project_config
    from librispeech.data import decode_audio, normalize_audio

    epsilon = project_config().normalize_epsilon
    pieces, total = [], 0
    for path in sorted((BUNDLED_CORPUS / "dev-clean").glob("*/*/*.flac")):
        if total >= num_samples:
            break
        pieces.append(decode_audio(str(path), sample_rate))
        total += pieces[-1].size
    if total >= num_samples:
        return normalize_audio(np.concatenate(pieces)[:num_samples], epsilon)
    print(f"export-model: warning: {BUNDLED_CORPUS} is missing, so the checks run on random noise, which is weaker",
          file=sys.stderr)
    return normalize_audio(np.random.default_rng(0).normal(0.0, 1.0, num_samples), epsilon)


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
    # float32 whatever the checkpoint stores (transformers 5 keeps a float16 checkpoint in float16)
    reference = Wav2Vec2ForCTC.from_pretrained(str(checkpoint_dir), attn_implementation="eager",
                                               dtype=torch.float32).eval()
    with torch.inference_mode():
        logits = reference(torch.from_numpy(audio[None])).logits[0].float().numpy()
    mapping = vocabulary_mapping(checkpoint_dir, reference.config.to_dict())
    if mapping is None:
        return logits
    # in the runtime's order, as the export's; NaN for the tokens the checkpoint lacks (not compared)
    return np.stack([logits[:, source] if source is not None else np.full(len(logits), np.nan, np.float32)
                     for source in mapping], axis=-1)


def _padded_blank_margin(padded_logits: np.ndarray, blank_id: int) -> float:
    """Smallest margin of the blank logit over the others on padded frames (inf when there are none)."""
    if padded_logits.size == 0:
        return float("inf")
    return float((padded_logits[..., blank_id] - np.delete(padded_logits, blank_id, axis=-1).max(-1)).min())


def check_pytorch(checkpoint_dir: Path | None, audio: np.ndarray, logits: np.ndarray, label: str,
                  sample_rate: int = 16000, tolerance: float = 1e-3) -> dict[str, Any]:
    """`logits` [frames, vocab] (real frames of `audio`) against HF's PyTorch model, when it can run."""
    if checkpoint_dir is None:
        print(f"check: PyTorch reference skipped for {label} (the source is an .h5 export, not an HF checkpoint)")
        return {"pytorch": "skipped"}
    if (checkpoint_dir / TF_FILE).is_file() and not any((checkpoint_dir / name).is_file()
                                                        for name in WEIGHT_FILES if name != TF_FILE):
        print("check: PyTorch reference skipped (transformers cannot read a tf_model.h5-only checkpoint)")
        return {"pytorch": "skipped"}
    reference = pytorch_reference_logits(checkpoint_dir, audio)
    if reference is None:
        print("check: PyTorch reference skipped (it needs both torch and transformers installed)")
        return {"pytorch": "skipped"}
    compared = ~np.isnan(reference[0])  # the checkpoint's own tokens
    reference, logits = reference[:, compared], logits[:, compared]
    difference = float(np.abs(reference - logits).max())
    scale = max(1.0, float(np.abs(reference).max()))
    agreement = float(np.mean(reference.argmax(-1) == logits.argmax(-1)))
    print(f"check: PyTorch Wav2Vec2ForCTC vs {label} on {audio.size / sample_rate:.2f} s of speech "
          f"({len(logits)} frames): max |logits difference| = {difference:.3g} "
          f"(largest logit {scale:.3g}), greedy ids agree on {agreement:.1%} of frames")
    if difference > tolerance * scale:
        raise ExportCheckError(f"{label} and PyTorch logits differ by {difference} > {tolerance} * {scale}")
    return {"pytorch": "ran", "pytorch_max_abs_diff": difference, "pytorch_argmax_agreement": agreement}


def _check_audio(model, seconds: float, sample_rate: int) -> np.ndarray:
    from librispeech.wav2vec2.model import model_config

    config = model_config(model)
    max_samples = model.inputs[0].shape[1]
    # at most CHECK_FRAMES frames: attention's memory grows with their square (a stack with small strides makes many)
    samples = min(int(seconds * sample_rate), int(0.6 * max_samples), CHECK_FRAMES * math.prod(config.conv_stride))
    return _check_input(max(samples, config.receptive_field), sample_rate)


def check_export(model, output: Path, checkpoint_dir: Path | None, seconds: float = 2.0, sample_rate: int = 16000,
                 tolerance: float = 1e-3) -> dict[str, Any]:
    """Saved -> loaded equality and (when available) parity with PyTorch on a short piece of speech padded to the
    model's length. Raises ExportCheckError on a failed check; returns what ran and the measured differences."""
    import keras

    from librispeech.wav2vec2.layers import BLANK_LOGIT
    from librispeech.wav2vec2.model import model_config

    config = model_config(model)
    max_samples = model.inputs[0].shape[1]
    audio = _check_audio(model, seconds, sample_rate)
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
    margin = _padded_blank_margin(logits[frames:], config.pad_token_id)
    if margin < BLANK_LOGIT:
        raise ExportCheckError(f"padded frames are not a certain blank (margin {margin})")
    report.update(check_pytorch(checkpoint_dir, audio, logits[:frames], "Keras", sample_rate, tolerance))
    return report


def check_onnx_export(model, output: Path, checkpoint_dir: Path | None, seconds: float = 30.0,
                      sample_rate: int = 16000, tolerance: float = 1e-4) -> dict[str, Any]:
    """The .onnx at `output`: within Tensorleap's importer limits, loads as the integration loads it, and ONNX
    Runtime's logits equal the Keras model's (unpadded, and padded with blank padded frames) to `tolerance`; then
    PyTorch parity when available. Raises ExportCheckError on a failed check. On long audio (60% of the model's
    input at most): float32 sums over many frames drift with length, which a short input would not show."""
    import onnx

    from librispeech.model_file import load_onnx_session
    from librispeech.wav2vec2.layers import BLANK_LOGIT
    from librispeech.wav2vec2.model import model_config
    from librispeech_tools.onnx_wav2vec2 import limit_violations

    problems = limit_violations(onnx.load(str(output), load_external_data=False))
    if problems:
        raise ExportCheckError(f"{output.name} is outside what Tensorleap's ONNX importer reads: "
                               f"{'; '.join(problems)}")
    session = load_onnx_session(output)  # the runtime's loader, without its base-conv-stack rule
    config = model_config(model)
    audio = _check_audio(model, seconds, sample_rate)
    frames = config.num_frames(audio.size)
    keras_logits = _unpadded_keras_logits(model, audio)
    fixed = session.get_inputs()[0].shape[1]
    padded_length = fixed if isinstance(fixed, int) else audio.size + audio.size // 2 + 123
    onnx_padded = session.run(None, dict(zip(("audio", "audio_length"), _pad(audio, padded_length))))[0][0]
    report: dict[str, Any] = {"onnx_limits": "ok"}
    if isinstance(fixed, int):
        report["onnx_keras_max_abs_diff"] = float(np.abs(onnx_padded[:frames] - keras_logits[:frames]).max())
    else:
        onnx_unpadded = session.run(None, dict(zip(("audio", "audio_length"), _pad(audio, audio.size))))[0][0]
        report["onnx_keras_max_abs_diff"] = float(max(np.abs(onnx_padded[:frames] - keras_logits[:frames]).max(),
                                                      np.abs(onnx_unpadded - keras_logits[:frames]).max()))
    margin = _padded_blank_margin(onnx_padded[frames:], config.pad_token_id)
    # float32's rounding grows with the logits: the scale is the largest of the checkpoint's own tokens' (the
    # runtime tokens it lacks sit at MISSING_TOKEN_LOGIT and would loosen the check ten-thousandfold)
    own_tokens = ~np.all(keras_logits[:frames] == np.float32(MISSING_TOKEN_LOGIT), axis=0)
    scale = max(1.0, float(np.abs(keras_logits[:frames, own_tokens]).max(initial=0.0)))
    inputs = "padded to the fixed length" if isinstance(fixed, int) else "unpadded and padded"
    print(f"check: {output.name} is opset <= 16, IR <= 8, standard ops; ONNX Runtime vs Keras on "
          f"{audio.size / sample_rate:.2f} s ({inputs}): max |logits difference| = "
          f"{report['onnx_keras_max_abs_diff']:.3g} (largest logit {scale:.3g}); padded frames blank by {margin:.3g}")
    if report["onnx_keras_max_abs_diff"] > tolerance * scale:
        raise ExportCheckError(f"ONNX Runtime and Keras logits differ by {report['onnx_keras_max_abs_diff']} > "
                               f"{tolerance} * {scale:.3g}")
    if margin < BLANK_LOGIT:
        raise ExportCheckError(f"padded frames of the ONNX model are not a certain blank (margin {margin})")
    report.update(check_pytorch(checkpoint_dir, audio, onnx_padded[:frames], "ONNX Runtime", sample_rate))
    return report


@functools.lru_cache(maxsize=1)  # --int8 checks the float and the int8 .onnx against the same model
def _any_length_model(model):
    from librispeech.wav2vec2.model import with_input_length

    return with_input_length(model, None)


def _unpadded_keras_logits(model, audio: np.ndarray) -> np.ndarray:
    """Keras' logits of `audio` alone, by the model built for any length (the padding-invariant model gives the same
    on the padded input): padding to the fixed input would cost attention over every frame of it, ~13 GB for a conv
    stack of total stride 20 at 34.955 s."""
    return np.asarray(_any_length_model(model).predict_on_batch(list(_pad(audio, audio.size))))[0]


def check_int8_export(model, output: Path, seconds: float = 2.0, sample_rate: int = 16000) -> dict[str, Any]:
    """An int8 .onnx: still within the importer limits and loadable; how far its logits are from Keras' (reported,
    not bounded: quantization changes them)."""
    import onnx

    from librispeech.model_file import load_onnx_session
    from librispeech_tools.onnx_wav2vec2 import fixed_input_samples, limit_violations

    proto = onnx.load(str(output), load_external_data=False)
    problems = limit_violations(proto)
    if problems:
        raise ExportCheckError(f"{output.name} is outside what Tensorleap's ONNX importer reads: "
                               f"{'; '.join(problems)}")
    session = load_onnx_session(output)  # the runtime's loader, without its base-conv-stack rule
    audio = _check_audio(model, seconds, sample_rate)
    keras_logits = _unpadded_keras_logits(model, audio)
    inputs = _pad(audio, fixed_input_samples(proto) or audio.size)  # a fixed-length .onnx takes them padded to it
    logits = session.run(None, dict(zip(("audio", "audio_length"), inputs)))[0][0][:len(keras_logits)]
    report = {"int8_max_abs_diff": float(np.abs(logits - keras_logits).max()),
              "int8_argmax_agreement": float(np.mean(logits.argmax(-1) == keras_logits.argmax(-1)))}
    print(f"check: {output.name} (int8) is within the importer limits; vs float Keras on "
          f"{audio.size / sample_rate:.2f} s of speech: max |logits difference| = "
          f"{report['int8_max_abs_diff']:.3g}, greedy ids agree on {report['int8_argmax_agreement']:.1%} of frames")
    return report


# ---------------------------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------------------------

FORMATS = {".h5": "Keras", ".onnx": "ONNX"}


def check_first_frame(checkpoint_dir: Path, max_samples: int) -> None:
    """The input length against the checkpoint's own conv stack, from its config.json alone: before its weights
    (a gigabyte for a large model) are read. A config.json that does not parse is load_checkpoint's to report."""
    from librispeech.wav2vec2.configuration import Wav2Vec2Config

    try:
        config = Wav2Vec2Config.from_dict(read_json(checkpoint_dir / CONFIG_FILE))
    except (OSError, TypeError, ValueError):  # CheckpointError included
        return
    config.check_input_length(max_samples)


def load_source(checkpoint: str | os.PathLike, max_samples: int):
    """(Keras model with input length max_samples, HF checkpoint folder or None, vocab.json to copy or None) from a
    hub id, an HF checkpoint folder, or one of this project's .h5 exports."""
    path = Path(checkpoint)
    if path.suffix.lower() in (".h5", ".hdf5") and not path.is_dir():  # as load_wav2vec2 takes them
        from librispeech.model_file import load_keras_h5
        from librispeech.wav2vec2.model import with_input_length

        model = load_keras_h5(path)
        if model.inputs[0].shape[1] != max_samples:
            model = with_input_length(model, max_samples)
        vocab = path.parent / VOCAB_FILE
        return model, None, vocab if vocab.is_file() else None
    from librispeech.config import project_config
    from librispeech.tokenizer import vocabulary_tokens

    checkpoint_dir = resolve_checkpoint(checkpoint)
    check_feature_extractor(checkpoint_dir, project_config().sample_rate)
    check_first_frame(checkpoint_dir, max_samples)
    config, weights = load_checkpoint(checkpoint_dir)
    mapping = vocabulary_mapping(checkpoint_dir, config)
    if not (checkpoint_dir / VOCAB_FILE).is_file():
        print(f"export-model: warning: {checkpoint_dir} has no {VOCAB_FILE}; its CTC head is taken to use the "
              f"runtime's vocabulary (wav2vec2-base-960h's {len(vocabulary_tokens())} characters). If it was "
              f"fine-tuned with another, copy its tokenizer files beside its config.json, or its transcripts will be "
              f"wrong", file=sys.stderr)
    if mapping is not None:
        config, weights = remap_ctc_head(config, weights, mapping)
        lacking = [token for token, source in zip(vocabulary_tokens(), mapping) if source is None]
        print(f"vocabulary: {checkpoint_dir}'s tokenizer is the runtime's in another order or spelling; the CTC "
              f"head is reordered to the runtime's vocab.json" + (f" (never emits {', '.join(lacking)}, which the "
                                                                  f"checkpoint lacks)" if lacking else ""))
    model = convert_to_keras(config, weights, max_samples)
    vocab = checkpoint_dir / VOCAB_FILE
    # the checkpoint's own vocab.json beside the export only when it is the runtime's, token for token
    same = vocab.is_file() and checkpoint_tokens(checkpoint_dir, len(vocabulary_tokens())) == vocabulary_tokens()
    return model, checkpoint_dir, vocab if same else None


# HF's fine-tuning recipe (and many community checkpoints) name these differently from wav2vec2-base-960h
TOKEN_ALIASES = {"[PAD]": "<pad>", "[UNK]": "<unk>", "[BOS]": "<s>", "[EOS]": "</s>", " ": "|"}
MISSING_TOKEN_LOGIT = -1e4  # the CTC head's output for a runtime token the checkpoint lacks (never emitted)


def runtime_token(token: str) -> str:
    """The runtime vocabulary's name for a checkpoint token: aliases, and letters in upper case (the runtime
    upper-cases transcripts)."""
    return TOKEN_ALIASES.get(token, token.upper() if len(token) == 1 else token)


def vocabulary_mapping(checkpoint_dir: Path, config: dict) -> list[int | None] | None:
    """The runtime reads logits with its own vocab.json (wav2vec2-base-960h's characters, `<pad>` = blank = 0). For
    each runtime token id: the checkpoint's id of the same token (None where the checkpoint lacks it, such as `<s>`);
    None when the checkpoint's vocabulary is already the runtime's. A checkpoint with a token the runtime lacks, two
    tokens of one name, or a blank other than its pad token cannot be read that way: CheckpointError."""
    from librispeech.model_file import VOCAB_SOURCE
    from librispeech.tokenizer import BLANK_ID, vocabulary_tokens

    runtime = vocabulary_tokens()
    size, blank = config.get("vocab_size", len(runtime)), config.get("pad_token_id", BLANK_ID)
    if not (isinstance(size, int) and size > 0):
        raise CheckpointError(f"{checkpoint_dir}: its config.json's vocab_size is {size!r}, not a positive integer")
    tokens = checkpoint_tokens(checkpoint_dir, size)  # None: nothing says otherwise, so the runtime's (see export)
    problems = []
    if tokens is None and size != len(runtime):
        problems.append(f"it has no {VOCAB_FILE}, and its vocab_size {size} is not the runtime vocabulary's "
                        f"{len(runtime)}")
    tokens = tokens or runtime
    if size != len(tokens) and not problems:
        problems.append(f"its vocab_size is {size} but its tokenizer has {len(tokens)} tokens")
    names = [runtime_token(token) for token in tokens]
    unknown = [token for token, name in zip(tokens, names) if name not in runtime]
    if unknown:
        problems.append(f"tokens the runtime's vocabulary lacks: {unknown[:8]}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        problems.append(f"two tokens for each of {repeated[:8]}")
    if blank is None or not 0 <= int(blank) < len(tokens) or names[int(blank)] != runtime[BLANK_ID]:
        problems.append(f"its CTC blank (pad_token_id {blank}) is not its {runtime[BLANK_ID]} token")
    if problems:
        raise CheckpointError(f"{checkpoint_dir}: {'; '.join(problems)}. This integration reads logits with the "
                              f"runtime's vocabulary ({VOCAB_SOURCE}: wav2vec2-base-960h's characters)")
    if tuple(names) == runtime:
        return None
    index = {name: position for position, name in enumerate(names)}
    return [index.get(token) for token in runtime]


def checkpoint_tokens(checkpoint_dir: Path, vocab_size: int) -> tuple[str, ...] | None:
    """The checkpoint tokenizer's tokens in id order (None without a vocab.json): vocab.json plus the tokens added on
    top of it (added_tokens.json, tokenizer_config.json's added_tokens_decoder), where HF's CTC tokenizer puts `<s>`
    and `</s>` when vocab.json lacks them, as in its fine-tuning recipe; a tokenizer saved with neither (older
    transformers) gets them as HF's gets them on loading (special_tokens). Added tokens at ids the model's
    vocab_size does not reach are left out: the model cannot emit them."""
    if not (checkpoint_dir / VOCAB_FILE).is_file():
        return None
    tokenizer_config = (read_json(checkpoint_dir / "tokenizer_config.json")
                        if (checkpoint_dir / "tokenizer_config.json").is_file() else {})
    vocab = read_json(checkpoint_dir / VOCAB_FILE)
    if isinstance(vocab, dict) and vocab and all(isinstance(table, dict) for table in vocab.values()):
        # one vocabulary per language (MMS): HF's CTC tokenizer reads the one of tokenizer_config's target_lang
        language = tokenizer_config.get("target_lang")
        if language not in vocab:
            raise CheckpointError(f"{checkpoint_dir}: its {VOCAB_FILE} holds one vocabulary per language "
                                  f"({', '.join(list(vocab)[:8])}) and its tokenizer_config.json names none of them "
                                  f"as target_lang ({language!r})")
        vocab = vocab[language]
    added_tokens = (read_json(checkpoint_dir / "added_tokens.json")
                    if (checkpoint_dir / "added_tokens.json").is_file() else {})
    try:
        pairs = [(str(token), int(i)) for token, i in vocab.items()]
        added = [(str(token), int(i)) for token, i in added_tokens.items()]
        decoder = tokenizer_config.get("added_tokens_decoder")
        added += [(entry["content"], int(i)) for i, entry in (decoder or {}).items()]
    except (AttributeError, TypeError, ValueError, KeyError) as error:
        raise CheckpointError(f"{checkpoint_dir}: its tokenizer files do not map tokens to ids ({VOCAB_FILE}, "
                              f"added_tokens.json, tokenizer_config.json: {type(error).__name__}: {error})") from None
    added += special_tokens(checkpoint_dir, tokenizer_config, pairs + added)
    pairs += [(token, i) for token, i in added if i < vocab_size]
    by_id: dict[int, str] = {}
    for token, i in pairs:
        if by_id.setdefault(i, token) != token:
            raise CheckpointError(f"{checkpoint_dir}: its tokenizer gives id {i} to both {by_id[i]!r} and {token!r}")
    if sorted(by_id) != list(range(len(by_id))):
        gaps = sorted(set(range(max(by_id) + 1)) - set(by_id))
        raise CheckpointError(f"{checkpoint_dir}: its tokenizer has no token for ids {gaps[:8]}")
    return tuple(by_id[i] for i in range(len(by_id)))


SPECIAL_TOKEN_DEFAULTS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


def special_tokens(checkpoint_dir: Path, tokenizer_config: dict, known: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The special tokens HF's CTC tokenizer adds on loading when its files lack them: bos, eos, unk and pad (its
    defaults, overridden by tokenizer_config.json and then special_tokens_map.json; a value may be an AddedToken's
    dict), in that order, each not yet among the `known` (token, id) pairs taking the next id."""
    special = dict(SPECIAL_TOKEN_DEFAULTS)
    path = checkpoint_dir / "special_tokens_map.json"
    for source in (tokenizer_config, read_json(path) if path.is_file() else {}):
        if isinstance(source, dict):
            special.update({key: source[key] for key in SPECIAL_TOKEN_DEFAULTS if key in source})
    tokens = {token for token, _ in known}
    next_id = max((i for _, i in known), default=-1) + 1
    added = []
    for value in special.values():
        token = value.get("content") if isinstance(value, dict) else value
        if isinstance(token, str) and token not in tokens:
            added.append((token, next_id))
            tokens.add(token)
            next_id += 1
    return added


def remap_ctc_head(config: dict, weights: dict, mapping: list[int | None]) -> tuple[dict, dict]:
    """The checkpoint with its CTC head's rows in the runtime vocabulary's order (`mapping`, see vocabulary_mapping):
    the same model, whose logits the runtime reads with its own vocab.json. A token the checkpoint lacks gets a zero
    row and MISSING_TOKEN_LOGIT as its bias, so it is never emitted."""
    weights = dict(weights)
    for key in [key for key in weights if key.endswith(("lm_head.weight", "lm_head.bias"))]:
        rows = weights[key]
        missing = np.zeros_like(rows[:1]) + (MISSING_TOKEN_LOGIT if key.endswith("bias") else 0.0)
        weights[key] = np.concatenate([rows[[source]] if source is not None else missing for source in mapping])
    return {**config, "vocab_size": len(mapping), "pad_token_id": 0}, weights


def save_and_check(model, path: Path, checkpoint_dir: Path | None, vocab_source: Path, fixed_samples: int | None,
                   verify: bool, int8: bool, sample_rate: int) -> None:
    """One output of export(): the model as .h5 or .onnx (int8 after its float check), vocab.json beside it. The
    model is written and checked in a hidden folder beside `path` and moved there only once it passed, so a file
    already at `path` (an earlier export, or the .h5 being converted) stays as it was if a check fails or the run is
    interrupted (a process killed outright can leave the hidden `.NAME.*` folder). A link at `path` keeps pointing
    to the new model; a replaced file's permissions are kept."""
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        staged = staging / target.name  # the checks' messages name the file as it will be called
        _save_and_check(model, staged, path, checkpoint_dir, fixed_samples, verify, int8, sample_rate)
        if target.exists():
            shutil.copymode(target, staged)
        os.replace(staged, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    vocab_output = path.parent / VOCAB_FILE
    if vocab_source.resolve() != vocab_output.resolve():
        partial = vocab_output.with_name(f".{VOCAB_FILE}.partial")  # a copy cut short leaves the old one whole
        shutil.copyfile(vocab_source, partial)
        os.replace(partial, vocab_output)
    print(f"wrote {path} and {vocab_output} (from {vocab_source})")


def _save_and_check(model, staged: Path, path: Path, checkpoint_dir: Path | None, fixed_samples: int | None,
                    verify: bool, int8: bool, sample_rate: int) -> None:
    from librispeech_tools.onnx_wav2vec2 import save_onnx

    max_samples = model.inputs[0].shape[1]
    if staged.suffix == ".h5":
        model.save(staged)
    else:
        save_onnx(model, staged, fixed_samples)
    length = f"{max_samples} samples" if staged.suffix == ".h5" or fixed_samples else "any length"
    print(f"saved {path.name} ({FORMATS[staged.suffix]}, input {length}, {staged.stat().st_size / 2 ** 20:.1f} MiB)")
    if verify:
        check = check_export if staged.suffix == ".h5" else check_onnx_export
        with full_float32():
            check(model, staged, checkpoint_dir, sample_rate=sample_rate)
    if int8 and staged.suffix == ".onnx":
        save_onnx(model, staged, fixed_samples, int8=True)
        print(f"rewrote {path.name} with int8 convs and MatMuls ({staged.stat().st_size / 2 ** 20:.1f} MiB)")
        if verify:
            with full_float32():
                check_int8_export(model, staged, sample_rate=sample_rate)


def export(checkpoint: str | os.PathLike, output: str | os.PathLike | list, max_seconds: float | None = None,
           verify: bool = True, int8: bool = False) -> list[Path]:
    """Convert `checkpoint` (hub id, HF folder or .h5 export) to each output (.h5 and/or .onnx), write vocab.json
    next to each, and check the results. The .h5 input length is max_seconds (default: the project's max_samples);
    the .onnx time axis is fixed at max_seconds, or dynamic when it is None. int8: each .onnx is checked in float,
    then rewritten int8 (onnx_wav2vec2.save_onnx(int8=True)). Returns the model paths."""
    from librispeech.config import project_config
    from librispeech.model_file import ModelFileError, check_conv_stack
    from librispeech.wav2vec2.configuration import InputTooShortError
    from librispeech.wav2vec2.model import model_config

    project = project_config()
    sample_rate = project.sample_rate
    fixed_samples = None if max_seconds is None else int(round(max_seconds * sample_rate))
    outputs = [Path(path) for path in (output if isinstance(output, (list, tuple)) else [output])]
    for path in outputs:
        if path.suffix not in FORMATS:
            raise ValueError(f"output must end in .h5 (Keras) or .onnx (ONNX), got {path}")

    started = time.perf_counter()
    try:
        model, checkpoint_dir, vocab_source = load_source(
            checkpoint, project.max_samples if fixed_samples is None else fixed_samples)
    except InputTooShortError as error:  # the checkpoint's own conv stack says how long its first frame is
        raise CheckpointError(f"--max-seconds {max_seconds} gives the model no frame: {error}") from None
    if checkpoint_dir is not None and vocab_source is None and (checkpoint_dir / VOCAB_FILE).is_file():
        inside = [str(path) for path in outputs if path.parent.resolve() == checkpoint_dir.resolve()]
        if inside:  # the runtime's vocab.json would replace the checkpoint's own, and HF would then misread it
            raise CheckpointError(f"--output {', '.join(inside)} is in the checkpoint's folder, whose {VOCAB_FILE} "
                                  f"(another vocabulary than the runtime's) the export's would replace: write the "
                                  f"export to another folder")
    max_samples = model.inputs[0].shape[1]
    print(f"converted {checkpoint}: {model.count_params():,} parameters, Keras input {max_samples} samples "
          f"({max_samples / sample_rate:.3f} s) -> logits [{model.outputs[0].shape[1]}, {model.outputs[0].shape[2]}]")
    vocab_source = vocab_source or project.vocab_file
    try:  # converted all the same (a conversion tool), but the runtime will refuse it
        check_conv_stack(Path(str(checkpoint)), dataclasses.asdict(model_config(model)))
    except ModelFileError as error:
        frames = model_config(model).num_frames(max_samples)
        print(f"warning: {error}. Its checks run it at its whole input length, {frames} frames here, whose "
              f"attention may need more memory than the base model's 1,747: a short --max-seconds (2, say) keeps "
              f"them small")
    for path in outputs:
        save_and_check(model, path, checkpoint_dir, vocab_source, fixed_samples, verify, int8, sample_rate)
    print(f"export done in {time.perf_counter() - started:.1f} s")
    return outputs


def main(argv: list[str] | None = None) -> int:
    from librispeech.config import project_config
    from librispeech.model_file import ModelFileError
    from librispeech_tools.onnx_wav2vec2 import OnnxExportError

    project = project_config()
    parser = argparse.ArgumentParser(prog="export-model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=project.checkpoint,
                        help=f"hub id, local HF checkpoint folder, or one of this project's .h5 (or .hdf5) exports "
                             f"(default {project.checkpoint})")
    parser.add_argument("--output", action="append",
                        help="the model to write; the suffix picks the format: .h5 (Keras) or .onnx (ONNX). Repeat "
                             "it to write both from one conversion (default model/wav2vec.h5)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help=f"fixed input length in seconds (default: {project.max_samples / project.sample_rate} "
                             f"for .h5, any length for .onnx)")
    parser.add_argument("--int8", action="store_true",
                        help="write each .onnx output with int8 convs and MatMuls (int8 weights; activations "
                             "quantized per utterance from its real frames): about 2x faster on CPU, not float-exact")
    parser.add_argument("--skip-checks", action="store_true",
                        help="skip the save/load, ONNX Runtime and PyTorch checks")
    args = parser.parse_args(argv)
    if args.max_seconds is not None and not math.isfinite(args.max_seconds):  # 0 or less: the checkpoint's conv
        parser.error(f"--max-seconds must be a number of seconds, got {args.max_seconds}")  # stack says it in one line
    outputs = args.output or ["model/wav2vec.h5"]
    if any(Path(path).suffix not in FORMATS for path in outputs):
        parser.error(f"--output must end in .h5 or .onnx: {', '.join(outputs)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        export(args.checkpoint, outputs, args.max_seconds, verify=not args.skip_checks, int8=args.int8)
    except (CheckpointError, ExportCheckError, ModelFileError, OnnxExportError) as error:
        print(f"export-model: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a file that cannot be read or written (an output folder under /proc, a full disk)
        print(f"export-model: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
