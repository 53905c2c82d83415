"""The LM hypothesis in `evaluate`: its columns, the side-by-side summary, and a missing LM as a one-line error."""
import os
import subprocess
import sys
from pathlib import Path

import jiwer
import numpy as np
import pandas as pd
import pytest

from librispeech_tools import lm_report
from test_lm_decoding import spelled_logits
from test_report import evaluate  # tiny_model: a conftest fixture

REPO = Path(__file__).resolve().parent.parent


def test_lm_columns_against_jiwer():
    reference = "HE SAID IT WAS"
    columns = lm_report.lm_columns(reference, "HE SAIDIT WAS", spelled_logits("HE SAIDIT WAS", padding=20).astype(np.float16))
    assert columns["hypothesis_lm"] == reference and columns["lm_changed"]
    assert columns["wer_lm"] == 0.0 and columns["cer_lm"] == 0.0
    assert columns["lm_gain"] == pytest.approx(jiwer.wer(reference, "HE SAIDIT WAS"))
    same = lm_report.lm_columns(reference, reference, spelled_logits(reference).astype(np.float16))
    assert not same["lm_changed"] and same["lm_gain"] == 0.0


def test_lm_columns_equal_the_registered_lm_metrics():
    """evaluate decodes each sample once for its LM columns; they are what the registered metrics give."""
    from librispeech import lm_decoding, metrics
    from librispeech.tokenizer import decode_greedy, encode_transcript

    references = ["HE SAID IT WAS", "THE CAT SAT", "A DOG"]
    spoken = ["HE SAIDIT WAS", "THE CAT SAT", "A DOGG"]
    width = max(len(spelled_logits(text, padding=5)) for text in spoken)
    logits = np.stack([np.pad(spelled_logits(text), ((0, width - len(spelled_logits(text))), (0, 0)))
                       for text in spoken]).astype(np.float16)
    labels = np.stack([encode_transcript(text, 64) for text in references])
    registered = lm_decoding.error_rates_lm(logits, labels)
    gain = lm_decoding.lm_gain(logits, labels)
    for j, reference in enumerate(references):
        columns = lm_report.lm_columns(reference, decode_greedy(logits[j]), logits[j])
        assert columns["wer_lm"] == pytest.approx(registered["wer"][j]) and columns["cer_lm"] == pytest.approx(
            registered["cer"][j])
        assert columns["lm_gain"] == pytest.approx(gain[j])
        assert columns["wer_lm"] == pytest.approx(metrics.error_rates_of_pair(reference, columns["hypothesis_lm"])[
            "wer"])
    assert gain.any()  # the LM changed at least one WER, so the comparison is not between zeros


def test_summary_puts_greedy_and_lm_side_by_side():
    table = pd.DataFrame({
        "id": ["a", "b", "c"], "reference": ["HE SAID IT WAS", "A CAT", "THE DOG"],
        "hypothesis": ["HE SAIDIT WAS", "A CAT", "THE DOG"], "hypothesis_lm": ["HE SAID IT WAS", "A CAT", "THE DOGS"]})
    table["wer"] = [jiwer.wer(r, h) for r, h in zip(table["reference"], table["hypothesis"])]
    table["wer_lm"] = [jiwer.wer(r, h) for r, h in zip(table["reference"], table["hypothesis_lm"])]
    table["lm_changed"] = table["hypothesis"] != table["hypothesis_lm"]
    table["lm_gain"] = table["wer"] - table["wer_lm"]
    made_by = {"lm": ["/elsewhere/shard-machine-lm.arpa.gz", 1, 2], "lexicon": None, "beam_width": 7,
               "lm_alpha": 0.5, "lm_beta": -1.0}
    text = "\n".join(lm_report.summary_lines(table, made_by))
    # the LM that made the rows, not this machine's (--merge may run where another LM is configured)
    assert "LM: shard-machine-lm.arpa.gz, lexicon: the LM's unigrams; beam width 7, alpha 0.5, beta -1.0." in text
    greedy_wer = jiwer.wer(table["reference"].tolist(), table["hypothesis"].tolist())
    lm_wer = jiwer.wer(table["reference"].tolist(), table["hypothesis_lm"].tolist())
    assert f"| greedy | {greedy_wer:.2%} |" in text and f"| beam search + LM | {lm_wer:.2%} |" in text
    assert "changed 2 of 3" in text
    rows = [line for line in text.splitlines() if line.startswith("| a ") or line.startswith("| c ")]
    assert rows[0].startswith("| a ") and len(rows) == 2  # |gain| 0.5 before 0.5 by id; unchanged b not listed
    old = table.drop(columns=["hypothesis_lm"])
    assert "no LM hypothesis" in "\n".join(lm_report.summary_lines(old, made_by))


def test_evaluate_writes_the_lm_columns_and_summary(tiny_model, tmp_path):  # noqa: F811
    out = tmp_path / "report"
    result = evaluate("--split", "dev-clean", "--limit", "2", "--model", str(tiny_model), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    csv = pd.read_csv(out / "samples.csv", keep_default_na=False)
    for column in ("hypothesis_lm", "wer_lm", "cer_lm", "lm_changed", "lm_gain"):
        assert column in csv.columns, column
    assert (csv["lm_changed"] == (csv["hypothesis"] != csv["hypothesis_lm"])).all()
    assert "## Greedy and LM decoding" in (out / "summary.md").read_text()


def test_missing_lm_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "librispeech_tools.evaluate", "--limit", "1"], cwd=REPO,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "LIBRISPEECH_LM": str(tmp_path / "absent.arpa")})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("evaluate: no language model at") and "absent.arpa" in last


def test_an_unusable_lm_is_a_one_line_error_that_leaves_no_report_folder(tmp_path):
    """The decoder is built once the metadata worker has started (its ~0.9 s overlaps the worker's start-up), after
    the report folder is made: an LM whose files are there but cannot be used still stops the run in one line before
    the model loads, and the folder is removed (that the worker is then ended, not waited for, is checked in
    test_metadata_processes.py)."""
    arpa = tmp_path / "not-an.arpa"
    arpa.write_text("hello\n", encoding="utf-8")
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "librispeech_tools.evaluate", "--limit", "2", "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "LIBRISPEECH_LM": str(arpa)})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(f"evaluate: {arpa} has no \\1-grams: section")
    assert not out.exists()
