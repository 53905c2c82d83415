"""Greedy WER/CER of an export in float32 and as `export-model --int8` builds it, on every utterance of the configured
corpus's three splits (LIBRISPEECH_ROOT, or the bundled synthetic corpus), each run at its own length by ONNX Runtime.

    .venv/bin/python scripts/measure_int8_accuracy.py [--model model/demo-wav2vec2.h5]
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import librispeech  # noqa: F401,E402  first: its telemetry guard


def main(argv=None) -> None:
    import jiwer
    import numpy as np
    import onnxruntime

    from librispeech import data
    from librispeech.config import project_config
    from librispeech.model_file import load_keras_h5
    from librispeech.tokenizer import decode_greedy
    from librispeech_tools.onnx_wav2vec2 import to_onnx

    config = project_config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=config.model_path, help="a Keras .h5 export")
    args = parser.parse_args(argv)

    splits = data.load_all_splits(replace(config, samples_per_split=None)).values()  # every utterance
    inputs = [(data.normalize_audio(split.audio(sample_id), config.normalize_epsilon), utterance.transcript)
              for split in splits for sample_id, utterance in split.utterances.items()]
    model = load_keras_h5(args.model)
    for name, int8 in (("float32", False), ("int8", True)):
        session = onnxruntime.InferenceSession(to_onnx(model, None, int8).SerializeToString(),
                                               providers=["CPUExecutionProvider"])
        references, hypotheses = [], []
        for audio, transcript in inputs:
            logits = session.run(["logits"], {"audio": audio[None],
                                              "audio_length": np.array([[audio.size]], np.float32)})[0][0]
            references.append(transcript)
            hypotheses.append(decode_greedy(logits))
        print(f"{name:8s} {len(inputs)} utterances: WER {jiwer.wer(references, hypotheses):.2%}, "
              f"CER {jiwer.cer(references, hypotheses):.2%}", flush=True)


if __name__ == "__main__":
    main()
