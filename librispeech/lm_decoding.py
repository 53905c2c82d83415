"""The second hypothesis: CTC beam search with a word n-gram LM and a lexicon (flashlight-text, KenLM inside).

flashlight-text is the decoder torchaudio uses; it ships wheels with KenLM built in for CPython 3.11 and 3.12.
(pyctcdecode 0.5.0 would do too, but its metadata pins numpy<2, so it cannot be installed next to numpy 2.)
The decoder is built once per process from the `decoding` section of config.yaml; nothing is downloaded.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import gzip
import hashlib
import logging
import math
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

from librispeech.config import project_config
from librispeech.ctc import log_softmax
from librispeech.metrics import ERROR_RATE_KEYS, as_batch, error_rates_of_pair, transcription_pairs
from librispeech.model_file import first_line
from librispeech.tokenizer import (BLANK_ID, WORD_DELIMITER, decode_greedy, decode_ids, decode_reference,
                                   greedy_ids, vocabulary_tokens)

LOGGER = logging.getLogger(__name__)
# Trailing frames whose blank probability is at least 1 - 1e-7 are not decoded: padded frames are a certain blank
# (the model outputs [1e4, 0, ...] past the audio), and decoding them would only add ~0 to every hypothesis.
CERTAIN_BLANK_LOG_PROBABILITY = math.log1p(-1e-7)
BEAM_THRESHOLD = 25.0  # hypotheses this far (natural log) below the best are pruned, as in torchaudio's recipes
# The platform decodes each sample three times (error_rates_lm, lm_gain and transcription_lm); a decode is kept for
# this many distinct logits, more than a batch, so one beam search serves all three.
DECODE_CACHE_SIZE = 256
UNKNOWN_TO_LM_LIMIT = 0.95  # this share of a lexicon unknown to its LM is a mistake, not a choice


class LanguageModelError(Exception):
    """The configured LM or lexicon is missing or unusable; the message names the file."""


@dataclasses.dataclass(frozen=True)
class DecoderSettings:
    lm_path: Path
    lexicon_path: Path | None
    beam_width: int
    alpha: float
    beta: float

    @classmethod
    def from_config(cls) -> "DecoderSettings":
        config = project_config()
        return cls(config.lm_path, config.lexicon_path, config.beam_width, config.lm_alpha, config.lm_beta)

    def check_files(self) -> None:
        """LanguageModelError naming a missing LM or lexicon file: before anything is built from them."""
        if not self.lm_path.is_file():
            raise LanguageModelError(f"no language model at {self.lm_path} (decoding.lm in librispeech/config.yaml "
                                     "or LIBRISPEECH_LM; scripts/make_demo_lm.py rebuilds the demo LM)")
        if self.lexicon_path is not None and not self.lexicon_path.is_file():
            raise LanguageModelError(f"no lexicon at {self.lexicon_path} (decoding.lexicon or LIBRISPEECH_LEXICON)")


# ---------------------------------------------------------------- lexicon

GZIP_MAGIC = b"\x1f\x8b"


def _open_text(path: Path):
    """UTF-8 text, gzip-compressed or not, whatever the name says (KenLM reads a plain ARPA named .gz too); a
    byte-order mark (Windows editors write one) is not part of the first word."""
    with open(path, "rb") as handle:
        compressed = handle.read(2) == GZIP_MAGIC
    return gzip.open(path, "rt", encoding="utf-8-sig") if compressed else open(path, encoding="utf-8-sig")


@contextlib.contextmanager
def _reading(path: Path, what: str):
    """A file that cannot be read as text (truncated gzip, not UTF-8, unreadable) as one LanguageModelError
    naming it."""
    try:
        yield
    except (EOFError, UnicodeDecodeError, zlib.error, gzip.BadGzipFile) as error:
        raise LanguageModelError(f"cannot read the {what} {path} (truncated, damaged, or not UTF-8 text?): "
                                 f"{first_line(error)}") from None
    except OSError as error:  # a permission, a folder
        raise LanguageModelError(f"cannot read the {what} {path}: {error.strerror or error}") from None


def read_lexicon_words(path: Path) -> list[str]:
    """The first column of each non-empty line (flashlight's lexicon format, or OpenSLR's librispeech-lexicon.txt,
    whose further columns are phonemes)."""
    with _reading(path, "lexicon"), _open_text(path) as handle:
        return list(dict.fromkeys(line.split()[0] for line in handle if line.strip()))


def read_arpa_unigrams(path: Path) -> list[str]:
    """The words of an ARPA file's 1-grams section, without <s>, </s> and <unk>. Reads only that section."""
    words, in_unigrams = [], False
    with _reading(path, "language model"):
        try:
            with _open_text(path) as handle:
                for number, line in enumerate(handle, 1):
                    line = line.strip()
                    if line == "\\1-grams:":
                        in_unigrams = True
                    elif in_unigrams and line.startswith("\\"):
                        break
                    elif in_unigrams and line:
                        words.append(_unigram_word(line, path, number))
        except UnicodeDecodeError as error:  # a KenLM binary, say: no text to read the words from
            raise LanguageModelError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start}); with a "
                                     "binary KenLM file, set a lexicon (LIBRISPEECH_LEXICON or decoding.lexicon)"
                                     ) from None
    if not in_unigrams:
        raise LanguageModelError(f"{path} has no \\1-grams: section; with a binary KenLM file, set a lexicon")
    return [word for word in words if word not in ("<s>", "</s>", "<unk>")]


def _unigram_word(line: str, path: Path, number: int) -> str:
    """The word of an ARPA 1-gram line: log10 probability, word, optional backoff."""
    fields = line.split()
    try:
        float(fields[0])
        return fields[1]
    except (ValueError, IndexError):
        raise LanguageModelError(f"{path}: line {number} is not a 1-gram (log10 probability, word, [backoff]): "
                                 f"{line[:80]!r} (truncated or damaged?)") from None


def kenlm_reason(error: BaseException) -> str:
    """KenLM's error as one line: its message's first line is the C++ throw site ("model.cc:100 in void
    lm::ngram::...() threw FormatLoadException."); the reason follows it ("This ngram implementation assumes at least
    a bigram model.")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1 and " threw " in lines[0]:
        lines = lines[1:]
    return f"{type(error).__name__}: {' '.join(lines)[:400]}" if lines else type(error).__name__


def spell(word: str, token_ids: dict[str, int]) -> list[int] | None:
    """The word's letters, then the word delimiter, as token ids (flashlight's lexicon convention: a word ends at
    its delimiter, so a letter repeated across frames stays inside the word), or None when a letter is not in the
    vocabulary."""
    letters = word.upper()
    if not letters or any(letter not in token_ids or letter == WORD_DELIMITER for letter in letters):
        return None
    return [token_ids[letter] for letter in letters] + [token_ids[WORD_DELIMITER]]


def _check_known_to_lm(settings: DecoderSettings, unigram_scores: dict[str, float], unknown_score: float) -> None:
    """Lexicon words the LM does not know all get <unk>'s score, so the LM cannot tell them apart. KenLM is
    case-sensitive: torchaudio's lower-case lexicon.txt beside OpenSLR's upper-case 4-gram, say, knows none. A
    lexicon wider than its LM is a fair choice (a warning); one the LM (almost) wholly lacks is a mistake (an error).
    An ARPA file's unigrams say exactly which words it knows; a binary one is asked for the words' scores (a known
    word whose score ties with <unk>'s, as in a uniform LM, would be counted too)."""
    try:
        known = set(read_arpa_unigrams(settings.lm_path))
        unknown = [word for word in unigram_scores if word not in known]
    except LanguageModelError:  # a binary KenLM file
        unknown = [word for word, score in unigram_scores.items() if score == unknown_score]
    if not unknown:
        return
    where = f"{settings.lexicon_path} against {settings.lm_path}"
    if len(unknown) >= UNKNOWN_TO_LM_LIMIT * len(unigram_scores):
        raise LanguageModelError(f"{len(unknown)} of the lexicon's {len(unigram_scores)} words are unknown to the LM "
                                 f"(another case, or another LM's lexicon?): {where}; e.g. {', '.join(unknown[:5])}")
    LOGGER.warning("lexicon: %d of %d words are unknown to the LM and score as <unk>, e.g. %s (%s)", len(unknown),
                   len(unigram_scores), ", ".join(unknown[:5]), where)


# ---------------------------------------------------------------- the decoder

class LMDecoder:
    """flashlight's LexiconDecoder over the model's 32 tokens: blank = <pad> (0), silence = the word delimiter."""

    def __init__(self, settings: DecoderSettings, tokens: tuple[str, ...]):
        from flashlight.lib.text.decoder import SmearingMode, Trie
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary

        settings.check_files()
        words = (read_lexicon_words(settings.lexicon_path) if settings.lexicon_path
                 else read_arpa_unigrams(settings.lm_path))
        token_ids = {token: index for index, token in enumerate(tokens)}
        self.vocabulary_size = len(tokens)
        spellings = {word: spell(word, token_ids) for word in words}
        unspellable = [word for word, spelling in spellings.items() if spelling is None]
        if unspellable:  # reported, not silently dropped
            LOGGER.warning("lexicon: %d of %d words have characters outside the vocabulary and are left out, "
                           "e.g. %s", len(unspellable), len(words), ", ".join(unspellable[:5]))
        spellings = {word: spelling for word, spelling in spellings.items() if spelling is not None}
        if not spellings:
            raise LanguageModelError(f"no word of the lexicon can be spelled with the model's vocabulary "
                                     f"({settings.lexicon_path or settings.lm_path})")

        self.word_dictionary = Dictionary()
        for word in spellings:
            self.word_dictionary.add_entry(word)
        self.word_dictionary.add_entry("<unk>")
        self.word_dictionary.set_default_index(self.word_dictionary.get_index("<unk>"))
        try:
            self.language_model = KenLM(str(settings.lm_path), self.word_dictionary)
        except Exception as error:  # noqa: BLE001  KenLM's own exceptions (a truncated or non-ARPA file) as C++ errors
            raise LanguageModelError(f"KenLM cannot load {settings.lm_path}: {kenlm_reason(error)} (it reads ARPA "
                                     f"files of order 2 or more, plain or gzip-compressed, and KenLM binary files)"
                                     ) from None
        silence = token_ids[WORD_DELIMITER]
        trie = Trie(len(tokens), silence)
        start = self.language_model.start(False)
        unigram_scores = {}
        for word, spelling in spellings.items():
            word_index = self.word_dictionary.get_index(word)
            _, unigram_scores[word] = self.language_model.score(start, word_index)
            trie.insert(spelling, word_index, unigram_scores[word])
        if settings.lexicon_path is not None:  # the LM's own unigrams are known by construction
            _, unknown_score = self.language_model.score(start, self.word_dictionary.get_index("<unk>"))
            _check_known_to_lm(settings, unigram_scores, unknown_score)
        trie.smear(SmearingMode.MAX)
        self._trie = trie  # the decoder keeps a pointer to it
        self._silence = silence
        self.settings = settings
        self._decoder = self._lexicon_decoder(settings)
        self.lexicon_size = len(spellings)
        # One frame of a certain word delimiter after the audio: the model writes none after the last word, and
        # flashlight only ends a hypothesis after a word's delimiter.
        self._closing_frame = np.full((1, len(tokens)), -1e4, np.float32)
        self._closing_frame[0, silence] = 0.0
        self._cache: OrderedDict[tuple, str] = OrderedDict()  # logits' key -> hypothesis, least recently used first

    def _lexicon_decoder(self, settings: DecoderSettings):
        from flashlight.lib.text.decoder import CriterionType, LexiconDecoder, LexiconDecoderOptions

        options = LexiconDecoderOptions(
            beam_size=settings.beam_width, beam_size_token=self.vocabulary_size, beam_threshold=BEAM_THRESHOLD,
            lm_weight=settings.alpha, word_score=settings.beta, unk_score=-math.inf, sil_score=0.0, log_add=False,
            criterion_type=CriterionType.CTC)
        return LexiconDecoder(options, self._trie, self.language_model, self._silence, BLANK_ID,
                              self.word_dictionary.get_index("<unk>"), [], False)

    def with_search(self, beam_width: int, alpha: float, beta: float) -> "LMDecoder":
        """A decoder with other search settings over the same LM, lexicon and trie (loading the LM is the slow part,
        and a second copy of a large LM may not fit in memory)."""
        other = copy.copy(self)
        other.settings = dataclasses.replace(self.settings, beam_width=beam_width, alpha=alpha, beta=beta)
        other._decoder = other._lexicon_decoder(other.settings)
        other._cache = OrderedDict()
        return other

    def decode(self, logits: np.ndarray) -> str:
        """The best hypothesis for one sample's logits [frames, vocab] (float16 is fine: computed in float32).
        Logits decoded recently (the same float32 values and shape) are answered from a small cache."""
        logits = np.ascontiguousarray(logits, dtype=np.float32)
        if logits.ndim != 2 or logits.shape[1] != self.vocabulary_size:
            raise ValueError(f"expected logits [frames, {self.vocabulary_size}], got shape {logits.shape}")
        key = (logits.shape, hashlib.blake2b(logits.tobytes(), digest_size=20).digest())
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        hypothesis = self._decode(logits)
        self._cache[key] = hypothesis
        if len(self._cache) > DECODE_CACHE_SIZE:
            self._cache.popitem(last=False)
        return hypothesis

    def _decode(self, logits: np.ndarray) -> str:
        log_probabilities = log_softmax(as_greedy_reads_them(logits))
        frames = decoded_frames(log_probabilities)
        if frames == 0:
            return ""
        emissions = np.concatenate([log_probabilities[:frames], self._closing_frame])
        results = self._decoder.decode(emissions.ctypes.data, len(emissions), self.vocabulary_size)
        words = [self.word_dictionary.get_entry(index) for index in results[0].words if index >= 0] if results else []
        path = [token for token in results[0].tokens if 0 <= token < self.vocabulary_size] if words else []
        if words and "".join(decode_ids(path, group_tokens=True).split()) != "".join(words).upper():
            # flashlight ends a search in which no hypothesis finished its last word with the best unfinished one,
            # and drops that word's letters (and everything after a dead end in the lexicon) without a word
            LOGGER.warning("the LM decoder's best hypothesis for a sample of %d frames spells letters that end in no "
                           "lexicon word; its LM transcript leaves them out (decoding.beam_width %d, alpha %g, beta "
                           "%g)", frames, self.settings.beam_width, self.settings.alpha, self.settings.beta)
        if not words and decode_greedy(logits).split():
            # said, as the empty transcript scores as all words deleted: every beam pruned, or weights (decoding.alpha,
            # decoding.beta) that make no word better than none
            LOGGER.warning("the LM decoder found %s for a sample of %d frames that greedy decoding reads as speech; "
                           "its LM transcript is empty (decoding.alpha %g, beta %g)",
                           "no word" if results else "no hypothesis", frames, self.settings.alpha, self.settings.beta)
        return " ".join(words).upper()


def as_greedy_reads_them(logits: np.ndarray) -> np.ndarray:
    """The logits with each frame that holds a NaN or +inf (or only -inf) made certain of the token greedy decoding
    picks there (numpy's argmax: the first NaN, else the first +inf), so that the LM reads the frames as greedy
    decoding does instead of NaN emissions emptying its hypothesis; said in a warning."""
    broken = np.isnan(logits).any(axis=1) | np.isposinf(logits).any(axis=1) | np.isneginf(logits).all(axis=1)
    if not broken.any():
        return logits
    LOGGER.warning("%d of a sample's %d frames of logits hold NaN or infinite values: the LM decoder reads each as "
                   "certain of the token greedy decoding picks there", int(broken.sum()), len(logits))
    certain = np.full((int(broken.sum()), logits.shape[1]), -1e4, np.float32)
    certain[np.arange(len(certain)), greedy_ids(logits[broken])] = 0.0
    fixed = logits.copy()
    fixed[broken] = certain
    return fixed


def decoded_frames(log_probabilities: np.ndarray) -> int:
    """How many frames to decode: all but the trailing certain-blank ones."""
    uncertain = np.flatnonzero(log_probabilities[:, BLANK_ID] < CERTAIN_BLANK_LOG_PROBABILITY)
    return int(uncertain[-1]) + 1 if len(uncertain) else 0


@functools.cache
def lm_decoder() -> LMDecoder:
    """The configured decoder, built on first use and kept for the process (loading the LM is the slow part)."""
    return LMDecoder(DecoderSettings.from_config(), vocabulary_tokens())


def decode_with_lm(logits: np.ndarray) -> list[str]:
    """The LM hypothesis of each sample of a batch (or of one sample)."""
    decoder = lm_decoder()
    return [decoder.decode(sample_logits) for sample_logits in as_batch(logits, 2)]


# ---------------------------------------------------------------- metrics on the LM hypothesis

def error_rates_lm(logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """metrics.error_rates' measures, on the LM hypothesis."""
    labels = as_batch(labels, 1)
    rows = [error_rates_of_pair(decode_reference(label), hypothesis)
            for label, hypothesis in zip(labels, decode_with_lm(logits))]
    return {key: np.array([row[key] for row in rows], dtype=np.float32) for key in ERROR_RATE_KEYS}


def lm_gain(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Greedy WER minus LM WER per sample: positive where the LM helped."""
    greedy = [error_rates_of_pair(reference, hypothesis)["wer"]
              for reference, hypothesis in transcription_pairs(logits, labels)]
    with_lm = error_rates_lm(logits, labels)["wer"]
    return (np.array(greedy, dtype=np.float32) - with_lm).astype(np.float32)
