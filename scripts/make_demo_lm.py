"""Build the demo word LM and its lexicon (librispeech/lm/) from the training-corpus sentence generator.

    python scripts/make_demo_lm.py [--sentences 100000] [--order 2] [--min-counts 1 2] [--seed 7340033]
                                   [--without-bundled-words --lm OTHER.arpa.gz --lexicon OTHER.txt]

The text is what librispeech_tools/synthetic.py composes for the demo model's training corpus (--text-style
frequency: half the words by their frequency in English, the rest from common words, their inflections and the
bundled corpus's vocabulary), drawn with its own seed, so no LM sentence is a training, held-out or evaluation
utterance of another seed except by chance; a sentence equal to a bundled-corpus sentence is never used. The
words are drawn independently, so the LM knows word frequencies and the lexicon, not word order: a demo, not a
model of English. For real LibriSpeech use OpenSLR resource 11 (README, LM decoding).

Writes an interpolated Witten-Bell ARPA (librispeech_tools/ngram_lm.py; no lmplz needed) and a lexicon in
flashlight's format: one word per line, then its letters and the word delimiter `|`. Deterministic.
Needs the dev extra (wordfreq).
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LM_DIR = REPO_ROOT / "librispeech" / "lm"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=100_000, help="sentences to draw (default 100000)")
    parser.add_argument("--order", type=int, default=2, help="n-gram order (default 2)")
    parser.add_argument("--min-counts", type=int, nargs="+", default=[1, 2],
                        help="minimum count per order; rarer n-grams go to the backoff (default 1 2)")
    parser.add_argument("--seed", type=int, default=7_340_033,
                        help="seed of the sentence draws (default 7340033, unused by any corpus made so far)")
    parser.add_argument("--without-bundled-words", action="store_true",
                        help="draw the generator's bundled-vocabulary share from the common words instead: an LM "
                             "that does not know the bundled corpus's rarer words (to measure what that costs)")
    parser.add_argument("--lm", type=Path, default=LM_DIR / "demo-lm.arpa.gz")
    parser.add_argument("--lexicon", type=Path, default=LM_DIR / "demo-lexicon.txt")
    return parser.parse_args(argv)


def demo_lm_sentences(count: int, seed: int, without_bundled_words: bool = False) -> list[list[str]]:
    from dataclasses import replace

    from librispeech_tools import synthetic

    pools = synthetic.training_word_pools("frequency")
    if without_bundled_words:
        pools = replace(pools, sample=pools.common)
    forbidden = synthetic.sample_transcripts()
    rng = random.Random(seed)
    sentences = []
    while len(sentences) < count:
        _spoken, transcript = synthetic.training_sentence(rng, pools)
        if transcript not in forbidden:
            sentences.append(transcript.split())
    return sentences


def lexicon_lines(words) -> list[str]:
    return [f"{word}\t{' '.join(word)} |" for word in words]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing the package
    from librispeech_tools.ngram_lm import SENTENCE_END, WittenBellModel

    started = time.perf_counter()
    sentences = demo_lm_sentences(args.sentences, args.seed, args.without_bundled_words)
    model = WittenBellModel(sentences, args.order, args.min_counts)
    args.lm.parent.mkdir(parents=True, exist_ok=True)
    model.write_arpa(args.lm)
    words = [word for word in model.vocabulary if word != SENTENCE_END]
    args.lexicon.write_text("\n".join(lexicon_lines(words)) + "\n", encoding="utf-8")
    print(f"{len(sentences)} sentences, {sum(map(len, sentences))} words, {len(words)} distinct; n-grams kept per "
          f"order: {[len(kept) for kept in model.kept]}; wrote {args.lm} ({args.lm.stat().st_size / 1e6:.1f} MB) "
          f"and {args.lexicon} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
