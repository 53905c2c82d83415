"""`poetry run evaluate`: the Tensorleap analysis run locally through the same registered functions.

Per sample: the registered encoders, the model, the CTC loss, the error rates and every metadata section (the LM
columns come from the same decoder and error rates as the registered LM metrics, one decode per sample:
tests/test_lm_report.py checks that they agree). The model runs on each utterance's real length (a dynamic-time-axis
twin of the export, same weights; the rows equal those of the platform's fixed-length path, `--fixed-length`), one
utterance per call by default, run by ONNX Runtime on a CPU and by Keras where Keras has a GPU (model_pass.py); the
metadata in a worker process started before the model loads (metadata_processes.py). Rows are appended to
samples.jsonl as batches finish, so an interrupted run keeps its work and a rerun skips what is done. Then:
samples.csv / samples.parquet, summary.md and the plots. `--shard i/n` runs a part; `--merge` joins the parts.
The word level (pace, noise, word confidence, aligned words; its summary sections and plots) is in word_report.py,
the LM-decoded second hypothesis in lm_report.py.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

import librispeech
from librispeech.config import REPO_ROOT, SUBSETS, ConfigError, ProjectConfig, project_config
from librispeech_tools import lm_report, word_report
from librispeech_tools.metadata_processes import MetadataProcesses, metadata_row, split_response
from librispeech_tools.model_pass import (ENGINES, SESSIONS_NEED_ONNX_RUNTIME, Batch, BusyClock, ModelPassError,
                                          ModelPassTiming, calls_in_order, default_batch_size, length_order,
                                          load_model_pass, plan_fixed_length, plan_model_batches, resolve_engine,
                                          usable_cores)

RATE_COLUMNS = ("wer", "cer", "mer", "wil", "wip")
ERROR_COUNT_PREFIXES = ("word_", "char_")  # word_hits ... char_insertions: counts


class EvaluationError(Exception):
    """A problem with the user's request: reported as one line, exit status 1."""


class Interrupted(EvaluationError):
    """Ctrl-C during the run: one line saying what was kept, exit status 130 as for any interrupted command."""


# ---------------------------------------------------------------- what to evaluate

def resolve_split(config: ProjectConfig, split: str | None) -> tuple[str, ProjectConfig]:
    """A subset name (training/validation/test), or a split: a folder (its name under the corpus root, or its path:
    its parent is then the root, whose tables are read) or an HF split name, `CONFIG/SPLIT` choosing the hub's
    config too (all/test.clean). Default: the validation split."""
    if split is None:
        return "validation", config
    if split in SUBSETS:
        if split not in config.subsets:
            raise EvaluationError(f"no split is configured for the {split} subset (data.splits in "
                                  f"librispeech/config.yaml): name a split instead")
        return split, config
    if config.source == "huggingface":
        split = split.strip("/")
        if split.count("/") == 1:
            hf_config, split = split.split("/")
            if hf_config not in config.hf_config_splits:
                raise EvaluationError(f"unknown HF config {hf_config!r} in --split {hf_config}/{split}: "
                                      f"data.hf_splits in librispeech/config.yaml lists "
                                      f"{', '.join(config.hf_config_splits)}")
            config = replace(config, hf_config=hf_config, hf_splits=config.hf_config_splits[hf_config])
    named = config.hf_splits if config.source == "huggingface" else config.splits
    for subset, name in named.items():
        if name == split:
            return subset, config
    if config.source == "openslr":
        # a name under the corpus root first, then a path from the current folder (an absolute path is itself)
        candidates = list(dict.fromkeys([Path(os.path.normpath(config.root / split)), Path(os.path.abspath(split))]))
        folder = next((candidate for candidate in candidates if candidate.is_dir()), None)
        if folder is not None:
            for subset, name in config.splits.items():  # a configured split, named by its path
                if folder == Path(os.path.normpath(config.root / name)):
                    return subset, config
            return "validation", replace(config, root=folder.parent,
                                         splits={**config.splits, "validation": folder.name})
        available = sorted(p.name for p in config.root.iterdir() if p.is_dir()) if config.root.is_dir() else []
        raise EvaluationError(f"unknown split {split!r}: no folder {' or '.join(map(str, candidates))} (splits of "
                              f"the corpus at {config.root}: {', '.join(available) or 'none'})")
    return "validation", replace(config, hf_splits={**config.hf_splits, "validation": split})


def saved_copy(config: ProjectConfig) -> Path | None:
    """The HF data's folder when it is a save_to_disk copy, which has no configs (its split names still come from
    data.hf_splits of the configured one)."""
    from librispeech.data import saved_to_disk

    location = Path(config.hf_dataset).expanduser()
    return location if saved_to_disk(location) else None


def split_label(config: ProjectConfig, split_name: str) -> str:
    """The split as report titles and default folder names give it: the HF config names the data too (clean/test and
    other/test are both `test`); a save_to_disk copy has no config, so its folder's name does (a clean and an other
    copy both call their dev set `validation`)."""
    if config.source != "huggingface":
        return split_name
    copy = saved_copy(config)
    return f"{copy.name if copy else config.hf_config}-{split_name}"


def hf_source(config: ProjectConfig) -> str:
    """The HF data as summary.md names it."""
    if saved_copy(config):
        return f"{config.hf_dataset} (a save_to_disk copy)"
    return f"{config.hf_dataset}, config {config.hf_config}"


def load_selection(config: ProjectConfig, subset: str, limit: int | None):
    from librispeech import data

    config = replace(config, samples_per_split=limit)  # None = every utterance of the split
    try:
        split = data.load_split(subset, config)
    except OSError as error:  # a split folder that is missing, a file that cannot be read
        raise EvaluationError(str(error)) from None
    except data.SplitError as error:
        raise EvaluationError(f"empty selection: {error}") from None
    return split


# ---------------------------------------------------------------- per-sample rows

@dataclass
class StageClock:
    """Seconds spent in each stage of a run (and of the runs it resumed), over `samples` samples: where the time
    goes besides the model pass (start-up, compiles on a GPU, the LM beam search, metadata...). In run.json and
    summary.md. A stage run within another is counted in its own, not in the outer one."""
    seconds: dict[str, float] = field(default_factory=dict)
    samples: int = 0

    def __post_init__(self):
        self._inner: list[float] = []  # per open stage, the seconds of the stages within it (not a field: not saved)

    @contextlib.contextmanager
    def stage(self, name: str):
        started = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            seconds = time.perf_counter() - started
            self.add(name, seconds - self._inner.pop())
            if self._inner:
                self._inner[-1] += seconds

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def line(self) -> str:
        ranked = sorted(self.seconds.items(), key=lambda item: -item[1])
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in ranked)


def float32_value(value) -> float:
    """A float32 result (the registered loss and metrics return float32, as the platform takes them) as the shortest
    decimal that reads back to it: 0.6, not 0.6000000238418579."""
    return float(str(np.float32(value)))


def sample_row(split, sample_id: str, logits: np.ndarray, label: np.ndarray, hidden: np.ndarray, real_frames: int,
               loss: float, rates: dict, metadata: dict) -> dict:
    """One samples.jsonl row: ids, reference, hypothesis, loss, metrics (the error counts as whole numbers),
    metadata and the mean-pooled latent."""
    from librispeech import tokenizer

    return {"id": sample_id, "subset": split.subset, "split": split.split,
            # the text the metrics score against, not the raw transcript
            "reference": tokenizer.decode_reference(label),
            # the metrics see float16 logits, as on the platform; decode what they saw
            "hypothesis": tokenizer.decode_greedy(logits.astype(np.float16)),
            "loss": float32_value(loss),
            **{key: int(value) if key.startswith(ERROR_COUNT_PREFIXES) else float32_value(value)
               for key, value in rates.items()}, **metadata,
            # hidden is zero past the real frames
            "latent": hidden[:max(1, real_frames)].mean(axis=0).astype(float).round(6).tolist()}


def decoded_audio(split, sample_ids, metadata: MetadataProcesses | None) -> dict[str, np.ndarray]:
    """The waveforms of a batch's samples. A sample whose audio fails to decode (listing reads headers only, so a
    damaged body is found here) is left out of the run: said on stderr and listed with the split's left-out ones."""
    from librispeech import data

    waveforms = {}
    for sample_id in sample_ids:
        try:
            waveforms[sample_id] = split.audio(sample_id)
        except data.AudioDecodeError as error:
            print(f"evaluate: left out {sample_id}: {error}", file=sys.stderr)
            del split.utterances[sample_id]  # the run covers the others (run.json's samples, which --merge checks)
            split.excluded.append(data.ExcludedUtterance(sample_id, data.UNREADABLE_AUDIO, str(error)))
            if metadata is not None:
                metadata.forget([sample_id])
    return waveforms


def evaluate_rows(split, model_pass, batches: list[Batch], sink, progress, metadata: MetadataProcesses | None = None,
                  timing: ModelPassTiming | None = None, on_batch=None, clock: StageClock | None = None) -> None:
    """Compute the rows of `batches` (see plan_batches), appending each finished batch to `sink` (a text file) and
    then calling `on_batch()`. `clock` gets the seconds of each stage.

    The metadata comes from `metadata`'s worker processes (the clock's "metadata" is then the wait for them), or
    is computed in line.
    """
    if not batches:  # a finished report rewritten: no row to make, no time to add
        return
    clock = clock or StageClock()
    with clock.stage("start-up"):
        import leap_binder as binder
        from librispeech import data

        response = split_response(split)
    # metadata computed in line reads the batch's audio again: keep it decoded, for every batch read ahead too
    split.audio_cache_size = max(split.audio_cache_size, max((len(b.ids) for b in batches), default=1)
                                 * (model_pass.parallel_calls + 2))
    config = project_config()

    def prepared():  # read as calls_in_order starts each call (ahead of the rows, with parallel calls)
        for planned in batches:
            with clock.stage("audio and labels"):
                waveforms = decoded_audio(split, planned.ids, metadata)
                batch = replace(planned, ids=tuple(waveforms))
                if batch.ids:
                    audio = np.stack([data.model_input(w, config.normalize_epsilon, batch.length)
                                      for w in waveforms.values()])
                    lengths = np.array([[len(w)] for w in waveforms.values()], dtype=np.float32)
                    labels = np.stack([binder.gt_transcript(i, response) for i in batch.ids])
            if not batch.ids:  # every sample of the batch left out
                yield (planned, batch, None, None), None
            else:
                yield (planned, batch, lengths, labels), (audio, lengths, batch.rows)

    busy, counted = BusyClock(), 0.0
    with contextlib.closing(calls_in_order(model_pass, prepared(), busy)) as outputs_in_order:
        while True:
            with clock.stage("model pass"):  # waiting for its outputs (the audio read meanwhile is its own stage)
                done = next(outputs_in_order, None)
            if done is None:
                break
            (planned, batch, lengths, labels), outputs = done
            if outputs is None:
                progress.update(len(planned.ids))
                continue
            if timing is not None:  # the seconds the model ran, however many of its calls ran at once
                seconds = busy.seconds()
                timing.add(seconds - counted, float(lengths.sum()) / config.sample_rate, len(batch.ids))
                counted = seconds
            write_rows(split, binder, model_pass, batch, lengths, labels, outputs, response, sink, metadata, clock)
            clock.samples += len(batch.ids)
            if on_batch is not None:
                on_batch()
            progress.update(len(planned.ids))


def write_rows(split, binder, model_pass, batch: Batch, lengths: np.ndarray, labels: np.ndarray,
               outputs: tuple[np.ndarray, np.ndarray], response, sink, metadata: MetadataProcesses | None,
               clock: StageClock) -> None:
    """The rows of one batch from the model's outputs (logits, hidden state), written to `sink`."""
    logits, hidden = outputs
    with clock.stage("CTC loss"):
        losses = binder.ctc_loss(logits, labels)
    with clock.stage("error rates"):
        rates = binder.error_rates(logits, labels)
    for j, sample_id in enumerate(batch.ids):
        with clock.stage("metadata"):
            metadata_values = metadata.row(sample_id, response) if metadata else metadata_row(sample_id, response)
        with clock.stage("rows"):
            row = sample_row(split, sample_id, logits[j], labels[j], hidden[j],
                             model_pass.num_frames(int(lengths[j, 0])),
                             losses[j], {key: values[j] for key, values in rates.items()}, metadata_values)
        with clock.stage("LM decoding"):
            row.update(lm_report.lm_columns(row["reference"], row["hypothesis"], logits[j].astype(np.float16)))
        with clock.stage("words"):
            row.update(word_report.sample_fields(binder, logits[j], labels[j]))
        sink.write(json.dumps(row) + "\n")
    sink.flush()


def read_rows(path: Path) -> list[dict]:
    """The rows of a samples.jsonl. A line that does not parse (the last one, when a run was cut short while
    writing) is left out with a warning: its sample counts as not done, so a rerun computes it again."""
    rows, unreadable = [], []
    if path.is_file():
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                unreadable.append(number)
    if unreadable:
        shown = ", ".join(map(str, unreadable[:5])) + (", ..." if len(unreadable) > 5 else "")
        print(f"evaluate: {path}: {len(unreadable)} unreadable line(s) left out (line {shown}); their samples count "
              f"as not done", file=sys.stderr)
    return rows


# ---------------------------------------------------------------- summary and plots

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
             f"{len(run_info.excluded)}" + repeats_note(run_info.excluded, set(table["id"]))
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


# ---------------------------------------------------------------- run.json and merging shards

RUN_INFO_FILE = "run.json"


@dataclass(frozen=True)
class Excluded:
    id: str
    reason: str
    detail: str = ""  # absent in run.json files from before it was kept


@dataclass
class RunInfo:
    """What a report says about its run besides the rows (read by write_summary); saved as
    run.json so that --merge needs neither the data nor the model."""
    split: str
    subset: str
    source: str
    excluded: list[Excluded]
    model: str
    samples: int               # utterances this run (or shard) covers
    shard: tuple[int, int] | None
    timing: ModelPassTiming
    seconds: float
    made_by: dict | None = None  # rows_identity (None in run.json files from before it was recorded)
    stages: StageClock | None = None  # summed over the runs that made the rows (resumed ones, merged shards)
    selection: dict | None = None  # the whole selection's size and digest (sharded or not); None in older files
    data: str | None = None  # what the rows were made from, as summary.md names it; None in older files
    merged_shards: int | None = None  # a --merge of this many shards (its seconds are their sum)

    @classmethod
    def of(cls, split, label: str, model_path: Path, shard: Shard | None, timing: ModelPassTiming, seconds: float,
           made_by: dict | None = None, stages: StageClock | None = None, selection: dict | None = None,
           data: str | None = None) -> "RunInfo":
        return cls(label, split.subset, split.source,
                   [Excluded(e.id, e.reason, e.detail) for e in split.excluded],
                   model_path.name, len(split.utterances), (shard.index, shard.count) if shard else None, timing,
                   seconds, made_by, stages, selection, data)

    def to_json(self) -> dict:
        return {"split": self.split, "subset": self.subset, "source": self.source,
                "excluded": [[e.id, e.reason, e.detail] for e in self.excluded], "model": self.model,
                "samples": self.samples,
                "shard": list(self.shard) if self.shard else None, "seconds": self.seconds,
                "model_pass": dataclasses.asdict(self.timing), "made_by": self.made_by,
                "stages": dataclasses.asdict(self.stages) if self.stages else None, "selection": self.selection,
                "data": self.data, "merged_shards": self.merged_shards}

    @classmethod
    def read(cls, folder: Path) -> "RunInfo":
        path = folder / RUN_INFO_FILE
        if not path.is_file():
            raise EvaluationError(f"{folder} has no {RUN_INFO_FILE}: not a finished evaluate run")
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
            # files from before the timing counted samples covered all of theirs
            timing = ModelPassTiming(**{"samples": values["samples"], **values["model_pass"]})
            return cls(values["split"], values["subset"], values["source"],
                       [Excluded(*e) for e in values["excluded"]], values["model"], values["samples"],
                       tuple(values["shard"]) if values["shard"] else None, timing, values["seconds"],
                       values.get("made_by"), StageClock(**values["stages"]) if values.get("stages") else None,
                       values.get("selection"), values.get("data"), values.get("merged_shards"))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:  # JSONDecodeError: a ValueError
            raise EvaluationError(f"{path} cannot be read as an evaluate run ({type(error).__name__}: {error}); "
                                  f"run that shard again into a new folder") from None


def same_run_key(made_by: dict | None) -> dict:
    """What shards of one run share on any machine: made_by without the shard, the data's folder, or the files'
    folders and modification times (a model or LM copied to another machine is the same file: its name, size and,
    where recorded, contents' digest)."""
    key = {name: value for name, value in (made_by or {}).items() if name not in ("shard", "data")}
    for name in ("model", "lm", "lexicon"):
        if isinstance(key.get(name), list):
            key[name] = [Path(key[name][0]).name, key[name][1], *key[name][3:]]
    return key


def merge(folders: list[Path], out: Path) -> Path:
    """One report from the folders of `evaluate --shard i/n` runs: all n shards, each finished, same split/model."""
    if any(out.resolve() == folder.resolve() for folder in folders) or (out / PROGRESS_FILE).is_file():
        raise EvaluationError(f"--out {out} is a shard's or another run's folder; merge into a folder of its own")
    refuse_other_files(out)
    infos = [RunInfo.read(folder) for folder in folders]
    first = infos[0]
    for folder, info in zip(folders, infos):
        if info.shard is None:
            raise EvaluationError(f"{folder} is not a shard (run with --shard i/n)")
        if (info.split, info.subset, info.source, info.model, info.timing.precision, info.shard[1]) != \
                (first.split, first.subset, first.source, first.model, first.timing.precision, first.shard[1]):
            raise EvaluationError(f"{folder} is shard {info.shard[0]}/{info.shard[1]} of {info.model} on {info.split}, "
                                  f"but {folders[0]} is of {first.model} on {first.split} in {first.shard[1]} shards")
    selections = {json.dumps(same_run_key(info.made_by), sort_keys=True) for info in infos}
    if len(selections) > 1:
        raise EvaluationError("the shards were made by different runs (model file, split, --limit, input or LM "
                              "settings differ: see made_by in their run.json); rerun them alike")
    data_seen = {json.dumps(info.selection, sort_keys=True) for info in infos}
    if len(data_seen) > 1:
        sizes = ", ".join(f"{(info.selection or {}).get('samples', '?')}" for info in infos)
        raise EvaluationError(f"the shards were made from different data (selections of {sizes} samples with other "
                              f"transcripts, audio or records: the corpus changed between their runs); rerun them "
                              f"on the same data")
    count = first.shard[1]
    indices = sorted(info.shard[0] for info in infos)
    if indices != list(range(1, count + 1)):
        missing = sorted(set(range(1, count + 1)) - set(indices))
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        raise EvaluationError(f"merging needs each of the {count} shards once: "
                              + "; ".join(part for part in (f"missing {missing}" if missing else "",
                                                            f"repeated {repeated}" if repeated else "") if part))
    rows, seen = [], set()
    for folder, info in zip(folders, infos):
        shard_rows = read_rows(folder / "samples.jsonl")
        if len(shard_rows) != info.samples:
            raise EvaluationError(f"{folder}: {len(shard_rows)} rows for {info.samples} samples; rerun that shard "
                                  f"to finish it")
        overlap = seen & {row["id"] for row in shard_rows}
        if overlap:
            raise EvaluationError(f"{folder}: samples also in another shard: {sorted(overlap)[:5]}")
        seen |= {row["id"] for row in shard_rows}
        rows += shard_rows
    rows.sort(key=lambda row: row["id"])
    if not rows:
        raise EvaluationError(f"no shard has a row: every sample of the {count} shards was left out")
    timing = ModelPassTiming(sum(i.timing.seconds for i in infos), sum(i.timing.audio_seconds for i in infos),
                             sum(i.timing.batches for i in infos), first.timing.precision,
                             # float32 engines agree to 1e-5
                             "+".join(sorted({engine for i in infos for engine in i.timing.engine.split("+")})),
                             sum(i.timing.samples for i in infos), max(i.timing.sessions for i in infos))
    # the same preprocessing in every shard (its details may name another machine's paths); a shard may add its own
    # (an utterance longer than a fixed .onnx)
    excluded = list(first.excluded)
    for info in infos[1:]:
        known = {(e.id, e.reason) for e in excluded}
        excluded += [e for e in info.excluded if (e.id, e.reason) not in known]
    stages = StageClock()
    for info in infos:
        for name, seconds in (info.stages.seconds if info.stages else {}).items():
            if name != "report":  # each shard's own report; the merged one's is timed below
                stages.add(name, seconds)
        stages.samples += info.stages.samples if info.stages else 0
    # the same corpus may sit in another folder on each shard's machine: every place named, in one order
    data = " or ".join(sorted({info.data for info in infos if info.data})) or None
    merged = RunInfo(first.split, first.subset, first.source, excluded, first.model, len(rows), None, timing,
                     sum(info.seconds for info in infos), {**first.made_by, "shard": None} if first.made_by else None,
                     stages if stages.samples else None, first.selection, data, count)
    prepare_folder(out)
    with report_files(out, then="the shards' folders are unchanged: rerun the --merge once it can be written"):
        (out / "samples.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        with stages.stage("report"):  # in run.json, as a run's; summary.md is written within it
            overall = write_report(rows, out, merged, f"{first.model} on {first.split} ({count} shards merged)")
        (out / RUN_INFO_FILE).write_text(json.dumps(merged.to_json(), indent=1) + "\n", encoding="utf-8")
    print(f"{len(rows)} samples from {count} shards: WER {overall['wer']:.2%}, CER {overall['cer']:.2%}; "
          f"report in {out}")
    return out


# ---------------------------------------------------------------- command line

# Processes computing the metadata from the start of the run (MetadataProcesses). One: it works while the model
# loads, when a core is idle; on the 2-core CPU it took 3.3-5.4 s off 32-36 s runs of 24 utterances
# (benchmarks/EVALUATE_RESULTS.md). Threads were slower than in line there (both sides hold the GIL).
DEFAULT_METADATA_WORKERS = 1


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1-based): every count-th utterance of the split's sorted ids."""
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--shard takes i/n, such as 1/4; got {text!r}") from None
        if not 1 <= index <= count:
            raise argparse.ArgumentTypeError(f"--shard {text}: i must be between 1 and n")
        return cls(index, count)

    def select(self, sample_ids: list[str]) -> list[str]:
        return sorted(sample_ids)[self.index - 1::self.count]


def run(split_name: str | None, limit: int | None, model_path: Path, out: Path | None, batch_size: int | None,
        fixed_length: bool = False, jit_compile: bool = False, metadata_workers: int = DEFAULT_METADATA_WORKERS,
        shard: Shard | None = None, engine: str = "auto", sessions: int | None = None) -> Path:
    with contextlib.ExitStack() as cleanup:
        return _run(split_name, limit, model_path, out, batch_size, fixed_length, jit_compile, metadata_workers, shard,
                    engine, sessions, cleanup)


def _run(split_name, limit, model_path, out, batch_size, fixed_length, jit_compile, metadata_workers, shard, engine,
         sessions, cleanup: contextlib.ExitStack) -> Path:
    run_started = time.perf_counter()
    from tqdm import tqdm

    from librispeech.model_file import ModelFileError, require_model_file

    try:
        require_model_file(model_path)  # its identity names the report's rows, before the model loads
    except ModelFileError as error:
        raise EvaluationError(str(error)) from None
    config = project_config()
    subset, config = resolve_split(config, split_name)
    split = load_selection(config, subset, limit)
    try:
        lm_report.check_decoder(build=False)
    except lm_report.LMReportError as error:
        raise EvaluationError(str(error)) from None
    digests = sample_digests(split)  # of the whole selection: --merge checks that every shard saw the same data
    selection = {"samples": len(digests), "digest": combined_digest(digests)}
    if shard is not None:
        keep = set(shard.select(list(split.utterances)))
        if not keep:
            raise EvaluationError(f"shard {shard.index}/{shard.count} is empty: the selection has "
                                  f"{len(split.utterances)} samples, so use at most that many shards")
        split.utterances = {i: u for i, u in split.utterances.items() if i in keep}
    listed = len(split.excluded)  # left out by the listing; the run may leave out more
    label = split_label(config, split.split)
    out = out or REPO_ROOT / "reports" / default_folder_name(label, model_path, limit, shard)
    if prepare_folder(out):  # a run that stops before its model pass leaves no empty folder behind
        cleanup.callback(remove_if_empty, out)
    cleanup.enter_context(writing_lock(out))
    rows_path = out / "samples.jsonl"
    made_by = rows_identity(model_path, config, split.split, limit, shard)
    digests = {i: digests[i] for i in split.utterances}
    # refusals before the model loads
    done_rows, seconds_before, timing, stages_before = resume(out, made_by, rows_path, digests)
    unknown = [row["id"] for row in done_rows if row["id"] not in split.utterances]
    if unknown:  # the same selection gave other ids: the corpus changed under the report
        raise EvaluationError(f"{out} holds {len(unknown)} rows of samples this selection no longer has (first: "
                              f"{unknown[0]}); use another --out, or delete the folder to start again")
    fixed_samples = config.max_samples
    done = {row["id"] for row in done_rows}
    pending = [i for i in split.utterances if i not in done]  # in the order the model pass will take them
    if not fixed_length:
        pending = length_order({i: split.utterances[i].num_samples for i in pending})
    metadata = None
    if metadata_workers > 0 and pending:
        metadata = MetadataProcesses(split, pending, metadata_workers)
        cleanup.callback(metadata.close)  # on every way out of the run, an error included
    try:  # built once the metadata worker has started: the ~0.9 s it takes is start-up the worker overlaps
        lm_report.check_decoder()
    except lm_report.LMReportError as error:
        raise EvaluationError(str(error)) from None
    longest = config.max_samples if fixed_length else max((split.utterances[i].num_samples for i in pending), default=1)
    model_pass = load_model_pass(model_path, engine, fixed_length, jit_compile, sessions,
                                 longest_seconds=longest / config.sample_rate, calls=len(pending))
    if model_pass.fixed_samples is not None:  # a fixed-length model: the .h5 (--fixed-length), an .onnx
        fixed_length, fixed_samples = True, model_pass.fixed_samples
        left_out = leave_out_longer_than(split, fixed_samples, model_path)
        if metadata is not None:
            metadata.forget(left_out)
    rows_path.write_text("".join(json.dumps(row) + "\n" for row in done_rows), encoding="utf-8")
    num_samples = {i: split.utterances[i].num_samples for i in split.utterances if i not in done}
    batch_size = batch_size or default_batch_size(model_pass, fixed_samples if fixed_length else max(
        num_samples.values(), default=1), config.sample_rate)
    if fixed_length:
        batches = plan_fixed_length(list(num_samples), batch_size, fixed_samples)
    else:
        batches = plan_model_batches(num_samples, batch_size, model_pass, config.max_samples, config.sample_rate)
    # Start-up, not evaluation: the binder (evaluate_rows imports it again) and transformers' tokenizer, which the
    # first batch's labels would pay for (1-4 s), before the report thread imports (transformers' lazy module
    # fails an import from two threads at once).
    import leap_binder  # noqa: F401
    from librispeech.tokenizer import get_tokenizer

    get_tokenizer()
    threading.Thread(target=import_report_libraries, daemon=True).start()
    timing = timing or ModelPassTiming(precision=model_pass.precision, engine=model_pass.engine)
    if batches:  # a finished report rewritten names only the engines that made its rows
        timing.continue_with(model_pass.engine, model_pass.precision, model_pass.parallel_calls)
    started = time.perf_counter()
    clock = stages_before or StageClock()  # a resumed run's stages add to those of the runs before it
    if batches:  # the data listed, the model and the LM loaded; a rerun that makes no row adds no start-up
        clock.add("start-up", started - run_started)

    def save_progress():
        write_progress(out, made_by, seconds_before + time.perf_counter() - started, timing, digests, clock)

    with open(rows_path, "a", encoding="utf-8") as sink, tqdm(total=len(split.utterances), unit="sample",
                                                              desc=f"evaluate {split.split}") as progress:
        progress.update(len(done))
        save_progress()
        try:
            evaluate_rows(split, model_pass, batches, sink, progress, metadata, timing, save_progress, clock)
        except KeyboardInterrupt:
            sink.flush()
            raise Interrupted(f"interrupted; finished samples are kept in {rows_path} and skipped on a rerun")
    seconds = seconds_before + time.perf_counter() - started
    source = ("bundled synthetic corpus" if config.uses_bundled_corpus else config.root if config.source == "openslr"
              else hf_source(config))
    run_info = RunInfo.of(split, label, model_path, shard, timing, seconds, made_by, clock, selection, str(source))
    rows = sorted(read_rows(rows_path), key=lambda row: row["id"])
    if not rows:
        reasons = ", ".join(sorted({e.reason for e in split.excluded[listed:]}))
        if shard is None:
            raise EvaluationError(f"no sample could be evaluated: the {len(split.excluded) - listed} selected were "
                                  f"all left out ({reasons})")
        # a shard without rows still takes part in --merge
        (out / RUN_INFO_FILE).write_text(json.dumps(run_info.to_json(), indent=1) + "\n", encoding="utf-8")
        print(f"evaluate: shard {shard.index}/{shard.count}: no sample could be evaluated ("
              f"{len(split.excluded) - listed} left out: {reasons}); {RUN_INFO_FILE} records it for --merge",
              file=sys.stderr)
        return out
    try:
        with report_files(out):
            with clock.stage("report"):  # in run.json; summary.md is written within it
                overall = write_report(rows, out, run_info, f"{model_path.name} on {label} ({source})")
            # last: a run.json marks a finished report (--merge takes only those)
            (out / RUN_INFO_FILE).write_text(json.dumps(run_info.to_json(), indent=1) + "\n", encoding="utf-8")
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted while writing the report; the rows are kept in {rows_path}: rerun to "
                              f"write it") from None
    print(f"{len(rows)} samples: WER {overall['wer']:.2%}, CER {overall['cer']:.2%}; "
          f"{len(rows) - len(done_rows)} evaluated in {seconds:.1f} s ({timing.line()}); report in {out}")
    return out


PROGRESS_FILE = "progress.json"  # what made the rows of samples.jsonl, and the time spent on them so far


REPORT_MARKS = ("samples.jsonl", PROGRESS_FILE, RUN_INFO_FILE)  # a folder holding one of them is a report's


def prepare_folder(out: Path) -> bool:
    """The report folder, made now: a path that cannot hold it, or a folder with other files that is not a report
    (the report would overwrite its summary.md, samples.csv...), stops the run in one line, before the model loads.
    True when this call made it."""
    made = not out.exists()
    refuse_other_files(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EvaluationError(f"cannot make the report folder {out}: {error.strerror or error}") from None
    if not os.access(out, os.W_OK):
        raise EvaluationError(f"cannot write into the report folder {out}")
    return made


def refuse_other_files(out: Path) -> None:
    with contextlib.suppress(OSError):  # not a folder, or one that cannot be listed: said where it is made
        others = [path for path in out.iterdir() if not path.name.startswith(".")]  # .DS_Store, .gitkeep: fine
        if others and not any((out / mark).exists() for mark in REPORT_MARKS):
            raise EvaluationError(f"{out} holds other files and no report ({', '.join(REPORT_MARKS)}); the report "
                                  f"would overwrite some: use an empty or new --out")


@contextlib.contextmanager
def report_files(out: Path, then: str = "the rows are kept in samples.jsonl: rerun into the same --out once it can "
                                        "be written"):
    """A report file that cannot be written (read-only, a full disk) stops the run in one line, saying `then`."""
    try:
        yield
    except OSError as error:
        where = f" {error.filename}" if error.filename else ""
        raise EvaluationError(f"cannot write the report in {out}:{where} {error.strerror or error}; {then}") from None


def remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


@contextlib.contextmanager
def writing_lock(out: Path):
    """One run at a time in a report folder: two would append the same samples to one samples.jsonl. An advisory
    lock on the folder itself (no lock file left behind), released when the process ends, however it ends."""
    try:
        import fcntl
    except ImportError:  # Windows has no fcntl: no lock there
        yield
        return
    handle = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise EvaluationError(f"another evaluate is writing into {out}; wait for it to finish, or use another "
                                  f"--out") from None
        yield
    finally:
        os.close(handle)


def sample_digests(split) -> dict[str, str]:
    """Per selected sample, a digest of what its row is made from besides the model: transcript, audio (length,
    rate, channels, file size) and records (SPEAKERS/CHAPTERS/BOOKS). Not modification times: a corpus copied to
    another machine for a shard is the same data."""
    from librispeech.data import record_fields

    digests = {}
    for sample_id, utterance in split.utterances.items():
        # a file gone since the listing has no size; its decode leaves it out later
        size = os.path.getsize(utterance.audio_path) if utterance.audio_path and os.path.exists(
            utterance.audio_path) else None
        content = [utterance.transcript, utterance.num_samples, utterance.source_sample_rate, utterance.channels, size,
                   utterance.hf_row, record_fields(utterance, split.corpus_info)]
        digests[sample_id] = hashlib.blake2b(json.dumps(content, sort_keys=True).encode(), digest_size=8).hexdigest()
    return digests


def combined_digest(digests: dict[str, str]) -> str:
    return hashlib.blake2b(json.dumps(sorted(digests.items())).encode(), digest_size=16).hexdigest()


def leave_out_longer_than(split, fixed_samples: int, model_path: Path) -> list[str]:
    """A model exported with --max-seconds (an .onnx, or an .h5 run with --fixed-length) takes at most
    fixed_samples: longer utterances are left out and reported like the preprocessing's, never cut to its input."""
    from librispeech.data import ExcludedUtterance

    longer = sorted(i for i, u in split.utterances.items() if u.num_samples > fixed_samples)
    if not longer:
        return []
    reason = f"longer than the model's fixed input ({fixed_samples} samples)"
    split.excluded += [ExcludedUtterance(i, reason) for i in longer]
    split.utterances = {i: u for i, u in split.utterances.items() if u.num_samples <= fixed_samples}
    print(f"evaluate: {model_path.name} takes at most {fixed_samples} samples; left out {len(longer)} longer "
          f"utterance(s) (first: {longer[0]}; all in summary.md and {RUN_INFO_FILE})", file=sys.stderr)
    if not split.utterances:
        raise EvaluationError(f"every selected utterance is longer than {model_path.name}'s fixed input of "
                              f"{fixed_samples} samples; export the model without --max-seconds")
    return longer


def default_folder_name(split_name: str, model_path: Path, limit: int | None, shard: Shard | None) -> str:
    """reports/<split>-<model>[-onnx][-limit-N][-shard-i-of-n]: another model format, --limit or shard gets another
    folder; a run on other data or another LM under the same names is refused there (resume), and takes --out."""
    return (f"{split_name}-{model_path.stem}{'-onnx' if model_path.suffix.lower() == '.onnx' else ''}"
            f"{f'-limit-{limit}' if limit is not None else ''}"
            f"{f'-shard-{shard.index}-of-{shard.count}' if shard else ''}")


def file_identity(path: Path | None, content: bool = False) -> list | None:
    """[path, size, modification time]: a file replaced or rewritten under the same name is another file. content:
    its SHA-256 too, for shards, which run on other machines, where only the contents tell two files apart (a model
    retrained and exported under the same name has the same size; 0.3 s for the base model's 377 MB here)."""
    if path is None:
        return None
    stat = path.stat()
    if not content:
        return [str(path), stat.st_size, stat.st_mtime_ns]
    with open(path, "rb") as handle:
        return [str(path), stat.st_size, stat.st_mtime_ns, hashlib.file_digest(handle, "sha256").hexdigest()]


def rows_identity(model_path: Path, config: ProjectConfig, split_name: str, limit: int | None,
                  shard: Shard | None) -> dict:
    """What decides a report's rows: the model file, the data, the selection, the input settings and the LM
    decoder's (the rows hold the LM hypothesis)."""
    sharded = shard is not None
    return {"model": file_identity(model_path, sharded), "source": config.source,
            "data": str(config.root if config.source == "openslr" else config.hf_dataset), "split": split_name,
            "hf_config": config.hf_config if config.source == "huggingface" else None,
            "limit": limit, "shard": [shard.index, shard.count] if shard else None,
            "max_samples": config.max_samples, "normalize_epsilon": config.normalize_epsilon,
            "lm": file_identity(config.lm_path, sharded), "lexicon": file_identity(config.lexicon_path, sharded),
            "beam_width": config.beam_width, "lm_alpha": config.lm_alpha, "lm_beta": config.lm_beta}


def resume(out: Path, made_by: dict, rows_path: Path, digests: dict[str, str] | None = None
           ) -> tuple[list[dict], float, ModelPassTiming | None, StageClock | None]:
    """The rows an earlier run into `out` finished, with its seconds, model-pass timing and stages (none when some of
    its rows were lost, so that the timing then covers this run's samples only); EvaluationError when they were made by
    another model, data or selection, or from a sample whose transcript, audio or records changed since (digests:
    sample_digests now; their rows would be reported as this run's)."""
    rows = read_rows(rows_path)
    ids = [row["id"] for row in rows]
    if len(set(ids)) != len(ids):
        repeated = next(i for i in ids if ids.count(i) > 1)
        raise EvaluationError(f"{rows_path} holds some samples twice (first: {repeated}): two runs wrote into {out} "
                              f"at once; delete the folder to start again")
    progress_path = out / PROGRESS_FILE
    try:
        previous = json.loads(progress_path.read_text(encoding="utf-8")) if progress_path.is_file() else None
    except ValueError:
        raise EvaluationError(f"{progress_path} is damaged, so what made the rows in {out} is unknown; use another "
                              f"--out, or delete the folder to start again") from None
    if rows and previous is None:
        raise EvaluationError(f"{out} holds {len(rows)} rows but no {PROGRESS_FILE} saying which model and data made "
                              f"them; use another --out, or delete the folder to start again")
    if previous is None or not rows:
        return [], 0.0, None, None
    # a key recorded only since that run matches only where it does not apply (hf_config of an OpenSLR run)
    old = {key: repr(value) for key, value in previous["made_by"].items()}
    changed = [f"{key} was {old.get(key, 'not recorded')}, now {made_by[key]!r}" for key in made_by
               if previous["made_by"].get(key) != made_by[key]]
    if changed:
        raise EvaluationError(f"{out} holds the rows of another run ({'; '.join(changed)}); use another --out, or "
                              f"delete the folder to start again")
    before = previous.get("digests") or {}  # none in progress.json files from before they were recorded
    stale = [i for i in ids if i in before and digests is not None and before[i] != digests.get(i, before[i])]
    if stale:
        raise EvaluationError(f"{out} holds rows of {len(stale)} sample(s) whose transcript, audio or records "
                              f"changed since (first: {stale[0]}); use another --out, or delete the folder to start "
                              f"again")
    timing = ModelPassTiming(**previous["model_pass"])
    if timing.samples != len(rows):  # rows were lost (a damaged line): the time so far no longer matches them
        return rows, 0.0, None, None
    stages = StageClock(**previous["stages"]) if previous.get("stages") else None  # none in older progress.json
    return rows, float(previous["seconds"]), timing, stages


def write_progress(out: Path, made_by: dict, seconds: float, timing: ModelPassTiming,
                   digests: dict[str, str] | None = None, stages: StageClock | None = None) -> None:
    """progress.json, replaced whole (a run killed while writing leaves the previous one, not half a file)."""
    partial = out / (PROGRESS_FILE + ".partial")
    partial.write_text(json.dumps({"made_by": made_by, "seconds": seconds, "model_pass": dataclasses.asdict(timing),
                                  "digests": digests, "stages": dataclasses.asdict(stages) if stages else None},
                                 indent=1) + "\n", encoding="utf-8")
    os.replace(partial, out / PROGRESS_FILE)


def import_report_libraries() -> None:
    """The report's libraries (~1.2 s of imports), imported in a thread while the run mostly waits on the model or
    the metadata worker (24 utterances: 19.3-20.0 s -> 18.6-19.0 s; the demo run 7.4 -> 6.5 s). One that fails to
    import fails again where the report uses it, with its error."""
    try:
        import pandas  # noqa: F401
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--split", help="a split folder (its name under the corpus root, or a path), a subset "
                                        "(training, validation, test), or with the HF source a split name, "
                                        "CONFIG/SPLIT naming the config too (default: the validation split, "
                                        "dev-clean)")
    parser.add_argument("--limit", type=int, help="at most this many samples (seeded selection); default: all")
    parser.add_argument("--model", type=Path, help=".h5 or .onnx export (default: WAV2VEC_MODEL or the demo model)")
    parser.add_argument("--out", type=Path, help="report folder (default: reports/<split>-<model>[-onnx][-limit-N]"
                                                 "[-shard-i-of-n]); a rerun into it resumes the same run")
    parser.add_argument("--batch-size", type=int,
                        help="utterances per model call (default: 1 on CPU; on a GPU with JAX or XLA, up to 8, "
                             "all in one shape)")
    parser.add_argument("--fixed-length", action="store_true",
                        help="pad every input to the platform's fixed length (slow; the platform's exact path)")
    parser.add_argument("--engine", choices=ENGINES, default="auto",
                        help="what runs an .h5 on real lengths: keras, or onnxruntime (the same float32 model "
                             "converted in memory; faster on CPU). auto (default): onnxruntime unless Keras has a "
                             "GPU, --xla / --fixed-length is given, or the onnx package (dev extra) is missing. An "
                             ".onnx always runs with onnxruntime")
    parser.add_argument("--xla", action="store_true", help="compile the Keras model with XLA (jit_compile=True)")
    parser.add_argument("--sessions", type=int, metavar="N",
                        help=f"ONNX Runtime sessions running utterances at once, each on cores/N threads (default: "
                             f"one per core this process may use, {usable_cores()} here; fewer where half the "
                             f"available memory holds fewer, or where there are fewer utterances)")
    parser.add_argument("--metadata-workers", type=int, default=DEFAULT_METADATA_WORKERS,
                        help=f"processes computing the metadata while the model loads and runs (default "
                             f"{DEFAULT_METADATA_WORKERS}; 0: in line)")
    parser.add_argument("--shard", type=Shard.parse, metavar="I/N",
                        help="evaluate only shard I of N (every N-th sorted id); combine with --merge")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="SHARD_DIR",
                        help="merge the report folders of all N shards into --out (no model or data needed)")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.sessions is not None and args.sessions < 1:
        parser.error("--sessions must be at least 1")
    if args.metadata_workers < 0:
        parser.error("--metadata-workers must be 0 (in line) or more")
    try:
        if args.merge:
            if args.out is None:
                parser.error("--merge needs --out")
            ignored = [f"--{name.replace('_', '-')}" for name, value in vars(args).items()
                       if name not in ("merge", "out") and value != parser.get_default(name)]
            if ignored:  # the shards' run.json say what made them
                raise EvaluationError(f"--merge takes only the shard folders and --out, not {', '.join(ignored)}")
            merge(args.merge, args.out)
        else:
            model_path = (args.model or project_config().model_path).resolve()
            if resolve_engine(args.engine, model_path, args.fixed_length, args.xla) == "onnxruntime":
                # no Keras model to load, here or in the metadata workers: leap_binder needs no TensorFlow
                os.environ[librispeech.WITHOUT_KERAS_ENV] = "1"
            elif args.sessions is not None:  # said before the data is listed
                raise EvaluationError(SESSIONS_NEED_ONNX_RUNTIME)
            run(args.split, args.limit, model_path, args.out, args.batch_size, args.fixed_length, args.xla,
                args.metadata_workers, args.shard, args.engine, args.sessions)
    except Interrupted as error:
        print(f"evaluate: {error}", file=sys.stderr)
        sys.exit(130)
    except (EvaluationError, ModelPassError, ConfigError) as error:
        sys.exit(f"evaluate: {error}")
    except KeyboardInterrupt:  # outside the model pass (which says what it kept): one line, no traceback
        print("evaluate: interrupted", file=sys.stderr)
        sys.exit(130)


def cli() -> None:
    """The `evaluate` command: main(), then the process ends without the interpreter's teardown (end_process)."""
    main()
    end_process()


def end_process() -> None:
    """Exit now, as mypy does after a run: the interpreter's teardown frees, object by object, everything the run
    loaded (pandas, matplotlib, scikit-learn, ONNX Runtime, the model), ~1 s of a ~28 s run on the 2-core machine.
    The run has closed its files and stopped its worker processes. Where a thread that is not a daemon still runs
    (a pool left open, which the interpreter's exit shuts down first), the process exits as usual instead; else
    atexit handlers run and the standard streams are flushed first."""
    import atexit

    if any(thread is not threading.main_thread() and not thread.daemon for thread in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    with contextlib.suppress(OSError):  # a closed pipe (`evaluate | head`)
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    cli()
