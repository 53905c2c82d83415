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

This module is the command and the run's order of work; its parts: split_selection.py (what a run covers),
sample_rows.py (the rows), report_folder.py (the folder, its lock and resuming), report.py (tables, summary.md,
plots), run_info.py (run.json), shard_merge.py (--merge) and evaluate_errors.py (its one-line refusals).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path

import librispeech
from librispeech.config import REPO_ROOT, ConfigError, project_config
from librispeech_tools import lm_report
from librispeech_tools.evaluate_errors import EvaluationError, Interrupted
from librispeech_tools.metadata_processes import MetadataProcesses
from librispeech_tools.model_pass import (ENGINES, SESSIONS_NEED_ONNX_RUNTIME, ModelPassError, ModelPassTiming,
                                          default_batch_size, length_order, load_model_pass, onnx_call_seconds,
                                          plan_fixed_length, plan_model_batches, resolve_engine, usable_cores)
from librispeech_tools.report import import_report_libraries, write_report
from librispeech_tools.report_folder import (default_folder_name, prepare_folder, remove_if_empty, report_files, resume,
                                             rows_identity, write_progress, writing_lock)
from librispeech_tools.run_info import RUN_INFO_FILE, RunInfo, StageClock
from librispeech_tools.sample_rows import evaluate_rows, read_rows
from librispeech_tools.shard_merge import merge
from librispeech_tools.split_selection import (Shard, combined_digest, hf_source, leave_out_longer_than, load_selection,
                                               resolve_split, sample_digests, split_label)


# Processes computing the metadata from the start of the run (MetadataProcesses). One: it works while the model
# loads, when a core is idle; on the 2-core CPU it took 3.3-5.4 s off 32-36 s runs of 24 utterances
# (benchmarks/EVALUATE_RESULTS.md). Threads were slower than in line there (both sides hold the GIL).
DEFAULT_METADATA_WORKERS = 1


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
    made = prepare_folder(out)
    cleanup.enter_context(writing_lock(out))
    if made:  # a run that stops before its model pass leaves no empty folder behind; one refused by the lock
        cleanup.callback(remove_if_empty, out)  # leaves the folder to the run that holds it
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
    lengths = [config.max_samples if fixed_length else split.utterances[i].num_samples for i in pending]
    model_pass = load_model_pass(model_path, engine, fixed_length, jit_compile, sessions,
                                 call_seconds=lambda fixed_samples: onnx_call_seconds(
                                     lengths, batch_size, config.max_samples, config.sample_rate, fixed_samples))
    if model_pass.fixed_samples is not None:  # a fixed-length model: the .h5 (--fixed-length), an .onnx
        fixed_length, fixed_samples = True, model_pass.fixed_samples
        left_out = leave_out_longer_than(split, fixed_samples, model_path, shard is not None)
        if metadata is not None:
            metadata.forget(left_out)
    rows_path.write_text("".join(json.dumps(row) + "\n" for row in done_rows), encoding="utf-8")
    num_samples = {i: split.utterances[i].num_samples for i in split.utterances if i not in done}
    batch_size = batch_size or default_batch_size(model_pass, fixed_samples if fixed_length else max(
        num_samples.values(), default=1), config.sample_rate)
    if fixed_length:  # in the order the metadata worker was given (a fixed-length .onnx is known only now)
        batches = plan_fixed_length([i for i in pending if i in num_samples], batch_size, fixed_samples)
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
        timing.continue_with(model_pass.engine, model_pass.precision)
    started = time.perf_counter()
    clock = stages_before or StageClock()  # a resumed run's stages add to those of the runs before it
    start_up = started - run_started  # the data listed, the model and the LM loaded: counted with the first row
    samples_before = clock.samples

    def save_progress():
        nonlocal start_up
        if start_up is not None and clock.samples > samples_before:  # a rerun that makes no row adds none
            clock.add("start-up", start_up)
            start_up = None
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
    this_run = time.perf_counter() - started
    seconds = seconds_before + this_run
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
    earlier = f", {len(done_rows)} in earlier runs" if done_rows else ""
    print(f"{len(rows)} samples: WER {overall['wer']:.2%}, CER {overall['cer']:.2%}; {len(rows) - len(done_rows)} "
          f"evaluated in {this_run:.1f} s after a {started - run_started:.1f} s start-up{earlier} ({timing.line()}); "
          f"report in {out}")
    return out


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
                        help="pad every input to the model's fixed length, the platform's 34.955 s for an .h5 "
                             "exported without --max-seconds (slow; the platform's exact path)")
    parser.add_argument("--engine", choices=ENGINES, default="auto",
                        help="what runs an .h5 on real lengths: keras, or onnxruntime (the same float32 model "
                             "converted in memory; faster on CPU). auto (default): onnxruntime unless Keras has a "
                             "GPU, --xla / --fixed-length is given, or the onnx package (dev extra) is missing. An "
                             ".onnx always runs with onnxruntime")
    parser.add_argument("--xla", action="store_true", help="compile the Keras model with XLA (jit_compile=True)")
    parser.add_argument("--sessions", type=int, metavar="N",
                        help=f"ONNX Runtime sessions running utterances at once, each on cores/N threads (default: "
                             f"one per core this process may use, {usable_cores()} here; fewer where the longest "
                             f"utterances would run on after the rest, where half the available memory holds fewer, or "
                             f"where there are fewer utterances)")
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
