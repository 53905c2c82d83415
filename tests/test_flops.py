"""forward_flops against the arithmetic the ONNX graph really performs: every MatMul and Conv's multiply-adds, read
from the shapes of its tensors in a run of the exported graph."""
import numpy as np
import pytest

from librispeech.wav2vec2.configuration import Wav2Vec2Config, conv_output_length
from librispeech_tools.flops import forward_flops
from librispeech_tools.onnx_wav2vec2 import SUM_BLOCK_FRAMES
from conftest import TINY_CONFIG

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")


def graph_flops(config: dict, sample_counts: list[int]) -> list[int]:
    """2 x the multiply-adds of every MatMul and Conv node of the dynamic-length export, per input length."""
    from librispeech.wav2vec2 import model as wav2vec2_model
    from librispeech_tools.onnx_wav2vec2 import to_onnx

    proto = to_onnx(wav2vec2_model.build_wav2vec2_for_ctc(config, None), check=False)
    nodes = [node for node in proto.graph.node if node.op_type in ("MatMul", "Conv")]
    weights = {tensor.name: tuple(tensor.dims) for tensor in proto.graph.initializer}
    observed = sorted({node.input[0] for node in nodes} | {node.output[0] for node in nodes} - set(weights))
    del proto.graph.output[:]  # read every intermediate tensor the count needs instead
    proto.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in observed)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    counts = []
    for samples in sample_counts:
        values = session.run(observed, {"audio": np.zeros((1, samples), np.float32),
                                        "audio_length": np.array([[samples]], np.float32)})
        shapes = {**weights, **{name: value.shape for name, value in zip(observed, values)}}
        total = 0
        for node in nodes:
            outputs = int(np.prod(shapes[node.output[0]]))
            per_output = (shapes[node.input[0]][-1] if node.op_type == "MatMul"
                          else int(np.prod(shapes[node.input[1]][1:])))  # Conv weight [out, in / groups, kernel]
            total += 2 * outputs * per_output
        counts.append(total)
    return counts


@pytest.mark.parametrize("overrides", [
    {},  # group-normed conv stack, even positional kernel, post-LN
    {"feat_extract_norm": "layer", "do_stable_layer_norm": True, "num_conv_pos_embeddings": 7,
     "conv_kernel": [10, 3, 3, 3, 3, 3, 2], "num_hidden_layers": 2},
    {"feat_extract_norm": "layer", "conv_dim": [16, 24, 24, 16, 16, 16, 8], "intermediate_size": 48},
])
def test_forward_flops_is_what_the_graph_computes(overrides):
    config = {**TINY_CONFIG, **overrides}
    sample_counts = [800, 3000, 16000, 40000]
    expected = []
    for samples in sample_counts:
        flops = forward_flops(Wav2Vec2Config.from_dict(config), samples)
        if config["feat_extract_norm"] == "group":
            # the graph's group norm takes its statistics from the audio's windows (onnx_wav2vec2.
            # first_conv_group_norm): a Conv of DCT kernels, then in blocks the coefficients' sums (frame_sums, a Conv
            # of ones) and products (frame_products, a MatMul), and two MatMuls that apply the conv's weights; norm
            # arithmetic, which forward_flops leaves out
            kernel, channels = config["conv_kernel"][0], config["conv_dim"][0]
            frames = conv_output_length(samples, kernel, config["conv_stride"][0])
            padded_frames = -(-frames // SUM_BLOCK_FRAMES) * SUM_BLOCK_FRAMES
            flops += 2 * (kernel * kernel * frames + kernel * padded_frames + kernel * kernel * padded_frames
                          + kernel * channels * kernel + channels * kernel)
        expected.append(flops)
    assert graph_flops(config, sample_counts) == expected


def test_base_model_arithmetic_per_second_of_audio():
    # the figure benchmarks/EVALUATE_RESULTS.md works with: ~13.8 GFLOP per second of audio for wav2vec2-base
    assert 13.5e9 < forward_flops(Wav2Vec2Config(), 16000) < 14.5e9
    assert forward_flops(Wav2Vec2Config(), 0) == 0
