"""What goes with the errors: each numeric metadata field's rank correlation with the utterances' error rates, for
summary.md's section of that name and error_factors.csv.

Spearman's rho (scipy's `spearmanr`: ranks, so neither a field's scale nor a few extreme utterances decide it) of
every numeric field of the metadata sections against each utterance's CER, WER and CTC loss per reference character
(the loss sums over the frames; per character it does not merely follow the length). The p-values of one rate are
corrected for the number of fields tested against that rate (Benjamini-Hochberg, scipy's `false_discovery_control`):
with some 70 fields, a few p < 0.05 come by chance alone. Fields that are not numbers (ids, names, sex) are not
correlated: the summary's tables by sex and speaker cover them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

METADATA_SECTIONS = ("speech", "text", "readability", "records", "pace", "noise")
RATES = {"cer": "CER", "wer": "WER", "loss_per_character": "loss per character"}
MIN_VALUES = 10  # fewer utterances with a value: no correlation is computed for the field
SHOWN = 15  # rows in summary.md; error_factors.csv holds every field
CSV_NAME = "error_factors.csv"


def rates(table):
    """The per-utterance rates the fields are correlated with: CER, WER and the loss per reference character."""
    return {"cer": table["cer"].astype(float), "wer": table["wer"].astype(float),
            "loss_per_character": table["loss"].astype(float) / table["reference"].str.len()}


def declared_strings() -> set[str]:
    """The columns the binder declares as strings (only its text and records sections have any): one that is None in
    every row reads as no values at all, which alone would pass for a number."""
    from librispeech.data import RECORD_TYPES
    from librispeech.text_features import TEXT_FEATURE_TYPES

    return {f"{section}.{key}" for section, types in (("text", TEXT_FEATURE_TYPES), ("records", RECORD_TYPES))
            for key, kind in types.items() if kind == "string"}


def metadata_fields(table) -> list[str]:
    """The numeric metadata columns: ids and names are strings, booleans count as 0/1, and a numeric field that is
    None in every row (pandas reads it as objects) is listed too, to be named as left out."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    strings = declared_strings()

    def numeric(column) -> bool:
        values = table[column]
        return column not in strings and (
            is_numeric_dtype(values) or is_bool_dtype(values)
            or values.dropna().map(lambda value: isinstance(value, (int, float, np.number))).all())

    return [column for column in table.columns if column.split(".")[0] in METADATA_SECTIONS and numeric(column)]


def correlations(table):
    """One row per numeric metadata field: the utterances with a value (n), then per rate rho, p and the corrected
    q; and `left_out`, why a field has none (constant over the utterances, or fewer than MIN_VALUES values)."""
    import pandas as pd
    from scipy.stats import false_discovery_control, spearmanr

    targets = rates(table)
    rows = []
    for field in metadata_fields(table):
        values = pd.to_numeric(table[field], errors="coerce").astype(float)  # None and pd.NA: NaN
        row = {"field": field, "n": int(values.notna().sum()), "left_out": ""}
        if row["n"] < MIN_VALUES:
            row["left_out"] = f"fewer than {MIN_VALUES} values"
        elif values.nunique() < 2:
            row["left_out"] = "constant"
        for rate, target in targets.items():
            rho = p = np.nan
            if not row["left_out"]:
                both = values.notna() & target.notna()
                if both.sum() >= MIN_VALUES and values[both].nunique() > 1 and target[both].nunique() > 1:
                    rho, p = spearmanr(values[both], target[both])
            row[f"rho_{rate}"], row[f"p_{rate}"] = float(rho), float(p)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["field", "n", "left_out"]
                         + [f"{kind}_{rate}" for rate in RATES for kind in ("rho", "p")])
    for rate in RATES:
        tested = frame[f"p_{rate}"].notna()
        frame.insert(frame.columns.get_loc(f"p_{rate}") + 1, f"q_{rate}", np.nan)
        if tested.any():
            frame.loc[tested, f"q_{rate}"] = false_discovery_control(frame.loc[tested, f"p_{rate}"].to_numpy())
    rate = ranking_rate(frame)
    if rate is None:
        return frame
    order = frame[f"rho_{rate}"].abs().fillna(-1).sort_values(ascending=False, kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def ranking_rate(frame) -> str | None:
    """The rate the fields are ranked by: CER, or where no CER varies (a run without character errors) the next of
    RATES that does; None where none has a correlation."""
    return next((rate for rate in RATES if frame[f"rho_{rate}"].notna().any()), None)


def _cell(rho: float, q: float) -> str:
    if np.isnan(rho):
        return "-"
    text = f"{rho:+.2f} (q {'< 0.001' if q < 0.001 else f'{q:.3f}'})"
    return f"**{text}**" if q < 0.05 else text


def summary_lines(table, out: Path) -> list[str]:
    """The section of summary.md; writes every field's row to out/error_factors.csv."""
    frame = correlations(table)
    frame.to_csv(out / CSV_NAME, index=False)
    lines = ["## What goes with the errors", ""]
    tested = frame[frame["left_out"] == ""]
    rate = ranking_rate(frame)
    if rate is None:
        return lines + [f"No rank correlations: they need at least {MIN_VALUES} utterances with a value, and fields "
                        f"and rates that vary over them ({len(table)} utterances, {len(frame)} numeric metadata "
                        f"fields here); every field's row is in {CSV_NAME}.", ""]
    lines += [f"Spearman's rank correlation of each numeric metadata field with the utterances' CER, WER and CTC loss "
              f"per reference character, strongest with {RATES[rate]} first: the top {min(SHOWN, len(tested))} of "
              f"{len(tested)} fields (all in {CSV_NAME}). n: the utterances with a value. q: the p-value corrected "
              f"for the fields tested against that rate (Benjamini-Hochberg); q < 0.05 in bold. A correlation is not "
              f"a cause: many fields follow the utterance's length or its speaker. Fields that are not numbers (ids, "
              f"names, sex) are not correlated: see the tables by sex and speaker.", "",
              "| field | n | " + " | ".join(f"ρ {name}" for name in RATES.values()) + " |",
              "|---|---|" + "---|" * len(RATES)]
    for row in tested.head(SHOWN).itertuples():
        cells = [_cell(getattr(row, f"rho_{rate}"), getattr(row, f"q_{rate}")) for rate in RATES]
        lines.append(f"| {row.field} | {row.n} | " + " | ".join(cells) + " |")
    for reason, fields in frame[frame["left_out"] != ""].groupby("left_out")["field"]:
        names = sorted(fields)
        lines += ["", f"Left out, {reason}: {', '.join(names[:8])}" + (f" and {len(names) - 8} more"
                                                                         if len(names) > 8 else "")]
    return lines + [""]
