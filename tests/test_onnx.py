"""The ONNX export (librispeech_tools/onnx_wav2vec2.py) run by ONNX Runtime: block by block against the Keras layers,
whole models against the PyTorch goldens (padded and unpadded), Tensorleap's importer limits, export-model's .onnx
output and loading it (no torch needed)."""
import librispeech  # noqa: F401  first: its telemetry guard runs before anything imports code_loader

import functools
import importlib.util
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from librispeech.model_file import ModelFileError, load_onnx_session, load_wav2vec2
from librispeech.wav2vec2 import layers
from librispeech.wav2vec2.configuration import SUPPORTED_ACTIVATIONS
from librispeech.wav2vec2.layers import BLANK_LOGIT
from librispeech.wav2vec2.model import build_wav2vec2_for_ctc, with_hidden_states
from librispeech_tools import export as export_module
from librispeech_tools import onnx_wav2vec2 as onnx_export
from test_model import GOLDEN, TOLERANCE, VARIANTS, blank_margin, golden, golden_model, run

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def session(proto) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


@functools.cache
def golden_session(name: str, max_samples: int | None = None) -> onnxruntime.InferenceSession:
    _, _, audio, _, _ = golden(name)
    return session(onnx_export.to_onnx(golden_model(name, audio.size), max_samples))


def run_onnx(runner, audio: list[np.ndarray], max_samples: int) -> np.ndarray:
    """ORT logits for waveforms zero-padded to max_samples, with their real lengths."""
    batch = np.zeros((len(audio), max_samples), np.float32)
    for row, wave in enumerate(audio):
        batch[row, :len(wave)] = wave
    lengths = np.array([[len(wave)] for wave in audio], np.float32)
    return runner.run(["logits"], {"audio": batch, "audio_length": lengths})[0]


# ---------------------------------------------------------------------------------------------------------------------
# Block by block against the Keras layers
# ---------------------------------------------------------------------------------------------------------------------

def run_block(build, **inputs: np.ndarray) -> np.ndarray:
    """One block of the builder as its own ONNX model (inputs by name, in order), run by ORT."""
    g = onnx_export.GraphBuilder()
    output = build(g, *inputs)
    graph = helper.make_graph(
        g.nodes, "block", [helper.make_tensor_value_info(name, TensorProto.FLOAT, value.shape)
                           for name, value in inputs.items()],
        [helper.make_value_info(output, helper.make_tensor_type_proto(TensorProto.FLOAT, None))],
        initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_export.OPSET)],
                              ir_version=onnx_export.IR_VERSION)
    return session(model).run(None, inputs)[0]


def random(*shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, shape).astype(np.float32)


def randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.normal(0.0, 0.5, weight.shape).astype(np.float32))
    return layer


@pytest.mark.parametrize("name", sorted(SUPPORTED_ACTIVATIONS))
def test_activation_matches_keras(name):
    x = random(3, 50) * 3
    expected = np.asarray(layers.get_activation(name)(x))
    assert np.abs(run_block(lambda g, x_: onnx_export.activation(g, x_, name), x=x) - expected).max() <= 1e-5


def group_normed_conv(weights: np.ndarray, bias: np.ndarray | None = None,
                      stride: int = 5) -> layers.Wav2Vec2ConvLayer:
    """A first conv layer (kernel [kernel, channels] on raw audio) with a random group norm."""
    size, channels = weights.shape
    layer = layers.Wav2Vec2ConvLayer(channels, size, stride, use_bias=bias is not None, norm="group")
    layer.build((1, 100, 1), (1, 1))
    layer.conv.kernel.assign(weights[:, None, :])
    if bias is not None:
        layer.conv.bias.assign(bias)
    randomize(layer.layer_norm)
    return layer


def run_first_conv_group_norm(layer, audio: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """first_conv_group_norm on [batch, samples] audio -> [batch, frames, channels]."""
    def build(g, audio_, lengths_):
        frames = onnx_export.frames_after_conv(g, g.op("Round", lengths_), layer.kernel_size, layer.stride)
        return onnx_export.first_conv_group_norm(g, g.op("Unsqueeze", audio_, g.int64([1], "axes")), frames, layer)
    return run_block(build, audio=audio, lengths=lengths).transpose(0, 2, 1)


@pytest.mark.parametrize("kernel, stride, with_bias", [(10, 5, False), (10, 5, True), (7, 3, True)])
def test_first_conv_group_norm_matches_keras(kernel, stride, with_bias):
    audio, lengths = random(3, 400) * 0.3 + 0.1, np.array([[400], [97], [kernel - 1]], np.float32)  # no frame at all
    layer = group_normed_conv(random(kernel, 6, seed=2), random(6, seed=3) if with_bias else None, stride)
    frames = np.asarray(layers.frames_after_conv(lengths, kernel, stride))[:, 0].astype(int)
    expected = np.asarray(layer.layer_norm(layer.conv(audio[..., None]), frames[:, None].astype(np.float32)))
    got = run_first_conv_group_norm(layer, audio, lengths)
    assert got.shape == expected.shape and np.isfinite(got).all()
    for row, count in enumerate(frames):  # real frames: no later real frame reads the others
        assert np.abs(got[row, :count] - expected[row, :count]).max(initial=0.0) <= 1e-5


def test_first_conv_group_norm_keeps_float32_precision_over_35_seconds():
    """The statistics over the ~110,000 frames of the platform's 34.955 s, unpadded and as a 4.7 s utterance padded to
    it, against float64, for channels that cancel most of their window (differences of neighbouring samples on
    low-frequency audio) and for audio whose offset is 50 times its spread: 1.6e-6 and 2.5e-5 off (the group norm
    over the conv's output: 1.5e-6 and 3e-6; output x scale + shift rounds at the offset's size, as PyTorch's own
    GroupNorm kernel does). From the samples' own covariance instead of the DCT coefficients', the same blocked
    float32 sums were 4e-5 and 2e-4 off."""
    samples, short = 559_280, 75_000
    time = np.arange(samples) / 16_000
    low_frequency = (np.sin(2 * np.pi * 150 * time) + 0.5 * np.sin(2 * np.pi * 900 * time)
                     + 0.01 * random(samples, seed=4)).astype(np.float32)
    cancelling = np.zeros((10, 3), np.float32)
    cancelling[:2, 0], cancelling[:3, 1], cancelling[:, 2] = [1, -1], [1, -2, 1], random(10, seed=5)
    layer = group_normed_conv(cancelling, random(3, seed=6))
    weights, bias = cancelling.astype(np.float64), layer.conv.bias.numpy().astype(np.float64)
    for wave, tolerance in ((low_frequency, 5e-6), (low_frequency * 0.1 + 5, 4e-5)):
        audio = np.stack([wave, np.where(np.arange(samples) < short, wave, 0)]).astype(np.float32)
        got = run_first_conv_group_norm(layer, audio, np.array([[samples], [short]], np.float32))
        for row, length in enumerate((samples, short)):
            frames = (length - 10) // 5 + 1
            windows = np.lib.stride_tricks.sliding_window_view(audio[row, :length].astype(np.float64), 10)[::5]
            conv = windows @ weights + bias
            expected = ((conv - conv.mean(axis=0)) / np.sqrt(conv.var(axis=0) + 1e-5) * layer.layer_norm.gamma.numpy()
                        + layer.layer_norm.beta.numpy())
            assert np.abs(got[row, :frames] - expected).max() <= tolerance


def test_first_conv_group_norm_needs_raw_audio():
    layer = layers.Wav2Vec2ConvLayer(4, 3, 2, norm="group")
    layer.build((1, 20, 2), (1, 1))
    with pytest.raises(onnx_export.OnnxExportError, match="raw audio"):
        onnx_export.first_conv_group_norm(onnx_export.GraphBuilder(), "audio", "frames", layer)


@pytest.mark.parametrize("axis", [-1, -2])
def test_layer_norm_over_either_axis_matches_keras(axis):
    x = random(2, 7, 9) * 2 + 0.5
    norm = randomize(keras.layers.LayerNormalization(axis=axis, epsilon=1e-5))
    norm.build(x.shape)
    expected = np.asarray(norm(x))
    got = run_block(lambda g, x_: onnx_export.layer_norm(g, x_, norm.gamma, norm.beta, norm.epsilon, axis), x=x)
    assert np.abs(got - expected).max() <= 1e-5


@pytest.mark.parametrize("lengths", [[0, 1, 9, 10, 11, 4999], [10000, 10001, 10004, 10005]])
def test_frame_counts_match_keras(lengths):
    lengths = np.array(lengths, np.float32)[:, None]
    expected = np.asarray(layers.frames_after_conv(lengths, 10, 5))
    got = run_block(lambda g, l_: onnx_export.frames_after_conv(g, l_, 10, 5), lengths=lengths)
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("kernel", [8, 7])
def test_positional_conv_matches_keras(kernel):
    x = random(2, 30, 8)
    layer = layers.Wav2Vec2PositionalConvEmbedding(8, kernel, 4)
    layer.build(x.shape)
    randomize(layer)
    assert np.abs(run_block(lambda g, x_: onnx_export.positional_conv(g, x_, layer), x=x)
                  - np.asarray(layer(x))).max() <= 1e-5


@pytest.mark.parametrize("kernel, stride, samples, bias", [
    (3, 2, 101, False),  # the base model's layers 1-4: two blocks, odd length (one padded sample)
    (3, 2, 100, True),
    (2, 2, 64, False),  # layers 5-6: one block per frame, nothing padded
    (10, 5, 203, True),  # several blocks, three padded samples
    (2, 3, 50, False),  # kernel shorter than the stride: taps past the kernel are zero rows
    (4, 1, 9, True),  # stride 1
    (3, 2, 3, False),  # exactly one frame
])
def test_int8_conv_is_the_keras_conv_within_int8_error(kernel, stride, samples, bias):
    x = np.maximum(random(2, samples, 24, seed=kernel + samples), -0.17)  # GELU-like: the encoder's activations
    mask = np.ones((2, samples, 1), np.float32)
    conv = keras.layers.Conv1D(16, kernel, strides=stride, use_bias=bias)
    conv.build(x.shape)
    randomize(conv)
    expected = np.asarray(conv(x))
    got = run_block(lambda g, x_, m_: onnx_export.int8_conv1d(g, x_, conv, stride, m_), x=x, mask=mask)
    assert got.shape == expected.shape
    error = np.abs(got - expected).max() / np.abs(expected).max()
    assert 0 < error <= 0.02  # int8 weights and activations: near, never exact


def test_int8_dense_scales_each_row_from_its_real_frames_only():
    x, mask = random(2, 30, 16) * 2, np.ones((2, 30, 1), np.float32)
    mask[1, 20:] = 0
    dense = keras.layers.Dense(8)
    dense.build(x.shape)
    randomize(dense)
    expected = np.asarray(dense(x))
    got = run_block(lambda g, x_, m_: onnx_export.int8_dense(g, x_, dense, m_), x=x, mask=mask)
    real = mask[..., 0] > 0
    assert 0 < np.abs(got - expected)[real].max() <= 0.02 * np.abs(expected).max()
    # huge values on row 1's padded frames and a different row 0 change nothing on row 1's real frames
    x2 = x.copy()
    x2[1, 20:] = 1e3
    x2[0] *= 10
    again = run_block(lambda g, x_, m_: onnx_export.int8_dense(g, x_, dense, m_), x=x2, mask=mask)
    assert np.array_equal(again[1, :20], got[1, :20])


@pytest.mark.parametrize("stable", [False, True])
def test_encoder_layer_with_masked_keys_matches_keras(stable):
    x = random(2, 12, 8)
    bias = np.zeros((2, 1, 1, 12), np.float32)
    bias[1, ..., 7:] = layers.LARGE_NEGATIVE  # second sample: 7 real frames
    layer = layers.Wav2Vec2EncoderLayer(8, 2, 16, stable_layer_norm=stable)
    layer.build(x.shape, bias.shape)
    randomize(layer)
    expected = np.asarray(layer(x, bias))
    got = run_block(lambda g, x_, b_: onnx_export.encoder_layer(g, x_, b_, layer), x=x, bias=bias)
    assert np.abs(got - expected).max() <= 1e-5


# ---------------------------------------------------------------------------------------------------------------------
# Whole models against the PyTorch goldens and Keras
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", VARIANTS)
def test_logits_and_hidden_state_match_pytorch_and_keras(name):
    _, _, audio, reference, reference_hidden = golden(name)
    model = golden_model(name, audio.size)
    runner = session(onnx_export.with_hidden_state_output(onnx_export.to_onnx(model)))  # dynamic time axis
    logits, hidden = runner.run(None, {"audio": audio[None], "audio_length": np.array([[audio.size]], np.float32)})
    assert np.abs(logits[0] - reference).max() <= TOLERANCE
    assert np.abs(hidden[0] - reference_hidden).max() <= TOLERANCE
    keras_logits, keras_hidden = with_hidden_states(model).predict_on_batch(
        [audio[None], np.array([[audio.size]], np.float32)])
    assert np.abs(logits - np.asarray(keras_logits)).max() <= TOLERANCE
    assert np.abs(hidden - np.asarray(keras_hidden)).max() <= TOLERANCE


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("padding", ["zeros", "noise"])
def test_padded_input_gives_unpadded_logits_and_blank_padding(name, padding):
    _, _, audio, reference, _ = golden(name)
    max_samples = 2 * audio.size + 123
    batch = np.zeros((1, max_samples), np.float32) if padding == "zeros" else random(1, max_samples, seed=5)
    batch[0, :audio.size] = audio
    logits = golden_session(name).run(None, {"audio": batch, "audio_length": np.array([[audio.size]], np.float32)})[0]
    frames = reference.shape[0]
    assert np.abs(logits[0, :frames] - reference).max() <= TOLERANCE
    assert np.abs(logits - run(golden_model(name, max_samples), [batch[0]], [audio.size])).max() <= TOLERANCE
    assert logits.shape[1] > frames and blank_margin(logits[0, frames:]).min() >= BLANK_LOGIT


def test_batch_of_two_lengths_equals_each_alone():
    _, _, audio, reference, _ = golden("group")
    short = audio[:audio.size // 2]
    runner = golden_session("group")
    both = run_onnx(runner, [audio, short], audio.size)
    assert np.abs(both[0] - reference).max() <= TOLERANCE
    short_alone = run_onnx(runner, [short], short.size)[0]
    assert np.abs(both[1, :len(short_alone)] - short_alone).max() <= TOLERANCE


def test_fixed_length_export_has_fixed_shapes_and_same_logits():
    _, _, audio, reference, _ = golden("layer")
    max_samples = audio.size + 999
    proto = onnx_export.to_onnx(golden_model("layer", audio.size), max_samples)
    dims = [[d.dim_value or d.dim_param for d in node.type.tensor_type.shape.dim]
            for node in (*proto.graph.input, *proto.graph.output)]
    frames = onnx_export.exported_config(proto).num_frames(max_samples)
    assert dims == [["batch", max_samples], ["batch", 1], ["batch", frames, 32]]
    logits = run_onnx(session(proto), [audio, audio], max_samples)
    assert logits.shape == (2, frames, 32)
    assert np.abs(logits[:, :reference.shape[0]] - reference).max() <= TOLERANCE


def test_dynamic_export_names_its_axes_and_records_its_config():
    proto = onnx_export.to_onnx(golden_model("group", 4000))
    dims = [[d.dim_value or d.dim_param for d in node.type.tensor_type.shape.dim]
            for node in (*proto.graph.input, *proto.graph.output)]
    assert dims == [["batch", "samples"], ["batch", 1], ["batch", "frames", 32]]
    assert [node.name for node in proto.graph.input] == ["audio", "audio_length"]
    assert onnx_export.exported_config(proto).hidden_size == golden("group")[0]["hidden_size"]


# ---------------------------------------------------------------------------------------------------------------------
# Tensorleap's importer limits
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", VARIANTS)
def test_export_is_within_the_importer_limits(name):
    proto = onnx_export.to_onnx(golden_model(name, 4000))
    assert proto.ir_version <= 8
    assert [(opset.domain, opset.version) for opset in proto.opset_import] == [("", 16)]
    assert all(node.domain == "" for node in proto.graph.node)
    for node in proto.graph.node:  # every op exists in the default domain at opset 16
        onnx.defs.get_schema(node.op_type, 16, "")
    assert onnx_export.limit_violations(proto) == []


def test_limit_check_reports_what_the_importer_would_not_read():
    proto = onnx_export.to_onnx(golden_model("group", 4000))
    proto.ir_version = 9
    proto.opset_import[0].version = 17
    proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    proto.graph.node.append(helper.make_node("FusedGemm", ["a"], ["b"], domain="com.microsoft"))
    problems = onnx_export.limit_violations(proto)
    assert problems == ["IR version 9 > 8", "opset 17 > 16", "imports the non-standard domain 'com.microsoft'",
                        "non-standard ops com.microsoft:FusedGemm"]


# ---------------------------------------------------------------------------------------------------------------------
# export-model and loading
# ---------------------------------------------------------------------------------------------------------------------

def test_export_writes_both_formats_from_one_conversion(tmp_path, capsys):
    h5, onnx_path = tmp_path / "wav2vec.h5", tmp_path / "wav2vec.onnx"
    assert export_module.main(["--checkpoint", str(GOLDEN / "legacy"), "--output", str(h5),
                               "--output", str(onnx_path), "--max-seconds", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert h5.is_file() and onnx_path.is_file() and (tmp_path / "vocab.json").is_file()
    assert "wav2vec.onnx is opset <= 16, IR <= 8, standard ops; ONNX Runtime vs Keras" in printed
    loaded = load_onnx_session(onnx_path)  # a golden's 3-layer stack: the runtime's loader would refuse it
    assert isinstance(loaded, onnxruntime.InferenceSession)
    assert [i.name for i in loaded.get_inputs()] == ["audio", "audio_length"]
    assert loaded.get_inputs()[0].shape == ["batch", 8000]
    _, _, audio, reference, _ = golden("legacy")
    logits = run_onnx(loaded, [audio], 8000)[0]
    assert np.abs(logits[:reference.shape[0]] - reference).max() <= TOLERANCE
    assert np.abs(logits - run(keras.models.load_model(h5), [audio], [audio.size])[0]).max() <= TOLERANCE


def test_export_checks_run_in_full_float32(tmp_path, monkeypatch):
    """A GPU runs float32 matmuls in TF32 by default (~1e-3 off, failing the PyTorch check on an H200): the export's
    checks switch it off while they run, and restore it after."""
    import tensorflow as tf

    states = {}

    def recording(name):
        tf32_enabled = tf.config.experimental.tensor_float_32_execution_enabled
        return lambda *args, **kwargs: states.setdefault(name, tf32_enabled())

    monkeypatch.setattr(export_module, "check_export", recording("h5"))
    monkeypatch.setattr(export_module, "check_onnx_export", recording("onnx"))
    before = tf.config.experimental.tensor_float_32_execution_enabled()
    assert export_module.main(["--checkpoint", str(GOLDEN / "legacy"), "--output", str(tmp_path / "m.h5"),
                               "--output", str(tmp_path / "m.onnx")]) == 0
    assert states == {"h5": False, "onnx": False} and before
    assert tf.config.experimental.tensor_float_32_execution_enabled() == before


@pytest.mark.parametrize("name", ["model.h5", "model.hdf5"])  # both suffixes the runtime and Keras take
def test_export_from_an_h5_export_gives_a_dynamic_onnx(tmp_path, capsys, name):
    _, _, audio, reference, _ = golden("group")
    h5 = tmp_path / "source" / name
    h5.parent.mkdir()
    golden_model("group", audio.size).save(h5)
    output = tmp_path / "out" / "model.onnx"
    assert export_module.main(["--checkpoint", str(h5), "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "input any length" in printed and "the source is an .h5 export" in printed
    runner = load_onnx_session(output)
    assert runner.get_inputs()[0].shape == ["batch", "samples"]
    for length in (audio.size, audio.size + 3001):
        logits = run_onnx(runner, [audio], length)[0]
        assert np.abs(logits[:reference.shape[0]] - reference).max() <= TOLERANCE


def test_export_rejects_an_unknown_suffix(tmp_path, capsys):
    with pytest.raises(SystemExit):
        export_module.main(["--checkpoint", str(GOLDEN / "group"), "--output", str(tmp_path / "model.keras")])
    assert "--output must end in .h5 or .onnx" in capsys.readouterr().err


def test_a_broken_onnx_file_is_a_one_line_error(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07not a protobuf at all")
    with pytest.raises(ModelFileError) as error:
        load_wav2vec2(broken)
    assert str(error.value).startswith(f"cannot load {broken} as an ONNX model") and "\n" not in str(error.value)


def test_an_onnx_file_with_other_inputs_is_refused(tmp_path):
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "other",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "other.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)], ir_version=8), str(path))
    with pytest.raises(ModelFileError, match=r"has inputs \['x'\] and outputs \['y'\]; the integration needs"):
        load_wav2vec2(path)
    with pytest.raises(onnx_export.OnnxExportError, match="not an export of export-model"):
        onnx_export.OnnxWithHiddenState(path)


@pytest.mark.parametrize("conv_stack, refused", [(None, False),
                                                  ({"conv_kernel": [10, 8], "conv_stride": [5, 4]}, True)])
def test_an_onnx_graph_without_a_recorded_config_is_checked_by_its_frames(tmp_path, conv_stack, refused):
    """A graph made elsewhere records no Wav2Vec2Config: one run on silence shows whether it has the base stack."""
    from conftest import TINY_CONFIG

    config = dict(TINY_CONFIG, **({"conv_dim": [8, 8], **conv_stack} if conv_stack else {}))
    proto = onnx_export.to_onnx(build_wav2vec2_for_ctc(config, None))
    del proto.metadata_props[:]
    path = tmp_path / "made-elsewhere.onnx"
    onnx.save_model(proto, str(path))
    if not refused:
        assert load_wav2vec2(path).get_inputs()[0].name == "audio"
        return
    with pytest.raises(ModelFileError, match=r"records no wav2vec2_config, and on 16000 samples it gives logits of "
                                             r"shape \[1, 798, 32\], not \[1, 49, vocabulary\]"):
        load_wav2vec2(path)


def test_an_onnx_graph_made_elsewhere_with_one_dimensional_audio_is_refused(tmp_path):
    graph = helper.make_graph([helper.make_node("Identity", ["audio"], ["logits"]),
                               helper.make_node("Identity", ["audio_length"], ["unused"])], "rank-1",
                              [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["samples"]),
                               helper.make_tensor_value_info("audio_length", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["samples"])])
    path = tmp_path / "rank-1.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)], ir_version=8), str(path))
    with pytest.raises(ModelFileError, match=r"takes `audio` of shape \['samples'\]; the integration feeds"):
        load_wav2vec2(path)


def test_tiny_base_like_model_matches_keras_at_full_input_length():
    """The Tensorleap input length (34.955 s) through a tiny model with the base model's conv stack."""
    from librispeech.config import project_config
    from conftest import TINY_CONFIG

    max_samples = project_config().max_samples
    keras.utils.set_random_seed(3)
    model = build_wav2vec2_for_ctc(TINY_CONFIG, max_samples)
    audio = random(1, 100000, seed=7)[0]
    expected = run(model, [audio], [audio.size])
    got = run_onnx(session(onnx_export.to_onnx(model, max_samples)), [audio], max_samples)
    assert np.abs(got - expected).max() <= TOLERANCE


@pytest.mark.parametrize("name", VARIANTS)
def test_int8_export_stays_within_the_limits_and_near_the_float_model(name, tmp_path, capsys, monkeypatch):
    from librispeech.wav2vec2 import model as wav2vec2_model

    output = tmp_path / "int8.onnx"
    any_length_builds, build = [], wav2vec2_model.with_input_length
    monkeypatch.setattr(wav2vec2_model, "with_input_length", lambda model, samples: (
        any_length_builds.append(samples) if samples is None else None) or build(model, samples))
    assert export_module.main(["--checkpoint", str(GOLDEN / name), "--output", str(output), "--int8"]) == 0
    assert "(int8) is within the importer limits" in capsys.readouterr().out
    assert any_length_builds == [None]  # one any-length model checks both the float and the int8 .onnx
    proto = onnx.load(str(output))
    assert onnx_export.limit_violations(proto) == []
    op_types = [node.op_type for node in proto.graph.node]
    hf_config, _, audio, reference, _ = golden(name)
    # the first conv (raw audio) and the positional conv stay float; the group norm takes its windows' DCT
    # coefficients with one more and sums them over frames with another (frame_sums)
    assert op_types.count("Conv") == 2 + 2 * (hf_config["feat_extract_norm"] == "group")
    # every other feature-encoder conv and every weight MatMul (6 per layer, projection, CTC head) is int8
    num_weight_matmuls = 6 * hf_config["num_hidden_layers"] + 2
    expected_int8 = num_weight_matmuls + sum(-(-k // s) for k, s in zip(hf_config["conv_kernel"][1:],
                                                                       hf_config["conv_stride"][1:]))
    assert op_types.count("MatMulInteger") == expected_int8
    int8_session = load_onnx_session(output)
    logits = run_onnx(int8_session, [audio], audio.size)[0]
    assert 0 < np.abs(logits - reference).max() <= 0.1 * np.abs(reference).max()  # quantized, not exact
    # each utterance is quantized from its own real frames: padding and a loud neighbour in the batch change its
    # logits only by rounding noise (float sums over other lengths can flip single quantization steps)
    frames = reference.shape[0]
    padded = run_onnx(int8_session, [audio, random(audio.size * 2 + 123, seed=5) * 30], 2 * audio.size + 123)
    assert np.abs(padded[0, :frames] - logits).max() <= 0.02 * np.abs(reference).max()
    assert blank_margin(padded[0, frames:]).min() >= BLANK_LOGIT


def test_int8_export_at_a_fixed_length_checks_on_audio_padded_to_it(tmp_path, capsys):
    """--int8 with --max-seconds: the check feeds the fixed-length graph its audio padded to that length (it fed the
    audio alone, which ONNX Runtime refused for its input shape)."""
    output = tmp_path / "int8.onnx"
    assert export_module.main(["--checkpoint", str(GOLDEN / "group"), "--output", str(output), "--int8",
                               "--max-seconds", "1.5"]) == 0
    assert "(int8) is within the importer limits" in capsys.readouterr().out
    assert onnx_export.fixed_input_samples(onnx.load(str(output))) == 24_000


def test_importer_check_says_where_it_runs_without_onnx2kerastl():
    """scripts/check_onnx_importer.py needs onnx2kerastl's own environment (TensorFlow 2.12): without it, a one-line
    error and status 2, not a traceback (the conversion itself is measured in benchmarks/EVALUATE_RESULTS.md)."""
    if importlib.util.find_spec("onnx2kerastl") is not None:
        pytest.skip("onnx2kerastl is installed here")
    script = Path(__file__).resolve().parent.parent / "scripts" / "check_onnx_importer.py"
    result = subprocess.run([sys.executable, str(script), "model.onnx"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "onnx2kerastl" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------------------------------
# Models over protobuf's 2 GiB (e.g. XLS-R 1B), shown on a tiny model with the limit lowered
# ---------------------------------------------------------------------------------------------------------------------

def test_onnx_runtime_takes_the_weights_from_memory(monkeypatch):
    """evaluate's ONNX Runtime session gets the graph without its weights (serialising them took 2.3 s of the base
    model's start-up, and a model over protobuf's 2 GiB could not be one message): every initializer of 1 KiB or
    more is marked external and handed over from memory. The outputs equal a session made from the whole model."""
    from conftest import TINY_CONFIG

    keras.utils.set_random_seed(5)
    model = build_wav2vec2_for_ctc(TINY_CONFIG, None)
    audio = random(1, 24000, seed=2)
    inputs = [audio, np.array([[audio.shape[1]]], np.float32)]
    whole = onnx_export.to_onnx(model, hidden_state_output=True, check=False)
    feeds = dict(zip([onnx_export.AUDIO, onnx_export.AUDIO_LENGTH], inputs))
    expected = onnxruntime.InferenceSession(whole.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        [onnx_export.LOGITS, onnx_export.HIDDEN_STATE], feeds)
    opened, open_session = [], onnxruntime.InferenceSession
    monkeypatch.setattr(onnxruntime, "InferenceSession",
                        lambda model_source, *args, **options: opened.append(model_source)
                        or open_session(model_source, *args, **options))
    got = onnx_export.OnnxWithHiddenState.from_keras(model).predict_on_batch(inputs)

    sent = onnx.ModelProto.FromString(opened[0]).graph
    large = [t for t in whole.graph.initializer if len(t.raw_data) >= onnx_export.IN_MEMORY_WEIGHT_BYTES]
    large_bytes = sum(len(t.raw_data) for t in large)
    # what is sent: the whole model less its large weights' bytes, plus each one's external-data entry (~20 bytes
    # here; 100 is far below the 1 KiB a weight would add if it were copied in)
    assert len(opened) == 1 and large and len(opened[0]) <= whole.ByteSize() - large_bytes + 100 * len(large), (
        len(opened[0]), whole.ByteSize(), large_bytes, len(large))
    external = {t.name for t in sent.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
    assert external == {t.name for t in large} and not any(len(t.raw_data) for t in sent.initializer
                                                           if t.name in external)
    for want, have in zip(expected, got):
        np.testing.assert_array_equal(have, want)


def test_sessions_run_calls_at_once_each_with_its_share_of_the_threads(monkeypatch):
    """With sessions > 1 each session gets threads // sessions intra-op threads, the sessions are made at once, calls
    from several threads run on different sessions at once, and every session gives the one session's outputs, bit
    for bit."""
    from conftest import TINY_CONFIG

    keras.utils.set_random_seed(5)
    model = build_wav2vec2_for_ctc(TINY_CONFIG, None)
    inputs = [[audio, np.array([[audio.shape[1]]], np.float32)]
              for audio in (random(1, 24000, seed=2), random(1, 17000, seed=3), random(1, 9000, seed=4))]
    expected = [onnx_export.OnnxWithHiddenState.from_keras(model).predict_on_batch(x) for x in inputs]
    threads, making, made_at_once, open_session = [], [], [], onnxruntime.InferenceSession
    lock = threading.Lock()

    def new_session(model_source, options, **kwargs):  # records how many are being made at once
        with lock:
            threads.append(options.intra_op_num_threads)
            making.append(1)
            made_at_once.append(len(making))
        time.sleep(0.2)
        try:
            return open_session(model_source, options, **kwargs)
        finally:
            with lock:
                making.pop()

    monkeypatch.setattr(onnxruntime, "InferenceSession", new_session)
    converted = onnx_export.OnnxWithHiddenState.from_keras(model, sessions=3, threads=7)
    assert threads == [2, 2, 2] and len(converted.sessions) == 3 and converted.session is converted.sessions[0]
    assert max(made_at_once) == 3  # the sessions are made at once, not one after the other

    running, most, lock = [], [], threading.Lock()
    for session in converted.sessions:  # record which session runs, and how many run at once
        def run(*args, session=session, run=session.run):
            with lock:
                running.append(session)
                most.append(len(running))
            time.sleep(0.1)
            try:
                return run(*args)
            finally:
                with lock:
                    running.remove(session)
        monkeypatch.setattr(session, "run", run, raising=False)
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(converted.predict_on_batch, inputs * 2))
    assert max(most) == 3
    for want, have in zip(expected * 2, got):
        for want_output, have_output in zip(want, have):
            np.testing.assert_array_equal(have_output, want_output)
    with pytest.raises(ValueError, match="sessions must be at least 1"):
        onnx_export.OnnxWithHiddenState.from_keras(model, sessions=0)


def test_export_refuses_an_onnx_file_over_the_protobuf_limit(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(onnx_export, "PROTOBUF_LIMIT_BYTES", onnx_export.GRAPH_ALLOWANCE_BYTES)
    output = tmp_path / "large.onnx"
    assert export_module.main(["--checkpoint", str(GOLDEN / "group"), "--output", str(output)]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the conversion's progress bar
    assert error.startswith("export-model: error: large.onnx: the model's weights take ")
    assert error.endswith("export it as .h5, or try --int8 (int8 weights, about a quarter of the size)")
    assert not output.exists()


def test_a_model_fixed_at_another_length_is_refused_where_the_platform_length_is_fed(tmp_path):
    """leap_test feeds max_samples: an export fixed at 1 s would fail on its first sample, so loading says so."""
    from conftest import TINY_CONFIG

    model = build_wav2vec2_for_ctc(TINY_CONFIG, 16000)
    model.save(tmp_path / "one-second.h5")
    onnx_export.save_onnx(model, tmp_path / "one-second.onnx", 16000)
    onnx_export.save_onnx(model, tmp_path / "any-length.onnx", None)
    load_wav2vec2(tmp_path / "any-length.onnx", input_samples=559280)  # a dynamic time axis takes any length
    full = build_wav2vec2_for_ctc(TINY_CONFIG, 559280)  # as export-model writes an .h5 by default
    full.save(tmp_path / "full.h5")
    load_wav2vec2(tmp_path / "full.h5", input_samples=559280)
    for path in (tmp_path / "one-second.h5", tmp_path / "one-second.onnx"):
        load_wav2vec2(path)  # evaluate and other callers feed it what it takes
        with pytest.raises(ModelFileError, match="takes 16000 samples of audio, but the integration feeds "
                                                 "max_samples = 559280"):
            load_wav2vec2(path, input_samples=559280)


# ---------------------------------------------------------------------------------------------------------------------
# An .h5's layers read without Keras (h5_layers: what evaluate converts for ONNX Runtime)
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("int8", [False, True])
def test_h5_layers_give_the_graph_of_the_keras_model(name, int8, tmp_path):
    """The graph converted from the file's weights as h5py reads them equals the one converted from the Keras model:
    node for node and weight for weight (group and layer norm conv stacks, post- and pre-LN encoders, conv bias
    or none, the int8 variant too)."""
    from librispeech_tools.h5_layers import read_h5_layers

    _, _, audio, _, _ = golden(name)
    model = golden_model(name, audio.size)
    path = tmp_path / "model.h5"
    model.save(path)
    layers_from_h5 = read_h5_layers(path)
    assert layers_from_h5.name == model.name
    from_keras = onnx_export.to_onnx(model, int8=int8, hidden_state_output=True)
    from_h5 = onnx_export.to_onnx(layers_from_h5, int8=int8, hidden_state_output=True)
    assert from_h5.graph.node == from_keras.graph.node
    assert [(t.name, t.raw_data) for t in from_h5.graph.initializer] == [
        (t.name, t.raw_data) for t in from_keras.graph.initializer]
    assert from_h5.metadata_props == from_keras.metadata_props


def test_h5_weights_are_mapped_where_stored_as_one_block_and_read_otherwise(tmp_path):
    """read_h5_layers maps a weight stored as one written block (as Keras writes them: no copy of the model's
    weights), also in a file with a user block or behind an external link (mapped from its own file), and reads one
    stored in chunks or compressed, or never written; each gives the values h5py reads."""
    import h5py

    from librispeech_tools.h5_layers import _mapped_or_read

    values = random(3, 40, seed=4).reshape(3, 8, 5)
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other.create_dataset("padding", data=np.ones(1000, np.float32))  # puts the linked data at another offset
        other.create_dataset("plain", data=values[::-1].copy())
    with h5py.File(tmp_path / "weights.h5", "w", userblock_size=512) as handle:
        handle.create_dataset("plain", data=values)
        handle.create_dataset("chunked", data=values, chunks=(1, 8, 5))
        handle.create_dataset("compressed", data=values, compression="gzip")
        handle.create_dataset("unwritten", shape=(3, 8, 5), dtype=np.float32)
        handle["linked"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "plain")
    names = ("plain", "linked", "chunked", "compressed", "unwritten")
    with h5py.File(tmp_path / "weights.h5", "r") as handle:
        got = {name: _mapped_or_read(handle[name]) for name in names}
        expected = {name: handle[name][()] for name in names}
    assert [name for name, array in got.items() if isinstance(array, np.memmap)] == ["plain", "linked"]
    for name in names:
        np.testing.assert_array_equal(got[name], expected[name])
    np.testing.assert_array_equal(got["linked"], values[::-1])


def tiny_base_stack_h5(path, seed: int = 7):
    """An .h5 with evaluate's base conv stack (TINY_CONFIG, random weights), and the logits Keras gives on audio."""
    from conftest import TINY_CONFIG

    keras.utils.set_random_seed(seed)
    model = randomize(build_wav2vec2_for_ctc(TINY_CONFIG, None), seed)
    model.save(path)
    audio = random(1, 24000, seed=seed)
    return audio, np.asarray(model.predict_on_batch([audio, np.array([[audio.shape[1]]], np.float32)]))[0]


def test_an_h5_runs_in_onnx_runtime_without_keras_or_tensorflow(tmp_path):
    """evaluate's default engine on an .h5: read, checked, converted and run with no Keras and no TensorFlow imported
    (TensorFlow's import alone took ~2.8 s of the start-up), with the Keras model's logits."""
    path = tmp_path / "model.h5"
    audio, expected = tiny_base_stack_h5(path)
    np.save(tmp_path / "audio.npy", audio)
    script = ("import sys, numpy as np\n"
              "from pathlib import Path\n"
              "import librispeech\n"
              "from librispeech_tools.model_pass import load_model_pass\n"
              f"model_pass = load_model_pass(Path({str(path)!r}))\n"
              f"audio = np.load({str(tmp_path / 'audio.npy')!r})\n"
              "logits, hidden = model_pass(audio, np.array([[audio.shape[1]]], np.float32))\n"
              f"np.save({str(tmp_path / 'logits.npy')!r}, logits[0])\n"
              "print(model_pass.engine, sorted(m for m in ('keras', 'tensorflow', 'torch') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "onnxruntime []"
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), expected, atol=TOLERANCE)


def test_an_h5_whose_weights_h5py_cannot_place_goes_through_keras(tmp_path, monkeypatch, capsys):
    """Weights stored under other paths than this Keras version's (an .h5 from elsewhere) are left to Keras, which
    loads them by order: the same model pass, converted from the Keras model, and a line that says so."""
    import h5py

    from librispeech_tools import model_pass as model_pass_module

    path = tmp_path / "model.h5"
    audio, expected = tiny_base_stack_h5(path)
    with h5py.File(path, "r+") as handle:
        group = handle["model_weights"]["lm_head"]
        for name in group.attrs["weight_names"]:
            group.move(name, name.replace("lm_head/", "lm_head/old_"))
        group.attrs["weight_names"] = [name.replace("lm_head/", "lm_head/old_") for name in group.attrs["weight_names"]]
    through_keras = []
    load_dynamic = model_pass_module.load_dynamic_length_model
    monkeypatch.setattr(model_pass_module, "load_dynamic_length_model",
                        lambda model_path: through_keras.append(model_path) or load_dynamic(model_path))
    model_pass = model_pass_module.load_model_pass(path, engine="onnxruntime")
    logits, _ = model_pass(audio, np.array([[audio.shape[1]]], np.float32))
    assert through_keras == [path]
    assert "reading them through Keras instead" in capsys.readouterr().err
    np.testing.assert_allclose(logits[0], expected, atol=TOLERANCE)


def test_evaluate_opens_one_session_of_an_onnx_export_and_keeps_the_runtimes_errors(tmp_path, monkeypatch):
    """evaluate's model pass of an .onnx runs the runtime's file checks on its own session (a second session for them
    took ~1 s of the base model's start-up), with the runtime's one-line errors for a file it refuses."""
    from conftest import TINY_CONFIG

    from librispeech_tools.model_pass import ModelPassError, OnnxModelPass

    good = tmp_path / "good.onnx"
    onnx_export.save_onnx(build_wav2vec2_for_ctc(TINY_CONFIG, None), good)
    opened, open_session = [], onnxruntime.InferenceSession
    monkeypatch.setattr(onnxruntime, "InferenceSession",
                        lambda *args, **options: opened.append(args[0]) or open_session(*args, **options))
    model_pass = OnnxModelPass(good)
    assert len(opened) == 1 and model_pass.fixed_samples is None and model_pass.precision == "float32"
    monkeypatch.setattr(onnxruntime, "InferenceSession", open_session)

    other_vocabulary = tmp_path / "other-vocabulary.onnx"
    onnx_export.save_onnx(build_wav2vec2_for_ctc({**TINY_CONFIG, "vocab_size": 40}, None), other_vocabulary)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[:2000])
    foreign = tmp_path / "foreign.onnx"
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "other",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)], ir_version=8), str(foreign))
    for path, says in ((other_vocabulary, "the model has 40 output tokens with the CTC blank at id 0"),
                       (truncated, f"cannot load {truncated} as an ONNX model"),
                       (foreign, r"has inputs \['x'\] and outputs \['y'\]; the integration needs"),
                       (tmp_path / "missing.onnx", "no wav2vec2 model at")):
        with pytest.raises(ModelPassError, match=says):
            OnnxModelPass(path)


def test_an_export_that_fails_its_checks_is_not_left_behind(tmp_path, monkeypatch, capsys):
    """Nothing that failed its checks stays on disk (with --int8, the file would still be the float graph)."""
    def failing_check(*arguments, **keywords):
        raise export_module.ExportCheckError("ONNX Runtime and Keras logits differ by 1.0 > 0.0001 * 1")

    monkeypatch.setattr(export_module, "check_onnx_export", failing_check)
    output = tmp_path / "m.onnx"
    assert export_module.main(["--checkpoint", str(GOLDEN / "legacy"), "--output", str(output), "--int8"]) == 1
    assert "logits differ by 1.0" in capsys.readouterr().err and list(tmp_path.iterdir()) == []
    output.write_bytes(b"an earlier export")  # is kept as it was
    assert export_module.main(["--checkpoint", str(GOLDEN / "legacy"), "--output", str(output)]) == 1
    assert output.read_bytes() == b"an earlier export" and list(tmp_path.iterdir()) == [output]


def test_an_h5_exported_onto_itself_survives_an_interrupted_check(tmp_path, monkeypatch):
    """The model is written and checked beside its output and moved there only once it passed: the .h5 being
    converted, given as the output too, is never deleted."""
    import shutil

    source = tmp_path / "demo.h5"
    shutil.copyfile(Path(__file__).resolve().parent.parent / "model" / "demo-wav2vec2.h5", source)
    before = source.read_bytes()

    def ctrl_c(*arguments, **keywords):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "check_export", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        export_module.main(["--checkpoint", str(source), "--output", str(source)])
    assert source.read_bytes() == before and list(tmp_path.iterdir()) == [source]


def test_an_export_over_a_link_or_a_file_keeps_the_link_and_the_permissions(tmp_path):
    import os
    import shutil

    source = tmp_path / "demo.h5"
    shutil.copyfile(Path(__file__).resolve().parent.parent / "model" / "demo-wav2vec2.h5", source)
    (tmp_path / "models").mkdir()
    target, link = tmp_path / "models" / "current.h5", tmp_path / "wav2vec.h5"
    target.write_bytes(b"an earlier export")
    target.chmod(0o640)
    link.symlink_to(target)
    assert export_module.main(["--checkpoint", str(source), "--output", str(link), "--skip-checks"]) == 0
    assert link.is_symlink() and link.resolve() == target and target.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    assert (target.stat().st_mode & 0o777) == 0o640 and (tmp_path / "vocab.json").is_file()
    assert sorted(os.listdir(tmp_path / "models")) == ["current.h5"]  # no staging folder left


@pytest.mark.parametrize("output", ["/proc/m.onnx", "{file}/m.onnx"])
def test_an_output_that_cannot_be_written_is_one_line(tmp_path, capsys, output):
    (tmp_path / "file").write_text("")
    output = output.format(file=tmp_path / "file")
    assert export_module.main(["--checkpoint", str(GOLDEN / "legacy"), "--output", output, "--skip-checks"]) == 1
    error = capsys.readouterr().err
    assert "Traceback" not in error, error
    last = error.strip().splitlines()[-1]  # after the conversion's progress bar
    assert last.startswith("export-model: error: [Errno ") and str(Path(output).parent) in last


@pytest.mark.parametrize("seconds", ["nan", "inf"])
def test_max_seconds_must_be_a_number(seconds, capsys):
    """0 or less is the checkpoint conv stack's one-line refusal (tests/test_model.py); nan stopped with a ValueError."""
    with pytest.raises(SystemExit) as exit_status:
        export_module.main(["--checkpoint", str(GOLDEN / "legacy"), "--max-seconds", seconds])
    assert exit_status.value.code == 2 and "--max-seconds must be a number of seconds" in capsys.readouterr().err


def test_the_onnx_check_scales_its_tolerance_with_the_logits(tmp_path, monkeypatch, capsys):
    """Weights three times the golden checkpoint's give logits whose float32 rounding passes 1e-4 absolute; the
    check compares relative to the largest logit, as the PyTorch check does."""
    model = export_module.load_source(GOLDEN / "group", 16000)[0]
    model.set_weights([weight * 3 for weight in model.get_weights()])
    output = tmp_path / "m.onnx"
    from librispeech_tools.onnx_wav2vec2 import save_onnx

    save_onnx(model, output, None)
    report = export_module.check_onnx_export(model, output, None, seconds=0.5)
    largest = float(np.abs(export_module._unpadded_keras_logits(
        model, export_module._check_audio(model, 0.5, 16000))).max())
    assert report["onnx_keras_max_abs_diff"] <= 1e-4 * max(1.0, largest)
    assert f"(largest logit {max(1.0, largest):.3g})" in capsys.readouterr().out
    with pytest.raises(export_module.ExportCheckError, match=r"differ by .* > 1e-09 \* "):
        export_module.check_onnx_export(model, output, None, seconds=0.5, tolerance=1e-9)


def test_the_onnx_checks_scale_leaves_out_the_tokens_the_checkpoint_lacks(tmp_path, capsys):
    """A runtime token the checkpoint lacks sits at MISSING_TOKEN_LOGIT (-1e4) on every frame: counted in the
    scale, it would loosen the check ten-thousandfold (a 0.5 difference in every logit would pass)."""
    model = export_module.load_source(GOLDEN / "group", 16000)[0]
    head = model.get_layer("lm_head")
    kernel, bias = head.get_weights()
    kernel[:, 1], bias[1] = 0.0, export_module.MISSING_TOKEN_LOGIT
    head.set_weights([kernel, bias])
    output = tmp_path / "m.onnx"
    from librispeech_tools.onnx_wav2vec2 import save_onnx

    save_onnx(model, output, None)
    export_module.check_onnx_export(model, output, None, seconds=0.5)
    logits = export_module._unpadded_keras_logits(model, export_module._check_audio(model, 0.5, 16000))
    own = max(1.0, float(np.abs(np.delete(logits, 1, axis=-1)).max()))
    assert own < 100 and f"(largest logit {own:.3g})" in capsys.readouterr().out
    with pytest.raises(export_module.ExportCheckError, match=rf"> 1e-09 \* {own:.3g}$"):
        export_module.check_onnx_export(model, output, None, seconds=0.5, tolerance=1e-9)
