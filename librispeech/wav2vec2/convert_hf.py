"""Hugging Face Wav2Vec2ForCTC checkpoints -> the Keras model: the only code that knows HF's file and weight names.

The checkpoint is a hub id or a local folder in HF format: config.json plus model.safetensors (or a sharded
model.safetensors.index.json), else pytorch_model.bin (needs torch), else tf_model.h5 (HF's TF weights, read with
h5py). Every weight of the Keras model must come from the checkpoint with the right shape; anything missing, unknown
or mis-shaped is a CheckpointError naming the key.

    config, weights = load_checkpoint(path_or_id)
    model = convert_to_keras(config, weights, max_samples)
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

logger = logging.getLogger("librispeech.convert_hf")

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
SAFETENSORS_FILE, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
PYTORCH_FILE, PYTORCH_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
TF_FILE = "tf_model.h5"
# in transformers' order of preference: a whole file before a shard index (re-saving a sharded checkpoint unsharded
# leaves the old index behind), safetensors before PyTorch pickles
WEIGHT_FILES = (SAFETENSORS_FILE, SAFETENSORS_INDEX, PYTORCH_FILE, PYTORCH_INDEX, TF_FILE)
# the feature extractor's settings (sampling rate, normalisation): transformers 5's processor.save_pretrained nests
# them in processor_config.json, which transformers reads first; older ones wrote preprocessor_config.json
PROCESSOR_FILE, PREPROCESSOR_FILE = "processor_config.json", "preprocessor_config.json"
EXTRA_FILES = (CONFIG_FILE, VOCAB_FILE, "added_tokens.json", "tokenizer_config.json", "special_tokens_map.json",
               PROCESSOR_FILE, PREPROCESSOR_FILE)  # the tokenizer files say which token each CTC output is

# Checkpoint weights known to be irrelevant to CTC inference (pre-training heads, SpecAugment's mask vector).
IGNORED_KEYS = re.compile(r"^(masked_spec_embed|quantizer\..*|project_q\..*|project_hid\..*|dropout_features\..*)$")
POS_CONV = "encoder.pos_conv_embed.conv"


class CheckpointError(ValueError):
    """A checkpoint that cannot be converted: missing, unknown or mis-shaped weights, unreadable files."""


def read_json(path: Path) -> Any:
    """A checkpoint's JSON file (config, tokenizer, shard index); a byte-order mark is allowed, as editors write it.
    CheckpointError naming the file when it does not parse (truncated, not JSON)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON (truncated or damaged?): {error}") from None


# ---------------------------------------------------------------------------------------------------------------------
# Reading checkpoints
# ---------------------------------------------------------------------------------------------------------------------

def resolve_checkpoint(path_or_id: str | os.PathLike) -> Path:
    """A local checkpoint folder, or the hub snapshot of a repo id (config, vocab and one weight format only)."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    if path.exists() or str(path_or_id).startswith((".", "/")):
        raise CheckpointError(f"checkpoint {str(path_or_id)!r} is not a folder with config.json and weights")
    import huggingface_hub

    repo_id = str(path_or_id)
    try:
        files = set(huggingface_hub.list_repo_files(repo_id))
    except Exception as error:  # offline: maybe it is in the local cache
        logger.info("cannot list %s on the hub (%s); trying the local cache", repo_id, type(error).__name__)
        try:
            return Path(huggingface_hub.snapshot_download(repo_id, local_files_only=True))
        except Exception:
            # "models/typo" reads as a hub id, as in transformers: say that no such folder is here either
            folder = (f"; nor is it a folder here ({path.parent} has no {path.name!r})"
                      if path.parent != Path(".") and path.parent.is_dir() else "")
            raise CheckpointError(f"cannot download {repo_id!r} from the Hugging Face hub and it is not cached: "
                                  f"{error} (without a network, HF_HUB_OFFLINE=1 reads the cache at once, "
                                  f"without the hub's retries){folder}") from error
    available = _preferred_weight_files([name for name in WEIGHT_FILES if name in files])
    if not available:
        raise CheckpointError(f"{repo_id!r} has none of {', '.join(WEIGHT_FILES)}")
    weight_file = available[0]
    patterns = [name for name in EXTRA_FILES if name in files] + [weight_file]
    if weight_file.endswith(".index.json"):
        patterns.append(weight_file.split(".")[0] + "-*")
    logger.info("downloading %s: %s", repo_id, ", ".join(patterns))
    return Path(huggingface_hub.snapshot_download(repo_id, allow_patterns=patterns))  # tqdm bars per file


def _preferred_weight_files(available: list[str]) -> list[str]:
    """Weight files in order of preference; PyTorch pickles last when torch is not installed."""
    if _torch_available():
        return available
    return sorted(available, key=lambda name: name in (PYTORCH_FILE, PYTORCH_INDEX))


def _torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None  # without importing it (seconds)


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def read_pytorch_bin(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"{path.name} is a PyTorch pickle and torch is not installed: install torch, or use a "
                              f"checkpoint with {SAFETENSORS_FILE}") from None
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return {key: value.detach().float().numpy() for key, value in state.items()}


def read_tf_h5(path: Path) -> dict[str, np.ndarray]:
    """HF TF weights (Keras 2 save_weights layout) -> PyTorch key names and layouts.

    TF names look like "tf_wav2vec2_for_ctc/wav2vec2/encoder/layers.0/attention/q_proj/kernel:0": the first scope is
    the model, the rest is the module path. Dense kernels [in, out] and Conv1D kernels [k, in, out] are transposed to
    torch's [out, in] / [out, in, k]; gamma/beta are LayerNorm weight/bias; the positional conv keeps weight_v in
    torch layout [out, in/groups, k] and stores weight_g as [k, 1, 1] (torch: [1, 1, k]).
    """
    import h5py

    weights: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as handle:
        root = handle["model_weights"] if "model_weights" in handle else handle
        names: list[tuple[str, h5py.Dataset]] = []
        if "layer_names" in root.attrs:
            for layer_name in root.attrs["layer_names"]:
                layer_name = layer_name.decode() if isinstance(layer_name, bytes) else layer_name
                group = root[layer_name]
                for weight_name in group.attrs.get("weight_names", []):
                    weight_name = weight_name.decode() if isinstance(weight_name, bytes) else weight_name
                    names.append((weight_name, group[weight_name]))
        else:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    names.append((name.split("/", 1)[1] if "/" in name else name, obj))
            root.visititems(visit)
        for tf_name, dataset in names:
            parts = tf_name.split(":")[0].split("/")[1:]  # drop the model scope
            value = np.asarray(dataset[()], dtype=np.float32)
            leaf = parts[-1]
            if leaf == "kernel":
                leaf, value = "weight", np.transpose(value) if value.ndim == 2 else np.transpose(value, (2, 1, 0))
            elif leaf == "gamma":
                leaf = "weight"
            elif leaf == "beta":
                leaf = "bias"
            elif leaf == "weight_g":
                value = value.reshape(1, 1, -1)
            weights[".".join(parts[:-1] + [leaf])] = value
    return weights


def _read_sharded(index_file: Path, reader) -> dict[str, np.ndarray]:
    try:
        shards = sorted(set(read_json(index_file)["weight_map"].values()))
    except (KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{index_file} has no weight_map of weight names to shard files") from None
    weights: dict[str, np.ndarray] = {}
    for shard in shards:
        weights.update(reader(index_file.parent / shard))
    return weights


def load_checkpoint(path_or_id: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(config.json as a dict, {checkpoint key: float32 array}) from a hub id or a local folder."""
    folder = resolve_checkpoint(path_or_id)
    config_file = folder / CONFIG_FILE
    if not config_file.is_file():
        raise CheckpointError(f"{folder} has no {CONFIG_FILE}")
    config = read_json(config_file)
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_file} is not a JSON object of configuration fields")
    check_model_type(config, folder)
    readers = {SAFETENSORS_INDEX: lambda p: _read_sharded(p, read_safetensors), SAFETENSORS_FILE: read_safetensors,
               PYTORCH_INDEX: lambda p: _read_sharded(p, read_pytorch_bin), PYTORCH_FILE: read_pytorch_bin,
               TF_FILE: read_tf_h5}
    available = _preferred_weight_files([name for name in WEIGHT_FILES if (folder / name).is_file()])
    if not available:
        raise CheckpointError(f"{folder} has none of {', '.join(WEIGHT_FILES)}")
    name = available[0]
    logger.info("reading %s", folder / name)
    try:
        weights = readers[name](folder / name)
    except CheckpointError:
        raise
    except Exception as error:  # noqa: BLE001  safetensors, torch and h5py raise their own kinds for a damaged file
        from librispeech.model_file import first_line

        raise CheckpointError(f"cannot read the weights in {folder / name} (truncated or damaged?): "
                              f"{first_line(error)}") from None
    return config, {key: np.asarray(value, dtype=np.float32) for key, value in weights.items()}


def check_model_type(config: Mapping[str, Any], folder) -> None:
    """Only wav2vec2 checkpoints convert: HuBERT, WavLM, data2vec-audio and wav2vec2-conformer look alike, but their
    layers and weight names differ, and reporting their weights as missing would mislead."""
    model_type = config.get("model_type", "wav2vec2")
    if model_type != "wav2vec2":
        architectures = ", ".join(config.get("architectures") or []) or "no architectures listed"
        raise CheckpointError(f"{folder} is a {model_type!r} checkpoint ({architectures}); export-model converts "
                              f"wav2vec2 checkpoints with a CTC head (Wav2Vec2ForCTC) only")


def check_feature_extractor(folder: Path, sample_rate: int) -> None:
    """The runtime feeds every model 16 kHz audio normalised to zero mean and unit variance (data.model_input), as
    wav2vec2-base-960h's feature extractor does. A checkpoint whose feature-extractor settings say otherwise would
    convert number for number and still transcribe wrongly, so it is refused here. The settings are read where
    transformers reads them: processor_config.json's "feature_extractor" (or "audio_processor") entry, else
    preprocessor_config.json (neither: HF's defaults, the same)."""
    path, extractor = folder / PROCESSOR_FILE, None
    if path.is_file():
        processor = read_json(path)
        if isinstance(processor, dict):
            extractor = processor.get("feature_extractor", processor.get("audio_processor"))
    if extractor is None:
        path = folder / PREPROCESSOR_FILE
        if not path.is_file():
            return
        extractor = read_json(path)
    if not isinstance(extractor, dict):
        raise CheckpointError(f"{path} has no JSON object of feature-extractor fields")
    if extractor.get("sampling_rate", sample_rate) != sample_rate:
        raise CheckpointError(f"{path}: the checkpoint takes {extractor['sampling_rate']} Hz audio and the runtime "
                              f"feeds {sample_rate} Hz (audio.sample_rate in librispeech/config.yaml), so every "
                              f"utterance would reach the model at the wrong speed")
    if extractor.get("do_normalize", True) is not True:
        raise CheckpointError(f"{path}: the checkpoint was trained on audio that is not normalised (do_normalize: "
                              f"{json.dumps(extractor['do_normalize'])}) and the runtime normalises every input to "
                              f"zero mean and unit variance, so its logits would not be the checkpoint's")


# ---------------------------------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------------------------------

def fold_weight_norm(weight_g: np.ndarray, weight_v: np.ndarray, dim: int = 2) -> np.ndarray:
    """torch weight_norm(dim=2): weight = g * v / ||v||, the norm taken over every axis except `dim` (the kernel
    taps of the positional conv, so one norm per tap over the out and in channels)."""
    weight_v = np.asarray(weight_v, dtype=np.float64)
    axes = tuple(axis for axis in range(weight_v.ndim) if axis != dim % weight_v.ndim)
    norm = np.sqrt(np.sum(np.square(weight_v), axis=axes, keepdims=True))
    return (np.asarray(weight_g, dtype=np.float64).reshape(norm.shape) * weight_v / norm).astype(np.float32)


def canonical_weights(weights: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Unprefixed PyTorch-style keys ("encoder.layers.0...", "lm_head.weight") with the positional conv's weight
    norm folded into "encoder.pos_conv_embed.conv.weight". Returns (weights, {canonical key: original key})."""
    canonical, origin = {}, {}
    for key, value in weights.items():
        name = key[len("wav2vec2."):] if key.startswith("wav2vec2.") else key
        name = name.replace(".parametrizations.weight.original0", ".weight_g")
        name = name.replace(".parametrizations.weight.original1", ".weight_v")
        if name in canonical:
            raise CheckpointError(f"checkpoint has the weight {name!r} twice (as {origin[name]!r} and {key!r})")
        canonical[name], origin[name] = value, key
    g_key, v_key, w_key = f"{POS_CONV}.weight_g", f"{POS_CONV}.weight_v", f"{POS_CONV}.weight"
    if g_key in canonical or v_key in canonical:
        for needed in (g_key, v_key):
            if needed not in canonical:
                other = v_key if needed == g_key else g_key
                raise CheckpointError(f"checkpoint has {origin[other]!r} but not its weight-norm partner "
                                      f"{needed.rsplit('.', 1)[-1]!r} (key {needed!r})")
        if w_key in canonical:
            raise CheckpointError(f"checkpoint has both {origin[w_key]!r} and weight-norm parameters")
        weight_g, weight_v = canonical.pop(g_key), canonical.pop(v_key)
        if weight_v.ndim != 3 or weight_g.size != weight_v.shape[2]:
            raise CheckpointError(f"weight norm of {POS_CONV}: {origin[g_key]!r} {tuple(weight_g.shape)} does not "
                                  f"match {origin[v_key]!r} {tuple(weight_v.shape)} (one g per kernel tap)")
        canonical[w_key] = fold_weight_norm(weight_g, weight_v, dim=2)
        origin[w_key] = f"{origin[g_key]} + {origin[v_key]}"
    return canonical, origin


def keras_weight_map(model) -> dict[str, tuple[Any, str]]:
    """{canonical checkpoint key: (Keras variable, layout)} for every weight of a Wav2Vec2ForCTC Keras model;
    layout is "dense" ([out, in] -> [in, out]), "conv" ([out, in, k] -> [k, in, out]) or "copy"."""
    from librispeech.wav2vec2.model import model_config

    mapping: dict[str, tuple[Any, str]] = {}

    def dense(prefix, layer, layout="dense"):
        mapping[f"{prefix}.weight"] = (layer.kernel, layout)
        if layer.use_bias:
            mapping[f"{prefix}.bias"] = (layer.bias, "copy")

    def norm(prefix, layer):
        mapping[f"{prefix}.weight"] = (layer.gamma, "copy")
        mapping[f"{prefix}.bias"] = (layer.beta, "copy")

    feature_extractor = model.get_layer("feature_extractor")
    for index, conv_layer in enumerate(feature_extractor.conv_layers):
        prefix = f"feature_extractor.conv_layers.{index}"
        dense(f"{prefix}.conv", conv_layer.conv, "conv")
        if conv_layer.layer_norm is not None:
            norm(f"{prefix}.layer_norm", conv_layer.layer_norm)
    projection = model.get_layer("feature_projection")
    norm("feature_projection.layer_norm", projection.layer_norm)
    dense("feature_projection.projection", projection.projection)
    encoder = model.get_layer("encoder")
    dense(POS_CONV, encoder.pos_conv_embed.conv, "conv")
    norm("encoder.layer_norm", encoder.layer_norm)
    for index, layer in enumerate(encoder.layers):
        prefix = f"encoder.layers.{index}"
        for projection_name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            dense(f"{prefix}.attention.{projection_name}", getattr(layer.attention, projection_name))
        norm(f"{prefix}.layer_norm", layer.layer_norm)
        dense(f"{prefix}.feed_forward.intermediate_dense", layer.feed_forward.intermediate_dense)
        dense(f"{prefix}.feed_forward.output_dense", layer.feed_forward.output_dense)
        norm(f"{prefix}.final_layer_norm", layer.final_layer_norm)
    dense("lm_head", model.get_layer("lm_head"))
    expected = len(model.weights)
    if len({id(variable) for variable, _ in mapping.values()}) != expected:
        raise CheckpointError(f"weight map covers {len(mapping)} of the model's {expected} weights "
                              f"({model_config(model)})")
    return mapping


def _to_keras_layout(value: np.ndarray, layout: str) -> np.ndarray:
    if layout == "dense" and value.ndim == 2:
        return value.T
    if layout == "conv" and value.ndim == 3:
        return np.transpose(value, (2, 1, 0))
    return value


def convert_to_keras(config: Mapping[str, Any], weights: Mapping[str, np.ndarray], max_samples: int | None,
                     progress: bool = True):
    """Build the Keras Wav2Vec2ForCTC for `config` and load every weight from the checkpoint `weights`."""
    from librispeech.wav2vec2.configuration import Wav2Vec2Config
    from librispeech.wav2vec2.model import build_and_assign

    try:
        wav2vec2_config = Wav2Vec2Config.from_dict(config)
    except ValueError as error:  # e.g. an activation this model does not implement
        raise CheckpointError(f"config.json: {error}") from None
    return build_and_assign(wav2vec2_config, max_samples,
                            lambda model: assign_checkpoint(model, wav2vec2_config, weights, progress))


def assign_checkpoint(model, wav2vec2_config, weights: Mapping[str, np.ndarray], progress: bool = True) -> None:
    """Set every weight of a built Keras Wav2Vec2ForCTC from the checkpoint `weights`."""
    from tqdm.auto import tqdm

    canonical, origin = canonical_weights(weights)
    mapping = keras_weight_map(model)
    prefixed = any(key.startswith("wav2vec2.") for key in weights)

    missing = [key for key in mapping if key not in canonical]
    if missing and all(key.startswith("lm_head.") for key in missing):
        raise CheckpointError("checkpoint has no CTC head (lm_head.weight, lm_head.bias): a pretrained encoder "
                              "(Wav2Vec2ForPreTraining, Wav2Vec2Model) or a model with another head (such as "
                              "Wav2Vec2ForSequenceClassification); export-model converts Wav2Vec2ForCTC only")
    if missing:
        shown = [("wav2vec2." + key if prefixed and not key.startswith("lm_head") else key) for key in missing]
        raise CheckpointError(f"checkpoint is missing {len(missing)} weight(s) of Wav2Vec2ForCTC: "
                              f"{', '.join(shown[:10])}{' ...' if len(shown) > 10 else ''}")
    ignored = sorted(origin[key] for key in canonical if key not in mapping and IGNORED_KEYS.match(key))
    unknown = sorted(origin[key] for key in canonical if key not in mapping and not IGNORED_KEYS.match(key))
    if unknown:
        raise CheckpointError(f"checkpoint has {len(unknown)} weight(s) this model does not know: "
                              f"{', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}")
    if ignored:
        logger.info("ignored %d checkpoint weight(s) not used for CTC inference: %s", len(ignored),
                    ", ".join(ignored))
    for key, (variable, layout) in tqdm(mapping.items(), desc="converting weights", unit="weight",
                                        disable=not progress):
        value = _to_keras_layout(canonical[key], layout)
        if tuple(value.shape) != tuple(variable.shape):
            raise CheckpointError(f"checkpoint weight {origin[key]!r} has shape {tuple(canonical[key].shape)}, which "
                                  f"does not fit {variable.path} {tuple(variable.shape)} (config: "
                                  f"{', '.join(f'{k}={v}' for k, v in _shape_config(wav2vec2_config).items())})")
        variable.assign(value.astype(np.float32))


def _shape_config(config) -> dict[str, Any]:
    return {name: getattr(config, name) for name in ("hidden_size", "intermediate_size", "vocab_size", "conv_dim",
                                                     "conv_kernel", "num_conv_pos_embeddings")}
