"""The word sections of `evaluate`'s report on word tables whose counts are known by construction."""
import numpy as np
import pandas as pd
import pytest

from librispeech_tools import word_report


def rows_of(*samples):
    """Report rows from (id, [(kind, reference, hypothesis, confidence), ...])."""
    return [{"id": sample_id, "words": [[kind, ref, hyp, conf, None, None] for kind, ref, hyp, conf in words]}
            for sample_id, words in samples]


ROWS = rows_of(
    ("a", [("correct", "THE", "THE", 0.99), ("substitution", "HUMOUR", "HUMER", 0.95), ("deletion", "IT", None, None),
           ("correct", "WAS", "WAS", 0.97)]),
    ("b", [("substitution", "HUMOUR", "HUMER", 0.55), ("insertion", None, "UN", 0.35),
           ("correct", "NOON", "NOON", 0.65), ("substitution", "SAID", "SAIDIT", 0.92), ("deletion", "IT", None, None)]),
    ("c", [("correct", "THE", "THE", 0.98)]),
)


def test_word_table_confusions_deletions_and_insertions():
    words = word_report.word_table(ROWS + [{"id": "old"}])  # a row of an older report has no words
    assert len(words) == 10 and list(words.columns) == ["id", *word_report.WORD_FIELDS]
    assert word_report.confusion_pairs(words) == [("HUMOUR", "HUMER", 2), ("SAID", "SAIDIT", 1)]
    assert word_report.most_common(words.loc[words.kind == "deletion", "reference"]) == [("IT", 2)]
    assert word_report.most_common(words.loc[words.kind == "insertion", "hypothesis"]) == [("UN", 1)]


def test_reliability_bins_and_calibration_error():
    words = word_report.word_table(ROWS)
    bins, ece = word_report.reliability(words)
    by_low = {round(b["low"], 1): b for b in bins}
    # hypothesis words: 0.99 0.95 0.97 | 0.55 0.35 0.65 0.92 | 0.98 -> bins 0.3, 0.5, 0.6, 0.9 (eight words)
    assert sorted(by_low) == [0.3, 0.5, 0.6, 0.9]
    assert by_low[0.9]["count"] == 5 and by_low[0.9]["correct"] == pytest.approx(3 / 5)
    assert by_low[0.3]["correct"] == 0.0 and by_low[0.6]["correct"] == 1.0
    expected = (5 * abs(3 / 5 - (0.99 + 0.95 + 0.97 + 0.92 + 0.98) / 5) + abs(0 - 0.35) + abs(0 - 0.55)
                + abs(1 - 0.65)) / 8
    assert ece == pytest.approx(expected)


def test_words_without_a_confidence_are_left_out_of_the_calibration_and_counted():
    """A word over a NaN logit has no confidence (words.py): the ECE and the mean are those of the others."""
    with_nan = rows_of(*[(sample_id, list(entries)) for sample_id, entries in
                         [("a", [("correct", "THE", "THE", 0.99), ("substitution", "HUMOUR", "HUMER", float("nan"))]),
                          ("b", [("correct", "WAS", "WAS", 0.97)])]])
    without = rows_of(("a", [("correct", "THE", "THE", 0.99)]), ("b", [("correct", "WAS", "WAS", 0.97)]))
    bins, ece = word_report.reliability(word_report.word_table(with_nan))
    assert (bins, ece) == word_report.reliability(word_report.word_table(without)) and np.isfinite(ece)
    summary = "\n".join(word_report.summary_lines(word_report.word_table(with_nan)))
    assert "mean confidence 0.980" in summary
    assert "1 word(s) without a confidence (non-finite logits) left out of both" in summary


def test_frequency_bands_use_an_outside_word_list():
    pytest.importorskip("wordfreq")
    words = word_report.word_table(ROWS)
    zipf = word_report.zipf_frequencies(words.loc[words.kind != "insertion", "reference"].unique())
    assert zipf["THE"] > 7 and zipf["HUMOUR"] < 4  # wordfreq 3.1: THE 7.73, HUMOUR 3.83
    bands = {band["band"]: band for band in word_report.frequency_band_rates(words, zipf)}
    assert sum(band["words"] for band in bands.values()) == 9  # every reference word is in exactly one band
    assert bands["rare"]["substitutions"] == 2 and bands["rare"]["rate"] == 1.0  # HUMOUR twice
    common = bands["common"]  # THE THE WAS SAID IT IT (NOON is middle)
    assert common["words"] == 6 and common["deletions"] == 2 and common["substitutions"] == 1
    assert common["rate"] == pytest.approx(3 / 6)


def test_summary_sections(tmp_path):
    words = word_report.word_table(ROWS)
    summary = "\n".join(word_report.summary_lines(words))
    assert "| HUMOUR → HUMER | 2 |" in summary and "| IT | 2 |" in summary and "| UN | 1 |" in summary
    assert "wrong hypothesis words (substituted or inserted): 4; with confidence >= 0.9: 2; below 0.5: 1" in summary
    only_correct = word_report.word_table(rows_of(("x", [("correct", "A", "A", 0.9)])))
    assert "| (none) | 0 |" in "\n".join(word_report.summary_lines(only_correct))


def test_wer_by_speaking_rate_thirds():
    import pandas as pd

    table = pd.DataFrame({
        "pace.words_per_second": [1.0, 5.0, 2.0, 6.0, 3.0, 4.0, None],
        "reference": ["A B", "A B C D", "A B", "A B", "A B C D", "A B", "A"],
        "hypothesis": ["A B", "X B C D", "A X", "X X", "A B C D", "A B", "X"],
    })
    # slowest third: rates 1, 2 -> 1 error in 4 words; middle: 3, 4 -> 0 in 6; fastest: 5, 6 -> 3 in 6; None left out
    thirds = word_report.rate_thirds(table, "pace.words_per_second")
    assert [(low, median, high, count) for low, median, high, _, count in thirds] == [
        (1.0, 1.5, 2.0, 2), (3.0, 3.5, 4.0, 2), (5.0, 5.5, 6.0, 2)]
    assert [wer for _, _, _, wer, _ in thirds] == pytest.approx([1 / 4, 0.0, 3 / 6])
    assert word_report.rate_thirds(table.head(2), "pace.words_per_second") == []
    two = table.head(2).assign(**{"pace.characters_per_second": [5.0, 9.0]})
    assert "| words_per_second | fewer than 3 samples with a rate |" in "\n".join(word_report.pace_lines(two))
    lines = "\n".join(word_report.pace_lines(table.assign(**{"pace.characters_per_second": range(7)})))
    assert "1 of the 7 samples, with no rate (no speech found), left out." in lines


def test_reliability_bins_equal_scikit_learns_calibration_curve():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(0)
    confidence = np.concatenate([rng.uniform(0.2, 1.0, 490), [0.3, 0.5, 0.5, 0.7, 0.8, 0.9, 0.9, 0.95, 1.0, 1.0]])
    correct = rng.uniform(size=500) < confidence ** 2  # over-confident, so the curve is not the diagonal
    kinds = np.where(correct, "correct", "substitution")
    words = pd.DataFrame({"kind": [*kinds, "deletion"], "confidence": [*confidence, np.nan]})
    bins, ece = word_report.reliability(words)
    fraction_correct, mean_confidence = calibration_curve(correct, confidence, n_bins=word_report.RELIABILITY_BINS)
    np.testing.assert_allclose([b["correct"] for b in bins], fraction_correct)
    np.testing.assert_allclose([b["confidence"] for b in bins], mean_confidence)
    counts = np.array([b["count"] for b in bins])
    assert counts.sum() == 500 and ece == pytest.approx(
        float(np.sum(counts * np.abs(fraction_correct - mean_confidence)) / 500))
