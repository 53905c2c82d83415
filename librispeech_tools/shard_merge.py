"""`evaluate --merge`: one report from the folders of all n `--shard i/n` runs, each checked to be finished and made by
the same run on the same data.
"""
from __future__ import annotations

import json
from pathlib import Path

from librispeech_tools.evaluate_errors import EvaluationError
from librispeech_tools.model_pass import ModelPassTiming
from librispeech_tools.report import write_report
from librispeech_tools.report_folder import (PROGRESS_FILE, REPORT_MARKS, prepare_folder, refuse_other_files,
                                             report_files)
from librispeech_tools.run_info import RUN_INFO_FILE, RunInfo, StageClock
from librispeech_tools.sample_rows import read_rows


def same_run_key(made_by: dict | None) -> dict:
    """What shards of one run share on any machine: made_by without the shard, the data's folder, or the files'
    folders and modification times (a model or LM copied to another machine is the same file: its name, size and,
    where recorded, contents' digest)."""
    key = {name: value for name, value in (made_by or {}).items() if name not in ("shard", "data")}
    for name in ("model", "lm", "lexicon"):
        if isinstance(key.get(name), list):
            key[name] = [Path(key[name][0]).name, key[name][1], *key[name][3:]]
    return key


def refuse_another_report(out: Path, shard: RunInfo) -> None:
    """A merge may replace an earlier merge of the same run's shards (rerun, as after a failed write), never another
    report: a merge folder has no progress.json, so only its run.json tells whose rows it holds."""
    if not any((out / mark).exists() for mark in REPORT_MARKS):
        return
    try:
        earlier = RunInfo.read(out)
    except EvaluationError:
        earlier = None
    if earlier is None or earlier.merged_shards is None or same_run_key(earlier.made_by) != same_run_key(
            shard.made_by) or (earlier.split, earlier.model) != (shard.split, shard.model):
        what = (f"the report of {earlier.model} on {earlier.split}" if earlier is not None else "another report")
        raise EvaluationError(f"--out {out} holds {what}, not a merge of these shards' run; merge into a new or empty "
                              f"folder, or delete that one first")


def merge(folders: list[Path], out: Path) -> Path:
    """One report from the folders of `evaluate --shard i/n` runs: all n shards, each finished, same split/model."""
    if any(out.resolve() == folder.resolve() for folder in folders) or (out / PROGRESS_FILE).is_file():
        raise EvaluationError(f"--out {out} is a shard's or another run's folder; merge into a folder of its own")
    refuse_other_files(out)
    infos = [RunInfo.read(folder) for folder in folders]
    first = infos[0]
    refuse_another_report(out, first)
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
