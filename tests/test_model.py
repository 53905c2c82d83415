"""The native Keras Wav2Vec2ForCTC and its exporter against golden PyTorch fixtures (no torch needed).

tests/fixtures/golden/{group,layer,legacy} are tiny random HF checkpoints with an input waveform and PyTorch's
logits / last hidden state for it (scripts/make_golden_fixtures.py).
"""
import librispeech  # noqa: F401  first: its telemetry guard runs before anything imports code_loader

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from librispeech_tools import export as export_module
from librispeech.wav2vec2 import configuration, layers
from librispeech.wav2vec2 import model as modeling
from librispeech.wav2vec2.convert_hf import CheckpointError, convert_to_keras, fold_weight_norm, load_checkpoint
from librispeech.wav2vec2.configuration import Wav2Vec2Config
from librispeech.wav2vec2.layers import BLANK_LOGIT

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden"
VARIANTS = ("group", "layer", "legacy")
TOLERANCE = 1e-4

# Keras' own TF-tensor -> numpy conversion (e.g. while saving .h5) trips numpy 2's copy-keyword deprecation
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


@functools.cache
def golden(name: str):
    """(config dict, weights, input waveform, reference logits, reference last hidden state)."""
    config, weights = load_checkpoint(GOLDEN / name)
    folder = GOLDEN / name
    return (config, weights, np.load(folder / "input.npy"), np.load(folder / "logits.npy"),
            np.load(folder / "last_hidden_state.npy"))


@functools.cache
def golden_model(name: str, max_samples: int):
    config, weights, *_ = golden(name)
    return convert_to_keras(config, weights, max_samples, progress=False)


def run(model, audio: np.ndarray, lengths) -> np.ndarray:
    """Model logits for a batch [batch, samples] (zero-padded to the model's length) and real lengths."""
    max_samples = model.inputs[0].shape[1]
    batch = np.zeros((len(audio), max_samples), dtype=np.float32)
    for row, wave in enumerate(audio):
        batch[row, :len(wave)] = wave
    return np.asarray(model.predict_on_batch([batch, np.asarray(lengths, np.float32).reshape(-1, 1)]))


def blank_margin(logits: np.ndarray, blank: int = 0) -> np.ndarray:
    return logits[..., blank] - np.delete(logits, blank, axis=-1).max(-1)


# ---------------------------------------------------------------------------------------------------------------------
# Parity with PyTorch
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", VARIANTS)
def test_logits_and_hidden_state_match_pytorch(name):
    _, _, audio, reference, reference_hidden = golden(name)
    model = golden_model(name, audio.size)
    assert model.outputs[0].shape[1] == reference.shape[0]
    logits, hidden = modeling.with_hidden_states(model).predict_on_batch(
        [audio[None], np.array([[audio.size]], np.float32)])
    assert np.abs(np.asarray(logits)[0] - reference).max() <= TOLERANCE
    assert np.abs(np.asarray(hidden)[0] - reference_hidden).max() <= TOLERANCE


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("padding", ["zeros", "noise"])
def test_padded_input_gives_unpadded_logits_and_blank_padding(name, padding):
    _, _, audio, reference, _ = golden(name)
    max_samples = 2 * audio.size + 123
    model = golden_model(name, max_samples)
    padded = np.zeros((1, max_samples), dtype=np.float32)
    padded[0, :audio.size] = audio
    if padding == "noise":  # whatever lies past audio_length must not matter
        padded[0, audio.size:] = np.random.default_rng(0).normal(0, 3, max_samples - audio.size)
    logits = np.asarray(model.predict_on_batch([padded, np.array([[audio.size]], np.float32)]))[0]
    frames = reference.shape[0]
    assert logits.shape[0] == configuration.as_config(golden(name)[0]).num_frames(max_samples) > 2 * frames - 2
    assert np.abs(logits[:frames] - reference).max() <= TOLERANCE
    assert (logits[frames:].argmax(-1) == 0).all()
    assert blank_margin(logits[frames:]).min() >= BLANK_LOGIT


def test_batch_of_two_lengths_equals_each_alone():
    _, _, audio, reference, _ = golden("group")
    short = audio[:2500]
    batch_logits = run(golden_model("group", audio.size), [audio, short], [audio.size, short.size])
    alone_short = run(golden_model("group", short.size), [short], [short.size])[0]
    frames = alone_short.shape[0]
    assert np.abs(batch_logits[0] - reference).max() <= TOLERANCE
    assert np.abs(batch_logits[1, :frames] - alone_short).max() <= TOLERANCE
    assert blank_margin(batch_logits[1, frames:]).min() >= BLANK_LOGIT


def test_any_length_model_matches_fixed_length_models():
    config, weights, audio, _, _ = golden("layer")
    model = convert_to_keras(config, weights, None, progress=False)  # max_samples=None: any input length
    assert model.inputs[0].shape[1] is None
    for length in (audio.size, 2000):
        fixed = run(golden_model("layer", length), [audio[:length]], [length])
        np.testing.assert_allclose(np.asarray(model.predict_on_batch([audio[None, :length],
                                                                      np.array([[length]], np.float32)])),
                                   fixed, atol=1e-5)


@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", VARIANTS)
def test_mixed_bfloat16_model_stays_close_with_float32_logits_and_blank_padding(name, mixed_bfloat16):
    """Training may run in mixed_bfloat16 (train-demo --precision): norms and the CTC head stay float32."""
    config, weights, audio, reference, _ = golden(name)
    model = convert_to_keras(config, weights, 2 * audio.size, progress=False)
    assert model.get_layer("lm_head").compute_dtype == "float32"
    logits = run(model, [audio], [audio.size])[0]
    frames = reference.shape[0]
    assert logits.dtype == np.float32
    # bfloat16 keeps ~3 significant digits: about 1% mean error (float32 gives 1e-6); greedy decoding only
    # changes where the top two logits are nearly tied
    assert np.abs(logits[:frames] - reference).mean() <= 0.02 * np.abs(reference).mean()
    top_two = np.sort(reference, axis=-1)[:, -2:]
    clear = top_two[:, 1] - top_two[:, 0] > 0.1
    assert (logits[:frames].argmax(-1) == reference.argmax(-1))[clear].all()
    assert blank_margin(logits[frames:]).min() >= BLANK_LOGIT


@pytest.mark.parametrize("hidden_size, kernel, groups", [(32, 16, 4), (192, 64, 8)])  # golden fixtures, demo model
def test_positional_conv_in_mixed_bfloat16_matches_float32(hidden_size, kernel, groups, mixed_bfloat16):
    """The same weights in float32 are the reference (that path matches PyTorch above). 8 channels per group would hit
    oneDNN's wrong bfloat16 conv on AMX CPUs (layers.MIN_BFLOAT16_CONV_CHANNELS); the demo's 24 use the bf16 conv."""
    mixed = layers.Wav2Vec2PositionalConvEmbedding(hidden_size, kernel, groups)
    exact = layers.Wav2Vec2PositionalConvEmbedding(hidden_size, kernel, groups, dtype="float32")
    for layer in (mixed, exact):
        layer.build((None, None, hidden_size))
    exact.set_weights(mixed.get_weights())
    assert mixed.compute_dtype == "bfloat16"
    hidden_states = np.random.default_rng(0).standard_normal((2, 120, hidden_size)).astype(np.float32)
    expected = np.asarray(exact(hidden_states))
    got = np.asarray(keras.ops.cast(mixed(hidden_states), "float32"))
    assert np.abs(got - expected).mean() <= 0.02 * np.abs(expected).mean()


def test_frame_count_formula():
    base = Wav2Vec2Config()
    assert base.num_frames(16000) == 49 and base.num_frames(559280) == 1747 and base.receptive_field == 400
    for samples in (400, 401, 719, 720, 15999, 559280):
        assert base.num_frames(samples) == (samples - 400) // 320 + 1
    assert base.num_frames(399) == 0
    tiny = configuration.as_config(golden("group")[0])
    assert golden_model("group", 4000).outputs[0].shape[1] == tiny.num_frames(4000)


# ---------------------------------------------------------------------------------------------------------------------
# Saving and loading
# ---------------------------------------------------------------------------------------------------------------------

def test_h5_save_load_gives_identical_outputs(tmp_path):
    _, _, audio, _, _ = golden("layer")
    model = golden_model("layer", audio.size + 500)
    path = tmp_path / "wav2vec.h5"
    model.save(path)
    loaded = keras.models.load_model(path)  # plain load: the layers are registered by importing the module
    assert [tensor.name for tensor in loaded.inputs] == ["audio", "audio_length"]
    assert modeling.model_config(loaded) == modeling.model_config(model)
    assert modeling.model_config(loaded).vocab_size == 32
    inputs = ([audio, audio[:3000]], [audio.size, 3000])
    np.testing.assert_array_equal(run(loaded, *inputs), run(model, *inputs))
    hidden_model = modeling.with_hidden_states(loaded)
    assert [output.shape[-1] for output in hidden_model.outputs] == [32, 32]
    assert {type(layer).__name__ for layer in loaded.layers} >= {"Wav2Vec2FeatureEncoder", "Wav2Vec2Encoder"}


def test_build_and_assign_sets_the_weights_and_passes_errors_on():
    model = golden_model("group", 4000)
    weights = model.get_weights()
    config = modeling.model_config(model)
    rebuilt = modeling.build_and_assign(config, 4000, lambda built: built.set_weights(weights), name="copy")
    assert rebuilt.name == "copy"
    assert all(np.array_equal(a, b) for a, b in zip(rebuilt.get_weights(), weights))
    with pytest.raises(ValueError):
        modeling.build_and_assign(config, 4000, lambda built: built.set_weights(weights[:-1]))


JAX_BUILD_AND_ASSIGN = """
import sys

import jax
import keras
import numpy as np
from keras.src.backend.common import global_state
from librispeech.wav2vec2 import model as modeling
from librispeech.wav2vec2.convert_hf import convert_to_keras, load_checkpoint

drawn = []  # random weights computed (a traced draw, for shape inference while building, computes nothing)
uniform = keras.initializers.GlorotUniform.__call__


def counted(self, *args, **kwargs):
    value = uniform(self, *args, **kwargs)
    if not isinstance(value, jax.core.Tracer):
        drawn.append(value.shape)
    return value


keras.initializers.GlorotUniform.__call__ = counted
folder = sys.argv[1]
config, weights = load_checkpoint(folder)
audio, reference = np.load(folder + "/input.npy"), np.load(folder + "/logits.npy")
inputs = [audio[None], np.array([[audio.size]], np.float32)]
model = convert_to_keras(config, weights, None, progress=False)
assert not drawn, f"random weights drawn: {drawn}"
assert not global_state.get_global_attribute("uninitialized_variables", [])
fixed = modeling.with_input_length(model, audio.size)  # weights from another model
for built in (model, fixed):
    logits = np.asarray(built.predict_on_batch(inputs))[0]
    assert np.abs(logits - reference).max() <= 1e-4, np.abs(logits - reference).max()
    assert all(variable._value is not None for variable in built.variables)
stateless, _ = model.stateless_call(model.trainable_variables, model.non_trainable_variables, inputs)
assert np.abs(np.asarray(stateless)[0] - reference).max() <= 1e-4
try:
    modeling.build_and_assign(modeling.model_config(model), None, lambda built: built.set_weights([]))
except ValueError:
    pass
assert not global_state.get_global_attribute("uninitialized_variables", [])
with keras.StatelessScope():  # leaving a scope initialises what waits: nothing of ours may
    pass
assert not drawn
print("ok")
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (not a dependency)")
def test_jax_build_and_assign_skips_the_random_initializers():
    """On JAX the weights a checkpoint or export replaces are never drawn (a compiled random kernel per shape),
    and the model made that way gives PyTorch's logits, from a checkpoint and from another model's weights."""
    result = subprocess.run([sys.executable, "-c", JAX_BUILD_AND_ASSIGN, str(GOLDEN / "group")], capture_output=True,
                            text=True, timeout=600,
                            env={**os.environ, "KERAS_BACKEND": "jax", "TL_DISABLE_ANALYTICS": "true"})
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_custom_layers_are_registered_keras_layers():
    model = golden_model("group", 4000)
    used = {keras.saving.get_registered_name(type(layer)) for layer in model._flatten_layers()
            if type(layer).__module__ == layers.__name__}
    assert used <= set(modeling.CUSTOM_LAYERS)
    for name, cls in modeling.CUSTOM_LAYERS.items():
        assert issubclass(cls, keras.layers.Layer)
        assert name == f"librispeech>{cls.__name__}"


def test_a_saved_model_loads_with_the_custom_layers_alone(tmp_path, monkeypatch):
    """What a loader that builds custom_objects from code-loader's registry does (the platform): the names the .h5
    holds are CUSTOM_LAYERS' keys, so it loads with Keras' own registry emptied of this project's layers."""
    model = golden_model("group", 4000)
    path = tmp_path / "model.h5"
    model.save(path)
    with h5py.File(path) as saved:
        stored = {layer["class_name"] for layer in json.loads(saved.attrs["model_config"])["config"]["layers"]}
    assert {name for name in stored if name.startswith("librispeech>")} <= set(modeling.CUSTOM_LAYERS)
    registry = keras.saving.get_custom_objects()
    for name in modeling.CUSTOM_LAYERS:
        monkeypatch.delitem(registry, name)
    with pytest.raises(Exception, match="librispeech>Wav2Vec2"):
        keras.models.load_model(path, compile=False)
    loaded = keras.models.load_model(path, custom_objects=modeling.CUSTOM_LAYERS, compile=False)
    audio = np.random.default_rng(0).standard_normal((1, 3000)).astype(np.float32)
    np.testing.assert_array_equal(run(loaded, audio, [3000]), run(model, audio, [3000]))


def test_config_from_dict_ignores_unknown_keys():
    config_dict, *_ = golden("layer")
    config = Wav2Vec2Config.from_dict({**config_dict, "some_future_key": 1})
    assert config.do_stable_layer_norm and config.feat_extract_norm == "layer" and config.conv_bias
    assert config.conv_kernel == (10, 3, 3) and config.extra["some_future_key"] == 1
    assert Wav2Vec2Config.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="feat_extract_norm"):
        Wav2Vec2Config(feat_extract_norm="batch")


@pytest.mark.parametrize("change, says", [
    ({"hidden_size": None}, "hidden_size must be a whole number >= 1, got None"),
    ({"num_attention_heads": 0}, "num_attention_heads must be a whole number >= 1, got 0"),
    ({"layer_norm_eps": "1e-5"}, "layer_norm_eps must be a number in [0, 1), got '1e-5'"),
    ({"conv_kernel": [10, 3, "3"]}, "each of conv_kernel must be a whole number >= 1, got '3'"),
    ({"conv_bias": "false"}, "conv_bias must be true or false, got 'false'"),
])
def test_export_refuses_a_config_value_of_the_wrong_kind_in_one_line(tmp_path, capsys, change, says):
    """Before, a TypeError or ZeroDivisionError traceback, or (a string epsilon) an export that --skip-checks wrote."""
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(GOLDEN / "layer", checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, **change}))
    output = tmp_path / "model.h5"
    assert export_module.main(["--checkpoint", str(checkpoint), "--output", str(output), "--skip-checks"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("export-model: warning")]
    assert errors == [f"export-model: error: config.json: {says}"]
    assert not output.exists()


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoint reading and conversion
# ---------------------------------------------------------------------------------------------------------------------

def test_weight_norm_folding_equals_formula():
    rng = np.random.default_rng(0)
    weight_v = rng.normal(size=(12, 3, 5)).astype(np.float32)  # [out, in / groups, kernel taps]
    weight_g = rng.uniform(0.5, 2.0, size=(1, 1, 5)).astype(np.float32)
    folded = fold_weight_norm(weight_g, weight_v, dim=2)
    for tap in range(5):
        expected = weight_g[0, 0, tap] * weight_v[:, :, tap] / np.linalg.norm(weight_v[:, :, tap])
        np.testing.assert_allclose(folded[:, :, tap], expected, rtol=1e-6)
    # and the exported kernel is exactly that, in Keras layout [taps, in / groups, out]
    _, weights, *_ = golden("legacy")
    model = golden_model("legacy", 4567)
    kernel = np.asarray(model.get_layer("encoder").pos_conv_embed.conv.kernel)
    prefix = "wav2vec2.encoder.pos_conv_embed.conv."
    np.testing.assert_allclose(
        kernel, np.transpose(fold_weight_norm(weights[prefix + "weight_g"], weights[prefix + "weight_v"]), (2, 1, 0)),
        rtol=1e-6)


def test_both_weight_norm_namings_and_unprefixed_keys_convert_alike():
    _, weights, audio, reference, _ = golden("group")
    assert any("parametrizations.weight.original0" in key for key in weights)
    legacy = {key.replace("parametrizations.weight.original0", "weight_g")
              .replace("parametrizations.weight.original1", "weight_v"): value for key, value in weights.items()}
    unprefixed = {key.removeprefix("wav2vec2."): value for key, value in legacy.items()}
    config = golden("group")[0]
    for variant in (legacy, unprefixed):
        model = convert_to_keras(config, variant, audio.size, progress=False)
        assert np.abs(run(model, [audio], [audio.size])[0] - reference).max() <= TOLERANCE


def test_ignored_keys_are_logged(caplog):
    config, weights, *_ = golden("group")
    assert "wav2vec2.masked_spec_embed" in weights
    extra = {**weights, "quantizer.codevectors": np.zeros((1, 4, 2), np.float32),
             "project_q.weight": np.zeros((2, 2), np.float32)}
    with caplog.at_level("INFO", logger="librispeech.convert_hf"):
        convert_to_keras(config, extra, 4000, progress=False)
    assert re.search(r"ignored 3 .*: project_q\.weight, quantizer\.codevectors, wav2vec2\.masked_spec_embed",
                     caplog.text)


@pytest.mark.parametrize("broken, message", [
    ("missing", "wav2vec2.encoder.layers.1.attention.k_proj.weight"),
    ("missing_g", "weight_g"),
    ("shape", "wav2vec2.feature_projection.projection.weight"),
    ("unknown", "wav2vec2.encoder.layers.7.attention.q_proj.weight"),
    ("lm_head", "lm_head.bias"),
])
def test_broken_checkpoint_fails_naming_the_key(tmp_path, broken, message):
    config, weights, *_ = golden("legacy")
    weights = dict(weights)
    if broken == "missing":
        del weights["wav2vec2.encoder.layers.1.attention.k_proj.weight"]
    elif broken == "missing_g":
        del weights["wav2vec2.encoder.pos_conv_embed.conv.weight_g"]
    elif broken == "shape":
        weights["wav2vec2.feature_projection.projection.weight"] = np.zeros((32, 27), np.float32)
    elif broken == "unknown":
        weights["wav2vec2.encoder.layers.7.attention.q_proj.weight"] = np.zeros((32, 32), np.float32)
    else:
        del weights["lm_head.bias"]
    folder = tmp_path / "broken"
    folder.mkdir()
    shutil.copyfile(GOLDEN / "legacy" / "config.json", folder / "config.json")
    save_file(weights, str(folder / "model.safetensors"))
    loaded_config, loaded_weights = load_checkpoint(folder)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        convert_to_keras(loaded_config, loaded_weights, 4000, progress=False)
    assert export_module.main(["--checkpoint", str(folder), "--output", str(tmp_path / "m.h5"),
                               "--max-seconds", "0.3"]) == 1


def _tf_name(key: str) -> tuple[str, str]:
    """HF TF weight naming for a PyTorch key: (top-level Keras layer, weight name)."""
    parts = key.split(".")
    merged = []
    for part in parts[:-1]:
        if part.isdigit():
            merged[-1] += f".{part}"
        else:
            merged.append(part)
    leaf = parts[-1]
    if "layer_norm" in key:
        leaf = {"weight": "gamma", "bias": "beta"}[leaf]
    elif leaf == "weight":
        leaf = "kernel"
    return merged[0] if merged else leaf, "/".join(["tf_wav2vec2_for_ctc", *merged, leaf]) + ":0"


def write_tf_h5(weights: dict[str, np.ndarray], path: Path) -> None:
    """A tf_model.h5 laid out like HF's TF save_pretrained (Keras 2 save_weights: layer groups with weight_names)."""
    layers: dict[str, list[tuple[str, np.ndarray]]] = {}
    for key, value in weights.items():
        layer, name = _tf_name(key)
        if key.endswith(".weight") and "layer_norm" not in key:
            value = value.T if value.ndim == 2 else np.transpose(value, (2, 1, 0))
        elif key.endswith("weight_g"):
            value = value.reshape(-1, 1, 1)
        layers.setdefault(layer, []).append((name, value))
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [name.encode() for name in layers]
        for layer, entries in layers.items():
            group = handle.create_group(layer)
            group.attrs["weight_names"] = [name.encode() for name, _ in entries]
            for name, value in entries:
                group.create_dataset(name, data=value)


def test_tf_h5_checkpoint_converts_like_safetensors(tmp_path):
    config, weights, audio, reference, _ = golden("legacy")
    folder = tmp_path / "tf"
    folder.mkdir()
    shutil.copyfile(GOLDEN / "legacy" / "config.json", folder / "config.json")
    write_tf_h5(weights, folder / "tf_model.h5")
    with h5py.File(folder / "tf_model.h5") as handle:  # the naming this reader expects
        assert "tf_wav2vec2_for_ctc/wav2vec2/encoder/layers.0/attention/q_proj/kernel:0" in [
            name.decode() if isinstance(name, bytes) else name for name in handle["wav2vec2"].attrs["weight_names"]]
    _, tf_weights = load_checkpoint(folder)
    assert set(tf_weights) == set(weights)
    for key in weights:
        np.testing.assert_array_equal(tf_weights[key], weights[key])
    model = convert_to_keras(config, tf_weights, audio.size, progress=False)
    assert np.abs(run(model, [audio], [audio.size])[0] - reference).max() <= TOLERANCE


def test_pytorch_bin_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    _, weights, *_ = golden("group")
    folder = tmp_path / "pt"
    folder.mkdir()
    shutil.copyfile(GOLDEN / "group" / "config.json", folder / "config.json")
    torch.save({key: torch.from_numpy(value.copy()) for key, value in weights.items()}, folder / "pytorch_model.bin")
    _, pt_weights = load_checkpoint(folder)
    assert set(pt_weights) == set(weights)
    assert all(np.array_equal(pt_weights[key], weights[key]) for key in weights)


def test_pytorch_bin_without_torch_is_a_clear_error(tmp_path, monkeypatch):
    folder = tmp_path / "pt"
    folder.mkdir()
    shutil.copyfile(GOLDEN / "group" / "config.json", folder / "config.json")
    (folder / "pytorch_model.bin").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(CheckpointError, match="torch is not installed"):
        load_checkpoint(folder)


def test_hub_id_downloads_config_vocab_and_one_weight_format(monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda repo_id: [
        "config.json", "vocab.json", "added_tokens.json", "README.md", "pytorch_model.bin", "tf_model.h5",
        "model.safetensors"])
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, **kwargs: calls.append((repo_id, kwargs)) or str(GOLDEN / "group"))
    config, weights = load_checkpoint("facebook/wav2vec2-base-960h")
    assert calls == [("facebook/wav2vec2-base-960h", {"allow_patterns": ["config.json", "vocab.json",
                                                                         "added_tokens.json", "model.safetensors"]})]
    assert config["hidden_size"] == 32 and "lm_head.weight" in weights


def test_unreachable_hub_is_a_clear_error(monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("no network")
    monkeypatch.setattr(huggingface_hub, "list_repo_files", offline)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(CheckpointError, match="cannot download 'facebook/wav2vec2-base-960h'.*HF_HUB_OFFLINE=1"):
        load_checkpoint("facebook/wav2vec2-base-960h")


def test_offline_hub_id_is_read_from_the_local_cache(tmp_path, monkeypatch):
    """huggingface_hub itself, offline: a snapshot in its cache layout is found; one not cached is a clear error."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--facebook--wav2vec2-base-960h"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(GOLDEN / "group", snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    config, weights = load_checkpoint("facebook/wav2vec2-base-960h")
    assert config == json.loads((GOLDEN / "group" / "config.json").read_text()) and "lm_head.weight" in weights
    with pytest.raises(CheckpointError, match="cannot download 'facebook/wav2vec2-large-960h'") as refusal:
        load_checkpoint("facebook/wav2vec2-large-960h")
    assert "nor is it a folder here" not in str(refusal.value)
    # a mistyped local folder reads as a hub id too (as in transformers): the error says no such folder is here
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(CheckpointError, match=r"nor is it a folder here \(checkpoints has no 'wav2vec2-tyop'\)"):
        load_checkpoint("checkpoints/wav2vec2-tyop")


@pytest.mark.parametrize("change, says", [
    ("token", "tokens the runtime's vocabulary lacks: ['-']"),
    ("pad", "its CTC blank (pad_token_id 31) is not its <pad> token"),
    ("size", "its vocab_size is 40 but its tokenizer has 32 tokens"),
])
def test_export_refuses_a_checkpoint_whose_vocabulary_the_runtime_cannot_read(tmp_path, capsys, change, says):
    """Its logits would be read with the runtime's vocab.json: wrong transcripts and losses, silently."""
    from librispeech.tokenizer import vocabulary_tokens

    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(GOLDEN / "group", checkpoint)
    tokens = list(vocabulary_tokens())
    if change == "token":
        tokens[31] = "-"
    (checkpoint / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    config = json.loads((checkpoint / "config.json").read_text())
    config.update({"pad": {"pad_token_id": 31}, "size": {"vocab_size": 40}}.get(change, {}))
    (checkpoint / "config.json").write_text(json.dumps(config))
    output = tmp_path / "model.h5"
    assert export_module.main(["--checkpoint", str(checkpoint), "--output", str(output), "--skip-checks"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("export-model: error: ") and says in error and error.count("\n") == 1
    assert not output.exists()


@pytest.mark.parametrize("change, says", [
    ({"model_type": "hubert", "architectures": ["HubertForCTC"]},
     "is a 'hubert' checkpoint (HubertForCTC); export-model converts wav2vec2 checkpoints with a CTC head"),
    ({"vocab_size": 40}, "it has no vocab.json, and its vocab_size 40 is not the runtime vocabulary's 32"),
])
def test_export_refuses_other_model_families_and_a_vocabulary_it_cannot_know(tmp_path, capsys, change, says):
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(GOLDEN / "group", checkpoint)  # config.json and weights, no tokenizer files
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, **change}))
    assert export_module.main(["--checkpoint", str(checkpoint), "--output", str(tmp_path / "m.h5"),
                               "--skip-checks"]) == 1
    assert says in capsys.readouterr().err


@pytest.mark.parametrize("damage, says", [
    ("config.json", "config.json is not valid JSON (truncated or damaged?)"),
    ("vocab.json", "vocab.json is not valid JSON (truncated or damaged?)"),
    ("model.safetensors", "cannot read the weights in"),
    ("vocab_size", "its config.json's vocab_size is None, not a positive integer"),
    ("languages", "its vocab.json holds one vocabulary per language (eng, fra) and its tokenizer_config.json names "
                  "none of them as target_lang (None)"),
    # said from config.json before the weights are read: here they are damaged too, and never reached
    ("max_seconds", "--max-seconds 0.0 gives the model no frame: max_samples=0 is shorter than one frame (40 "
                    "samples)"),
    # the checkpoint's own conv stack decides (not the base model's 400 samples): kernels 10, 5, 5 at strides 5, 2, 2
    ("max_seconds_of_its_stack", "--max-seconds 0.004 gives the model no frame: max_samples=64 is shorter than one "
                                 "frame (70 samples)"),
    ("sampling_rate", "the checkpoint takes 8000 Hz audio and the runtime feeds 16000 Hz"),
    ("do_normalize", "the checkpoint was trained on audio that is not normalised (do_normalize: false)"),
    # transformers 5's processor.save_pretrained nests them in processor_config.json, read before the older file
    ("nested sampling_rate", "processor_config.json: the checkpoint takes 8000 Hz audio"),
    ("nested do_normalize", "processor_config.json: the checkpoint was trained on audio that is not normalised"),
])
def test_export_reports_damaged_or_unusable_checkpoint_files_in_one_line(tmp_path, capsys, damage, says):
    from librispeech.tokenizer import vocabulary_tokens

    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(GOLDEN / "group", checkpoint)
    vocab = {token: i for i, token in enumerate(vocabulary_tokens())}
    (checkpoint / "vocab.json").write_text(json.dumps({"eng": vocab, "fra": vocab} if damage == "languages" else vocab))
    if damage in ("config.json", "vocab.json", "model.safetensors", "max_seconds"):
        damage_file = "model.safetensors" if damage == "max_seconds" else damage
        content = (checkpoint / damage_file).read_bytes()
        (checkpoint / damage_file).write_bytes(content[:len(content) // 2])
    if damage in ("vocab_size", "max_seconds_of_its_stack"):
        config = json.loads((checkpoint / "config.json").read_text())
        change = {"vocab_size": None} if damage == "vocab_size" else {"conv_kernel": [10, 5, 5]}
        (checkpoint / "config.json").write_text(json.dumps({**config, **change}))
    if damage.endswith(("sampling_rate", "do_normalize")):  # HF's feature extractor settings, as saved
        extractor = {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1, "padding_value": 0.0,
                     "sampling_rate": 16000, "do_normalize": True, "return_attention_mask": False}
        damaged = {**extractor, **({"sampling_rate": 8000} if damage.endswith("sampling_rate") else
                                   {"do_normalize": False})}
        if damage.startswith("nested"):  # beside an older, sound preprocessor_config.json, which it overrides
            (checkpoint / "processor_config.json").write_text(json.dumps({"feature_extractor": damaged,
                                                                          "processor_class": "Wav2Vec2Processor"}))
            (checkpoint / "preprocessor_config.json").write_text(json.dumps(extractor))
        else:
            (checkpoint / "preprocessor_config.json").write_text(json.dumps(damaged))
    arguments = ["--checkpoint", str(checkpoint), "--output", str(tmp_path / "m.h5"), "--skip-checks"]
    max_seconds = {"max_seconds": "0", "max_seconds_of_its_stack": "0.004"}.get(damage)
    assert export_module.main(arguments + (["--max-seconds", max_seconds] if max_seconds else [])) == 1
    error = capsys.readouterr().err
    assert error.startswith("export-model: error: ") and says in error and error.count("\n") == 1, error


def test_sharded_weights_are_read_and_a_whole_file_wins_over_a_stale_index(tmp_path):
    """A sharded safetensors checkpoint reads as the whole file; where both are there (save_pretrained re-saving a
    sharded checkpoint unsharded leaves the old index behind), model.safetensors wins, as in transformers."""
    whole = load_file(str(GOLDEN / "group" / "model.safetensors"))
    names = sorted(whole)
    sharded = tmp_path / "sharded"
    shutil.copytree(GOLDEN / "group", sharded)
    (sharded / "model.safetensors").unlink()
    shards = {"model-00001-of-00002.safetensors": names[:len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, keys in shards.items():
        save_file({key: whole[key] for key in keys}, str(sharded / shard))
    index = {"metadata": {}, "weight_map": {key: shard for shard, keys in shards.items() for key in keys}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    _, weights = load_checkpoint(sharded)
    assert sorted(weights) == names and all(np.array_equal(weights[key], whole[key]) for key in names)

    stale = tmp_path / "resaved"
    shutil.copytree(GOLDEN / "group", stale)
    (stale / "model.safetensors.index.json").write_text(json.dumps(index))  # its shards are gone
    _, weights = load_checkpoint(stale)
    assert sorted(weights) == names and all(np.array_equal(weights[key], whole[key]) for key in names)


def test_a_multilingual_vocabulary_is_read_for_its_target_language(tmp_path):
    """MMS-style tokenizers: vocab.json per language, tokenizer_config.json's target_lang picks one (as HF's does)."""
    from librispeech.tokenizer import vocabulary_tokens

    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(GOLDEN / "group", checkpoint)
    vocab = {token: i for i, token in enumerate(vocabulary_tokens())}
    (checkpoint / "vocab.json").write_text(json.dumps({"eng": vocab, "xyz": {"<pad>": 0}}), encoding="utf-8-sig")
    (checkpoint / "tokenizer_config.json").write_text(json.dumps({"target_lang": "eng"}))
    assert export_module.checkpoint_tokens(checkpoint, 32) == vocabulary_tokens()


def test_export_refuses_to_replace_the_checkpoints_own_vocabulary(tmp_path, capsys):
    """An --output in the checkpoint's folder would overwrite its vocab.json with the runtime's: HF would then read
    the checkpoint with the wrong tokens, and every later export of it would be refused."""
    from librispeech.tokenizer import vocabulary_tokens

    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(GOLDEN / "group", checkpoint)
    tokens = list(vocabulary_tokens())
    own = json.dumps({token.lower() if len(token) == 1 else token: i for i, token in enumerate(tokens)})
    (checkpoint / "vocab.json").write_text(own)
    assert export_module.main(["--checkpoint", str(checkpoint), "--output", str(checkpoint / "model.onnx"),
                               "--skip-checks"]) == 1
    assert "is in the checkpoint's folder, whose vocab.json" in capsys.readouterr().err
    assert (checkpoint / "vocab.json").read_text() == own and not (checkpoint / "model.onnx").exists()


def test_a_checkpoint_without_a_ctc_head_or_a_vocabulary_is_named_so(tmp_path, capsys):
    from librispeech.wav2vec2.convert_hf import CheckpointError, convert_to_keras, load_checkpoint

    config, weights = load_checkpoint(GOLDEN / "group")
    encoder_only = {key: value for key, value in weights.items() if "lm_head" not in key}
    with pytest.raises(CheckpointError, match=r"has no CTC head \(lm_head.weight, lm_head.bias\)"):
        convert_to_keras(config, encoder_only, 16000, progress=False)
    # without tokenizer files its head is taken to be in the runtime's vocabulary: exported, and said
    assert export_module.main(["--checkpoint", str(GOLDEN / "group"), "--output", str(tmp_path / "m.h5"),
                               "--skip-checks"]) == 0
    assert "has no vocab.json; its CTC head is taken to use the runtime's vocabulary" in capsys.readouterr().err


@pytest.mark.parametrize("added_tokens, counted", [(False, False), (True, True), (True, False), (False, True)])
def test_export_reads_a_fine_tuning_recipe_vocabulary_in_the_runtimes_order(tmp_path, capsys, added_tokens, counted):
    """HF's fine-tuning recipe writes lower-case letters in its own order and [UNK] and [PAD] (the blank) last in
    vocab.json; transformers adds <s> and </s> after them in added_tokens.json (and vocab_size counts them), older
    checkpoints have neither, or only a special_tokens_map.json naming them (HF's tokenizer adds them on loading,
    and vocab_size counts them). The same model as the golden one with its CTC head reordered so gives the golden
    logits, column for column, and never emits a token it lacks (nor an added token past vocab_size: `counted`)."""
    from librispeech.tokenizer import vocabulary_tokens
    from librispeech_tools.export import MISSING_TOKEN_LOGIT

    runtime = vocabulary_tokens()
    letters = sorted(token for token in runtime if len(token) == 1 and token != "|")
    tokens = ["|", *(letter.lower() for letter in letters), "[UNK]", "[PAD]"]
    added = ["<s>", "</s>"] if added_tokens or counted else []
    emitted = added if counted else []
    runtime_name = {"[UNK]": "<unk>", "[PAD]": "<pad>", **{letter.lower(): letter for letter in letters}}
    source = [runtime.index(runtime_name.get(token, token)) for token in tokens + emitted]
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(GOLDEN / "group", checkpoint)
    weights = load_file(checkpoint / "model.safetensors")
    weights.update({key: weights[key][source] for key in ("lm_head.weight", "lm_head.bias")})
    save_file(weights, checkpoint / "model.safetensors")
    (checkpoint / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    if added_tokens:
        (checkpoint / "added_tokens.json").write_text(json.dumps({token: len(tokens) + i for i, token in
                                                                   enumerate(added)}))
    elif counted:
        (checkpoint / "special_tokens_map.json").write_text(json.dumps({
            "bos_token": "<s>", "eos_token": {"content": "</s>", "special": True}, "unk_token": "[UNK]",
            "pad_token": "[PAD]"}))
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "vocab_size": len(source),
                                                        "pad_token_id": tokens.index("[PAD]")}))
    output = tmp_path / "model" / "wav2vec.h5"
    assert export_module.main(["--checkpoint", str(checkpoint), "--output", str(output), "--max-seconds", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "the CTC head is reordered to the runtime's vocab.json" in printed
    assert ("never emits" not in printed) if counted else ("(never emits <s>, </s>, which" in printed)
    if importlib.util.find_spec("torch") and importlib.util.find_spec("transformers"):  # HF's model, its own order
        assert re.search(r"check: PyTorch Wav2Vec2ForCTC .* greedy ids agree on 100.0% of frames", printed), printed
    assert tuple(json.loads((output.parent / "vocab.json").read_text())) == runtime
    _, _, audio, reference, _ = golden("group")
    logits = run(keras.models.load_model(output), [audio], [audio.size])[0][:reference.shape[0]]
    lacking = [] if counted else [runtime.index("<s>"), runtime.index("</s>")]
    kept = [i for i in range(len(runtime)) if i not in lacking]
    assert np.abs(logits[:, kept] - reference[:, kept]).max() <= TOLERANCE
    np.testing.assert_array_equal(logits[:, lacking], MISSING_TOKEN_LOGIT)


def test_export_converts_a_float16_checkpoint_and_checks_it_in_float32(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from safetensors.torch import load_file, save_file as save_torch

    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(GOLDEN / "group", checkpoint)
    weights = load_file(checkpoint / "model.safetensors")
    save_torch({name: value.to(torch.float16) for name, value in weights.items()}, checkpoint / "model.safetensors")
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "torch_dtype": "float16", "dtype": "float16"}))
    assert export_module.main(["--checkpoint", str(checkpoint), "--output", str(tmp_path / "model.h5"),
                               "--max-seconds", "0.5"]) == 0
    assert re.search(r"check: PyTorch Wav2Vec2ForCTC .* max \|logits difference\| = ", capsys.readouterr().out)


@pytest.mark.parametrize("torch_installed", [False, True])
def test_export_writes_model_and_vocab_and_checks_itself(tmp_path, capsys, monkeypatch, torch_installed):
    if torch_installed:
        pytest.importorskip("torch")
        pytest.importorskip("transformers")
    else:
        monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    output = tmp_path / "model" / "wav2vec.h5"
    assert export_module.main(["--checkpoint", str(GOLDEN / "legacy"), "--output", str(output),
                               "--max-seconds", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert output.is_file() and (output.parent / "vocab.json").is_file()
    assert json.loads((output.parent / "vocab.json").read_text())["<pad>"] == 0
    assert "check: saved -> loaded wav2vec.h5: max |logits difference| = 0" in printed
    # converted all the same, but the golden's 3-layer conv stack is not the one the runtime counts frames with
    assert "warning: " in printed and "conv stack kernels [10, 3, 3]" in printed and "cannot run it" in printed
    assert "Its checks run it at its whole input length, 399 frames here" in printed  # with the remedy
    if torch_installed:
        measured = re.search(r"check: PyTorch Wav2Vec2ForCTC .* max \|logits difference\| = (\S+) ", printed)
        assert measured and float(measured.group(1)) <= TOLERANCE, printed
    else:
        assert "check: PyTorch reference skipped (it needs both torch and transformers installed)" in printed
    loaded = keras.models.load_model(output)
    assert loaded.inputs[0].shape[1] == 8000
    _, _, audio, reference, _ = golden("legacy")
    assert np.abs(run(loaded, [audio], [audio.size])[0][:reference.shape[0]] - reference).max() <= TOLERANCE


# ---------------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="uses tf.GradientTape")
def test_model_trains_with_ctc_loss():
    import tensorflow as tf

    config, weights, audio, *_ = golden("group")
    keras.utils.set_random_seed(0)
    model = modeling.build_wav2vec2_for_ctc(config, 2600)  # random init, dropout from the config
    assert len(model.trainable_weights) == len(model.weights) == 47
    batch = np.stack([audio[:2600], audio[1000:3600]])
    lengths = np.array([[2600], [2100]], np.float32)
    labels = np.array([[7, 8, 9, 9, 5], [6, 6, 11, 0, 0]], np.int32)
    label_lengths = np.array([5, 3], np.int32)
    frames = model.outputs[0].shape[1]
    optimizer = keras.optimizers.Adam(3e-3)

    def step():
        with tf.GradientTape() as tape:
            logits = model([batch, lengths], training=True)
            loss = keras.ops.mean(keras.ops.ctc_loss(labels, logits, label_lengths,
                                                     np.full(2, frames, np.int32), mask_index=0))
        gradients = tape.gradient(loss, model.trainable_weights)
        optimizer.apply(gradients, model.trainable_weights)
        return float(loss), gradients

    first, gradients = step()
    for variable, gradient in zip(model.trainable_weights, gradients):
        assert gradient is not None and np.isfinite(gradient).all(), variable.path
        assert np.abs(gradient).max() > 0, variable.path
    for _ in range(15):
        last, _ = step()
    assert np.isfinite(first) and last < 0.7 * first


def test_an_export_loads_with_plain_keras_once_the_layers_module_is_imported(tiny_model):
    """As the README says: keras.models.load_model needs only `import librispeech.wav2vec2.layers` (a fresh
    interpreter: in this one the layers are registered already)."""
    code = ("import keras, librispeech.wav2vec2.layers\n"
            f"model = keras.models.load_model({str(tiny_model)!r}, compile=False)\n"
            "print(model.input_shape, model.output_shape)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TL_DISABLE_ANALYTICS": "true"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[(None, 559280), (None, 1)] (None, 1747, 32)"
