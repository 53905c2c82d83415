"""evaluate's rows: the model pass over planned batches, then per sample the CTC loss, error rates, metadata, LM
hypothesis and words, appended to samples.jsonl as each batch finishes.
"""
from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from librispeech.config import project_config
from librispeech_tools import lm_report, word_report
from librispeech_tools.metadata_processes import MetadataProcesses, metadata_row, split_response
from librispeech_tools.model_pass import Batch, BusyClock, ModelPassTiming, calls_in_order
from librispeech_tools.run_info import StageClock


RATE_COLUMNS = ("wer", "cer", "mer", "wil", "wip")
ERROR_COUNT_PREFIXES = ("word_", "char_")  # word_hits ... char_insertions: counts


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
            with clock.stage("waiting for the model"):  # its outputs (the audio read meanwhile is its own stage)
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
                timing.sessions = max(timing.sessions, busy.most_at_once)
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
