"""`poetry run evaluate`: the Tensorleap analysis run locally through the same registered functions.

Per sample: the registered encoders, the model (batched), the CTC loss, the error rates and every metadata section.
The word level (pace, noise, word confidence, aligned words; its summary sections and plots) is in word_report.py.
Rows are appended to samples.jsonl as batches finish, so an interrupted run keeps its work and a rerun skips what
is done. Then: samples.csv / samples.parquet, summary.md and the plots.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from librispeech.config import REPO_ROOT, SUBSETS, ProjectConfig, project_config
from librispeech_tools import lm_report

METADATA_SECTIONS = ("speech", "text", "readability", "records")
RATE_COLUMNS = ("wer", "cer", "mer", "wil", "wip")


class EvaluationError(Exception):
    """A problem with the user's request: reported as one line, exit status 1."""


# ---------------------------------------------------------------- what to evaluate

def resolve_split(config: ProjectConfig, split: str | None) -> tuple[str, ProjectConfig]:
    """A subset name (training/validation/test) or a split folder / HF split name; default: the validation split."""
    if split is None:
        return "validation", config
    if split in SUBSETS:
        return split, config
    named = config.hf_splits if config.source == "huggingface" else config.splits
    for subset, name in named.items():
        if name == split:
            return subset, config
    if config.source == "openslr":
        if (config.root / split).is_dir():
            return "validation", replace(config, splits={**config.splits, "validation": split})
        available = sorted(p.name for p in config.root.iterdir() if p.is_dir()) if config.root.is_dir() else []
        raise EvaluationError(f"unknown split {split!r}: no folder {config.root / split} (available: "
                              f"{', '.join(available) or 'none'})")
    return "validation", replace(config, hf_splits={**config.hf_splits, "validation": split})


def load_selection(config: ProjectConfig, subset: str, limit: int | None):
    from librispeech import data

    config = replace(config, samples_per_split=limit)  # None = every utterance of the split
    try:
        split = data.load_split(subset, config)
    except FileNotFoundError as error:
        raise EvaluationError(str(error)) from None
    except ValueError as error:
        raise EvaluationError(f"empty selection: {error}") from None
    return split


def load_model_with_latent(model_path: Path):
    """The model, returning logits and the transformer's last hidden state."""
    from librispeech.model_file import ModelFileError, load_wav2vec2
    from librispeech.wav2vec2 import model as wav2vec2_model

    try:
        model = load_wav2vec2(model_path)
    except ModelFileError as error:
        raise EvaluationError(str(error)) from None
    if model_path.suffix.lower() == ".onnx":
        return model, load_onnx_with_latent(model_path)
    return model, wav2vec2_model.with_hidden_states(model)


def load_onnx_with_latent(model_path: Path):
    """An ONNX export run by ONNX Runtime with its inner last_hidden_state as a second output (the export's one
    output is the logits, which is what code-loader expects; the hidden state is kept inside under a fixed name)."""
    from librispeech_tools.onnx_wav2vec2 import OnnxExportError, OnnxWithHiddenState

    try:
        return OnnxWithHiddenState(model_path)
    except OnnxExportError as error:
        raise EvaluationError(f"{error}; re-export it with export-model for the latent-space plots") from None


# ---------------------------------------------------------------- per-sample rows

def _flatten_metadata(section: str, values: dict) -> dict:
    return {f"{section}.{key}": value for key, value in values.items()}


def evaluate_rows(split, latent_model, batch_size: int, done: set[str], sink, progress) -> None:
    """Compute rows for the samples not in `done`, appending each finished batch to `sink` (a text file)."""
    from code_loader.contract.datasetclasses import PreprocessResponse
    from code_loader.contract.enums import DataStateType

    import leap_binder as binder
    from librispeech import tokenizer
    from librispeech.wav2vec2 import model as wav2vec2_model
    from librispeech_tools import word_report

    response = PreprocessResponse(sample_ids=list(split.utterances), data=split,
                                  state=DataStateType(split.subset), sample_id_type=str)
    todo = [sample_id for sample_id in response.sample_ids if sample_id not in done]
    progress.update(len(response.sample_ids) - len(todo))
    metadata_functions = dict(zip(METADATA_SECTIONS, (binder.metadata_speech, binder.metadata_text,
                                                      binder.metadata_readability, binder.metadata_records)))
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        audio = np.stack([binder.input_audio(i, response) for i in batch])
        lengths = np.stack([binder.input_audio_length(i, response) for i in batch])
        labels = np.stack([binder.gt_transcript(i, response) for i in batch])
        logits, hidden = (np.asarray(x) for x in latent_model.predict_on_batch([audio, lengths]))
        losses = binder.ctc_loss(logits, labels)
        rates = binder.error_rates(logits, labels)
        model_config = getattr(latent_model, "wav2vec2_config", None) or wav2vec2_model.model_config(latent_model)
        for j, sample_id in enumerate(batch):
            row = {"id": sample_id, "subset": split.subset, "split": split.split,
                   "reference": split.utterances[sample_id].transcript,
                   # the metrics see float16 logits, as on the platform; decode what they saw
                   "hypothesis": tokenizer.decode_greedy(logits[j].astype(np.float16)),
                   "loss": float(losses[j]), **{key: float(values[j]) for key, values in rates.items()}}
            row.update(lm_report.lm_columns(row["reference"], row["hypothesis"], logits[j].astype(np.float16)))
            for section, function in metadata_functions.items():
                row.update(_flatten_metadata(section, function(sample_id, response)))
            row.update(word_report.sample_fields(binder, sample_id, response, logits[j], labels[j]))  # pace, noise, words
            real_frames = max(1, model_config.num_frames(int(lengths[j, 0])))  # hidden is zero past them
            row["latent"] = hidden[j, :real_frames].mean(axis=0).astype(float).round(6).tolist()
            sink.write(json.dumps(row) + "\n")
        sink.flush()
        progress.update(len(batch))


def read_rows(path: Path) -> list[dict]:
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by an interruption: recomputed on this run
    return rows


# ---------------------------------------------------------------- summary and plots

def write_tables(rows: list[dict], out: Path):
    import pandas as pd

    table = pd.DataFrame([{k: v for k, v in row.items() if k not in ("latent", "words")} for row in rows])
    table.to_csv(out / "samples.csv", index=False)
    table.to_parquet(out / "samples.parquet", index=False)
    return table


def _group_rates(table, column: str) -> list[tuple]:
    from librispeech.metrics import corpus_error_rates

    groups = []
    for value, group in table.groupby(table[column].fillna("unknown"), sort=True):
        rates = corpus_error_rates(group["reference"].tolist(), group["hypothesis"].tolist())
        groups.append((value, len(group), rates["wer"], rates["cer"], float(group["loss"].mean())))
    return groups


def write_summary(table, out: Path, split, model_path: Path, seconds: float) -> dict:
    from librispeech.metrics import corpus_error_rates

    overall = corpus_error_rates(table["reference"].tolist(), table["hypothesis"].tolist())
    lines = [f"# Evaluation of {model_path.name} on {split.split} ({split.subset})", "",
             f"- samples: {len(table)}; corpus WER {overall['wer']:.2%}, CER {overall['cer']:.2%} (jiwer over all "
             f"pairs); mean CTC loss {table['loss'].mean():.3f}",
             f"- data source: {split.source}; left out while preprocessing: {len(split.excluded)}"
             + "".join(f"\n  - {e.id}: {e.reason}" for e in split.excluded[:20]),
             f"- run time: {seconds:.1f} s", ""]
    by_speaker = table.assign(speaker=table["speech.speaker_id"].astype(str) + " " +
                              table["records.speaker_name"].fillna("").astype(str))
    for title, frame, column in (("By sex", table, "records.sex"), ("By speaker", by_speaker, "speaker")):
        lines += [f"## {title}", "", "| group | samples | WER | CER | mean loss |", "|---|---|---|---|---|"]
        lines += [f"| {value} | {count} | {wer:.2%} | {cer:.2%} | {loss:.3f} |"
                  for value, count, wer, cer, loss in _group_rates(frame, column)]
        lines.append("")
    worst = table.sort_values("wer", ascending=False).head(5)
    lines += ["## Highest WER", "", "| id | WER | reference | hypothesis |", "|---|---|---|---|"]
    lines += [f"| {r.id} | {r.wer:.2f} | {r.reference} | {r.hypothesis} |" for r in worst.itertuples()]
    lines += lm_report.summary_lines(table)
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return overall


def write_plots(table, latents: np.ndarray, out: Path, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    paths = []

    def save(figure, name, heading):
        figure.suptitle(f"{heading}\n{title}", fontsize=9)
        figure.tight_layout()
        figure.savefig(out / name, dpi=110)
        plt.close(figure)
        paths.append(out / name)

    n_components = min(2, len(latents), latents.shape[1])
    points = PCA(n_components=n_components).fit_transform(latents) if len(latents) > 1 else np.zeros((1, 2))
    points = np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
    loss = table["loss"].to_numpy()
    sizes = 15 + 185 * (loss - loss.min()) / (np.ptp(loss) or 1.0)
    figure, axis = plt.subplots(figsize=(6.5, 5))
    scatter = axis.scatter(points[:, 0], points[:, 1], c=table["text.word_count"], s=sizes, cmap="viridis",
                           alpha=0.75, edgecolors="k", linewidths=0.3)
    figure.colorbar(scatter, ax=axis, label="word count")
    axis.set(xlabel="PC 1", ylabel="PC 2")
    save(figure, "latent_space.png", "Latent space (mean-pooled encoder output, PCA); size = CTC loss")

    figure, axis = plt.subplots(figsize=(6, 4.5))
    axis.scatter(table["speech.rms_std"], loss, alpha=0.7, edgecolors="k", linewidths=0.3)
    axis.set(xlabel="RMS std (speech.rms_std)", ylabel="CTC loss")
    save(figure, "rms_std_vs_loss.png", "Loudness variation vs loss")

    figure, axes = plt.subplots(1, len(RATE_COLUMNS), figsize=(3.2 * len(RATE_COLUMNS), 3.4), sharex=True)
    for axis, metric in zip(axes, RATE_COLUMNS):
        axis.scatter(table["readability.dale_chall_readability_score"], table[metric], alpha=0.7, s=18)
        axis.set(xlabel="Dale-Chall score", ylabel=metric)
    save(figure, "dale_chall_vs_metrics.png", "Readability (Dale-Chall) vs each error rate")

    clusters = min(5, len(latents))
    labels = KMeans(n_clusters=clusters, n_init=10, random_state=0).fit_predict(latents)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, column in zip(axes, ("readability.difficult_words", "readability.linsear_write_formula")):
        axis.boxplot([table[column][labels == c] for c in range(clusters)], tick_labels=list(range(clusters)))
        axis.set(xlabel="k-means cluster of the latent space", ylabel=column.split(".")[1])
    save(figure, "kmeans_clusters.png", f"k-means ({clusters} clusters) on the latent space")

    figure, axis = plt.subplots(figsize=(6, 4.5))
    axis.scatter(table["speech.spectral_flatness_min"], table["cer"], alpha=0.7, edgecolors="k", linewidths=0.3)
    axis.set(xlabel="minimum spectral flatness", ylabel="CER", xscale="log")
    save(figure, "spectral_flatness_vs_cer.png", "Spectral flatness vs CER")
    return paths


# ---------------------------------------------------------------- command line

def run(split_name: str | None, limit: int | None, model_path: Path, out: Path | None, batch_size: int) -> Path:
    from tqdm import tqdm

    config = project_config()
    subset, config = resolve_split(config, split_name)
    split = load_selection(config, subset, limit)
    try:
        lm_report.check_decoder()
    except lm_report.LMReportError as error:
        raise EvaluationError(str(error)) from None
    _, latent_model = load_model_with_latent(model_path)
    out = out or REPO_ROOT / "reports" / f"{split.split}-{model_path.stem}"
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "samples.jsonl"
    done_rows = [row for row in read_rows(rows_path) if row["id"] in split.utterances]
    rows_path.write_text("".join(json.dumps(row) + "\n" for row in done_rows), encoding="utf-8")
    started = time.perf_counter()
    with open(rows_path, "a", encoding="utf-8") as sink, tqdm(total=len(split.utterances), unit="sample",
                                                              desc=f"evaluate {split.split}") as progress:
        try:
            evaluate_rows(split, latent_model, batch_size, {row["id"] for row in done_rows}, sink, progress)
        except KeyboardInterrupt:
            sink.flush()
            raise EvaluationError(f"interrupted; finished samples are kept in {rows_path} and skipped on a rerun")
    seconds = time.perf_counter() - started
    rows = sorted(read_rows(rows_path), key=lambda row: row["id"])
    table = write_tables(rows, out)
    overall = write_summary(table, out, split, model_path, seconds)
    write_plots(table, np.array([row["latent"] for row in rows]), out,
                f"{model_path.name} on {split.split} ({'bundled synthetic corpus' if config.uses_bundled_corpus else config.root})")
    from librispeech_tools import word_report

    word_report.write_word_report(rows, table, out, f"{model_path.name} on {split.split}")
    print(f"{len(table)} samples: WER {overall['wer']:.2%}, CER {overall['cer']:.2%}; "
          f"{len(rows) - len(done_rows)} evaluated in {seconds:.1f} s; report in {out}")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--split", help="split folder or subset name (default: the validation split, dev-clean)")
    parser.add_argument("--limit", type=int, help="at most this many samples (seeded selection); default: all")
    parser.add_argument("--model", type=Path, help=".h5 or .onnx export (default: WAV2VEC_MODEL or the demo model)")
    parser.add_argument("--out", type=Path, help="report folder (default: reports/<split>-<model>)")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    try:
        run(args.split, args.limit, (args.model or project_config().model_path).resolve(), args.out, args.batch_size)
    except EvaluationError as error:
        sys.exit(f"evaluate: {error}")


if __name__ == "__main__":
    main()
