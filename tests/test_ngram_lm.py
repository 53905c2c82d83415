"""The Witten-Bell ARPA writer: a hand-computed case, proper distributions read back from the file, and KenLM
(inside flashlight-text) scoring the file exactly as the file says."""
import math
import random

import pytest

from librispeech_tools.ngram_lm import WittenBellModel


def read_arpa(path) -> tuple[dict, dict, int]:
    """An independent ARPA reader: log10 probabilities and backoffs per n-gram tuple, and the order."""
    import gzip

    opener = gzip.open if str(path).endswith(".gz") else open
    probabilities, backoffs, order = {}, {}, 0
    with opener(path, "rt", encoding="utf-8") as handle:
        section = None
        for line in handle:
            line = line.strip()
            if line.startswith("\\") and line.endswith("-grams:"):
                section = int(line[1:line.index("-")])
                order = max(order, section)
            elif line == "\\end\\":
                section = None
            elif section and line:
                fields = line.split("\t")
                gram = tuple(fields[1].split())
                probabilities[gram] = float(fields[0])
                if len(fields) > 2:
                    backoffs[gram] = float(fields[2])
    return probabilities, backoffs, order


def arpa_log10(probabilities, backoffs, order, word, context) -> float:
    """Standard ARPA backoff: the longest listed n-gram, plus the backoffs of the contexts skipped."""
    context = tuple(context)[-(order - 1):] if order > 1 else ()
    if (word,) not in probabilities:
        word = "<unk>"
    while True:
        if (*context, word) in probabilities:
            return probabilities[(*context, word)]
        penalty = backoffs.get(context, 0.0)
        return penalty + arpa_log10(probabilities, backoffs, order, word, context[1:])


def test_hand_computed_bigram_case(tmp_path):
    # Corpus "A B", "A": unigram events A A B </s> </s> (N = 5, T = 3), uniform base 1/4 over A, B, </s>, <unk>.
    model = WittenBellModel([["A", "B"], ["A"]], order=2)
    p_a, p_b, p_end, p_unk = (2 + 3 / 4) / 8, (1 + 3 / 4) / 8, (2 + 3 / 4) / 8, (3 / 4) / 8
    # After <s>: c = 2, T = 1.  After A: c = 2 (A B, A </s>), T = 2.  B is followed by </s> once: c = 1, T = 1.
    expected = {
        ("A", ()): p_a, ("B", ()): p_b, ("</s>", ()): p_end, ("<unk>", ()): p_unk,
        ("A", ("<s>",)): (2 + 1 * p_a) / 3,
        ("B", ("<s>",)): (1 / 3) * p_b,                  # unseen after <s>: backoff 1/3 times P(B)
        ("B", ("A",)): (1 + 2 * p_b) / 4, ("</s>", ("A",)): (1 + 2 * p_end) / 4,
        ("A", ("A",)): (2 / 4) * p_a,                    # unseen after A: backoff 2/4
        ("</s>", ("B",)): (1 + 1 * p_end) / 2,
    }
    for (word, context), probability in expected.items():
        assert model.probability(word, context) == pytest.approx(probability, rel=1e-12), (word, context)
    path = tmp_path / "tiny.arpa"
    model.write_arpa(path)
    probabilities, backoffs, order = read_arpa(path)
    assert order == 2 and probabilities[("<s>",)] == -99.0
    assert backoffs[("<s>",)] == pytest.approx(math.log10(1 / 3), abs=1e-6)
    assert backoffs[("A",)] == pytest.approx(math.log10(2 / 4), abs=1e-6)
    for (word, context), probability in expected.items():
        assert arpa_log10(probabilities, backoffs, order, word, context) == pytest.approx(
            math.log10(probability), abs=2e-6), (word, context)


def _random_corpus(seed: int, sentences: int = 300) -> list[list[str]]:
    rng = random.Random(seed)
    words = [f"W{i}" for i in range(12)]
    return [[rng.choice(words[:rng.randint(2, 12)]) for _ in range(rng.randint(1, 6))] for _ in range(sentences)]


@pytest.mark.parametrize("order, min_counts", [(2, (1, 1)), (3, (1, 1, 1)), (3, (1, 2, 3))])
def test_every_context_is_a_distribution_as_read_from_the_file(tmp_path, order, min_counts):
    model = WittenBellModel(_random_corpus(1), order, min_counts)
    path = tmp_path / "lm.arpa.gz"
    model.write_arpa(path)
    probabilities, backoffs, read_order = read_arpa(path)
    assert read_order == order
    outcomes = [word for (word,) in (g for g in probabilities if len(g) == 1) if word != "<s>"]
    assert "<unk>" in outcomes and "</s>" in outcomes
    contexts = {gram[:-1] for gram in probabilities if len(gram) > 1} | {(), ("<s>",), ("W0", "W11")}
    for context in contexts:
        total = sum(10 ** arpa_log10(probabilities, backoffs, order, word, context) for word in outcomes)
        assert total == pytest.approx(1.0, abs=1e-5), context
        for word in outcomes[:5]:
            assert math.log10(model.probability(word, context)) == pytest.approx(
                arpa_log10(probabilities, backoffs, order, word, context), abs=2e-6)


def test_pruned_ngrams_leave_the_file_and_keep_their_prefixes(tmp_path):
    model = WittenBellModel(_random_corpus(2), 3, (1, 2, 3))
    assert all(model.counts[2][gram] >= 3 for gram in model.kept[2])
    assert len(model.kept[2]) < len(model.counts[2])
    assert all(gram[:-1] in model.kept[1] or gram[:-1] == ("<s>",) for gram in model.kept[2])


def test_kenlm_scores_the_file_as_written(tmp_path):
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    model = WittenBellModel(_random_corpus(3), 3, (1, 1, 2))
    path = tmp_path / "lm.arpa.gz"
    model.write_arpa(path)
    dictionary = Dictionary()
    for word in [f"W{i}" for i in range(12)] + ["NEVERSEEN", "<unk>"]:
        dictionary.add_entry(word)
    kenlm = KenLM(str(path), dictionary)
    sentence = ["W0", "W3", "NEVERSEEN", "W1", "W1", "W11"]
    state, context = kenlm.start(False), ["<s>"]
    for word in sentence:
        state, score = kenlm.score(state, dictionary.get_index(word))
        assert score == pytest.approx(math.log10(model.probability(word, context)), abs=1e-5), (word, context)
        context.append(word)
    _, score = kenlm.finish(state)
    assert score == pytest.approx(math.log10(model.probability("</s>", context)), abs=1e-5)


def test_reserved_words_and_bad_settings_are_errors():
    with pytest.raises(ValueError, match="reserved"):
        WittenBellModel([["A", "</s>"]], 2)
    with pytest.raises(ValueError, match="min_counts"):
        WittenBellModel([["A"]], 2, (2, 1))
    with pytest.raises(ValueError, match="no sentences"):
        WittenBellModel([], 2)


def test_gzip_bytes_depend_only_on_the_model(tmp_path):
    model = WittenBellModel(_random_corpus(4), 2)
    model.write_arpa(tmp_path / "one.arpa.gz")
    model.write_arpa(tmp_path / "another-name.arpa.gz")
    assert (tmp_path / "one.arpa.gz").read_bytes() == (tmp_path / "another-name.arpa.gz").read_bytes()


# ---------------------------------------------------------------- a unigram prior mixed into the unigram level

def test_hand_computed_case_with_a_unigram_prior(tmp_path):
    # The corpus of the first test; the prior {A: 1, C: 3} (normalized: 1/4, 3/4) mixed in with weight 1/2.
    model = WittenBellModel([["A", "B"], ["A"]], order=2, unigram_prior={"A": 1.0, "C": 3.0}, prior_weight=0.5)
    p_a, p_b, p_end, p_unk = (2 + 3 / 4) / 8, (1 + 3 / 4) / 8, (2 + 3 / 4) / 8, (3 / 4) / 8  # Witten-Bell alone
    unigrams = {"A": 0.5 * p_a + 0.5 / 4, "B": 0.5 * p_b, "C": 0.5 * 3 / 4, "</s>": 0.5 * p_end, "<unk>": 0.5 * p_unk}
    assert sum(unigrams.values()) == pytest.approx(1.0, rel=1e-12)
    assert "C" in model.vocabulary
    expected = {(word, ()): probability for word, probability in unigrams.items()}
    expected.update({
        ("B", ("A",)): (1 + 2 * unigrams["B"]) / 4, ("</s>", ("A",)): (1 + 2 * unigrams["</s>"]) / 4,
        ("C", ("A",)): (2 / 4) * unigrams["C"],   # backoff after A stays 2/4: the kept mass scales with it
        ("C", ("<s>",)): (1 / 3) * unigrams["C"],
        ("A", ("<s>",)): (2 + 1 * unigrams["A"]) / 3,
    })
    for (word, context), probability in expected.items():
        assert model.probability(word, context) == pytest.approx(probability, rel=1e-12), (word, context)
    path = tmp_path / "tiny.arpa"
    model.write_arpa(path)
    probabilities, backoffs, order = read_arpa(path)
    for (word, context), probability in expected.items():
        assert arpa_log10(probabilities, backoffs, order, word, context) == pytest.approx(
            math.log10(probability), abs=2e-6), (word, context)


def test_with_a_prior_every_context_is_a_distribution_as_read_from_the_file(tmp_path):
    prior = {f"W{i}": 1.0 / (i + 1) for i in range(6, 20)}  # W12..W19 are never in the sentences
    model = WittenBellModel(_random_corpus(5), 3, (1, 1, 2), unigram_prior=prior, prior_weight=0.3)
    path = tmp_path / "lm.arpa.gz"
    model.write_arpa(path)
    probabilities, backoffs, order = read_arpa(path)
    outcomes = [word for (word,) in (g for g in probabilities if len(g) == 1) if word != "<s>"]
    assert {"W19", "<unk>", "</s>"} <= set(outcomes)
    contexts = {gram[:-1] for gram in probabilities if len(gram) > 1} | {(), ("W19",), ("W0", "W19")}
    for context in contexts:
        total = sum(10 ** arpa_log10(probabilities, backoffs, order, word, context) for word in outcomes)
        assert total == pytest.approx(1.0, abs=1e-5), context


def test_a_bad_prior_is_an_error():
    with pytest.raises(ValueError, match="prior_weight"):
        WittenBellModel([["A"]], 2, unigram_prior={"B": 1.0}, prior_weight=0.0)
    with pytest.raises(ValueError, match="prior_weight"):
        WittenBellModel([["A"]], 2, unigram_prior={"B": 1.0}, prior_weight=1.0)
    with pytest.raises(ValueError, match="reserved"):
        WittenBellModel([["A"]], 2, unigram_prior={"</s>": 1.0}, prior_weight=0.5)
    with pytest.raises(ValueError, match="positive"):
        WittenBellModel([["A"]], 2, unigram_prior={"B": 0.0}, prior_weight=0.5)
