import numpy as np
import pytest

from librispeech import tokenizer


def test_vocabulary_matches_wav2vec2_base_960h():
    assert tokenizer.vocabulary_tokens() == tuple(
        "<pad> <s> </s> <unk> | E T A O N I H S R D L U M W C F G Y P B V K ' X J Q Z".split())


def test_reference_round_trip_keeps_doubled_letters():
    encoded = tokenizer.encode_transcript("bookkeeper's  COFFEE", 630)
    assert encoded.dtype == np.float32 and encoded.shape == (630,)
    assert tokenizer.decode_reference(encoded) == "BOOKKEEPER'S COFFEE"


def test_unknown_characters_become_unk():
    encoded = tokenizer.encode_transcript("CAFÉ 42", 630)
    ids = encoded[encoded > 0].astype(int).tolist()
    assert ids.count(3) == 3  # É, 4 and 2
    assert tokenizer.decode_reference(encoded) == "CAF\u2047 \u2047\u2047"


def test_typographic_apostrophes_are_the_vocabulary_s_apostrophe():
    encoded = tokenizer.encode_transcript("Don\u2019t say \u2018twas", 630)
    assert 3 not in encoded.astype(int).tolist()  # no <unk>
    assert tokenizer.decode_reference(encoded) == "DON'T SAY 'TWAS"
    assert tokenizer.label_length("Don\u2019t") == len("DON'T")


def test_label_longer_than_max_label_length_is_an_error():
    with pytest.raises(ValueError, match="more than max_label_length=5"):
        tokenizer.encode_transcript("TOO LONG FOR FIVE", 5)


def test_greedy_decoding_merges_repeats_and_drops_blanks():
    vocab = {t: i for i, t in enumerate(tokenizer.vocabulary_tokens())}
    path = ["<pad>", "B", "O", "<pad>", "O", "O", "K", "|", "|", "<pad>", "I", "T", "<pad>"]
    logits = np.full((len(path), 32), -5.0, np.float32)
    logits[np.arange(len(path)), [vocab[t] for t in path]] = 5.0
    assert tokenizer.decode_greedy(logits) == "BOOK IT"


def test_a_blank_between_word_delimiters_is_one_word_boundary():
    """| _ | (a pause) decodes to one space, as the word offsets split it: CER sees no phantom error."""
    import jiwer
    vocab = {t: i for i, t in enumerate(tokenizer.vocabulary_tokens())}
    path = ["T", "H", "E", "|", "<pad>", "<pad>", "|", "D", "O", "G", "|", "<pad>", "|", "<pad>", "|", "S"]
    logits = np.full((len(path), 32), -5.0, np.float32)
    logits[np.arange(len(path)), [vocab[t] for t in path]] = 5.0
    assert tokenizer.decode_greedy(logits) == "THE DOG S"
    assert jiwer.cer("THE DOG S", tokenizer.decode_greedy(logits)) == 0.0
