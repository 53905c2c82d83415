"""LM beam-search decoding time per sample against the model pass, side by side in one run.

    .venv/bin/python benchmarks/benchmark_lm_decoding.py [--samples 16] [--beam-widths 16 32 64 128 256]

On the first --samples utterances of the bundled corpus (sorted by id) with the configured model (default: the
demo model) and LM: the model pass as the platform and `evaluate` run it (the fixed 34.955 s input, batches of 4),
then greedy decoding and the LM decoder at each beam width over the same float16 logits, and a repeat of the last
(answered by the decoder's cache). The decoder is built before timing (loading the LM is a one-off cost, reported
separately). Results: benchmarks/LM_DECODING_RESULTS.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--beam-widths", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args(argv)

    import librispeech  # noqa: F401  telemetry guard first
    from librispeech import data
    from librispeech.config import BUNDLED_CORPUS, project_config
    from librispeech.lm_decoding import DecoderSettings, LMDecoder
    from librispeech.model_file import load_wav2vec2
    from librispeech.tokenizer import decode_greedy, vocabulary_tokens

    config = replace(project_config(), root=BUNDLED_CORPUS, samples_per_split=None)
    utterances = []
    for subset in config.subsets:
        split = data.load_openslr_split(subset, config)
        utterances += [(i, split) for i in split.utterances]
    utterances = sorted(utterances, key=lambda pair: pair[0])[:args.samples]
    audio = np.stack([data.pad_to(data.normalize_audio(split.audio(i), config.normalize_epsilon), config.max_samples)
                      for i, split in utterances])
    lengths = np.array([[len(split.audio(i))] for i, split in utterances], np.float32)
    seconds = float(lengths.sum()) / config.sample_rate

    model = load_wav2vec2(config.model_path)
    model.predict_on_batch([audio[:args.batch_size], lengths[:args.batch_size]])  # warm-up (graph tracing)
    started = time.perf_counter()
    logits = np.concatenate([np.asarray(model.predict_on_batch([audio[s:s + args.batch_size],
                                                                 lengths[s:s + args.batch_size]]))
                             for s in range(0, len(audio), args.batch_size)]).astype(np.float16)
    model_time = (time.perf_counter() - started) / len(audio)

    decode_greedy(logits[0])  # warm-up: the tokenizer loads on first use
    started = time.perf_counter()
    for sample in logits:
        decode_greedy(sample)
    greedy_time = (time.perf_counter() - started) / len(logits)

    base = DecoderSettings.from_config()
    print(f"{len(audio)} utterances ({seconds:.1f} s of audio) of the bundled corpus; model {config.model_path.name}; "
          f"LM {base.lm_path.name} (alpha {base.alpha}, beta {base.beta})")
    print("| step | time per sample | vs model pass |\n|---|---|---|")
    print(f"| model pass (fixed 34.955 s input, batch {args.batch_size}) | {model_time * 1000:.0f} ms | 1.00 |")
    print(f"| greedy decoding | {greedy_time * 1000:.2f} ms | {greedy_time / model_time:.3f} |")
    for beam_width in args.beam_widths:
        started = time.perf_counter()
        decoder = LMDecoder(replace(base, beam_width=beam_width), vocabulary_tokens())
        build_time = time.perf_counter() - started
        started = time.perf_counter()
        for sample in logits:
            decoder.decode(sample)
        lm_time = (time.perf_counter() - started) / len(logits)
        print(f"| LM beam search, beam width {beam_width} (decoder built in {build_time:.1f} s) | "
              f"{lm_time * 1000:.1f} ms | {lm_time / model_time:.3f} |")
    # The platform asks for each sample's LM hypothesis three times; the second and third come from the cache.
    started = time.perf_counter()
    for sample in logits:
        decoder.decode(sample)
    repeat_time = (time.perf_counter() - started) / len(logits)
    print(f"| the same logits again (decode cache), beam width {args.beam_widths[-1]} | {repeat_time * 1000:.2f} ms | "
          f"{repeat_time / model_time:.4f} |")


if __name__ == "__main__":
    main()
