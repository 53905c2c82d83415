"""The word-level part of `evaluate`'s report: which words fail and why.

Per sample (`sample_fields`, called by evaluate for every row): the `confidence` metric and the aligned words (kind,
reference word, hypothesis word, confidence, start and end in seconds), from the registered functions and
librispeech/words.py. (The `pace` and `noise` metadata come with evaluate's other metadata sections.)

Over the report (`write_word_report`): words.csv (one row per aligned word, with its confidence and times); in
summary.md, the top confusion pairs, the most deleted and most inserted words, WER by word-frequency band, the
confidence calibration and WER by speaking rate; plots: a reliability diagram and WER against speaking rate.

Word frequency comes from wordfreq's English list (Zipf scale: log10 of occurrences per billion words). It is built
from Wikipedia, subtitles, news, books, web text, Twitter and Reddit, so it is independent of the evaluated
transcripts, and it covers rare words (the CMU dictionary, the other word list installed, has pronunciations but
no frequencies). wordfreq is in the `dev` extra; without it the band table says so and the rest of the report is
made as usual.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

# Zipf bands: >= 5 is at least 100 per million words (THE, PEOPLE, NEVER), < 4 under 10 per million (COMET, HUMOUR);
# van Heuven et al. (2014) put the line between low and high frequency at 3.5 on this scale.
FREQUENCY_BANDS = (("common", 5.0, np.inf), ("middle", 4.0, 5.0), ("rare", -np.inf, 4.0))
TOP_CONFUSIONS = 20
TOP_WORDS = 10
RELIABILITY_BINS = 10


# ---------------------------------------------------------------- per sample

def sample_fields(binder, logits: np.ndarray, label: np.ndarray) -> dict:
    """The word-level row fields of one sample: the confidence keys and its aligned words (the pace and noise metadata
    come with the other metadata sections). The logits are cast to float16 first, as the platform hands them to
    metrics."""
    from librispeech import words
    from librispeech.tokenizer import decode_reference

    logits = np.asarray(logits).astype(np.float16)
    fields = {key: values[0] for key, values in binder.confidence(logits[None], label[None]).items()}
    fields["words"] = [
        [entry.kind, entry.reference, entry.hypothesis] + (
            [None, None, None] if word is None else
            [round(word.confidence, 5), round(word.start_seconds, 3), round(word.end_seconds, 3)])
        for entry, word in words.scored_words(logits, decode_reference(label))]
    return fields


WORD_FIELDS = ("kind", "reference", "hypothesis", "confidence", "start_seconds", "end_seconds")


def word_table(rows: list[dict]):
    """One row per aligned word of every sample (rows of an older report without words are skipped)."""
    import pandas as pd

    records = [{"id": row["id"], **dict(zip(WORD_FIELDS, entry))} for row in rows for entry in row.get("words", [])]
    return pd.DataFrame(records, columns=["id", *WORD_FIELDS])


# ---------------------------------------------------------------- corpus level

def confusion_pairs(words) -> list[tuple[str, str, int]]:
    pairs = Counter(zip(words.loc[words.kind == "substitution", "reference"],
                        words.loc[words.kind == "substitution", "hypothesis"]))
    return [(ref, hyp, count) for (ref, hyp), count in sorted(pairs.items(), key=lambda item: (-item[1], item[0]))]


def most_common(values) -> list[tuple[str, int]]:
    return sorted(Counter(values).items(), key=lambda item: (-item[1], item[0]))


def zipf_frequencies(unique_words) -> dict[str, float] | None:
    """wordfreq's Zipf frequency of each word (0 for a word it does not know), or None without wordfreq."""
    try:
        from wordfreq import zipf_frequency
    except ImportError:
        return None
    return {word: zipf_frequency(word.lower(), "en") for word in unique_words}


def frequency_band_rates(words, zipf: dict[str, float]) -> list[dict]:
    """Per band: reference words, substitutions and deletions among them, and their error rate (S + D) / N.
    Insertions have no reference word, so they belong to no band."""
    reference = words[words.kind != "insertion"]
    frequency = reference["reference"].map(zipf)
    bands = []
    for name, low, high in FREQUENCY_BANDS:
        band = reference[(frequency >= low) & (frequency < high)]
        errors = band.kind.isin(["substitution", "deletion"])
        examples = [word for word, _ in most_common(band.loc[errors, "reference"])[:5]]
        bands.append({"band": name, "low": low, "high": high, "words": len(band),
                      "substitutions": int((band.kind == "substitution").sum()),
                      "deletions": int((band.kind == "deletion").sum()),
                      "rate": float(errors.mean()) if len(band) else float("nan"), "examples": examples})
    return bands


def reliability(words) -> tuple[list[dict], float]:
    """Hypothesis words binned by confidence: per bin, count, mean confidence and fraction correct; and the
    expected calibration error (the count-weighted mean |fraction correct - mean confidence|). Words without a
    confidence (a NaN or infinite logit in their frames) are left out; summary_lines counts them."""
    spoken = words[words.kind != "deletion"]
    confidence = spoken["confidence"].astype(float).to_numpy()
    correct = (spoken.kind == "correct").to_numpy()
    scored = np.isfinite(confidence)
    confidence, correct = confidence[scored], correct[scored]
    edges = np.linspace(0.0, 1.0, RELIABILITY_BINS + 1)
    index = np.searchsorted(edges[1:-1], confidence)  # scikit-learn's calibration_curve bins: (low, high]
    bins = []
    for b in range(RELIABILITY_BINS):
        chosen = index == b
        if chosen.any():
            bins.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": int(chosen.sum()),
                         "confidence": float(confidence[chosen].mean()), "correct": float(correct[chosen].mean())})
    total = sum(b["count"] for b in bins)
    ece = sum(b["count"] * abs(b["correct"] - b["confidence"]) for b in bins) / total if total else float("nan")
    return bins, ece


def summary_lines(words) -> list[str]:
    from librispeech.words import HIGH_CONFIDENCE, LOW_CONFIDENCE

    kinds = words.kind.value_counts()
    spoken = words[words.kind != "deletion"]
    errors = spoken[spoken.kind != "correct"]
    lines = ["## Word errors", "",
             f"- aligned words: {len(words)}: {kinds.get('correct', 0)} correct, {kinds.get('substitution', 0)} "
             f"substitutions, {kinds.get('deletion', 0)} deletions, {kinds.get('insertion', 0)} insertions "
             "(jiwer's word alignment of each hypothesis to its reference)"]
    if len(spoken):
        bins, ece = reliability(words)
        confident = errors[errors.confidence.astype(float) >= HIGH_CONFIDENCE]
        confidence = spoken.confidence.astype(float)
        scored = np.isfinite(confidence)
        unscored = int((~scored).sum())
        lines += [f"- hypothesis words: {len(spoken)}, mean confidence {confidence[scored].mean():.3f}; "
                  f"expected calibration error {ece:.3f} ({RELIABILITY_BINS} bins)"
                  + (f"; {unscored} word(s) without a confidence (non-finite logits) left out of both" if unscored
                     else ""),
                  f"- wrong hypothesis words (substituted or inserted): {len(errors)}; with confidence >= "
                  f"{HIGH_CONFIDENCE}: {len(confident)}; below {LOW_CONFIDENCE}: "
                  f"{int((errors.confidence.astype(float) < LOW_CONFIDENCE).sum())}"]
    lines += ["", f"### Top {TOP_CONFUSIONS} confusion pairs", "", "| reference → hypothesis | count |", "|---|---|"]
    lines += [f"| {ref} → {hyp} | {count} |" for ref, hyp, count in confusion_pairs(words)[:TOP_CONFUSIONS]]
    lines += [] if (words.kind == "substitution").any() else ["| (none) | 0 |"]
    for title, kind, column in (("Most deleted words", "deletion", "reference"),
                                ("Most inserted words", "insertion", "hypothesis")):
        lines += ["", f"### {title}", "", "| word | count |", "|---|---|"]
        counts = most_common(words.loc[words.kind == kind, column])[:TOP_WORDS]
        lines += [f"| {word} | {count} |" for word, count in counts]
        lines += [] if (words.kind == kind).any() else ["| (none) | 0 |"]
    lines += ["", "### Word error rate by word frequency (insertions left out)", ""]
    zipf = zipf_frequencies(words.loc[words.kind != "insertion", "reference"].unique())
    if zipf is None:
        lines.append("wordfreq is not installed (it is in the project's `dev` extra), so there are no frequency "
                     "bands.")
    else:
        lines += ["Bands by the reference word's Zipf frequency in wordfreq's English list (log10 of uses per billion "
                  "words; built from Wikipedia, subtitles, news, books and web text, not from these transcripts). "
                  "Rate = (substitutions + deletions) / reference words of the band; insertions belong to no band.", "",
                  "| band | Zipf | reference words | substitutions | deletions | rate | most missed |",
                  "|---|---|---|---|---|---|---|"]
        for band in frequency_band_rates(words, zipf):
            span = (f">= {band['low']:g}" if band["high"] == np.inf else
                    f"< {band['high']:g}" if band["low"] == -np.inf else f"{band['low']:g} to {band['high']:g}")
            rate = f"{band['rate']:.2%}" if band["words"] else "-"
            lines.append(f"| {band['band']} | {span} | {band['words']} | {band['substitutions']} | "
                         f"{band['deletions']} | {rate} | {', '.join(band['examples'])} |")
    return lines + [""]


def rate_thirds(table, column: str) -> list[tuple[float, float, float, float, int]]:
    """The samples sorted by `column` (None left out) and cut into three equal parts (slowest, middle, fastest): per
    part, its lowest, median and highest value, its corpus WER (errors summed over its words) and its size."""
    from librispeech.metrics import corpus_error_rates

    rated = table[table[column].notna()].sort_values(column)
    if len(rated) < 3:
        return []
    edges = np.linspace(0, len(rated), 4).astype(int)
    thirds = [rated.iloc[a:b] for a, b in zip(edges[:-1], edges[1:])]
    return [(float(part[column].min()), float(part[column].median()), float(part[column].max()),
             corpus_error_rates(part["reference"].tolist(), part["hypothesis"].tolist())["wer"], len(part))
            for part in thirds]


def pace_lines(table) -> list[str]:
    unrated = int(table["pace.words_per_second"].isna().sum())
    lines = ["### WER by speaking rate", "",
             "Samples cut into thirds by their rate over the speech (`pace` metadata); corpus WER of each third"
             + (f"; {unrated} of the {len(table)} samples, with no rate (no speech found), left out." if unrated
                else "."), "",
             "| rate | slowest third | middle third | fastest third |", "|---|---|---|---|"]
    for column in ("pace.words_per_second", "pace.characters_per_second"):
        thirds = rate_thirds(table, column)
        cells = ([f"{low:.2f} to {high:.2f}: {wer:.2%} ({count})" for low, _, high, wer, count in thirds] if thirds
                 else ["fewer than 3 samples with a rate"] * 3)  # said, rather than a table without rows
        lines.append(f"| {column.split('.')[1]} | " + " | ".join(cells) + " |")
    return lines + [""]


# ---------------------------------------------------------------- plots

def write_plots(table, words, out: Path, title: str) -> list[tuple[str, str]]:

    from librispeech_tools.plots import FigureSaver, plotted, pyplot

    plt = pyplot()
    save = FigureSaver(out, title)

    bins, ece = reliability(words)
    figure, (axis, counts) = plt.subplots(2, 1, figsize=(5.5, 6), sharex=True, height_ratios=(3, 1))
    width = 1 / RELIABILITY_BINS
    axis.bar([b["low"] for b in bins], [b["correct"] for b in bins], width=width, align="edge", alpha=0.75,
             edgecolor="k", label="fraction correct")
    axis.plot([b["confidence"] for b in bins], [b["correct"] for b in bins], "o", color="C3",
              label="bin mean confidence")
    axis.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    axis.set(ylabel="fraction of words correct", ylim=(0, 1.02), xlim=(0, 1))
    axis.legend(loc="upper left", fontsize=8)
    counts.bar([b["low"] for b in bins], [b["count"] for b in bins], width=width, align="edge", color="gray",
               edgecolor="k")
    counts.set(xlabel="word confidence (mean max softmax over its frames)", ylabel="words", yscale="log")
    save(figure, "reliability_diagram.png", f"Reliability of word confidence (ECE {ece:.3f})")

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    _, note = plotted(table, ["pace.words_per_second", "pace.characters_per_second", "wer"])
    for axis, column, label in ((axes[0], "pace.words_per_second", "words per second of speech"),
                                (axes[1], "pace.characters_per_second", "characters per second of speech")):
        rated, _ = plotted(table, [column, "wer"])
        axis.scatter(rated[column], rated["wer"], alpha=0.75, edgecolors="k", linewidths=0.3, label="sample WER")
        thirds = rate_thirds(table, column)
        centres, rates = [median for _, median, _, _, _ in thirds], [wer for _, _, _, wer, _ in thirds]
        axis.plot(centres, rates, "s-", color="C3", label="corpus WER of each third (at its median rate)")
        axis.set(xlabel=label)
    axes[0].set(ylabel="WER")
    axes[0].legend(fontsize=8)
    save(figure, "wer_vs_speaking_rate.png", "WER against speaking rate (rates over the speech, pauses included)"
         + note)
    return save.saved


def write_word_report(rows: list[dict], table, out: Path, title: str) -> list[tuple[str, str]]:
    """Write out/words.csv (one row per aligned word), append the word sections to out/summary.md and write the
    two plots (their file names and headings are returned)."""
    words = word_table(rows)
    if words.empty:
        return []
    words.to_csv(out / "words.csv", index=False)
    with open(out / "summary.md", "a", encoding="utf-8") as summary:
        summary.write("\n".join(summary_lines(words) + pace_lines(table)) + "\n")
    return write_plots(table, words, out, title)
