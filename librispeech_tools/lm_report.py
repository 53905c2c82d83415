"""The LM hypothesis in `evaluate`'s report: per-sample columns, and greedy vs LM decoding in summary.md."""
from __future__ import annotations

from pathlib import Path

import numpy as np

MOST_CHANGED_SHOWN = 10


class LMReportError(Exception):
    """The configured LM cannot be used; the message names the file."""


def check_decoder(build: bool = True) -> None:
    """Build the decoder now, so an unusable LM stops the run before the model pass; build=False: only check that
    its files are there (they name the run's rows before anything is built)."""
    from librispeech.lm_decoding import DecoderSettings, LanguageModelError, lm_decoder

    try:
        if build:
            lm_decoder()
        else:
            DecoderSettings.from_config().check_files()
    except LanguageModelError as error:
        raise LMReportError(str(error)) from None


def lm_columns(reference: str, greedy_hypothesis: str, logits: np.ndarray) -> dict:
    """hypothesis_lm, its WER and CER, lm_changed (the LM's text differs from greedy's) and lm_gain (greedy WER
    minus LM WER). `logits` are one sample's, as the platform's metrics see them (float16)."""
    from librispeech.lm_decoding import lm_decoder
    from librispeech.metrics import error_rates_of_pair

    hypothesis = lm_decoder().decode(logits)
    with_lm = error_rates_of_pair(reference, hypothesis)
    greedy = error_rates_of_pair(reference, greedy_hypothesis)
    return {"hypothesis_lm": hypothesis, "wer_lm": with_lm["wer"], "cer_lm": with_lm["cer"],
            "lm_changed": hypothesis != greedy_hypothesis, "lm_gain": greedy["wer"] - with_lm["wer"]}


def decoder_line(made_by: dict | None) -> str:
    """The LM and settings that made the rows, from the run's made_by (run.json), not this machine's configuration:
    --merge may run where another LM is configured, or none."""
    if not made_by or not made_by.get("lm"):
        return "LM: not recorded (rows from a run before LM settings were saved)."
    lexicon = Path(made_by["lexicon"][0]).name if made_by.get("lexicon") else "the LM's unigrams"
    return (f"LM: {Path(made_by['lm'][0]).name}, lexicon: {lexicon}; beam width {made_by['beam_width']}, alpha "
            f"{made_by['lm_alpha']}, beta {made_by['lm_beta']}.")


def summary_lines(table, made_by: dict | None) -> list[str]:
    """Corpus WER/CER greedy and with the LM side by side, and the samples where the two differ most."""
    from librispeech.metrics import corpus_error_rates

    if "hypothesis_lm" not in table or table["hypothesis_lm"].isna().any():
        missing = len(table) if "hypothesis_lm" not in table else int(table["hypothesis_lm"].isna().sum())
        return ["## Greedy and LM decoding", "",
                f"- {missing} rows have no LM hypothesis (kept from a run before LM decoding); delete samples.jsonl "
                "to recompute them", ""]
    references = table["reference"].tolist()
    greedy = corpus_error_rates(references, table["hypothesis"].tolist())
    with_lm = corpus_error_rates(references, table["hypothesis_lm"].tolist())
    lines = ["## Greedy and LM decoding", "",
             f"{decoder_line(made_by)} The LM changed {int(table['lm_changed'].sum())} of {len(table)} "
             f"transcriptions.", "",
             "| decoding | corpus WER | corpus CER |", "|---|---|---|",
             f"| greedy | {greedy['wer']:.2%} | {greedy['cer']:.2%} |",
             f"| beam search + LM | {with_lm['wer']:.2%} | {with_lm['cer']:.2%} |", ""]
    changed = table[table["lm_changed"]]
    order = changed.assign(size=changed["lm_gain"].abs()).sort_values(["size", "id"], ascending=[False, True])
    lines += [f"### Where greedy and LM decoding differ most (by |WER difference|, top {MOST_CHANGED_SHOWN})", "",
              "| id | WER greedy | WER LM | reference | greedy | LM |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.id} | {r.wer:.2f} | {r.wer_lm:.2f} | {r.reference} | {r.hypothesis} | {r.hypothesis_lm} |"
              for r in order.head(MOST_CHANGED_SHOWN).itertuples()]
    return lines + [""]
