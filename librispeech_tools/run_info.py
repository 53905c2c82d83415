"""run.json: what a finished report says about its run besides the rows, so that --merge needs neither the data nor
the model; and the time by stage it records (StageClock, in progress.json too).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from librispeech_tools.evaluate_errors import EvaluationError
from librispeech_tools.model_pass import ModelPassTiming

if TYPE_CHECKING:  # split_selection names RUN_INFO_FILE
    from librispeech_tools.split_selection import Shard


RUN_INFO_FILE = "run.json"


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
