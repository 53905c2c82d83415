"""`evaluate` on real lengths: the same rows as the platform's fixed-length path, length buckets, shards and --merge."""
import dataclasses
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import librispeech  # noqa: F401  telemetry guard first
from librispeech import data
from librispeech.config import project_config
from librispeech_tools import (evaluate, model_pass, report_folder, run_info, sample_rows, shard_merge,
                               split_selection)
from librispeech_tools.evaluate_errors import EvaluationError

SPLIT, LIMIT = "test-clean", 8  # the bundled corpus: 8 utterances of 3.5 to 5.6 s


def run(out: Path, **options) -> pd.DataFrame:
    evaluate.run(SPLIT, LIMIT, project_config().model_path, out, options.pop("batch_size", 3), **options)
    return pd.read_csv(out / "samples.csv")


@pytest.fixture(scope="module")
def real_lengths(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """The demo model on real lengths: batches of 3 padded to length buckets, metadata in a worker thread, the
    default engine (ONNX Runtime on a machine where Keras has no GPU)."""
    out = tmp_path_factory.mktemp("real-lengths")
    return out, run(out, metadata_workers=1)


@pytest.fixture(scope="module")
def fixed_length(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """The platform's path: the .h5 in Keras, every input padded to 34.955 s."""
    out = tmp_path_factory.mktemp("fixed-length")
    return out, run(out, fixed_length=True, metadata_workers=0, batch_size=4)


@pytest.mark.parametrize("engine", ["default", "keras", "onnxruntime", "onnxruntime, 3 sessions"])
def test_rows_equal_the_fixed_length_path(engine, real_lengths, fixed_length, tmp_path):
    if engine == "default":
        out, dynamic = real_lengths
    else:
        out = tmp_path / "run"
        engine, _, sessions = engine.partition(", ")
        dynamic = run(out, engine=engine, sessions=int(sessions.split()[0]) if sessions else None)
        summary = (out / "summary.md").read_text()
        assert re.search(rf"{model_pass.ENGINE_NAMES[engine]}(, \d+ sessions at once)?\)", summary)
        assert not sessions or f", {sessions} at once)" in summary
    fixed_out, fixed = fixed_length
    assert "Keras)" in (fixed_out / "summary.md").read_text()
    assert list(dynamic.columns) == list(fixed.columns) and dynamic["id"].tolist() == fixed["id"].tolist()
    assert len(fixed) == LIMIT
    assert dynamic["hypothesis"].tolist() == fixed["hypothesis"].tolist()
    assert dynamic["hypothesis"].str.len().gt(0).all()  # a real model: non-trivial transcriptions to compare
    numeric = fixed.select_dtypes("number").columns
    assert {"loss", "wer", "cer", "wip", "char_insertions", "speech.rms_std"} <= set(numeric)
    difference = (dynamic[numeric] - fixed[numeric]).abs().max()
    assert difference.max() <= 1e-4, difference.sort_values().tail()
    others = [c for c in fixed.columns if c not in numeric]
    assert dynamic[others].fillna("").equals(fixed[others].fillna(""))
    rows = {row["id"]: row for row in sample_rows.read_rows(out / "samples.jsonl")}
    fixed_rows = {row["id"]: row for row in sample_rows.read_rows(fixed_out / "samples.jsonl")}
    for sample_id, row in rows.items():
        assert np.allclose(row["latent"], fixed_rows[sample_id]["latent"], atol=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (not a dependency)")
def test_jax_backend_rows_equal_the_fixed_length_path(fixed_length, tmp_path):
    """On the JAX backend the Keras model pass is one jax.jit of stateless_call over length buckets (JAX compiles each
    shape): its rows equal TensorFlow's fixed-length rows too. The compiled shapes go to JAX's persistent cache
    (under XDG_CACHE_HOME; every compile is kept here, however short)."""
    out = tmp_path / "jax"
    environment = {**os.environ, "TL_DISABLE_ANALYTICS": "true", "KERAS_BACKEND": "jax",
                   "XDG_CACHE_HOME": str(tmp_path / "cache"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    environment.pop("JAX_COMPILATION_CACHE_DIR", None)
    result = subprocess.run([sys.executable, "-m", "librispeech_tools.evaluate", "--split", SPLIT, "--limit",
                             str(LIMIT), "--engine", "keras", "--out", str(out)], capture_output=True, text=True,
                            timeout=900, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{LIMIT} batches, Keras)" in result.stdout
    assert any((tmp_path / "cache" / "librispeech-wav2vec2" / "jax").glob("jit__lambda-*"))  # the model's buckets
    dynamic, fixed = pd.read_csv(out / "samples.csv"), fixed_length[1]
    assert dynamic["hypothesis"].tolist() == fixed["hypothesis"].tolist()
    numeric = fixed.select_dtypes("number").columns
    difference = (dynamic[numeric] - fixed[numeric]).abs().max()
    assert difference.max() <= 1e-4, difference.sort_values().tail()


def test_engine_choice(monkeypatch, capsys):
    h5, onnx_file = Path("model.h5"), Path("model.onnx")
    monkeypatch.setattr(model_pass, "keras_sees_an_accelerator", lambda: False)
    assert model_pass.resolve_engine("auto", h5, False, False) == "onnxruntime"  # CPU: the faster float engine
    assert model_pass.resolve_engine("auto", h5, True, False) == "keras"  # --fixed-length: the platform's own path
    assert model_pass.resolve_engine("auto", h5, False, True) == "keras"  # --xla
    assert model_pass.resolve_engine("keras", h5, False, False) == "keras"
    assert model_pass.resolve_engine("auto", onnx_file, False, False) == "onnxruntime"
    monkeypatch.setattr(model_pass, "keras_sees_an_accelerator", lambda: True)
    assert model_pass.resolve_engine("auto", h5, False, False) == "keras"  # Keras runs it on the GPU
    assert model_pass.resolve_engine("onnxruntime", h5, False, False) == "onnxruntime"
    for engine, path, fixed, xla in (("keras", onnx_file, False, False), ("auto", onnx_file, False, True),
                                     ("onnxruntime", h5, True, False), ("onnxruntime", h5, False, True)):
        with pytest.raises(model_pass.ModelPassError):
            model_pass.resolve_engine(engine, path, fixed, xla)
    monkeypatch.setattr(model_pass, "keras_sees_an_accelerator", lambda: False)
    monkeypatch.setitem(sys.modules, "onnx", None)  # not installed: Keras, and it says so, once
    model_pass.onnx_converter_available.cache_clear()
    try:
        assert model_pass.resolve_engine("auto", h5, False, False) == "keras"
        assert model_pass.resolve_engine("auto", h5, False, False) == "keras"
        assert capsys.readouterr().err.count("onnx is not installed") == 1
    finally:
        model_pass.onnx_converter_available.cache_clear()
    # asked for anyway
    with pytest.raises(model_pass.ModelPassError, match="the ONNX Runtime engine: .*`onnx` package"):
        model_pass.load_model_pass(project_config().model_path, "onnxruntime")


def test_summary_reports_the_model_pass(real_lengths):
    out, table = real_lengths
    summary = (out / "summary.md").read_text()
    audio_seconds = sum(split_selection.load_selection(project_config(), "test", LIMIT).utterances[i].num_samples
                        for i in table["id"]) / project_config().sample_rate
    assert "model pass: " in summary and f"for {audio_seconds:.1f} s of audio (real-time factor " in summary
    # where the time went, stage by stage
    info = json.loads((out / "run.json").read_text())
    stages = info["stages"]["seconds"]
    assert info["stages"]["samples"] == LIMIT
    assert set(stages) == {"start-up", "audio and labels", "waiting for the model", "CTC loss", "error rates",
                           "metadata", "rows", "LM decoding", "words", "report"} and min(stages.values()) >= 0
    # the stage is the wait for the model's outputs; the model pass's seconds are those its calls ran, which with
    # several sessions overlap the rows' work (waited for less), else are the wait
    assert 0 < stages["waiting for the model"] <= info["model_pass"]["seconds"] * 1.05 + 0.05
    assert sum(stages.values()) - stages["start-up"] - stages["report"] <= info["seconds"]
    line = next(line for line in summary.splitlines() if line.startswith("- time by stage"))
    assert f"({LIMIT} samples; more in run.json): " in line and "LM decoding " in line and "report" not in line


def test_real_length_input_is_the_platform_input_without_its_padding():
    import leap_binder as binder
    from code_loader.contract.datasetclasses import PreprocessResponse
    from code_loader.contract.enums import DataStateType

    config = project_config()
    split = split_selection.load_selection(config, "test", 2)
    response = PreprocessResponse(sample_ids=list(split.utterances), data=split, state=DataStateType.test,
                                  sample_id_type=str)
    for sample_id in split.utterances:
        length = split.utterances[sample_id].num_samples
        platform = binder.input_audio(sample_id, response)
        np.testing.assert_array_equal(data.model_input(split.audio(sample_id), config.normalize_epsilon, length),
                                      platform[:length])
        assert not platform[length:].any() and platform[:length].std() == pytest.approx(1.0, abs=1e-3)


def test_bucket_lengths():
    buckets = model_pass.bucket_lengths(559280, 16000)
    assert buckets == sorted(set(buckets)) and buckets[-1] == 559280 and buckets[0] == 16000
    assert all(b % model_pass.FRAME_STRIDE_SAMPLES == 0 for b in buckets[:-1])
    steps = np.array(buckets[1:]) / np.array(buckets[:-1])
    assert steps.max() <= 1.1 + model_pass.FRAME_STRIDE_SAMPLES / buckets[0]


def test_plan_batches_covers_each_sample_once_in_its_bucket():
    rng = np.random.default_rng(0)
    lengths = {f"u{i}": int(n) for i, n in enumerate(rng.integers(1, 559280, 50))}
    buckets = model_pass.bucket_lengths(559280, 16000)
    batches = model_pass.plan_batches(lengths, 4, buckets)
    assert sorted(i for b in batches for i in b.ids) == sorted(lengths)
    for batch in batches:
        assert 1 <= len(batch.ids) <= 4 and batch.length in buckets
        smallest = next(b for b in buckets if b >= max(lengths[i] for i in batch.ids))
        assert batch.length == smallest and all(lengths[i] <= batch.length for i in batch.ids)
    exact = model_pass.plan_batches(lengths, 1, None)
    assert all(b.length == lengths[b.ids[0]] for b in exact)
    # longest first, so that calls run at once end together (the last ones started are the shortest)
    assert [b.length for b in exact] == sorted(lengths.values(), reverse=True)
    assert [b.length for b in batches] == sorted((b.length for b in batches), reverse=True)
    with pytest.raises(ValueError, match="longer than the longest bucket|more than the longest bucket"):
        model_pass.plan_batches({"long": 559281}, 1, buckets)


def engine_pass(compiles_each_shape: bool, on_accelerator: bool):
    from types import SimpleNamespace

    return SimpleNamespace(compiles_each_shape=compiles_each_shape, on_accelerator=on_accelerator)


def test_batches_by_where_the_model_runs():
    rng = np.random.default_rng(1)
    lengths = {f"u{i}": int(n) for i, n in enumerate(rng.integers(16000, 16000 * 15, 21))}
    ladder = model_pass.bucket_lengths(559280, 16000)
    # CPU, any length: one utterance per call, unpadded; batches of more get buckets
    exact = model_pass.plan_model_batches(lengths, 1, engine_pass(False, False), 559280, 16000)
    assert [(b.length, b.ids, b.rows) for b in exact] == [(lengths[b.ids[0]], b.ids, 0) for b in exact]
    assert model_pass.plan_model_batches(lengths, 4, engine_pass(False, False), 559280, 16000) == \
        model_pass.plan_batches(lengths, 4, ladder)
    # compiled per shape on CPU (JAX, XLA): buckets, each batch as long as it is
    assert model_pass.plan_model_batches(lengths, 1, engine_pass(True, False), 559280, 16000) == \
        model_pass.plan_batches(lengths, 1, ladder)
    # compiled per shape on an accelerator: one shape for every batch, the longest utterance's bucket
    batches = model_pass.plan_model_batches(lengths, 8, engine_pass(True, True), 559280, 16000)
    longest_bucket = next(b for b in ladder if b >= max(lengths.values()))
    assert {(b.length, b.rows) for b in batches} == {(longest_bucket, 8)}
    assert [len(b.ids) for b in batches] == [8, 8, 5]
    assert sorted(i for b in batches for i in b.ids) == sorted(lengths)
    assert model_pass.plan_model_batches({}, 8, engine_pass(True, True), 559280, 16000) == []
    # the default batch size: 1 on CPU; on an accelerator 8, fewer where 8 would pass 120 s of audio a call
    assert model_pass.default_batch_size(engine_pass(True, False), 16000 * 10, 16000) == 1
    assert model_pass.default_batch_size(engine_pass(False, True), 16000 * 10, 16000) == 1
    assert model_pass.default_batch_size(engine_pass(True, True), 16000 * 10, 16000) == 8
    assert model_pass.default_batch_size(engine_pass(True, True), 559280, 16000) == 3
    assert model_pass.default_batch_size(engine_pass(True, True), 16000 * 200, 16000) == 1


def test_call_batch_pads_rows_with_the_last_input_and_drops_their_outputs():
    calls = []

    def model(audio, lengths):
        calls.append((audio.copy(), lengths.copy()))
        return audio * 2, audio + lengths

    audio, lengths = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([[3.0], [2.0]], dtype=np.float32)
    logits, hidden = model_pass.call_batch(model, audio, lengths, rows=4)
    np.testing.assert_array_equal(calls[0][0], audio[[0, 1, 1, 1]])
    np.testing.assert_array_equal(calls[0][1], lengths[[0, 1, 1, 1]])
    np.testing.assert_array_equal(logits, audio * 2)
    np.testing.assert_array_equal(hidden, audio + lengths)
    model_pass.call_batch(model, audio, lengths)  # no rows asked: the batch as it is
    assert calls[1][0].shape == (2, 3)


class TimedModel:
    """A model pass whose calls sleep `unit` x their first input value (so later calls can finish first), fail where
    it is negative, and record how many run at once."""

    def __init__(self, parallel_calls: int, unit: float = 0.1):
        self.parallel_calls, self.unit = parallel_calls, unit
        self.lock, self.running, self.most, self.calls = threading.Lock(), 0, 0, []

    def __call__(self, audio, lengths):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.calls.append(float(audio[0, 0]))
        time.sleep(self.unit * abs(float(audio[0, 0])))
        with self.lock:
            self.running -= 1
        if audio[0, 0] < 0:
            raise RuntimeError("the model failed")
        return audio * 2, audio[:, :, None]


@pytest.mark.parametrize("parallel_calls", [1, 3])
def test_calls_run_up_to_the_parallel_calls_at_once_and_come_back_in_order(parallel_calls):
    durations = [3, 1, 2, 1, None, 3, 1]  # None: a batch whose samples were all left out, no call
    model, read = TimedModel(parallel_calls), []

    def inputs():
        for index, duration in enumerate(durations):
            read.append(index)
            yield index, None if duration is None else (np.full((1, 2), duration, np.float32),
                                                        np.ones((1, 1), np.float32), 0)

    busy, came_back = model_pass.BusyClock(), []
    for index, outputs in model_pass.calls_in_order(model, inputs(), busy):
        came_back.append(index)
        assert len(read) <= index + 1 + (parallel_calls if parallel_calls > 1 else 0)  # reads only as calls start
        if durations[index] is None:
            assert outputs is None
        else:
            np.testing.assert_array_equal(outputs[0], np.full((1, 2), 2 * durations[index]))
    assert came_back == list(range(len(durations))) and model.most == busy.most_at_once == parallel_calls
    called = sum(d for d in durations if d) * model.unit
    if parallel_calls == 1:  # one after the other: the model ran for the sum of the calls
        assert called <= busy.seconds() < called + 0.3
    else:  # the overlapping calls count once (~0.6 s of the 1.1 s called)
        assert busy.seconds() < 0.85 * called


def test_a_failed_call_reaches_the_caller_at_its_turn_and_no_call_starts_after_it():
    model = TimedModel(2, unit=0.02)
    batches = [1, 1, -1, 1, 1, 1, 1, 1]
    calls = model_pass.calls_in_order(model, ((i, (np.full((1, 1), d, np.float32), np.ones((1, 1), np.float32), 0))
                                              for i, d in enumerate(batches)), model_pass.BusyClock())
    assert [next(calls)[0], next(calls)[0]] == [0, 1]
    with pytest.raises(RuntimeError, match="the model failed"):
        next(calls)
    time.sleep(0.2)
    assert len(model.calls) <= 5 and model.running == 0  # those started before it failed ended; no other started
    assert next(calls, None) is None


def test_busy_clock_counts_overlapping_calls_once():
    busy = model_pass.BusyClock()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda seconds: busy.timed(time.sleep, seconds), [0.3, 0.3]))
    time.sleep(0.4)  # idle: not counted
    busy.timed(time.sleep, 0.2)
    assert 0.5 <= busy.seconds() < 0.75  # the overlap counted twice would be 0.8, the idle time 0.9
    assert busy.most_at_once == 2


def test_summary_names_the_sessions_that_ran_not_those_made(tmp_path):
    """More sessions than utterances: the summary says how many calls ran at once, at most one per utterance."""
    evaluate.run(SPLIT, 2, project_config().model_path, tmp_path, 1, metadata_workers=0, engine="onnxruntime",
                 sessions=3)
    timing = json.loads((tmp_path / "run.json").read_text())["model_pass"]
    assert timing["samples"] == 2 and 1 <= timing["sessions"] <= 2
    assert re.search(rf"Runtime(, {timing['sessions']} sessions at once)?\)", (tmp_path / "summary.md").read_text())


def test_stage_clock_counts_a_stage_within_another_in_its_own_only():
    clock = run_info.StageClock()
    with clock.stage("outer"):
        time.sleep(0.1)
        with clock.stage("inner"):
            time.sleep(0.3)
    assert clock.seconds["inner"] >= 0.3 and 0.1 <= clock.seconds["outer"] < 0.35  # 0.4 with the inner one
    assert set(dataclasses.asdict(clock)) == {"seconds", "samples"}  # what run.json keeps


def test_sessions_follow_the_cores_the_memory_and_the_work(tmp_path, capsys):
    default = model_pass.default_onnx_sessions
    assert [default(cores) for cores in (1, 2, 16)] == [1, 2, 16]  # one per core
    many = [14.6, 12.8, 12.2, 11.3, 10.7, 9.9, 9.8, 9.2, 8.9, 8.7, 8.2, 8.1, 7.9, 7.7, 7.5, 7.5, 6.7, 6.3, 6.1, 5.5,
            5.3, 5.0, 4.0, 3.6]  # the 24 utterances of the 16-core measurement (benchmarks/EVALUATE_RESULTS.md)
    span = model_pass.in_order_span
    # as calls_in_order runs them: the 10 s call, handed back first, holds up the start of the fourth call (the
    # window test_calls_run_up_to_the_parallel_calls_at_once_and_come_back_in_order checks), so the second session
    # idles from 2 s to 10 s
    assert span([10, 1, 1, 1, 1, 1, 1], 2, 1) == 12 and span([1] * 6, 2, 1) == 3
    assert span([4, 4], 1, 2) == pytest.approx(4 * 1.03)  # 3% more for the second thread
    # its times against the measured ones (seconds of audio x 0.23 s, one thread's speed there): 16 sessions of one
    # thread 4.8 s (4.3-5.1 measured), 8 of two 3.5 s (3.3-3.9), 1 of 16 4.1 s (3.9-4.4)
    assert [round(span(many, sessions, 16 // sessions) * 0.23, 1) for sessions in (16, 8, 1)] == [4.8, 3.5, 4.1]
    assert default(16, call_seconds=many) == 4 and default(16, call_seconds=sorted(many * 4, reverse=True)) == 8
    assert default(2, call_seconds=many) == 2 and default(2, call_seconds=many * 16) == 2
    assert default(16, call_seconds=[35, 35, 35]) == 3  # one call each, 5 threads
    assert default(16, call_seconds=[20.0] * 4) == 4  # no more than there are calls
    assert default(16, call_seconds=[7.0]) == 1 and default(16, call_seconds=[]) == 1
    # with batches, the calls are the buckets' (padding and rows included), not the utterances
    calls = model_pass.onnx_call_seconds([int(x * 16000) for x in many], 8, 559280, 16000)
    assert len(calls) < len(many) and sum(calls) >= sum(many) - 1e-6
    assert model_pass.onnx_call_seconds([16000, 8000], None, 559280, 16000) == [1.0, 0.5]
    mib = 2 ** 20  # a 400 MB model's session at 35 s: 1.25 x 400 + 20 x 35 = 1,200 MB; half the memory for them
    assert default(16, model_bytes=400 * mib, memory=9_600 * mib) == 4  # utterances not known: up to 35 s
    assert default(16, model_bytes=400 * mib, memory=9_600 * mib, call_seconds=[5.0] * 32) == 8  # 600 MB each
    assert default(16, model_bytes=400 * mib, memory=100 * mib) == 1
    assert model_pass.available_memory() is None or model_pass.available_memory() > 0
    assert 1 <= model_pass.usable_cores() <= (os.cpu_count() or 1)
    # a container's limits, as cgroup files give them
    (tmp_path / "quota").write_text("250000 100000\n")
    (tmp_path / "none").write_text("max\n")
    assert model_pass._cgroup_value(str(tmp_path / "missing"), str(tmp_path / "quota")) == 2.5
    assert model_pass._cgroup_value(str(tmp_path / "none"), str(tmp_path / "quota")) is None
    assert model_pass._cgroup_value(str(tmp_path / "missing")) is None


def test_default_sessions_of_a_fixed_length_onnx_count_its_padded_calls(tiny_model, tmp_path, monkeypatch):
    """An .onnx exported with --max-seconds pads every call to its length: its default count of sessions (and the
    memory they may take) is chosen for those calls, read from the file before the sessions are made; a dynamic
    .onnx and an .h5 run the real lengths."""
    from librispeech_tools.export import export

    fixed = export(tiny_model, tmp_path / "fixed.onnx", max_seconds=3.5, verify=False)[0]
    dynamic = export(tiny_model, tmp_path / "dynamic.onnx", verify=False)[0]
    asked, chosen, choose = [], [], model_pass.default_onnx_sessions

    def call_seconds(fixed_samples):
        asked.append(fixed_samples)
        return model_pass.onnx_call_seconds([16000, 8000, 4000], None, 559280, 16000, fixed_samples)

    monkeypatch.setattr(model_pass, "default_onnx_sessions", lambda *args: chosen.append(args[3]) or choose(*args))
    for path, engine in ((fixed, "auto"), (dynamic, "auto"), (tiny_model, "onnxruntime")):
        model_pass.load_model_pass(path, engine, call_seconds=call_seconds)
    assert asked == [56000, None, None]
    assert chosen == [[3.5, 3.5, 3.5], [1.0, 0.5, 0.25], [1.0, 0.5, 0.25]]
    assert model_pass.onnx_call_seconds([16000, 8000, 4000], 2, 559280, 16000, 56000) == [7.0, 3.5]  # rows of 2


def test_sessions_are_refused_where_they_do_not_apply_and_said_where_they_fail(monkeypatch, capsys):
    with pytest.raises(model_pass.ModelPassError, match="--sessions is for the ONNX Runtime engine"):
        model_pass.load_model_pass(project_config().model_path, "keras", sessions=2)
    with pytest.raises(model_pass.ModelPassError, match="--sessions must be at least 1"):
        model_pass.load_model_pass(project_config().model_path, "onnxruntime", sessions=0)
    with pytest.raises(SystemExit):
        evaluate.main(["--sessions", "0"])
    assert "--sessions must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="evaluate: --sessions is for the ONNX Runtime engine"):
        evaluate.main(["--engine", "keras", "--sessions", "2"])  # before the data is listed or the model loads
    # a later session that cannot be made (memory): said as such, not as a fault of the model. The sessions are made
    # in as many threads as there are cores: four here, so that they are made at once on a one-core runner too.
    import onnxruntime

    monkeypatch.setattr(model_pass, "usable_cores", lambda: 4)

    asked, lock, open_session = [], threading.Lock(), onnxruntime.InferenceSession

    def only_first_is_made(*args, **kwargs):  # the sessions are made at once, each in a thread
        with lock:
            asked.append(len(asked))
            first = len(asked) == 1
        if not first:
            raise RuntimeError("Failed to allocate memory for requested buffer of size 9437184")
        return open_session(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", only_first_is_made)
    with pytest.raises(model_pass.ModelPassError, match=r"^ONNX Runtime made 1 of the 3 sessions asked for, then "
                                                        r"failed \(Failed to allocate memory .*\); run fewer with "
                                                        r"--sessions$"):
        model_pass.load_model_pass(project_config().model_path, "onnxruntime", sessions=3)
    assert len(asked) == 4  # three at once, then one alone (as the memory of three at once may have been the cause)

    # sessions that fail only while another is being made (the memory of several at once) are made one by one
    being_made, failed = [], []

    def fails_beside_another(*args, **kwargs):
        with lock:
            being_made.append(1)
            crowded = len(being_made) > 1
        try:
            time.sleep(0.2)
            if crowded:
                failed.append(1)
                raise RuntimeError("Failed to allocate memory for requested buffer of size 9437184")
            return open_session(*args, **kwargs)
        finally:
            with lock:
                being_made.pop()

    monkeypatch.setattr(onnxruntime, "InferenceSession", fails_beside_another)
    made = model_pass.load_model_pass(project_config().model_path, "onnxruntime", sessions=3)
    assert failed and made.parallel_calls == 3


def test_keras_model_pass_runs_in_full_float32(monkeypatch):
    """A GPU's default TF32 moves the logits by ~3e-3 (benchmarks/GPU_RESULTS.md): the Keras model pass switches it
    off for its calls and restores it after, so the rows do not depend on the card."""
    import tensorflow as tf

    tf32_enabled = tf.config.experimental.tensor_float_32_execution_enabled
    keras_pass = model_pass.load_model_pass(project_config().model_path, "keras")
    seen, predict = [], keras_pass.model.predict_on_batch
    monkeypatch.setattr(keras_pass.model, "predict_on_batch", lambda inputs: seen.append(tf32_enabled())
                        or predict(inputs))
    before = tf32_enabled()
    logits, _ = keras_pass(np.zeros((1, 16000), np.float32), np.array([[16000.0]], np.float32))
    assert seen == [False] and before and tf32_enabled()
    assert logits.shape == (1, keras_pass.num_frames(16000), 32)


def test_one_shape_plan_rows_equal_the_fixed_length_path(fixed_length, tmp_path, monkeypatch):
    """The accelerator's plan (every batch the longest utterance's bucket, rows padded to the batch size), run here by
    Keras with XLA on the CPU: the same rows as the platform's fixed-length path."""
    monkeypatch.setattr(model_pass, "keras_sees_an_accelerator", lambda: True)
    out = tmp_path / "one-shape"
    dynamic = run(out, engine="keras", jit_compile=True, metadata_workers=0)
    # 8 samples in batches of 3 of one shape: 3 + 3 + 2 (+ 1 copy); length buckets would make 5 batches
    assert f"{-(-LIMIT // 3)} batches, Keras)" in (out / "summary.md").read_text()
    fixed = fixed_length[1]
    assert dynamic["hypothesis"].tolist() == fixed["hypothesis"].tolist()
    numeric = fixed.select_dtypes("number").columns
    difference = (dynamic[numeric] - fixed[numeric]).abs().max()
    assert difference.max() <= 1e-4, difference.sort_values().tail()


def test_shards_merge_into_the_unsharded_report(real_lengths, tmp_path):
    out, whole = real_lengths
    shards = [tmp_path / f"shard-{i}" for i in (1, 2)]
    for index, folder in enumerate(shards, 1):
        run(folder, shard=split_selection.Shard(index, 2), batch_size=1)  # one per call: exact lengths, no bucket
    first, second = (set(pd.read_csv(folder / "samples.csv")["id"]) for folder in shards)
    assert first and second and not first & second and first | second == set(whole["id"])
    shard_merge.merge(shards[::-1], tmp_path / "merged")
    merged = pd.read_csv(tmp_path / "merged" / "samples.csv")
    pd.testing.assert_frame_equal(merged, whole, check_exact=False, atol=1e-4, rtol=0)
    merged_summary = (tmp_path / "merged" / "summary.md").read_text()
    assert "model pass: " in merged_summary and "(summed over the 2 shards' runs)" in merged_summary
    assert "- data: bundled synthetic corpus (openslr)" in merged_summary  # as the shards' summaries name it
    merged_info = json.loads((tmp_path / "merged" / "run.json").read_text())
    shard_info = json.loads((shards[0] / "run.json").read_text())
    assert merged_info["selection"] == shard_info["selection"] and merged_info["selection"]["samples"] == len(whole)
    assert merged_info["merged_shards"] == 2
    shard_stages = [json.loads((folder / "run.json").read_text())["stages"] for folder in shards]
    merged_stages = json.loads((tmp_path / "merged" / "run.json").read_text())["stages"]
    assert merged_stages["samples"] == len(whole) == sum(stage["samples"] for stage in shard_stages)
    assert merged_stages["seconds"]["waiting for the model"] == pytest.approx(
        sum(s["seconds"]["waiting for the model"] for s in shard_stages))
    # every stage is the shards' sum but the report: the merge's own (the shards' reports are not part of it); the
    # summary leaves the report out, as a run's does
    for name, seconds in merged_stages["seconds"].items():
        if name != "report":
            assert seconds == pytest.approx(sum(s["seconds"].get(name, 0.0) for s in shard_stages)), name
    assert 0 < merged_stages["seconds"]["report"] != pytest.approx(sum(s["seconds"]["report"] for s in shard_stages))
    assert "report" not in next(line for line in (tmp_path / "merged" / "summary.md").read_text().splitlines()
                                if line.startswith("- time by stage"))

    with pytest.raises(EvaluationError, match=r"missing \[2\]"):
        shard_merge.merge(shards[:1], tmp_path / "bad")
    with pytest.raises(EvaluationError, match="is a shard's or another run's folder"):
        shard_merge.merge(shards, shards[0])  # would overwrite that shard
    # a rerun of the merge replaces its own report; an unsharded run's report, or one made from other shards, stays
    shard_merge.merge(shards, tmp_path / "merged")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "merged" / "samples.csv"), merged)
    for other, says in ((out, "another run's folder"), (tmp_path / "two-places", "holds the report of")):
        if other == tmp_path / "two-places":  # a merge of shards of another --limit
            shard_merge.merge(shards, other)
            info = json.loads((other / "run.json").read_text())
            (other / "run.json").write_text(json.dumps({**info, "made_by": {**info["made_by"], "limit": 6}}))
        before = (other / "samples.csv").read_bytes()
        with pytest.raises(EvaluationError, match=says):
            shard_merge.merge(shards, other)
        assert (other / "samples.csv").read_bytes() == before
        if other == tmp_path / "two-places":
            shutil.rmtree(other)
    # the same corpus in another folder on each shard's machine: both named, in the same order whatever the order given
    for folder, place in zip(shards, ("/machine-b/LibriSpeech", "/machine-a/LibriSpeech")):
        info = json.loads((folder / "run.json").read_text())
        (folder / "run.json").write_text(json.dumps({**info, "data": place}))
    for order, name in ((shards, "two-places"), (shards[::-1], "two-places-reversed")):
        shard_merge.merge(order, tmp_path / name)
        assert "- data: /machine-a/LibriSpeech or /machine-b/LibriSpeech (openslr)" in (
            tmp_path / name / "summary.md").read_text()
    # run.json files from before made_by and the timing's sample count: merged, their timing taken as complete
    originals = {folder: (folder / "run.json").read_text() for folder in shards}
    infos = {folder: json.loads(text) for folder, text in originals.items()}
    for folder, info in infos.items():
        del info["made_by"], info["model_pass"]["samples"]
        (folder / "run.json").write_text(json.dumps(info))
    shard_merge.merge(shards, tmp_path / "merged-old")
    assert "timing covers" not in (tmp_path / "merged-old" / "summary.md").read_text()
    # shards of one run on two machines (model and data in other folders, copied files) merge; of different runs
    # (here another --limit) they are not one report
    for folder, info in infos.items():
        elsewhere = folder == shards[0]
        info["made_by"] = {"limit": 8, "shard": [1 + elsewhere, 2], "data": f"/machine-{elsewhere}/LibriSpeech",
                           "model": [f"/machine-{elsewhere}/model/m.h5", 100, 1234 + elsewhere]}
        (folder / "run.json").write_text(json.dumps(info))
    shard_merge.merge(shards, tmp_path / "merged-machines")
    info = {**infos[shards[0]], "made_by": {**infos[shards[0]]["made_by"], "limit": 6}}
    (shards[0] / "run.json").write_text(json.dumps(info))
    with pytest.raises(EvaluationError, match="the shards were made by different runs"):
        shard_merge.merge(shards, tmp_path / "bad")
    for folder, text in originals.items():
        (folder / "run.json").write_text(text)
    # one utterance left out on both machines, its detail naming each machine's path: listed once
    for folder, text in originals.items():
        info = {**json.loads(text), "excluded": [["x-1", "unreadable audio", f"/{folder.name}/x-1.flac"]]}
        (folder / "run.json").write_text(json.dumps(info))
    shard_merge.merge(shards, tmp_path / "merged-excluded")
    assert json.loads((tmp_path / "merged-excluded" / "run.json").read_text())["excluded"] == [
        ["x-1", "unreadable audio", "/shard-1/x-1.flac"]]
    # shards record the model's and the LM's contents and the whole selection's: another model under the same name
    # and size, or a corpus changed between the shards' runs (a sample added, a transcript edited), is refused
    first_info = json.loads(originals[shards[0]])
    assert len(first_info["made_by"]["model"]) == 4 and len(first_info["made_by"]["lm"]) == 4
    assert first_info["selection"] == json.loads(originals[shards[1]])["selection"]
    assert first_info["selection"]["samples"] == len(whole)
    for change, says in ((("made_by", "model"), "the shards were made by different runs"),
                         (("selection", "digest"), "the shards were made from different data")):
        info = json.loads(originals[shards[0]])
        info[change[0]][change[1]] = (info[change[0]][change[1]][:3] + ["0" * 64] if change[1] == "model"
                                      else "0" * 32)
        (shards[0] / "run.json").write_text(json.dumps(info))
        with pytest.raises(EvaluationError, match=says):
            shard_merge.merge(shards, tmp_path / "bad")
    for folder, text in originals.items():
        (folder / "run.json").write_text(text)
    lines = (shards[1] / "samples.jsonl").read_text().splitlines()
    (shards[1] / "samples.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(EvaluationError, match="rerun that shard"):
        shard_merge.merge(shards, tmp_path / "bad")


def test_an_hf_row_whose_audio_changed_at_the_same_length_has_another_digest(tmp_path):
    """An HF row has no file whose size the digest could take: the listing records its audio cell's size (or, for a
    path-only cell, the size of the file it names), so a resume or --merge does not keep rows made from other audio.
    The size is what is compared, not the content: other audio of the same size and length counts as the same."""
    import io

    import datasets
    import soundfile

    from conftest import make_config
    from librispeech import data
    from librispeech_tools.split_selection import sample_digests

    tone = np.sin(np.arange(16000) / 5).astype(np.float32) * 0.5
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32)

    def wav(samples: np.ndarray, subtype: str) -> bytes:
        buffer = io.BytesIO()
        soundfile.write(buffer, samples, 16000, format="WAV", subtype=subtype)
        return buffer.getvalue()

    def digest(audio: dict) -> dict:
        folder = tmp_path / f"copy-{len(list(tmp_path.glob('copy-*')))}"
        features = datasets.Features({"file": datasets.Value("string"),
                                      "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                                      "text": datasets.Value("string"), "speaker_id": datasets.Value("int64"),
                                      "chapter_id": datasets.Value("int64"), "id": datasets.Value("string")})
        row = {"file": "1-2-0000.wav", "audio": audio, "text": "HELLO", "speaker_id": 1, "chapter_id": 2,
               "id": "1-2-0000"}
        datasets.DatasetDict({"test": datasets.Dataset.from_list([row], features=features)}).save_to_disk(str(folder))
        config = make_config(None, data__source="huggingface", data__hf_dataset=str(folder))
        return sample_digests(data.load_split("test", config))

    assert digest({"bytes": wav(tone, "PCM_16"), "path": "x.wav"}) == digest({"bytes": wav(noise, "PCM_16"),
                                                                           "path": "x.wav"})
    assert digest({"bytes": wav(tone, "PCM_16"), "path": "x.wav"}) != digest({"bytes": wav(tone, "PCM_24"),
                                                                           "path": "x.wav"})
    audio_file = tmp_path / "1-2-0000.wav"
    audio_file.write_bytes(wav(tone, "PCM_16"))
    before = digest({"bytes": None, "path": str(audio_file)})
    audio_file.write_bytes(wav(tone, "PCM_24"))
    assert digest({"bytes": None, "path": str(audio_file)}) != before


def test_a_resume_refuses_rows_of_changed_samples_and_a_second_writer(tmp_path, monkeypatch):
    """A rerun into a report folder keeps finished rows only while their transcript, audio and records are what
    made them; a second run into a folder being written is refused; rows written twice are named."""
    import shutil

    corpus = tmp_path / "LibriSpeech"
    shutil.copytree(project_config().root, corpus)
    out = tmp_path / "report"
    config = project_config()
    monkeypatch.setenv("LIBRISPEECH_ROOT", str(corpus))
    project_config.cache_clear()
    try:
        evaluate.run(SPLIT, 3, config.model_path, out, 3, metadata_workers=0)
        first = sample_rows.read_rows(out / "samples.jsonl")[0]["id"]
        with report_folder.writing_lock(out):  # as a run in another process holds it
            with pytest.raises(EvaluationError, match="another evaluate is writing into"):
                with report_folder.writing_lock(out):
                    pass
        transcript = next(corpus.glob(f"{SPLIT}/*/*/{first.rsplit('-', 1)[0]}.trans.txt"))
        lines = transcript.read_text().splitlines()
        transcript.write_text("\n".join(f"{first} A CHANGED TRANSCRIPT" if line.startswith(first + " ") else line
                                        for line in lines) + "\n")
        with pytest.raises(EvaluationError, match=rf"whose transcript, audio or records changed since "
                                                            rf"\(first: {first}\)"):
            evaluate.run(SPLIT, 3, config.model_path, out, 3, metadata_workers=0)
        transcript.write_text("\n".join(lines) + "\n")
        rows = (out / "samples.jsonl").read_text()
        (out / "samples.jsonl").write_text(rows + rows.splitlines()[0] + "\n")
        with pytest.raises(EvaluationError, match="holds some samples twice"):
            evaluate.run(SPLIT, 3, config.model_path, out, 3, metadata_workers=0)
        (out / "samples.jsonl").write_text(rows)
        evaluate.run(SPLIT, 3, config.model_path, out, 3, metadata_workers=0)  # unchanged again: resumed
    finally:
        monkeypatch.delenv("LIBRISPEECH_ROOT")
        project_config.cache_clear()


def test_shard_argument():
    assert split_selection.Shard.parse("2/4") == split_selection.Shard(2, 4)
    assert split_selection.Shard(2, 3).select([f"u{i}" for i in range(7)]) == ["u1", "u4"]
    for text in ("0/4", "5/4", "a/b", "3"):
        with pytest.raises(Exception, match="--shard"):
            split_selection.Shard.parse(text)


def test_int8_export_rows_stay_near_its_fixed_length_rows(tmp_path):
    """The int8 .onnx quantizes each utterance from its own real frames, so its rows on real lengths (batches of 3 in
    length buckets) differ from the platform's fixed length only by int8 rounding noise: float sums over other
    lengths round differently and flip single quantization steps. Not within 1e-4 as the float model is."""
    from librispeech.model_file import load_keras_h5
    from librispeech_tools.onnx_wav2vec2 import save_onnx

    config = project_config()
    model = load_keras_h5(config.model_path)
    dynamic_path = save_onnx(model, tmp_path / "int8.onnx", None, int8=True)
    fixed_path = save_onnx(model, tmp_path / "int8-fixed.onnx", config.max_samples, int8=True)
    evaluate.run(SPLIT, LIMIT, dynamic_path, tmp_path / "dynamic", 3)
    evaluate.run(SPLIT, LIMIT, fixed_path, tmp_path / "fixed", 4)
    dynamic, fixed = (pd.read_csv(tmp_path / name / "samples.csv") for name in ("dynamic", "fixed"))
    assert dynamic["hypothesis"].str.len().gt(0).all()
    assert (dynamic["hypothesis"] == fixed["hypothesis"]).mean() >= 0.75
    assert ((dynamic["loss"] - fixed["loss"]).abs() <= 0.05 * fixed["loss"]).all()
    assert (dynamic["mean_word_confidence"] - fixed["mean_word_confidence"]).abs().max() <= 0.02
    assert "model pass (int8 export: not float-exact): " in (tmp_path / "dynamic" / "summary.md").read_text()


def test_split_as_a_folder_path_or_an_hf_config_and_split(tmp_path, monkeypatch):
    """--split dev-clean/ (tab completion) or the folder's path, absolute or from the current folder: the same split
    of the same corpus, so the same report folder and rows; CONFIG/SPLIT picks the hub's config too."""
    from dataclasses import replace

    config = project_config()
    for text in ("dev-clean/", str(config.root / "dev-clean"), str(config.root / "dev-clean") + "/"):
        assert split_selection.resolve_split(config, text) == ("validation", config), text
    assert split_selection.resolve_split(config, "test-clean/") == ("test", config)  # its own subset, as test-clean
    elsewhere = tmp_path / "LibriSpeech" / "my-split"
    elsewhere.mkdir(parents=True)
    subset, resolved = split_selection.resolve_split(config, str(elsewhere) + "/")
    assert (subset, resolved.root, resolved.splits[subset]) == ("validation", elsewhere.parent, "my-split")
    monkeypatch.chdir(tmp_path)  # a relative path that is not under the corpus root: from the current folder
    for text in ("LibriSpeech/my-split", "./LibriSpeech/my-split/"):
        subset, resolved = split_selection.resolve_split(config, text)
        assert (subset, resolved.root, resolved.splits[subset]) == ("validation", elsewhere.parent, "my-split")
    (tmp_path / "dev-clean").mkdir()  # a path (not the configured name) found both ways: the corpus's comes first
    assert split_selection.resolve_split(config, "dev-clean/") == ("validation", config)
    with pytest.raises(EvaluationError, match=f"unknown split 'nope': no folder {config.root / 'nope'} or "
                                              f"{tmp_path / 'nope'} \\(splits of the corpus at"):
        split_selection.resolve_split(config, "nope")
    hf = replace(config, source="huggingface")
    subset, resolved = split_selection.resolve_split(hf, "all/test.clean")
    assert (resolved.hf_config, resolved.hf_splits[subset]) == ("all", "test.clean")
    assert split_selection.split_label(resolved, "test.clean") == "all-test.clean"
    saved = tmp_path / "librispeech-other"
    saved.mkdir()
    (saved / "dataset_dict.json").write_text("{}")
    saved_copy = replace(hf, hf_dataset=str(saved))
    assert split_selection.split_label(saved_copy, "validation") == "librispeech-other-validation"
    assert split_selection.hf_source(saved_copy) == f"{saved} (a save_to_disk copy)"  # no config
    assert split_selection.hf_source(hf) == f"{hf.hf_dataset}, config {hf.hf_config}"
    subset, resolved = split_selection.resolve_split(hf, "train.360/")  # no config named: the configured one
    assert (subset, resolved.hf_config, resolved.hf_splits[subset]) == ("validation", hf.hf_config, "train.360")


def test_resume_compares_what_an_older_run_did_not_record(tmp_path):
    """A key recorded only since a run passes where it does not apply (None) and is refused where it does."""
    (tmp_path / "samples.jsonl").write_text(json.dumps({"id": "a"}) + "\n")
    old = {"model": ["m.h5", 1, 2], "split": "test"}
    (tmp_path / "progress.json").write_text(json.dumps({"made_by": old, "seconds": 3.0, "model_pass": {
        "seconds": 1.0, "audio_seconds": 2.0, "batches": 1, "samples": 1}}))
    rows, seconds, _, stages = report_folder.resume(tmp_path, {**old, "hf_config": None}, tmp_path / "samples.jsonl")
    assert [row["id"] for row in rows] == ["a"] and seconds == 3.0 and stages is None  # no stages recorded then
    with pytest.raises(EvaluationError, match="hf_config was not recorded, now 'clean'"):
        report_folder.resume(tmp_path, {**old, "hf_config": "clean"}, tmp_path / "samples.jsonl")


def test_no_accelerator_driver_means_no_keras_import_to_ask(monkeypatch):
    """On Linux, Keras reaches an accelerator only through a driver (NVIDIA's, ROCm's, WSL's, a TPU's): with none of
    their device or /proc entries, `auto` does not import Keras (and TensorFlow, ~3 s) to ask; elsewhere it asks."""
    from librispeech_tools import model_pass

    present: set[str] = set()
    monkeypatch.setattr(model_pass.sys, "platform", "linux")
    monkeypatch.setattr(model_pass.os.path, "exists", lambda path: path in present)
    monkeypatch.setattr(model_pass.glob, "glob",
                        lambda pattern: sorted(path for path in present if path.startswith("/dev/accel")))
    monkeypatch.setitem(sys.modules, "keras", None)  # importing it would raise
    assert not model_pass.accelerator_driver_present() and model_pass.keras_sees_an_accelerator() is False
    for path in ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/kfd", "/dev/accel0"):
        present.clear()
        present.add(path)
        assert model_pass.accelerator_driver_present(), path
    present.clear()
    monkeypatch.setattr(model_pass.sys, "platform", "darwin")  # Metal: Keras is asked
    assert model_pass.accelerator_driver_present()
