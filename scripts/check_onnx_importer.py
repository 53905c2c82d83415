"""Check an exported .onnx through onnx2kerastl, the converter Tensorleap's ONNX importer is built on: convert it
(no partial graphs: a node it cannot convert is an error) and compare the converted Keras model's logits with ONNX
Runtime's on the same audio, two rows, one of them padded.

onnx2kerastl pins TensorFlow 2.12 and onnx 1.13 and declares Python < 3.11; it runs on 3.11 all the same. It does not
fit the project's environment (Keras 3, numpy 2), so it runs in an environment of its own: the README's "Push to
Tensorleap" section has the commands that make it.

Exits 1 when the conversion fails or the logits differ by more than --tolerance.
"""
from __future__ import annotations

import argparse
import sys

AUDIO, AUDIO_LENGTH = "audio", "audio_length"  # librispeech_tools.onnx_wav2vec2's input names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="an .onnx written by export-model (fixed or dynamic length)")
    parser.add_argument("--seconds", type=float, default=4.0, help="audio per row for a dynamic-length model")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest |logit difference|")
    args = parser.parse_args(argv)
    try:
        import numpy as np
        import onnx
        import onnxruntime
        from onnx2kerastl import onnx_to_keras
    except ImportError as error:
        print(f"error: this check runs where onnx2kerastl is installed (see the README's 'Push to Tensorleap' "
              f"section): {error}", file=sys.stderr)
        return 2

    model = onnx.load(args.model)
    # 16 kHz as the project config's sample rate: the project is not importable in the converter's environment
    samples = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value or round(args.seconds * 16_000)
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((2, samples)) * 0.3).astype(np.float32)
    lengths = np.array([[samples], [samples * 2 // 3]], np.float32)
    audio[1, int(lengths[1, 0]):] = 0
    feeds = {AUDIO: audio, AUDIO_LENGTH: lengths}
    expected = onnxruntime.InferenceSession(args.model, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    try:
        converted = onnx_to_keras(model, [AUDIO, AUDIO_LENGTH], name_policy="attach_weights_name", verbose=False,
                                  allow_partial_compilation=False).converted_model
    except Exception as error:  # whatever the converter raises is the finding
        print(f"onnx2kerastl could not convert {args.model}: {type(error).__name__}: {error}")
        return 1
    got = np.asarray(converted([audio, lengths]))
    if got.shape != expected.shape:
        print(f"the converted model's logits are {got.shape}, ONNX Runtime's {expected.shape}")
        return 1
    difference = float(np.abs(got - expected).max())  # padded frames too: both give them the blank's logits
    print(f"{args.model}: converted by onnx2kerastl; logits {got.shape}, max |difference| from ONNX Runtime "
          f"{difference:.2e} (tolerance {args.tolerance:g})")
    return 0 if difference <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
