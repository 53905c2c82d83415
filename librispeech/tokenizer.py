"""Character-level CTC tokenization with transformers' Wav2Vec2CTCTokenizer over the shipped vocab file."""
from __future__ import annotations

import functools
import json

import numpy as np

from librispeech.config import project_config

BLANK_ID = 0  # <pad> doubles as the CTC blank in wav2vec2-base-960h
WORD_DELIMITER = "|"
UNKNOWN = "<unk>"
# How decoded text spells an <unk>: one character, so that the error rates count an unknown character once (as the
# character it stands for), not as the five of "<unk>".
UNKNOWN_MARK = "\u2047"  # ⁇


@functools.cache
def get_tokenizer():
    from transformers import Wav2Vec2CTCTokenizer  # heavy import, deferred to first use

    return Wav2Vec2CTCTokenizer(
        str(project_config().vocab_file),
        unk_token=UNKNOWN, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        word_delimiter_token=WORD_DELIMITER, do_lower_case=False,
    )


@functools.cache
def vocabulary_tokens() -> tuple[str, ...]:
    """The vocabulary in id order (the labels of the model's output channels)."""
    with open(project_config().vocab_file, encoding="utf-8") as handle:
        vocab = json.load(handle)
    return tuple(sorted(vocab, key=vocab.get))


@functools.cache
def transcript_characters() -> frozenset[str]:
    """Characters a transcript may contain (single-character tokens; the delimiter is spelled as a space)."""
    return frozenset(t for t in vocabulary_tokens() if len(t) == 1 and t != WORD_DELIMITER)


# Typographic apostrophes (DON’T in transcripts from other sources than LibriSpeech) are the vocabulary's apostrophe:
# as <unk> they would count an error the model cannot avoid.
APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'"})


def normalize_transcript(text: str) -> str:
    """LibriSpeech style: upper case, single spaces, ' for a typographic apostrophe; a literal `|` (the word
    delimiter's token) is a space. Other characters stay and are encoded as <unk>."""
    return " ".join(text.upper().translate(APOSTROPHES).replace(WORD_DELIMITER, " ").split())


def label_length(transcript: str) -> int:
    """Tokens encode_transcript gives for a transcript: one per character of the normalised text (a space is the
    word delimiter; a character outside the vocabulary is one <unk>). Counted without the tokenizer, so
    preprocessing stays light; tests check it against the tokenizer."""
    return len(normalize_transcript(transcript))


def min_ctc_frames(transcript: str) -> int:
    """Fewest model frames a CTC alignment of the transcript needs: one per token, plus a blank between each pair
    of equal neighbours (the L-L of HELLO)."""
    tokens = label_tokens(transcript)
    return len(tokens) + sum(first == second for first, second in zip(tokens, tokens[1:]))


def label_tokens(transcript: str) -> list[str]:
    """The tokens encode_transcript gives, as strings: a space is the word delimiter, and every character outside
    the vocabulary is the same <unk> (so two different unknown characters in a row are equal neighbours)."""
    known = frozenset(vocabulary_tokens())
    return [WORD_DELIMITER if character == " " else character if character in known else UNKNOWN
            for character in normalize_transcript(transcript)]


def encode_transcript(text: str, max_label_length: int) -> np.ndarray:
    """Token ids as float32, zero-padded (blank) to max_label_length."""
    ids = get_tokenizer()(normalize_transcript(text)).input_ids
    if len(ids) > max_label_length:
        raise ValueError(f"transcript has {len(ids)} tokens, more than max_label_length={max_label_length}: "
                         f"{text[:60]!r}...")
    encoded = np.zeros(max_label_length, dtype=np.float32)
    encoded[:len(ids)] = ids
    return encoded


def spell_unknown(text: str) -> str:
    """Decoded text with each <unk> spelled UNKNOWN_MARK."""
    return text.replace(UNKNOWN, UNKNOWN_MARK)


def decode_ids(ids: list[int], group_tokens: bool) -> str:
    """The tokenizer's decode, with each <unk> spelled UNKNOWN_MARK."""
    return spell_unknown(get_tokenizer().decode(ids, group_tokens=group_tokens))


def decode_reference(label_ids: np.ndarray) -> str:
    """The exact reference text of a padded label: no CTC collapsing, so BOOKKEEPER keeps its doubled letters.
    A character outside the vocabulary reads back as UNKNOWN_MARK."""
    ids = np.rint(np.asarray(label_ids, dtype=np.float32)).astype(np.int64).ravel()
    return decode_ids(ids[ids != BLANK_ID].tolist(), group_tokens=False)


def greedy_ids(logits: np.ndarray) -> np.ndarray:
    """Best path per frame: argmax over the vocabulary axis (the last one)."""
    return np.argmax(np.asarray(logits, dtype=np.float32), axis=-1)


def decode_greedy(logits: np.ndarray) -> str:
    """Greedy CTC decoding of one sample's logits [frames, vocab]: merge repeats, drop blanks.

    A blank between two word delimiters (| _ |, common over a pause) keeps both delimiters, and the tokenizer turns
    them into two spaces; they are one word boundary, so runs of spaces become one (else CER counts a phantom error).
    """
    return " ".join(decode_ids(greedy_ids(logits).tolist(), group_tokens=True).split())
