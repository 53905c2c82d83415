"""The report folder's life: made (or refused) before the model loads, locked while a run writes, and resumed:
progress.json says what made the rows of samples.jsonl, so a rerun keeps them only if it would make the same ones.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from pathlib import Path

from librispeech.config import ProjectConfig
from librispeech_tools.evaluate_errors import EvaluationError
from librispeech_tools.model_pass import ModelPassTiming
from librispeech_tools.run_info import RUN_INFO_FILE, StageClock
from librispeech_tools.sample_rows import read_rows
from librispeech_tools.split_selection import Shard


PROGRESS_FILE = "progress.json"  # what made the rows of samples.jsonl, and the time spent on them so far

# What a row holds and means, raised when that changes, so that rows of an earlier version are neither resumed nor
# merged with new ones. 2: speaker and chapter ids as strings, the CTC loss of confidently wrong samples kept,
# typographic apostrophes read as the vocabulary's, clipping counted in the file.
ROWS_FORMAT = 2


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
    return {"rows_format": ROWS_FORMAT, "model": file_identity(model_path, sharded), "source": config.source,
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
