"""summary.md's "What goes with the errors": each numeric metadata field's Spearman correlation with the rates."""
import numpy as np
import pandas as pd

from librispeech_tools import error_factors


def rates_table(count=30, seed=0):
    """Utterances whose CER rises with i; WER and loss rise with it less tidily; metadata fields of each kind."""
    rng = np.random.default_rng(seed)
    i = np.arange(count)
    table = pd.DataFrame({
        "id": [f"1-2-{k:04d}" for k in i], "reference": ["ABC DEF" * (1 + k % 3) for k in i],
        "cer": i / count, "wer": np.round(i / count, 1), "loss": rng.uniform(1, 50, count),
        "speech.rising": i * 3.0 + 1,  # ranks equal CER's
        "pace.falling": -np.exp(i / 10),  # ranks opposite
        "noise.flat": np.full(count, 100.0),  # constant
        "text.sparse": np.where(i < 5, i, np.nan),  # 5 values
        "records.speaker_minutes": np.where(i % 7 == 0, np.nan, rng.normal(size=count)),
        "speech.random": rng.normal(size=count),
        "records.sex": np.where(i % 2, "F", "M"),  # not numeric
        "pace.words_per_second": [None] * count,  # None in every row: objects to pandas
        "records.speaker_name": [None] * count,  # the same, but declared a string: not a field to correlate
        "text.most_frequent_character": [None] * count,
        "mean_word_confidence": rng.uniform(size=count),  # a model output, not metadata
    })
    return table


def test_fields_are_ranked_by_their_correlation_with_cer_and_those_left_out_say_why():
    table = rates_table()
    frame = error_factors.correlations(table)
    assert set(frame["field"]) == {"speech.rising", "pace.falling", "noise.flat", "text.sparse",
                                   "records.speaker_minutes", "speech.random", "pace.words_per_second"}
    assert frame["field"].tolist()[:2] == ["speech.rising", "pace.falling"]
    assert frame.loc[0, "rho_cer"] == 1.0 and frame.loc[1, "rho_cer"] == -1.0
    reasons = dict(zip(frame["field"], frame["left_out"]))
    assert reasons["noise.flat"] == "constant" and reasons["text.sparse"] == "fewer than 10 values"
    assert reasons["pace.words_per_second"] == "fewer than 10 values"
    assert frame.loc[frame["left_out"] != "", "rho_cer"].isna().all()

    # Pairs with a missing value are dropped pairwise: n counts the utterances with a value, and rho is pandas' own
    # Spearman (ranks computed without scipy) over those pairs.
    minutes = frame.set_index("field").loc["records.speaker_minutes"]
    assert minutes["n"] == 25
    loss_per_character = table["loss"] / table["reference"].str.len()
    for rate, target in (("cer", table["cer"]), ("wer", table["wer"]), ("loss_per_character", loss_per_character)):
        expected = table["records.speaker_minutes"].corr(target, method="spearman")
        assert abs(minutes[f"rho_{rate}"] - expected) < 1e-12, rate
    tested = frame[frame["left_out"] == ""]
    for rate in error_factors.RATES:  # Benjamini-Hochberg over the fields tested against that rate, by hand
        p = tested[f"p_{rate}"].to_numpy()
        order = np.argsort(p)
        stepped = np.minimum.accumulate((p[order] * len(p) / np.arange(1, len(p) + 1))[::-1])[::-1]
        expected = np.empty(len(p))
        expected[order] = np.minimum(stepped, 1)
        np.testing.assert_allclose(tested[f"q_{rate}"], expected, rtol=1e-12)
        assert (tested[f"q_{rate}"] > tested[f"p_{rate}"]).any(), rate  # the correction did something


def test_summary_section_and_csv(tmp_path):
    lines = error_factors.summary_lines(rates_table(), tmp_path)
    text = "\n".join(lines)
    assert lines[0] == "## What goes with the errors" and "the top 4 of 4 fields" in text
    assert "| speech.rising | 30 | **+1.00 (q < 0.001)** |" in text
    assert "Left out, constant: noise.flat" in text
    assert "Left out, fewer than 10 values: pace.words_per_second, text.sparse" in text
    written = pd.read_csv(tmp_path / error_factors.CSV_NAME)
    assert len(written) == 7 and written["field"].iloc[0] == "speech.rising"


def test_too_few_utterances_say_so(tmp_path):
    lines = error_factors.summary_lines(rates_table(count=6), tmp_path)
    assert "No rank correlations: they need at least 10 utterances" in "\n".join(lines)
    assert (tmp_path / error_factors.CSV_NAME).is_file()


def test_rates_that_do_not_vary_give_no_correlation(tmp_path):
    """A perfect run (every WER 0) has no WER ranks to correlate with: those cells are empty, CER's still there."""
    table = rates_table().assign(wer=0.0)
    frame = error_factors.correlations(table)
    assert frame["rho_wer"].isna().all() and frame["rho_cer"].notna().sum() == 4
    assert "| speech.rising | 30 | **+1.00 (q < 0.001)** | - |" in "\n".join(error_factors.summary_lines(table,
                                                                                                      tmp_path))


def test_a_run_without_character_errors_ranks_by_the_loss():
    table = rates_table().assign(cer=0.0, wer=0.0)
    table["loss"] = table["speech.random"].rank() * table["reference"].str.len()  # ranks equal speech.random's
    frame = error_factors.correlations(table)
    assert error_factors.ranking_rate(frame) == "loss_per_character"
    assert frame.loc[0, "field"] == "speech.random" and frame.loc[0, "rho_loss_per_character"] == 1.0


def test_cells_bold_what_passes_the_corrected_threshold():
    assert error_factors._cell(0.41, 0.021) == "**+0.41 (q 0.021)**"
    assert error_factors._cell(-0.41, 0.05) == "-0.41 (q 0.050)"
    assert error_factors._cell(1.0, 1e-9) == "**+1.00 (q < 0.001)**" and error_factors._cell(np.nan, np.nan) == "-"


def test_the_declared_strings_are_those_of_every_section():
    """declared_strings reads the text and records sections' types: the others must declare no strings."""
    from librispeech import data, noise, pace, text_features

    declared = {"text": text_features.TEXT_FEATURE_TYPES, "records": data.RECORD_TYPES, "pace": pace.PACE_TYPES,
                "noise": noise.NOISE_TYPES}
    strings = {f"{section}.{key}" for section, types in declared.items() for key, kind in types.items()
               if kind == "string"}
    assert strings == error_factors.declared_strings() and "records.sex" in strings
    assert set(error_factors.METADATA_SECTIONS) == set(declared) | {"speech", "readability"}
