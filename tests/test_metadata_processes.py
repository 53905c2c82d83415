"""evaluate's metadata worker processes: the same rows as the registered functions in line, also when a worker
stops."""
import multiprocessing
import os
import signal

import pytest

import librispeech  # noqa: F401  telemetry guard first
from conftest import make_config
from librispeech import data
from librispeech.config import project_config
from librispeech_tools import metadata_processes
from librispeech_tools.metadata_processes import MetadataProcesses, metadata_row, split_response


@pytest.fixture(scope="module")
def bundled_split():
    split = data.load_split("test")  # the bundled corpus
    assert len(split.utterances) >= 3
    return split


def hf_split(tmp_path):
    """The bundled test split as an HF datasets copy (save_to_disk): the worker gets its Dataset too."""
    from test_data import _hf_dataset

    pytest.importorskip("datasets")
    location = tmp_path / "hf"
    _hf_dataset(project_config().root, "test-clean", "test").save_to_disk(str(location))
    return data.load_split("test", make_config(data__source="huggingface", data__hf_dataset=str(location)))


@pytest.mark.parametrize("source", ["openslr", "huggingface"])
def test_worker_rows_equal_the_registered_functions_in_line(source, bundled_split, tmp_path, monkeypatch):
    split = bundled_split if source == "openslr" else hf_split(tmp_path)
    assert split.source == source
    monkeypatch.setattr(metadata_processes, "LOOKAHEAD", 2)
    sample_ids = sorted(split.utterances)[:3]
    workers = MetadataProcesses(split, sample_ids, workers=1)
    try:
        assert list(workers.futures) == sample_ids[:2]  # the third is handed over when the first is taken
        worker_pids = {process.pid for process in multiprocessing.active_children()}  # before the last row ends it
        rows = [workers.row(sample_id, None) for sample_id in sample_ids]  # None: nothing may be computed here
    finally:
        workers.close()
    assert worker_pids and os.getpid() not in worker_pids
    response = split_response(split)
    in_line = [metadata_row(sample_id, response) for sample_id in sample_ids]
    assert rows == in_line
    assert {"speech.rms_std", "text.word_count", "readability.dale_chall_readability_score", "records.sex",
            "pace.words_per_second", "noise.snr_db"} <= set(rows[0])
    assert [row["speech.rms_std"] for row in rows] != [rows[0]["speech.rms_std"]] * 3  # three different samples


def test_forgotten_samples_are_not_computed(bundled_split, monkeypatch):
    """Samples left out once the run has started (longer than a fixed-length model's input) are dropped from the
    worker's queue, queued or not yet handed over: the worker computes only the rows that will be asked for."""
    monkeypatch.setattr(metadata_processes, "LOOKAHEAD", 3)
    sample_ids = sorted(bundled_split.utterances)[:5]
    kept = [sample_ids[0], sample_ids[1], sample_ids[3]]
    workers = MetadataProcesses(bundled_split, sample_ids, workers=1)
    try:
        # the pool hands one worker two calls at a time; the third waits in the pool, cancellable
        queued = workers.futures[sample_ids[2]]
        workers.forget([sample_ids[2], sample_ids[4]])  # one queued, one not handed over yet
        assert list(workers.futures) == kept and queued.cancelled()
        rows = [workers.row(sample_id, None) for sample_id in kept]
        assert not workers.futures  # nothing left to compute
    finally:
        workers.close()
    response = split_response(bundled_split)
    assert rows == [metadata_row(sample_id, response) for sample_id in kept]


def test_a_stopped_worker_leaves_the_metadata_to_this_process(bundled_split, capsys):
    sample_ids = sorted(bundled_split.utterances)[:2]
    response = split_response(bundled_split)
    workers = MetadataProcesses(bundled_split, sample_ids, workers=1)
    try:
        children = multiprocessing.active_children()
        assert children
        for child in children:  # killed while it imports (seconds), before any row is done
            os.kill(child.pid, signal.SIGKILL)
        rows = [workers.row(sample_id, response) for sample_id in sample_ids]
    finally:
        workers.close()
    assert rows == [metadata_row(sample_id, response) for sample_id in sample_ids]
    warning = capsys.readouterr().err
    assert warning.count("metadata worker process stopped") == 1 and "computed in line" in warning


def test_a_run_that_stops_early_ends_its_worker_without_waiting_for_a_row(bundled_split):
    """A run that fails after starting the worker (an unusable LM, a damaged model) closes it at once: the worker's
    first sample takes seconds (its imports), which the error would otherwise wait for."""
    sample_ids = sorted(bundled_split.utterances)[:2]
    workers = MetadataProcesses(bundled_split, sample_ids, workers=1)
    futures = list(workers.futures.values())
    children = multiprocessing.active_children()
    assert children and futures
    workers.close()
    assert not any(child.is_alive() for child in children)
    assert all(future.cancelled() or future.exception() is not None for future in futures)  # no row was waited for


def test_a_worker_that_cannot_start_leaves_the_metadata_to_this_process(bundled_split, capsys, monkeypatch):
    import concurrent.futures

    def no_processes(*args, **kwargs):  # as where /dev/shm is missing: multiprocessing cannot make its locks
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", no_processes)
    sample_ids = sorted(bundled_split.utterances)[:2]
    response = split_response(bundled_split)
    workers = MetadataProcesses(bundled_split, sample_ids, workers=1)
    rows = [workers.row(sample_id, response) for sample_id in sample_ids]
    workers.close()
    assert rows == [metadata_row(sample_id, response) for sample_id in sample_ids]
    assert "metadata worker process could not start ([Errno 38] Function not implemented); the metadata is computed " \
           "in line" in capsys.readouterr().err


def test_a_worker_leaves_when_its_parent_is_killed(tmp_path):
    """SIGKILL of evaluate alone (no chance to shut the pool down) must not leave the worker waiting forever."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = tmp_path / "parent.py"
    script.write_text(
        "import multiprocessing, time\n"
        "import librispeech\n"
        "from librispeech import data\n"
        "from librispeech_tools.metadata_processes import MetadataProcesses\n"
        "if __name__ == '__main__':\n"
        "    split = data.load_split('test')\n"
        "    workers = MetadataProcesses(split, sorted(split.utterances)[:1], workers=1)\n"
        "    workers.futures[sorted(split.utterances)[0]].result()  # the worker is up and idle\n"
        "    print(*[child.pid for child in multiprocessing.active_children()], flush=True)\n"
        "    time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parent.parent,
                              env={**os.environ, "TL_DISABLE_ANALYTICS": "true"})
    try:
        worker_pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert worker_pids
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30
        alive = worker_pids
        while alive and time.monotonic() < deadline:
            time.sleep(0.5)
            alive = [pid for pid in worker_pids if Path(f"/proc/{pid}").exists() and
                     "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]]
        assert not alive, f"worker(s) {alive} still running after their parent was killed"
    finally:
        parent.kill()
