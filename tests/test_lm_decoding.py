"""Beam search with a word LM (flashlight-text): perfect logits keep the reference, the lexicon repairs merged and
misspelled words, padding and float16 change nothing, bad configuration is a clear error."""
import dataclasses
import gzip
import logging
import math
import re

import jiwer
import numpy as np
import pytest

from librispeech import lm_decoding, metrics
from librispeech.tokenizer import encode_transcript, vocabulary_tokens
from librispeech_tools.ngram_lm import WittenBellModel

from conftest import make_config

VOCAB = {token: index for index, token in enumerate(vocabulary_tokens())}
SENTENCES = ["THE CAT SAT ON THE MAT", "THE DOG SAT ON A LOG", "A CAT AND A DOG", "THE BOOKKEEPER SAT",
             "ALL LIVE ON THE MAT", "THE CAT IS ON A MAT"]


def spelled_logits(text: str, confidence: float = 12.0, padding: int = 0) -> np.ndarray:
    """Logits spelling `text` (space = the word delimiter), each character for two frames with a blank after it,
    then `padding` frames of the model's certain blank."""
    frames = []
    for character in text.replace(" ", "|"):
        for token in (character, character, "<pad>"):
            row = np.zeros(32, np.float32)
            row[VOCAB[token]] = confidence
            frames.append(row)
    blank = np.zeros((padding, 32), np.float32)
    blank[:, 0] = 1e4
    return np.concatenate([np.array(frames, np.float32).reshape(-1, 32), blank])


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    WittenBellModel([s.split() for s in SENTENCES], order=2).write_arpa(folder / "tiny.arpa")
    return lm_decoding.DecoderSettings(folder / "tiny.arpa", None, beam_width=16, alpha=0.5, beta=0.0)


@pytest.fixture(scope="module")
def tiny_decoder(tiny_settings):
    return lm_decoding.LMDecoder(tiny_settings, vocabulary_tokens())


def test_perfect_logits_give_the_reference(tiny_decoder):
    for sentence in SENTENCES + ["MAT CAT DOG"]:  # the last one is in the lexicon but never in the LM's text
        assert tiny_decoder.decode(spelled_logits(sentence)) == sentence


def test_the_lexicon_splits_merged_words_and_fixes_a_misspelling(tiny_decoder):
    assert tiny_decoder.decode(spelled_logits("THE CATSAT ON THE MAT")) == "THE CAT SAT ON THE MAT"
    # a weak O where the model heard U: only a lexicon word can come out, and MUT is none
    logits = spelled_logits("THE CAT SAT ON THE MUT")
    o_frames = np.flatnonzero(logits[:, VOCAB["U"]] > 0)
    logits[o_frames, VOCAB["A"]] = 8.0
    assert tiny_decoder.decode(logits) == "THE CAT SAT ON THE MAT"


def test_padding_and_float16_change_nothing(tiny_decoder):
    logits = spelled_logits("A DOG SAT ON THE MAT", confidence=4.0)
    logits += np.random.default_rng(0).normal(scale=1.0, size=logits.shape).astype(np.float32)
    expected = tiny_decoder.decode(logits)
    padded = np.concatenate([logits, spelled_logits("", padding=300)])
    assert lm_decoding.decoded_frames(lm_decoding.log_softmax(padded)) == len(logits)
    assert tiny_decoder.decode(padded) == expected
    assert tiny_decoder.decode(padded.astype(np.float16)) == expected
    assert tiny_decoder.decode(spelled_logits("", padding=50)) == ""


def test_lexicon_from_a_file_and_unspellable_words_are_reported(tmp_path, tiny_settings, caplog):
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("CAT\tC A T |\nMAT\tM A T |\nNAÏVE\tN A Ï V E |\nTHE T H E |\n", encoding="utf-8")
    settings = lm_decoding.DecoderSettings(tiny_settings.lm_path, lexicon, 8, 0.5, 0.0)
    with caplog.at_level(logging.WARNING, logger="librispeech.lm_decoding"):
        decoder = lm_decoding.LMDecoder(settings, vocabulary_tokens())
    assert decoder.lexicon_size == 3 and "1 of 4 words" in caplog.text and "NAÏVE" in caplog.text
    assert decoder.decode(spelled_logits("THE CAT")) == "THE CAT"
    # DOG is in the LM, not in this lexicon: only lexicon words come out
    assert set(decoder.decode(spelled_logits("THE DOG")).split()) <= {"THE", "CAT", "MAT"}


def test_lexicon_words_the_lm_does_not_know_are_reported_and_most_of_them_refused(tmp_path, tiny_settings, caplog):
    """KenLM is case-sensitive: a lower-case lexicon beside an upper-case LM scores every word as <unk>."""
    lower = tmp_path / "lower.txt"
    lower.write_text("".join(f"{word.lower()}\n" for word in ("THE", "CAT", "MAT", "DOG")), encoding="utf-8")
    with pytest.raises(lm_decoding.LanguageModelError, match="4 of the lexicon's 4 words are unknown to the LM"):
        lm_decoding.LMDecoder(lm_decoding.DecoderSettings(tiny_settings.lm_path, lower, 8, 0.5, 0.0),
                              vocabulary_tokens())
    one_unknown = tmp_path / "one-unknown.txt"
    one_unknown.write_text("THE\nCAT\nMAT\nZEBRA\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="librispeech.lm_decoding"):
        decoder = lm_decoding.LMDecoder(lm_decoding.DecoderSettings(tiny_settings.lm_path, one_unknown, 8, 0.5, 0.0),
                                        vocabulary_tokens())
    assert "1 of 4 words are unknown to the LM and score as <unk>, e.g. ZEBRA" in caplog.text
    assert decoder.decode(spelled_logits("THE CAT")) == "THE CAT"


def test_words_whose_score_ties_with_unk_are_known_when_the_arpa_lists_them(tmp_path, caplog):
    """A uniform LM scores every word as <unk>; its unigrams still list them, so nothing is reported."""
    arpa = tmp_path / "uniform.arpa"
    arpa.write_text("\\data\\\nngram 1=7\nngram 2=1\n\n\\1-grams:\n-0.8451\t<unk>\n-99\t<s>\t0\n-0.8451\t</s>\n"
                    + "".join(f"-0.8451\t{word}\n" for word in ("THE", "CAT", "SAT", "MAT"))
                    + "\n\\2-grams:\n-0.1\t<s> </s>\n\n\\end\\\n")  # KenLM needs a bigram section
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("THE\nCAT\nSAT\nMAT\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="librispeech.lm_decoding"):
        for words in (None, lexicon):
            decoder = lm_decoding.LMDecoder(lm_decoding.DecoderSettings(arpa, words, 8, 0.5, 0.0), vocabulary_tokens())
            assert decoder.decode(spelled_logits("THE CAT SAT")) == "THE CAT SAT"
    assert "unknown to the LM" not in caplog.text


def test_a_binary_lm_without_a_lexicon_is_a_clear_error(tmp_path):
    binary = tmp_path / "4-gram.bin"
    binary.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\x00\xff\xfe" + bytes(range(256)))
    with pytest.raises(lm_decoding.LanguageModelError, match="is not UTF-8 text .* set a lexicon"):
        lm_decoding.read_arpa_unigrams(binary)


def test_arpa_unigrams_are_the_default_lexicon(tiny_settings):
    words = lm_decoding.read_arpa_unigrams(tiny_settings.lm_path)
    assert sorted(words) == sorted({word for sentence in SENTENCES for word in sentence.split()})


def test_missing_files_are_clear_errors(tmp_path, tiny_settings):
    with pytest.raises(lm_decoding.LanguageModelError, match="no language model at .*absent.arpa"):
        lm_decoding.LMDecoder(lm_decoding.DecoderSettings(tmp_path / "absent.arpa", None, 8, 0.5, 0.0),
                              vocabulary_tokens())
    with pytest.raises(lm_decoding.LanguageModelError, match="no lexicon at"):
        lm_decoding.LMDecoder(lm_decoding.DecoderSettings(tiny_settings.lm_path, tmp_path / "absent.txt", 8, 0.5, 0.0),
                              vocabulary_tokens())
    with pytest.raises(ValueError, match="logits"):
        lm_decoding.LMDecoder(tiny_settings, vocabulary_tokens()).decode(np.zeros((10, 5), np.float32))


def test_configuration_and_environment(monkeypatch, tmp_path):
    config = make_config()
    assert config.lm_path.name == "demo-lm.arpa.gz" and config.lm_path.is_file()
    assert config.lexicon_path.name == "demo-lexicon.txt" and config.lexicon_path.is_file()
    from librispeech import config as config_module

    raw = {**config_module.yaml.safe_load(config_module.CONFIG_FILE.read_text())}
    written = raw["decoding"]
    assert (config.beam_width, config.lm_alpha, config.lm_beta) == (
        written["beam_width"], written["alpha"], written["beta"])
    own = config_module.build_config(raw, {"LIBRISPEECH_LM": str(tmp_path / "4-gram.arpa.gz")})
    assert own.lm_path == tmp_path / "4-gram.arpa.gz" and own.lexicon_path is None  # its own unigrams
    both = config_module.build_config(raw, {"LIBRISPEECH_LM": "lm.arpa", "LIBRISPEECH_LEXICON": "words.txt"})
    assert both.lexicon_path.name == "words.txt"
    with pytest.raises(ValueError, match="beam_width"):
        make_config(decoding__beam_width=0)


# ---------------------------------------------------------------- the demo LM and the metrics

def test_demo_lm_gives_perfect_logits_their_reference():
    """Every bundled sentence is in the demo lexicon's words (the generator draws from its vocabulary), never in
    the LM's text; perfect logits must come back unchanged."""
    from librispeech_tools.synthetic import sample_transcripts

    decoder = lm_decoding.lm_decoder()
    for sentence in sorted(sample_transcripts())[:12]:
        assert decoder.decode(spelled_logits(sentence, padding=100).astype(np.float16)) == sentence


def test_demo_lm_text_never_holds_a_bundled_sentence(monkeypatch):
    import gzip

    from librispeech.config import project_config
    from librispeech_tools import synthetic

    with gzip.open(project_config().lm_path, "rt", encoding="utf-8") as handle:
        text = handle.read()
    assert "\\2-grams:" in text and len(text) < 20_000_000
    assert project_config().lm_path.stat().st_size <= 10_000_000
    # Not provable from n-grams alone; the script guarantees it (demo_lm_sentences): given a generator that draws
    # bundled sentences (random draws almost never do), none of them reaches the LM's text.
    queued = sorted(synthetic.sample_transcripts())[:3]
    draw = synthetic.training_sentence

    def bundled_first(rng, pools):
        if queued:
            sentence = queued.pop(0)
            return sentence, sentence
        return draw(rng, pools)

    monkeypatch.setattr(synthetic, "training_sentence", bundled_first)
    sentences = [" ".join(words) for words in _make_demo_lm_script().demo_lm_sentences(20, 7_340_033)]
    assert not queued and len(sentences) == 20 and not set(sentences) & synthetic.sample_transcripts()


def _make_demo_lm_script():
    import importlib.util

    from librispeech.config import REPO_ROOT

    spec = importlib.util.spec_from_file_location("make_demo_lm", REPO_ROOT / "scripts" / "make_demo_lm.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


@pytest.mark.parametrize("arguments, says", [
    (["--order", "1", "--min-counts", "1"], "--order must be at least 2: KenLM"),
    (["--order", "3", "--min-counts", "1", "1"], "--min-counts needs 3 counts, one per order, got 2"),
    (["--sentences", "0"], "--sentences must be at least 1"),
])
def test_the_demo_lm_script_refuses_an_lm_the_decoder_could_not_load(arguments, says, capsys):
    """KenLM loads no unigram-only model: the script would otherwise write one over the shipped demo LM."""
    with pytest.raises(SystemExit):
        _make_demo_lm_script().parse_args(arguments)
    assert says in capsys.readouterr().err


def test_demo_lm_knows_general_english_beyond_the_generators_words():
    """Words the sentence generator never draws are in the demo LM with half their English frequency (the unigram
    mix of scripts/make_demo_lm.py), and perfect logits of a sentence made of them come back unchanged."""
    import gzip

    from librispeech.config import project_config
    from librispeech_tools import synthetic

    pools = synthetic.training_word_pools("frequency")
    generated = {word.upper() for pool in (pools.sample, pools.common, pools.extended, pools.frequent)
                 for word in pool}
    sentence = "THE ORCHESTRA REHEARSED THE SYMPHONY BEFORE THE VOLCANO ERUPTED NEAR THE VINEYARD"
    outside = [word for word in sentence.split() if word not in generated]
    assert len(outside) == 6  # the test is about these
    assert lm_decoding.lm_decoder().decode(spelled_logits(sentence, padding=50).astype(np.float16)) == sentence

    general = _make_demo_lm_script().general_english_unigrams(60_000)
    total = math.fsum(general.values())
    unigrams = {}
    with gzip.open(project_config().lm_path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("\\2-grams:"):
                break
            fields = line.split("\t")
            if len(fields) >= 2 and fields[1].strip() in outside:
                unigrams[fields[1].strip()] = float(fields[0])
    assert set(unigrams) == set(outside)
    for word, log10_probability in unigrams.items():
        assert log10_probability == pytest.approx(math.log10(0.5 * general[word] / total), abs=1e-5), word


def test_error_rates_lm_and_lm_gain_against_jiwer():
    reference = "HE SAID IT WAS"
    labels = np.stack([encode_transcript(reference, 60)] * 2)
    # sample 0: merged words that greedy keeps and the lexicon splits; sample 1: already right
    logits = np.stack([spelled_logits("HE SAIDIT WAS", padding=13), spelled_logits(reference, padding=10)])
    rates = lm_decoding.error_rates_lm(logits.astype(np.float16), labels)
    assert set(rates) == set(metrics.ERROR_RATE_KEYS)
    assert all(values.shape == (2,) and values.dtype == np.float32 for values in rates.values())
    assert rates["wer"].tolist() == [0.0, 0.0] and rates["word_hits"].tolist() == [4.0, 4.0]
    gain = lm_decoding.lm_gain(logits.astype(np.float16), labels)
    greedy_wer = jiwer.wer(reference, "HE SAIDIT WAS")
    assert gain.dtype == np.float32 and gain.tolist() == pytest.approx([greedy_wer, 0.0])
    assert math.isclose(greedy_wer, 2 / 4)


def test_the_configured_lm_and_lexicon_are_uploaded_to_tensorleap():
    from librispeech.config import REPO_ROOT
    from test_layout import uploaded_files

    config = make_config()
    uploaded = uploaded_files()
    for path in (config.lm_path, config.lexicon_path):
        assert path.relative_to(REPO_ROOT).as_posix() in uploaded, path


# ---------------------------------------------------------------- the decode cache

@pytest.fixture
def counted_decoder(tiny_settings, monkeypatch):
    """A fresh decoder whose beam searches are counted."""
    decoder = lm_decoding.LMDecoder(tiny_settings, vocabulary_tokens())
    searches = []
    uncached = decoder._decode
    monkeypatch.setattr(decoder, "_decode", lambda logits: searches.append(1) or uncached(logits))
    return decoder, searches


def test_repeated_logits_are_decoded_once_and_other_logits_are_not_served_from_the_cache(counted_decoder):
    decoder, searches = counted_decoder
    one, other = spelled_logits("A CAT AND A DOG"), spelled_logits("A DOG AND A CAT")  # same shape
    assert [decoder.decode(one) for _ in range(3)] == ["A CAT AND A DOG"] * 3 and len(searches) == 1
    assert decoder.decode(other) == "A DOG AND A CAT" and len(searches) == 2
    nudged = one.copy()
    nudged[5, 7] += 1e-3  # one value differs: a new beam search, whatever its answer
    decoder.decode(nudged)
    assert len(searches) == 3
    assert decoder.decode(one[:-3]) == "A CAT AND A DOG" and len(searches) == 4  # other shape
    assert decoder.decode(one.astype(np.float64)) == "A CAT AND A DOG" and len(searches) == 4  # same float32 values


def test_the_cache_is_bounded_and_forgets_the_least_recently_used(counted_decoder, monkeypatch):
    decoder, searches = counted_decoder
    monkeypatch.setattr(lm_decoding, "DECODE_CACHE_SIZE", 2)
    cat, dog, mat = (spelled_logits(text) for text in ("THE CAT", "THE DOG", "THE MAT"))
    decoder.decode(cat), decoder.decode(dog), decoder.decode(cat), decoder.decode(mat)  # DOG is now the oldest
    assert len(searches) == 3 and len(decoder._cache) == 2
    assert decoder.decode(cat) == "THE CAT" and len(searches) == 3
    assert decoder.decode(dog) == "THE DOG" and len(searches) == 4


def test_the_platforms_three_lm_calls_share_one_search_per_sample(counted_decoder, monkeypatch):
    decoder, searches = counted_decoder
    monkeypatch.setattr(lm_decoding, "lm_decoder", lambda: decoder)
    reference = "THE CAT SAT ON THE MAT"
    logits = np.stack([spelled_logits("THE CATSAT ON THE MAT", padding=3), spelled_logits(reference)])
    labels = np.stack([encode_transcript(reference, 60)] * 2)
    rates = lm_decoding.error_rates_lm(logits.astype(np.float16), labels)
    gain = lm_decoding.lm_gain(logits.astype(np.float16), labels)
    hypotheses = [lm_decoding.decode_with_lm(sample.astype(np.float16))[0] for sample in logits]
    assert hypotheses == [reference, reference] and rates["wer"].tolist() == [0.0, 0.0]
    assert gain.tolist() == pytest.approx([jiwer.wer(reference, "THE CATSAT ON THE MAT"), 0.0])
    assert len(searches) == 2


# ---------------------------------------------------------------- the general-English measurement set

def test_outside_pool_sentences_use_no_generator_word_but_its_function_words():
    """scripts/measure_lm_decoding.py --corpus outside-pools: the words the generator never draws, plus its
    frequent words; the same seed gives the same sentences."""
    import importlib.util

    from librispeech.config import REPO_ROOT
    from librispeech_tools import synthetic

    spec = importlib.util.spec_from_file_location("measure", REPO_ROOT / "scripts" / "measure_lm_decoding.py")
    measure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(measure)
    sentences = measure.outside_pool_sentences(40, seed=5)
    assert sentences == measure.outside_pool_sentences(40, seed=5) != measure.outside_pool_sentences(40, seed=6)
    pools = synthetic.training_word_pools("frequency")
    frequent = {word.upper() for word in pools.frequent}
    generated = {word.upper() for pool in (pools.sample, pools.common, pools.extended) for word in pool} | frequent
    general = set(_make_demo_lm_script().general_english_unigrams(60_000))
    words = [word for sentence in sentences for word in synthetic.to_transcript(sentence).split()]
    outside = [word for word in words if word not in generated]
    assert all(word in frequent or word in general for word in words)
    assert 0.3 < len(outside) / len(words) < 0.7  # about half, as drawn


def test_the_tuning_script_reads_a_split_of_the_configured_corpus_as_evaluate_does(capsys):
    """scripts/measure_lm_decoding.py --corpus split: the utterances evaluate's --split and --limit would take, as the
    model's input (normalised audio) with their references; an unknown split is one line."""
    import importlib.util

    from librispeech import data
    from librispeech.config import REPO_ROOT, project_config

    spec = importlib.util.spec_from_file_location("measure", REPO_ROOT / "scripts" / "measure_lm_decoding.py")
    measure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(measure)
    waveforms, references = measure.split_utterances("dev-clean", 3)
    whole = data.load_split("validation", dataclasses.replace(project_config(), samples_per_split=None))
    transcripts = [utterance.transcript for utterance in whole.utterances.values()]
    assert len(waveforms) == len(set(references)) == 3 and set(references) <= set(transcripts)
    for waveform in waveforms:
        assert abs(float(waveform.mean())) < 1e-4 and abs(float(waveform.std()) - 1) < 1e-3
    with pytest.raises(SystemExit, match="measure_lm_decoding: unknown split 'nope'"):
        measure.split_utterances("nope", None)


@pytest.mark.parametrize("damage, says", [
    ("truncated ARPA", "KenLM cannot load"),
    ("not an ARPA", "KenLM cannot load"),
    # KenLM's reason, not the C++ throw site its message starts with
    ("unigrams only", "RuntimeError: This ngram implementation assumes at least a bigram model"),
    ("1-gram without a word", "line 8 is not a 1-gram (log10 probability, word, [backoff]): '-0.5'"),
    ("truncated gzip", "cannot read the language model"),
    ("lexicon not UTF-8", "cannot read the lexicon"),
])
def test_damaged_lm_or_lexicon_files_are_one_error_naming_the_file(tmp_path, tiny_settings, damage, says):
    arpa, lexicon = tmp_path / "lm.arpa", tmp_path / "lexicon.txt"
    text = tiny_settings.lm_path.read_text()
    lexicon.write_text("THE\nCAT\n")
    if damage == "truncated ARPA":
        arpa.write_text(text[:len(text) // 2])
    elif damage == "not an ARPA":
        arpa.write_text("these are\nnot the n-grams you are looking for\n")
    elif damage == "unigrams only":
        arpa.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0\t<s>\n-0.5\tTHE\n-0.5\tCAT\n\n\\end\\\n")
    elif damage == "1-gram without a word":
        arpa.write_text("\\data\\\nngram 1=3\nngram 2=1\n\n\\1-grams:\n-1.0\t<s>\n-0.5\tTHE\n-0.5\n")
    elif damage == "truncated gzip":
        arpa = tmp_path / "lm.arpa.gz"
        arpa.write_bytes(gzip.compress(text.encode())[:200])
    else:
        arpa.write_text(text)
        lexicon.write_bytes("CAF\u00c9\nTHE\n".encode("latin-1"))
    no_lexicon = damage in ("truncated gzip", "1-gram without a word")
    settings = lm_decoding.DecoderSettings(arpa, None if no_lexicon else lexicon, 8, 0.5, 0.0)
    with pytest.raises(lm_decoding.LanguageModelError, match=re.escape(says)) as error:
        lm_decoding.LMDecoder(settings, vocabulary_tokens())
    assert str(arpa if "lexicon" not in damage else lexicon) in str(error.value) and "\n" not in str(error.value)


def test_an_arpa_file_is_read_whatever_its_name_says_of_compression(tmp_path, tiny_settings):
    """KenLM reads a plain ARPA named .gz (and a gzipped one named .arpa): so does the unigram reader."""
    plain_named_gz, gzipped_named_arpa = tmp_path / "lm.arpa.gz", tmp_path / "lm.arpa"
    plain_named_gz.write_text(tiny_settings.lm_path.read_text())
    gzipped_named_arpa.write_bytes(gzip.compress(tiny_settings.lm_path.read_bytes()))
    expected = lm_decoding.read_arpa_unigrams(tiny_settings.lm_path)
    assert lm_decoding.read_arpa_unigrams(plain_named_gz) == expected
    assert lm_decoding.read_arpa_unigrams(gzipped_named_arpa) == expected
    decoder = lm_decoding.LMDecoder(lm_decoding.DecoderSettings(plain_named_gz, None, 8, 0.5, 0.0),
                                    vocabulary_tokens())
    assert decoder.decode(spelled_logits("THE CAT SAT")) == "THE CAT SAT"


def test_a_lexicon_with_a_byte_order_mark_keeps_its_first_word(tmp_path, tiny_settings):
    """Windows editors start a UTF-8 file with a byte-order mark; read as part of the first word, that word could
    never be decoded."""
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("CAT\tC A T |\nSAT\tS A T |\nTHE\tT H E |\n", encoding="utf-8-sig")
    assert lm_decoding.read_lexicon_words(lexicon) == ["CAT", "SAT", "THE"]
    settings = lm_decoding.DecoderSettings(tiny_settings.lm_path, lexicon, 8, 0.5, 0.0)
    assert lm_decoding.LMDecoder(settings, vocabulary_tokens()).decode(spelled_logits("THE CAT SAT")) == "THE CAT SAT"


def test_non_finite_logits_are_read_as_greedy_decoding_reads_them(tiny_decoder, caplog):
    """NaN in a frame made every emission NaN and emptied the LM hypothesis (scored as the LM hurting); such a frame
    is now certain of greedy decoding's token there, with a warning."""
    logits = spelled_logits("THE CAT SAT")
    blank_frames = np.flatnonzero(logits[:, VOCAB["<pad>"]] > 0)
    logits[blank_frames[3]] = np.nan  # greedy reads an all-NaN frame as the blank (numpy's argmax: the first NaN)
    logits[blank_frames[5], VOCAB["<pad>"]] = np.inf
    with caplog.at_level(logging.WARNING, logger="librispeech.lm_decoding"):
        assert tiny_decoder.decode(logits) == metrics.decode_greedy(logits) == "THE CAT SAT"
    assert "2 of a sample's 33 frames of logits hold NaN or infinite values" in caplog.text


def test_weights_that_leave_no_word_are_said(tiny_settings, caplog):
    """A word score that outweighs every acoustic score empties the LM transcript: said, not silent."""
    settings = lm_decoding.DecoderSettings(tiny_settings.lm_path, None, 8, 0.5, -1e9)
    with caplog.at_level(logging.WARNING, logger="librispeech.lm_decoding"):
        assert lm_decoding.LMDecoder(settings, vocabulary_tokens()).decode(spelled_logits("THE CAT SAT")) == ""
    assert "found no word for a sample of 33 frames that greedy decoding reads as speech" in caplog.text
    assert "(decoding.alpha 0.5, beta -1e+09)" in caplog.text


def untied(logits: np.ndarray) -> np.ndarray:
    """spelled_logits with a little seeded noise: flashlight breaks exact score ties by where its hypotheses happen to
    lie in memory, so with a narrow beam the same tied logits can decode differently from one decoder to the next."""
    return logits + np.random.default_rng(0).normal(0, 0.01, logits.shape).astype(np.float32)


def test_a_hypothesis_that_ends_inside_a_word_is_said(tiny_settings, caplog):
    """With a beam too narrow to keep a way to MAT, the search ends inside MA: flashlight drops the letters of an
    unfinished word, so the LM transcript loses them, which is said; a wide beam finishes the word, silently."""
    logits = untied(spelled_logits("THE CAT SAT ON THE MA"))
    narrow = lm_decoding.DecoderSettings(tiny_settings.lm_path, None, 1, tiny_settings.alpha, tiny_settings.beta)
    with caplog.at_level(logging.WARNING, logger="librispeech.lm_decoding"):
        assert lm_decoding.LMDecoder(narrow, vocabulary_tokens()).decode(logits) == "THE CAT SAT ON THE"
    assert "a sample of 63 frames spells letters that end in no lexicon word" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="librispeech.lm_decoding"):
        assert lm_decoding.LMDecoder(tiny_settings, vocabulary_tokens()).decode(logits) == "THE CAT SAT ON THE MAT"
    assert "lexicon word" not in caplog.text


def test_another_search_over_the_same_lm_decodes_as_a_decoder_built_for_it(tiny_settings, tiny_decoder):
    """measure_lm_decoding's grid loads the LM once: with_search changes only the beam and the weights."""
    narrow = tiny_decoder.with_search(1, tiny_settings.alpha, tiny_settings.beta)
    built = lm_decoding.LMDecoder(dataclasses.replace(tiny_settings, beam_width=1), vocabulary_tokens())
    heavy = tiny_decoder.with_search(16, 0.5, -1e9)  # a word score that leaves no word
    for text in ("THE CAT SAT ON THE MA", "THE CATSAT ON THE MAT", "THE CAT SAT ON THE MUT"):
        logits = untied(spelled_logits(text))
        assert narrow.decode(logits) == built.decode(logits)
        assert heavy.decode(logits) == ""
        assert tiny_decoder.decode(logits) == "THE CAT SAT ON THE MAT"  # the original's beam, unchanged
    assert narrow.language_model is tiny_decoder.language_model and tiny_decoder.settings == tiny_settings


@pytest.mark.parametrize("setting, value, says", [
    ("decoding__alpha", float("nan"), "decoding.alpha in librispeech/config.yaml must be a finite number of at least "
                                      "0, got nan"),
    ("decoding__beta", float("inf"), "decoding.beta in librispeech/config.yaml must be a finite number, got inf"),
    ("decoding__alpha", None, "decoding.alpha in librispeech/config.yaml must be a finite number of at least 0, got "
                             "None"),
    ("decoding__beam_width", "abc", "must be a whole number from 1 to 2147483647, got 'abc'"),
    ("decoding__beam_width", 1.5, "decoding.beam_width in librispeech/config.yaml must be a whole number"),
    ("decoding__beam_width", 0, "decoding.beam_width in librispeech/config.yaml must be a whole number from 1 to "
                                "2147483647, got 0"),
    ("decoding__beam_width", 2**31, "decoding.beam_width in librispeech/config.yaml must be a whole number from 1 to "
                                    "2147483647, got 2147483648"),  # flashlight's C int: a TypeError of many lines
    ("decoding__alpha", -1, "decoding.alpha in librispeech/config.yaml must be a finite number of at least 0, got -1"),
    ("decoding__lm", None, "decoding.lm in librispeech/config.yaml must be a file path, got None"),
    ("audio__sample_rate", "16k", "audio.sample_rate in librispeech/config.yaml must be a whole number"),
    ("audio__normalize_epsilon", 0, "audio.normalize_epsilon in librispeech/config.yaml must be a finite number of "
                                    "at least 1e-12"),
])
def test_settings_that_are_not_numbers_are_one_configuration_error(setting, value, says):
    """Rather than a TypeError deep in a run, or a NaN weight emptying every LM hypothesis without a word."""
    from librispeech.config import ConfigError

    with pytest.raises(ConfigError, match=re.escape(says)):
        make_config(**{setting: value})
