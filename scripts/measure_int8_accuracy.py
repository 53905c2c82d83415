"""Greedy WER/CER of an export in float32 and as `export-model --int8` builds it, on every utterance of a
LibriSpeech-layout corpus (default: the configured one, LIBRISPEECH_ROOT or the bundled synthetic corpus), each run at
its own length by ONNX Runtime.

    .venv/bin/python scripts/measure_int8_accuracy.py [--model model/demo-wav2vec2.h5] [--root DIR]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import librispeech  # noqa: F401,E402  first: its telemetry guard


def main(argv=None) -> None:
    import jiwer
    import numpy as np
    import onnxruntime

    from librispeech.config import project_config
    from librispeech.data import decode_audio, normalize_audio
    from librispeech.model_file import load_keras_h5
    from librispeech.tokenizer import decode_greedy
    from librispeech_tools.onnx_wav2vec2 import to_onnx

    config = project_config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=config.model_path, help="a Keras .h5 export")
    parser.add_argument("--root", type=Path, default=config.root, help="a folder of LibriSpeech split folders")
    args = parser.parse_args(argv)

    utterances = []
    for transcripts in sorted(args.root.rglob("*.trans.txt")):
        for line in transcripts.read_text(encoding="utf-8").splitlines():
            utterance_id, _, text = line.partition(" ")
            utterances.append((transcripts.parent / f"{utterance_id}.flac", text))
    if not utterances:
        sys.exit(f"no *.trans.txt under {args.root}")
    model = load_keras_h5(args.model)
    for name, int8 in (("float32", False), ("int8", True)):
        session = onnxruntime.InferenceSession(to_onnx(model, None, int8).SerializeToString(),
                                               providers=["CPUExecutionProvider"])
        references, hypotheses = [], []
        for path, text in utterances:
            audio = normalize_audio(decode_audio(str(path), config.sample_rate), config.normalize_epsilon)
            audio = audio.astype(np.float32)[None]
            logits = session.run(["logits"], {"audio": audio,
                                              "audio_length": np.array([[audio.shape[1]]], np.float32)})[0][0]
            references.append(text)
            hypotheses.append(decode_greedy(logits))
        print(f"{name:8s} {len(utterances)} utterances: WER {jiwer.wer(references, hypotheses):.2%}, "
              f"CER {jiwer.cer(references, hypotheses):.2%}", flush=True)


if __name__ == "__main__":
    main()
