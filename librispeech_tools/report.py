"""The report's files from the rows: samples.csv / samples.parquet, summary.md and the plots (the word and LM sections
are word_report.py's and lm_report.py's, the correlations error_factors.py's).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from librispeech_tools import error_factors, lm_report, word_report
from librispeech_tools.model_pass import ModelPassTiming
from librispeech_tools.run_info import RUN_INFO_FILE, Excluded, RunInfo
from librispeech_tools.sample_rows import RATE_COLUMNS


def write_tables(rows: list[dict], out: Path):
    import pandas as pd

    table = pd.DataFrame([{k: v for k, v in row.items() if k not in ("latent", "words")} for row in rows])
    table.to_csv(out / "samples.csv", index=False)
    table.to_parquet(out / "samples.parquet", index=False)
    return table


def _group_rates(table, column: str) -> list[tuple]:
    """Per group: samples, corpus WER and CER, the mean loss per utterance and the loss per reference character (the
    loss sums over an utterance's frames, so longer utterances have larger losses)."""
    from librispeech.metrics import corpus_error_rates

    groups = []
    for value, group in table.groupby(table[column].fillna("unknown"), sort=True):
        rates = corpus_error_rates(group["reference"].tolist(), group["hypothesis"].tolist())
        groups.append((value, len(group), rates["wer"], rates["cer"], float(group["loss"].mean()),
                       loss_per_character(group)))
    return groups


def loss_per_character(table) -> float:
    """The summed CTC loss over the summed reference characters (spaces included: each is a label token)."""
    characters = int(table["reference"].str.len().sum())
    return float(table["loss"].sum() / characters) if characters else float("nan")


EXCLUDED_SHOWN = 20  # left-out utterances listed in summary.md


def markdown_cell(value) -> str:
    """A table cell: a `|` in a speaker's name (LibriSpeech has "|CBW|Simon") would start a new column."""
    return str(value).replace("|", "\\|")


def repeats_note(excluded: list[Excluded], evaluated: set[str]) -> str:
    """A repeated id's later lines are left out while its first is evaluated: said, so the count is not read as
    utterances missing from the rows."""
    from librispeech.data import REPEATED_ID

    repeats = sum(e.reason == REPEATED_ID and e.id in evaluated for e in excluded)
    return f" ({repeats} of them repeated lines of ids that are evaluated)" if repeats else ""


def limit_note(run_info: "RunInfo") -> str:
    """With --limit, the listing leaves out what it meets while drawing the sample, which does not count them: said,
    so that 10 left out beside 3 samples does not read as 10 of the 3."""
    limit = (run_info.made_by or {}).get("limit")
    return (f", among the utterances examined to draw the --limit {limit} sample" if limit and run_info.excluded
            else "")


def data_notes(table, source: str) -> list[str]:
    """What in the data bends the numbers of the summary: readers or chapters the corpus tables lack (their records
    are empty: `unknown` by sex), and characters outside the vocabulary (the model cannot spell them)."""
    notes = []
    if source == "openslr" and {"records.sex", "records.chapter_title"} <= set(table.columns):
        no_speaker = table["records.sex"].isna() & table["records.speaker_name"].isna()
        no_chapter = table["records.chapter_title"].isna() & table["records.chapter_minutes"].isna()
        if no_speaker.any() or no_chapter.any():
            notes.append(f"- records: {int(no_speaker.sum())} sample(s) have no SPEAKERS.TXT row (sex `unknown` "
                         f"below) and {int(no_chapter.sum())} no CHAPTERS.TXT row (first: "
                         f"{table['id'][no_speaker | no_chapter].min()})")
    if "text.unknown_character_count" in table.columns:
        unknown = table["text.unknown_character_count"].fillna(0)
        if (unknown > 0).any():
            notes.append(f"- characters outside the vocabulary: {int(unknown.sum())} in {int((unknown > 0).sum())} "
                         f"reference(s), each read as one ⁇ that the model cannot spell, so the loss and error rates "
                         f"count them (first: {table['id'][unknown > 0].min()})")
    return notes


def write_summary(table, out: Path, run_info: "RunInfo", model_path: Path, seconds: float,
                  model_pass: ModelPassTiming | None = None) -> dict:
    from librispeech.metrics import corpus_error_rates

    overall = corpus_error_rates(table["reference"].tolist(), table["hypothesis"].tolist())
    lines = [f"# Evaluation of {model_path.name} on {run_info.split} ({run_info.subset})", "",
             f"- samples: {len(table)}; corpus WER {overall['wer']:.2%}, CER {overall['cer']:.2%} (jiwer over all "
             f"pairs); mean CTC loss {table['loss'].mean():.3f} per utterance (summed over its frames), "
             f"{loss_per_character(table):.4f} per reference character",
             f"- data: {f'{run_info.data} ({run_info.source})' if run_info.data else run_info.source}; left out: "
             f"{len(run_info.excluded)}" + repeats_note(run_info.excluded, set(table["id"])) + limit_note(run_info)
             + "".join(f"\n  - {e.id}: {e.reason}" + (f" ({e.detail})" if e.detail else "")
                       for e in run_info.excluded[:EXCLUDED_SHOWN])
             + (f"\n  - and {len(run_info.excluded) - EXCLUDED_SHOWN} more (all in {RUN_INFO_FILE})"
                if len(run_info.excluded) > EXCLUDED_SHOWN else ""),
             *data_notes(table, run_info.source),
             f"- evaluation time (after start-up): {seconds:.1f} s"
             + (f" (summed over the {run_info.merged_shards} shards' runs)" if run_info.merged_shards else "")
             + (f"; {model_pass.line()}" if model_pass else "")
             + (f" (the timing covers {model_pass.samples} of the {len(table)} samples)"
                if model_pass and model_pass.samples != len(table) else "")]
    if run_info.stages:
        count = run_info.stages.samples
        lines.append(f"- time by stage ({count} sample{'' if count == 1 else 's'}; more in {RUN_INFO_FILE}): "
                     f"{run_info.stages.line()}")
    lines.append("")
    by_speaker = table.assign(speaker=table["speech.speaker_id"].astype(str) + " " +
                              table["records.speaker_name"].fillna("(name unknown)").astype(str))
    for title, frame, column in (("By sex", table, "records.sex"), ("By speaker", by_speaker, "speaker")):
        lines += [f"## {title}", "", "| group | samples | WER | CER | mean loss | loss per character |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {markdown_cell(value)} | {count} | {wer:.2%} | {cer:.2%} | {loss:.3f} | {per_character:.4f} |"
                  for value, count, wer, cer, loss, per_character in _group_rates(frame, column)]
        lines.append("")
    lines += error_factors.summary_lines(table, out)
    worst = table.sort_values(["wer", "id"], ascending=[False, True]).head(5)  # ties by id: the same rows each run
    lines += ["## Highest WER", "", "| id | WER | reference | hypothesis |", "|---|---|---|---|"]
    lines += [f"| {r.id} | {r.wer:.2f} | {r.reference} | {r.hypothesis} |" for r in worst.itertuples()]
    lines += [""] + lm_report.summary_lines(table, run_info.made_by)
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return overall


def write_plots(table, latents: np.ndarray, out: Path, title: str) -> list[tuple[str, str]]:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    from librispeech_tools.plots import FigureSaver, plotted, pyplot

    plt = pyplot()
    save = FigureSaver(out, title)

    n_components = min(2, len(latents), latents.shape[1])
    axis_labels = ["PC 1", "PC 2"]
    if len(latents) > 1:  # the full SVD: sklearn's "auto" picks an unseeded randomized one for 768 dimensions
        pca = PCA(n_components=n_components, svd_solver="full")
        points = pca.fit_transform(latents)
        if pca.explained_variance_.sum() > 0:  # identical latents have no variance to share out
            axis_labels[0] += f" ({pca.explained_variance_ratio_[0]:.0%} of the variance)"
            if n_components > 1:
                axis_labels[1] += f" ({pca.explained_variance_ratio_[1]:.0%})"
    else:
        points = np.zeros((1, 2))
    points = np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
    loss = table["loss"].to_numpy()
    sizes = 15 + 185 * (loss - loss.min()) / (np.ptp(loss) or 1.0)
    figure, axis = plt.subplots(figsize=(6.5, 5))
    scatter = axis.scatter(points[:, 0], points[:, 1], c=table["text.word_count"], s=sizes, cmap="viridis",
                           alpha=0.75, edgecolors="k", linewidths=0.3)
    figure.colorbar(scatter, ax=axis, label="word count")
    axis.set(xlabel=axis_labels[0], ylabel=axis_labels[1])
    save(figure, "latent_space.png", "Latent space (mean-pooled encoder output, PCA); colour = word count, size = "
         "CTC loss")

    shown, note = plotted(table, ["speech.rms_std", "loss"])
    figure, axis = plt.subplots(figsize=(6, 4.5))
    axis.scatter(shown["speech.rms_std"], shown["loss"], alpha=0.7, edgecolors="k", linewidths=0.3)
    axis.set(xlabel="RMS std (speech.rms_std)", ylabel="CTC loss (summed over the utterance)")
    save(figure, "rms_std_vs_loss.png", "Loudness variation vs loss" + note)

    figure, axes = plt.subplots(1, len(RATE_COLUMNS), figsize=(3.2 * len(RATE_COLUMNS), 3.4), sharex=True)
    notes = set()
    for axis, metric in zip(axes, RATE_COLUMNS):
        shown, note = plotted(table, ["readability.dale_chall_readability_score", metric])
        notes.add(note)
        axis.scatter(shown["readability.dale_chall_readability_score"], shown[metric], alpha=0.7, s=18)
        axis.set(xlabel="Dale-Chall score", ylabel=metric + (" (higher is better)" if metric == "wip" else ""))
    save(figure, "dale_chall_vs_metrics.png", "Readability (Dale-Chall) vs each word measure"
         + "".join(sorted(notes)))

    clusters = min(5, len(latents))
    labels = KMeans(n_clusters=clusters, n_init=10, random_state=0).fit_predict(latents)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, column in zip(axes, ("readability.difficult_words", "readability.linsear_write_formula")):
        axis.boxplot([table[column][labels == c] for c in range(clusters)],
                     tick_labels=[f"{c} (n={int((labels == c).sum())})" for c in range(clusters)])
        axis.set(xlabel="k-means cluster of the latent space", ylabel=column.split(".")[1])
    save(figure, "kmeans_clusters.png", f"k-means ({clusters} clusters) on the latent space (the pooled outputs, "
         "not their PCA)")

    shown, note = plotted(table, ["speech.spectral_flatness_min", "cer"], positive=["speech.spectral_flatness_min"])
    figure, axis = plt.subplots(figsize=(6, 4.5))
    axis.scatter(shown["speech.spectral_flatness_min"], shown["cer"], alpha=0.7, edgecolors="k", linewidths=0.3)
    axis.set(xlabel="minimum spectral flatness over the frames", ylabel="CER", xscale="log")
    save(figure, "spectral_flatness_vs_cer.png", "Minimum spectral flatness vs CER" + note)
    return save.saved


def import_report_libraries() -> None:
    """The report's libraries (~1.2 s of imports), imported in a thread while the run mostly waits on the model or
    the metadata worker (24 utterances: 19.3-20.0 s -> 18.6-19.0 s; the demo run 7.4 -> 6.5 s). One that fails to
    import fails again where the report uses it, with its error."""
    try:
        import pandas  # noqa: F401
        import scipy.stats  # noqa: F401
        import sklearn.cluster  # noqa: F401
        import sklearn.decomposition  # noqa: F401
        import wordfreq  # noqa: F401

        from librispeech_tools.plots import pyplot

        pyplot()
    except ImportError:
        pass


def write_report(rows: list[dict], out: Path, run_info: "RunInfo", title: str) -> dict:
    """samples.csv/.parquet, summary.md (its header names run_info.data, what the rows were made from), the plots,
    which summary.md then lists, and the word report."""
    table = write_tables(rows, out)
    overall = write_summary(table, out, run_info, Path(run_info.model), run_info.seconds, run_info.timing)
    plots = write_plots(table, np.array([row["latent"] for row in rows]), out, title)
    plots += word_report.write_word_report(rows, table, out, title.split(" (")[0])
    with open(out / "summary.md", "a", encoding="utf-8") as summary:
        summary.write("\n".join(["", "## Plots", "", *(f"- [{name}]({name}): {heading}" for name, heading in plots)])
                      + "\n")
    return overall
