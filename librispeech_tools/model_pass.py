"""The model pass of `evaluate`: the export run on each utterance's real length, by Keras or ONNX Runtime.

The platform needs the fixed 34.955 s input; locally the model runs on each utterance's own length (it is
padding-invariant): on CPU one unpadded utterance a call, or batches of similar lengths padded to one of a fixed set
of bucket lengths, so that compiled functions (XLA, JAX) see few distinct shapes; on an accelerator that compiles
each shape, where compiling costs far more than padding, every batch in one shape (plan_model_batches).
"""
from __future__ import annotations

import functools
import glob
import heapq
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from librispeech.data import FRAME_CONFIG
from librispeech_tools.precision import full_float32


class ModelPassError(Exception):
    """A model file or engine choice that cannot run: reported by evaluate as one line, exit status 1."""


def load_keras_model(model_path: Path):
    """The Keras export at `model_path`; a missing, damaged or unsupported file is the runtime's one-line error."""
    from librispeech.model_file import ModelFileError, load_wav2vec2

    try:
        return load_wav2vec2(model_path)
    except ModelFileError as error:
        raise ModelPassError(str(error)) from None


def load_onnx_with_latent(model_path: Path, sessions: int | Callable[[int | None], int] = 1):
    """An ONNX export run by ONNX Runtime with its inner last_hidden_state as a second output (the export's one
    output is the logits, which is what code-loader expects; the hidden state is kept inside under a fixed name),
    after the runtime's file checks on that same session (a second session for them took ~1 s of the base model's
    start-up). A file it cannot open gets the runtime's one-line error (load_wav2vec2)."""
    from librispeech.model_file import (ModelFileError, check_onnx_export, check_onnx_io, first_line, load_wav2vec2,
                                        require_model_file)
    from librispeech_tools.onnx_wav2vec2 import HIDDEN_STATE, OnnxExportError, OnnxWithHiddenState, SessionsError

    try:
        require_model_file(model_path)
        try:
            converted = OnnxWithHiddenState(model_path, sessions, usable_cores())
        except SessionsError as error:
            raise ModelPassError(str(error)) from None
        except Exception as error:  # noqa: BLE001  unreadable, foreign, or refused by ONNX Runtime
            load_wav2vec2(model_path)  # what the runtime says of the file, where it refuses it
            said = str(error) if isinstance(error, OnnxExportError) else (
                f"cannot run {model_path} with its hidden state ({first_line(error)})")
            raise ModelPassError(f"{said}; re-export it with export-model for the latent-space plots") from None
        session = converted.session
        check_onnx_io(model_path, [node.name for node in session.get_inputs()],
                      [node.name for node in session.get_outputs() if node.name != HIDDEN_STATE])
        check_onnx_export(model_path, session)
    except ModelFileError as error:
        raise ModelPassError(str(error)) from None
    return converted


BUCKET_GROWTH = 1.1  # each bucket length is 10% above the previous one: at most 10% padding, ~5% on average
SMALLEST_BUCKET_SECONDS = 1.0
# bucket lengths are whole frames of the base conv stack (320 samples, 20 ms), which preprocessing counts with
FRAME_STRIDE_SAMPLES = math.prod(FRAME_CONFIG.conv_stride)


@dataclass(frozen=True)
class Batch:
    length: int                # samples every input of the batch is zero-padded to
    ids: tuple[str, ...]
    rows: int = 0              # rows the model gets: the ids' inputs, then copies of the last one up to `rows`, so
                               # that a short last batch reuses the compiled shape (0: just the ids)


@dataclass
class ModelPassTiming:
    """Seconds during which the model ran (calls_in_order's BusyClock), the seconds of (real, unpadded) audio and
    the samples they covered."""
    seconds: float = 0.0
    audio_seconds: float = 0.0
    batches: int = 0
    precision: str = "float32"  # "int8" for an export-model --int8 .onnx: not float-exact
    engine: str = "keras"       # what ran the model: "keras" or "onnxruntime" (see ENGINES)
    samples: int = 0
    sessions: int = 1           # the most calls that ran at once (BusyClock.most_at_once)

    def add(self, seconds: float, audio_seconds: float, samples: int) -> None:
        self.seconds += seconds
        self.audio_seconds += audio_seconds
        self.batches += 1
        self.samples += samples

    def continue_with(self, engine: str, precision: str) -> None:
        """What runs the calls from now on; a resumed run that changed engine names both ("keras+onnxruntime")."""
        engines = set(self.engine.split("+")) if self.samples else set()
        self.engine, self.precision = "+".join(sorted(engines | {engine})), precision
        if not self.samples:
            self.sessions = 1

    def line(self) -> str:
        factor = f"{self.seconds / self.audio_seconds:.3f}" if self.audio_seconds else "n/a"
        precision = "" if self.precision == "float32" else f" ({self.precision} export: not float-exact)"
        engines = " + ".join(ENGINE_NAMES.get(engine, engine) for engine in self.engine.split("+"))
        sessions = f", {self.sessions} sessions at once" if self.sessions > 1 else ""
        return (f"model pass{precision}: {self.seconds:.1f} s for {self.audio_seconds:.1f} s of audio (real-time "
                f"factor {factor}, {self.batches} batch{'' if self.batches == 1 else 'es'}, {engines}{sessions})")


def bucket_lengths(max_samples: int, sample_rate: int, growth: float = BUCKET_GROWTH) -> list[int]:
    """The fixed set of input lengths: from SMALLEST_BUCKET_SECONDS up by `growth`, ending at max_samples."""
    lengths, length = [], SMALLEST_BUCKET_SECONDS * sample_rate
    while length < max_samples:
        lengths.append(int(np.ceil(length / FRAME_STRIDE_SAMPLES)) * FRAME_STRIDE_SAMPLES)
        length *= growth
    return sorted({min(length, max_samples) for length in lengths} | {max_samples})  # rounding up stays inside


def length_order(num_samples: dict[str, int]) -> list[str]:
    """The order in which a real-length model pass takes the utterances: longest first, then by id. With several
    calls at once (calls_in_order), the longest calls start first and the short ones fill the sessions that end
    first, so that no session still runs a long call when the others have none left (longest-processing-time
    order); one session at a time takes as long in any order."""
    return sorted(num_samples, key=lambda sample_id: (-num_samples[sample_id], sample_id))


def plan_batches(num_samples: dict[str, int], batch_size: int, buckets: list[int] | None,
                 pad_rows: bool = False) -> list[Batch]:
    """Batches of utterances of similar length, each padded to its bucket (None: to the batch's longest), and with
    `pad_rows` to batch_size rows."""
    order = length_order(num_samples)
    groups: dict[int, list[str]] = {}
    for sample_id in order:
        length = num_samples[sample_id]
        if buckets is None:
            groups.setdefault(0, []).append(sample_id)
            continue
        bucket = next((b for b in buckets if b >= length), None)
        if bucket is None:
            raise ValueError(f"{sample_id} has {length} samples, more than the longest bucket ({buckets[-1]})")
        groups.setdefault(bucket, []).append(sample_id)
    batches = []
    for bucket, ids in groups.items():
        for start in range(0, len(ids), batch_size):
            chunk = tuple(ids[start:start + batch_size])
            batches.append(Batch(bucket or max(num_samples[i] for i in chunk), chunk, batch_size if pad_rows else 0))
    return batches


# On an accelerator the model pass is bound by compiling, not by computing: on an H200 each bucket shape took
# 2.5-3.4 s to compile and a call 8 ms (benchmarks/GPU_RESULTS.md), so 12 buckets cost 34 s for 0.2 s of model
# time. There every batch gets one shape: the bucket of the longest utterance, ACCELERATOR_BATCH_SIZE rows (8 x 15 s
# per call ran at 1.6x PyTorch there), fewer where the bucket is long, so that a call holds at most
# ACCELERATOR_AUDIO_PER_CALL seconds of padded audio (the memory of the measured 8 x 15 s).
ACCELERATOR_BATCH_SIZE = 8
ACCELERATOR_AUDIO_PER_CALL = 120.0
CPU_BATCH_SIZE = 1  # chosen by measurement on CPU: see benchmarks/EVALUATE_RESULTS.md


# ONNX Runtime runs one session per core, each on one thread, several utterances at once (calls_in_order): on the
# 2-core machine two sessions of one thread made `evaluate` 3.7 s (11%) faster than one session of two threads, in
# each of three interleaved rounds, as the rows' analysis fills the gaps of the calls it overlaps; one thread per
# call also spends nothing on splitting ops across threads (benchmarks/EVALUATE_RESULTS.md). Each session holds a copy
# of the weights and keeps the activations of its longest call: by RSS, a base-model session (360 MB .h5) took 441 MB
# after an 8 s utterance and 941 MB after a 34.9 s one. So a session is counted as SESSION_BYTES_PER_MODEL_BYTE x the
# model file plus ACTIVATION_BYTES_PER_SECOND x the longest utterance, and the sessions take at most MEMORY_SHARE of
# the memory available.
SESSION_BYTES_PER_MODEL_BYTE = 1.25
ACTIVATION_BYTES_PER_SECOND = 20 * 2**20
MEMORY_SHARE = 0.5


def _cgroup_value(*paths: str) -> float | None:
    """The first readable number among cgroup files (v2, then v1); None where none is set ("max") or readable."""
    for path in paths:
        try:
            with open(path, encoding="ascii") as file:
                words = file.read().split()
        except OSError:
            continue
        if words and words[0].isdigit():
            return float(words[0]) / (float(words[1]) if len(words) > 1 else 1.0)
        return None
    return None


def usable_cores() -> int:
    """The CPUs this process may run on: its affinity (taskset, a cpuset), and a container's CPU quota (cgroup)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_value("/sys/fs/cgroup/cpu.max")  # "quota period" on cgroup v2
    if quota is None:
        limit, period = (_cgroup_value(f"/sys/fs/cgroup/cpu/cpu.cfs_{name}_us") for name in ("quota", "period"))
        quota = limit / period if limit and period else None
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def available_memory() -> int | None:
    """Bytes of memory available for new work: Linux's MemAvailable, or less under a container's memory limit
    (cgroup v2, then v1); None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            available = next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        available = None
    limit = _cgroup_value("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    used = _cgroup_value("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes")
    if limit is not None and limit < 2**60:  # v1 writes "no limit" as a huge number
        room = max(0, int(limit - (used or 0)))
        available = room if available is None else min(available, room)
    return available


# Sessions are chosen by the schedule calls_in_order gives the run's calls (in_order_span), longest first: the most
# sessions whose schedule ends within SCHEDULE_TOLERANCE of the earliest-ending count's. A call takes its length /
# threads, and THREAD_OVERHEAD more for each thread past the first. Many sessions run slower as a pass once a long call
# outlasts the rest or, handed back in order, holds up the start of later ones; few sessions of many threads spend
# time splitting each call. On the 16-core Xeon of benchmarks/EVALUATE_RESULTS.md, where one thread ran the base
# model at ~0.23 s per second of audio, the schedule put 24 utterances (197 s) at 4.8 s with 16 sessions of one thread
# (4.3-5.1 s measured), 3.5 s with 8 of two (3.3-3.9 s) and 4.1 s with one of 16 (3.9-4.4 s: THREAD_OVERHEAD is
# fitted to it), and 96 utterances at 12.3 s with 16 sessions (12.6-13.5 s) and 12.0 s with 8 (11.3-13.1 s).
SCHEDULE_TOLERANCE = 0.02
THREAD_OVERHEAD = 0.03


def in_order_span(seconds: list[float], sessions: int, threads: int) -> float:
    """When the last of the calls of `seconds` ends, run as calls_in_order runs them on `sessions` sessions of
    `threads` threads: each call, in order, on the first free session, started no sooner than the call `sessions` + 1
    before it is handed back (in order, so that a long call holds up the start of later ones), and taking its length
    x (1 + THREAD_OVERHEAD x (threads - 1)) / threads (in seconds of audio over one thread's speed)."""
    slowdown = (1 + THREAD_OVERHEAD * (threads - 1)) / threads
    free = [0.0] * sessions
    handed_back: list[float] = []
    end = 0.0
    for index, length in enumerate(seconds):
        submitted = handed_back[index - sessions - 1] if index > sessions else 0.0
        call_end = max(heapq.heappop(free), submitted) + length * slowdown
        heapq.heappush(free, call_end)
        end = max(end, call_end)
        handed_back.append(end)  # the calls before it are handed back first
    return end


def onnx_call_seconds(num_samples: list[int], batch_size: int | None, max_samples: int, sample_rate: int,
                      fixed_samples: int | None = None) -> list[float]:
    """The seconds of audio, padding included, of each call ONNX Runtime makes for utterances of `num_samples`: one
    per utterance, or with `batch_size` > 1 the length buckets plan_model_batches gives it; for a model of
    `fixed_samples` inputs, plan_fixed_length's batches, each row that long."""
    if fixed_samples is not None:
        rows = batch_size or 1
        return [fixed_samples * len(num_samples[start:start + rows]) / sample_rate
                for start in range(0, len(num_samples), rows)]
    if not batch_size or batch_size == 1:
        return [length / sample_rate for length in num_samples]
    batches = plan_batches(dict(enumerate(num_samples)), batch_size, bucket_lengths(max_samples, sample_rate))
    return [batch.length * len(batch.ids) / sample_rate for batch in batches]


def default_onnx_sessions(cores: int, model_bytes: int = 0, memory: int | None = None,
                          call_seconds: list[float] | None = None) -> int:
    """ONNX Runtime sessions evaluate runs at once, each on cores // sessions threads: one per core of `cores`, or
    fewer where the run's calls of `call_seconds` of audio (None: not known) would end later with as many (see
    SCHEDULE_TOLERANCE), no more than there are calls, and no more than MEMORY_SHARE of `memory` (bytes available;
    None: no limit) holds for a model file of `model_bytes` and the longest call; at least one."""
    sessions = cores
    if call_seconds is not None:
        seconds = sorted(call_seconds, reverse=True)  # as the plan takes them
        counts = {max(1, min(len(seconds), cores // threads)) for threads in range(1, cores + 1)}
        spans = {count: in_order_span(seconds, count, cores // count) for count in counts}
        sessions = max(count for count, span in spans.items() if span <= min(spans.values()) * (1 + SCHEDULE_TOLERANCE))
    if memory is not None and model_bytes > 0:
        longest = max(call_seconds, default=0.0) if call_seconds is not None else 35.0
        session_bytes = SESSION_BYTES_PER_MODEL_BYTE * model_bytes + ACTIVATION_BYTES_PER_SECOND * longest
        sessions = min(sessions, int(MEMORY_SHARE * memory // session_bytes))
    return max(1, sessions)


class BusyClock:
    """Seconds during which at least one model call ran: with calls running at once (parallel_calls), the model
    pass's time, where their own seconds would count the overlap several times. most_at_once: the most calls that
    ran at once (fewer than parallel_calls where there were fewer calls, or a call outran the ones behind it)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running = 0
        self.most_at_once = 0
        self._since = 0.0
        self._seconds = 0.0

    def seconds(self) -> float:
        with self._lock:
            return self._seconds + (time.perf_counter() - self._since if self._running else 0.0)

    def timed(self, call, *args):
        with self._lock:
            if not self._running:
                self._since = time.perf_counter()
            self._running += 1
            self.most_at_once = max(self.most_at_once, self._running)
        try:
            return call(*args)
        finally:
            with self._lock:
                self._running -= 1
                if not self._running:
                    self._seconds += time.perf_counter() - self._since


def calls_in_order(model_pass, inputs, busy: BusyClock):
    """(context, outputs) for each (context, arguments) of `inputs`, in order: `arguments` are call_batch's (audio,
    lengths, rows), or None for no call (outputs None). A model pass with parallel_calls > 1 gets the next calls while
    the caller works on the outputs before them, up to parallel_calls at once; `inputs` is read in the caller's
    thread, as each call is started."""
    def call(arguments):
        return None if arguments is None else busy.timed(call_batch, model_pass, *arguments)

    if model_pass.parallel_calls <= 1:
        for context, arguments in inputs:
            yield context, call(arguments)
        return
    pool = ThreadPoolExecutor(model_pass.parallel_calls, thread_name_prefix="model-pass")
    started = deque()
    try:
        for context, arguments in inputs:
            started.append((context, pool.submit(call, arguments)))
            if len(started) > model_pass.parallel_calls:
                context, outputs = started.popleft()
                yield context, outputs.result()
        while started:
            context, outputs = started.popleft()
            yield context, outputs.result()
    finally:  # an error or Ctrl-C in the caller: calls not yet running are dropped, running ones end by themselves
        pool.shutdown(wait=False, cancel_futures=True)


def runs_in_one_shape(model_pass) -> bool:
    """Whether `model_pass` gets every batch in one shape: it compiles each shape, on an accelerator."""
    return model_pass.compiles_each_shape and model_pass.on_accelerator


def default_batch_size(model_pass, longest_samples: int, sample_rate: int) -> int:
    """Utterances per call when --batch-size is not given."""
    if not runs_in_one_shape(model_pass):
        return CPU_BATCH_SIZE
    return max(1, min(ACCELERATOR_BATCH_SIZE, int(ACCELERATOR_AUDIO_PER_CALL * sample_rate // longest_samples)))


def plan_model_batches(num_samples: dict[str, int], batch_size: int, model_pass, max_samples: int,
                       sample_rate: int) -> list[Batch]:
    """The batches of a real-length model pass. One utterance per call needs no padding at all (ONNX Runtime and
    TF's traced graph take any length); batches, and engines that compile each shape, get length buckets; on an
    accelerator that compiles each shape, every batch gets the one shape of the longest utterance's bucket."""
    if not num_samples:
        return []
    buckets = bucket_lengths(max_samples, sample_rate)
    if runs_in_one_shape(model_pass):
        longest = max(num_samples.values())
        return plan_batches(num_samples, batch_size, [next((b for b in buckets if b >= longest), buckets[-1])],
                            pad_rows=True)
    if batch_size == 1 and not model_pass.compiles_each_shape:
        buckets = None
    return plan_batches(num_samples, batch_size, buckets)


def call_batch(model_pass, audio: np.ndarray, lengths: np.ndarray, rows: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`model_pass` on a batch whose rows are padded to `rows` (Batch.rows) with copies of its last input: the
    outputs of those copies are dropped."""
    extra = max(0, rows - len(audio))
    if extra:
        audio = np.concatenate([audio, np.repeat(audio[-1:], extra, axis=0)])
        lengths = np.concatenate([lengths, np.repeat(lengths[-1:], extra, axis=0)])
    logits, hidden = model_pass(audio, lengths)
    return logits[:len(audio) - extra], hidden[:len(audio) - extra]


def plan_fixed_length(sample_ids: list[str], batch_size: int, max_samples: int) -> list[Batch]:
    """The platform's path: every input padded to max_samples, in the order of `sample_ids`."""
    return [Batch(max_samples, tuple(sample_ids[start:start + batch_size]))
            for start in range(0, len(sample_ids), batch_size)]


def use_jax_compilation_cache() -> Path:
    """Keep JAX's compiled bucket lengths across runs in its persistent cache: on a GPU each bucket compiles in
    3-8 s (benchmarks/GPU_RESULTS.md), which dominates a short run. The folder is JAX_COMPILATION_CACHE_DIR (JAX's
    own setting) when set, else <XDG_CACHE_HOME or ~/.cache>/librispeech-wav2vec2/jax. Returns the folder in use."""
    import jax

    if jax.config.jax_compilation_cache_dir is None:
        cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        jax.config.update("jax_compilation_cache_dir", str(cache_home / "librispeech-wav2vec2" / "jax"))
    return Path(jax.config.jax_compilation_cache_dir)


class KerasModelPass:
    """A model pass: (audio [batch, samples], audio_length [batch, 1]) -> (logits, last hidden state), numpy.

    Another engine (e.g. an ONNX Runtime session with a dynamic time axis) plugs in as any object with the same
    __call__, num_frames, precision, engine, fixed_samples, compiles_each_shape, on_accelerator and parallel_calls.
    """

    precision = "float32"
    engine = "keras"
    parallel_calls = 1    # calls it takes at once (calls_in_order)

    def __init__(self, model, jit_compile: bool = False, fixed_samples: int | None = None):
        import keras

        from librispeech.wav2vec2 import model as wav2vec2_model

        self.fixed_samples = fixed_samples  # the input length of a fixed-length model; None: any length
        self.config = wav2vec2_model.model_config(model)
        self.model = wav2vec2_model.with_hidden_states(model)
        # JAX compiles every input shape (so inputs go to length buckets). There the model runs as one jax.jit of
        # stateless_call: predict_on_batch's Python path cost ~6 ms a call on an H200 (benchmarks/GPU_RESULTS.md).
        self.compiles_each_shape = jit_compile or keras.backend.backend() == "jax"
        self.on_accelerator = keras_sees_an_accelerator()
        self._jax_forward = None
        if keras.backend.backend() == "jax":
            import jax

            use_jax_compilation_cache()
            self._jax_forward = jax.jit(lambda trainable, non_trainable, audio, lengths:
                                        self.model.stateless_call(trainable, non_trainable, [audio, lengths])[0])
        else:
            self.model.compile(jit_compile=jit_compile)

    def __call__(self, audio: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # in full float32 on a GPU too, whose default TF32 moved 11 of 24 hypotheses on an H200: the rows must not
        # depend on the card. It cost the first compile there (39 s instead of 12 s), not the calls (1.1 s either way)
        with full_float32():
            if self._jax_forward is not None:
                logits, hidden = self._jax_forward([v.value for v in self.model.trainable_variables],
                                                   [v.value for v in self.model.non_trainable_variables], audio,
                                                   lengths)
            else:
                logits, hidden = self.model.predict_on_batch([audio, lengths])
        return np.asarray(logits), np.asarray(hidden)

    def num_frames(self, num_samples: int) -> int:
        return self.config.num_frames(num_samples)


class OnnxModelPass:
    """The model pass run by ONNX Runtime: an .onnx export (`model_path`), or a Keras model converted in memory
    (`from_keras`: float32, within 1e-5 of Keras, and faster on CPU: see ENGINES). The time axis is dynamic unless
    export-model was given --max-seconds; then `fixed_samples` is that length and every input must be padded to it.
    With `sessions` > 1 it takes that many calls at once (parallel_calls), each on a session of its own."""

    engine = "onnxruntime"
    compiles_each_shape = False  # ONNX Runtime runs any shape without compiling
    on_accelerator = False       # its sessions run on the CPU

    def __init__(self, model_path: Path | None = None, converted=None,
                 sessions: int | Callable[[int | None], int] = 1):
        if converted is None:  # the session with the hidden state, and the runtime's file checks (one-line errors)
            converted = load_onnx_with_latent(model_path, sessions)
        self.model = converted
        self.config = self.model.wav2vec2_config
        self.precision = self.model.precision
        self.parallel_calls = len(self.model.sessions)
        length = self.model.session.get_inputs()[0].shape[1]
        self.fixed_samples = length if isinstance(length, int) else None

    @classmethod
    def from_keras(cls, model, sessions: int = 1) -> "OnnxModelPass":
        from librispeech_tools.onnx_wav2vec2 import OnnxExportError, OnnxWithHiddenState, SessionsError

        try:
            return cls(converted=OnnxWithHiddenState.from_keras(model, sessions, usable_cores()))
        except SessionsError as error:
            raise ModelPassError(str(error)) from None
        except OnnxExportError as error:  # e.g. onnx not installed, with --engine onnxruntime
            raise ModelPassError(f"the ONNX Runtime engine: {error}") from None

    def __call__(self, audio: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, hidden = self.model.predict_on_batch([audio, lengths])
        return np.asarray(logits), np.asarray(hidden)

    def num_frames(self, num_samples: int) -> int:
        return self.config.num_frames(num_samples)


# What runs an .h5's model pass. On CPU, ONNX Runtime runs the same float32 graph faster than Keras on TensorFlow
# (10.4 s vs 16.5 s on 24 utterances, 50.9 s vs 63.2 s on 96: benchmarks/EVALUATE_RESULTS.md), so "auto" converts
# the .h5 in memory unless Keras has a GPU to run on, XLA is asked for, or the input is the platform's fixed length
# (--fixed-length: the platform's own path, Keras). An .onnx always runs with ONNX Runtime.
ENGINES = ("auto", "keras", "onnxruntime")
ENGINE_NAMES = {"keras": "Keras", "onnxruntime": "ONNX Runtime"}


def keras_sees_an_accelerator() -> bool:
    """Whether Keras' backend has a GPU (or other accelerator) to place the model on. Where the machine shows no
    accelerator driver, it has none, and Keras (with TensorFlow, ~3 s) is not imported to ask."""
    if not accelerator_driver_present():
        return False
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


# what a Keras backend reaches an accelerator through on Linux: NVIDIA's driver, AMD ROCm's, WSL's GPU, a TPU's
ACCELERATOR_DRIVER_PATHS = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg", "/dev/vfio")


def accelerator_driver_present() -> bool:
    """Whether this machine may have an accelerator for Keras: an accelerator driver's device or /proc entry on
    Linux (TPUs also show /dev/accel*); elsewhere (macOS with Metal) always, so Keras is asked."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(path) for path in ACCELERATOR_DRIVER_PATHS) or bool(glob.glob("/dev/accel*"))


def resolve_engine(engine: str, model_path: Path, fixed_length: bool, jit_compile: bool) -> str:
    """The engine `auto` stands for, or ModelPassError for a combination that cannot run."""
    if model_path.suffix.lower() == ".onnx":
        if engine == "keras" or jit_compile:
            raise ModelPassError(f"{model_path.name} is an ONNX export: it runs with ONNX Runtime, not Keras "
                                  f"(--engine keras and --xla need an .h5)")
        return "onnxruntime"
    if engine == "onnxruntime" and (fixed_length or jit_compile):
        raise ModelPassError("--engine onnxruntime runs real lengths without XLA; --fixed-length and --xla run "
                              "Keras")
    if engine != "auto":
        return engine
    if fixed_length or jit_compile or keras_sees_an_accelerator() or not onnx_converter_available():
        return "keras"
    return "onnxruntime"


@functools.cache
def onnx_converter_available() -> bool:
    """Whether onnx (the project's dev extra), which the converter builds the graph with, is installed; said once."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        print("evaluate: onnx is not installed, so the model pass runs in Keras (install the dev extra for the "
              "faster ONNX Runtime engine)", file=sys.stderr)
        return False
    return True


SESSIONS_NEED_ONNX_RUNTIME = ("--sessions is for the ONNX Runtime engine, and this run's model pass runs in Keras "
                              "(--engine keras, --fixed-length, --xla, a GPU Keras sees, or onnx not installed)")


def load_model_pass(model_path: Path, engine: str = "auto", fixed_length: bool = False, jit_compile: bool = False,
                    sessions: int | None = None,
                    call_seconds: Callable[[int | None], list[float]] | None = None):
    """The model pass of `model_path` for the engine (see ENGINES); `sessions`: ONNX Runtime's (None: as many as
    default_onnx_sessions says for this machine and the run's calls, whose seconds of audio `call_seconds` gives
    for a model of fixed input samples or None; None where not known)."""
    engine = resolve_engine(engine, model_path, fixed_length, jit_compile)
    if sessions is not None and engine != "onnxruntime":
        raise ModelPassError(SESSIONS_NEED_ONNX_RUNTIME)
    if sessions is not None and sessions < 1:
        raise ModelPassError(f"--sessions must be at least 1, not {sessions}")
    if engine == "onnxruntime" and sessions is None:
        cores, memory = usable_cores(), available_memory()
        model_bytes = model_path.stat().st_size if model_path.is_file() else 0

        def default_sessions(fixed_samples: int | None = None) -> int:  # an .onnx's fixed length pads every call
            calls = None if call_seconds is None else call_seconds(fixed_samples)
            return default_onnx_sessions(cores, model_bytes, memory, calls)

        sessions = default_sessions if model_path.suffix.lower() == ".onnx" else default_sessions()
    if model_path.suffix.lower() == ".onnx":
        return OnnxModelPass(model_path, sessions=sessions)
    if fixed_length:
        model = load_keras_model(model_path)
        return KerasModelPass(model, jit_compile, fixed_samples=model.inputs[0].shape[1])
    if engine == "onnxruntime":
        return onnx_model_pass_of_h5(model_path, sessions)
    return KerasModelPass(load_dynamic_length_model(model_path), jit_compile)


def onnx_model_pass_of_h5(model_path: Path, sessions: int = 1) -> "OnnxModelPass":
    """The .h5 converted in memory for ONNX Runtime from its weights as h5py reads them (h5_layers: no Keras, no
    TensorFlow), after the runtime's file checks. What that cannot read or convert (weights stored under other
    paths, a damaged file) goes through Keras (load_dynamic_length_model), which converts it or reports it."""
    from librispeech.model_file import ModelFileError, check_finite_weights, check_h5_export, first_line
    from librispeech_tools.h5_layers import read_h5_layers

    if model_path.suffix.lower() not in (".h5", ".hdf5") or not model_path.is_file():
        load_keras_model(model_path)  # the one-line error of a missing or unsupported model file
    try:
        check_h5_export(model_path)
        layers = read_h5_layers(model_path, name=model_path.stem)
        check_finite_weights(model_path, layers.weights)
        return OnnxModelPass.from_keras(layers, sessions)
    except ModelFileError as error:
        raise ModelPassError(str(error)) from None
    except ModelPassError:
        raise
    except (KeyError, ValueError, TypeError, OSError) as error:  # weights under other paths or shapes, or damaged
        print(f"evaluate: {model_path}: {first_line(error)} reading its weights without Keras; reading them through "
              f"Keras instead", file=sys.stderr)
        return OnnxModelPass.from_keras(load_dynamic_length_model(model_path), sessions)


def load_dynamic_length_model(model_path: Path):
    """The export at `model_path` built for inputs of any length: the runtime's file checks read its Wav2Vec2Config
    from the .h5's model config, and its weights are loaded into the new model, without building the fixed-length
    model first (6.6 s instead of 17 s for the base model on the loaded 2-core machine). Weights Keras cannot load
    this way take the long way (load the export, then dynamic_length_model), which reports a damaged file."""
    from librispeech.model_file import ModelFileError, check_finite_weights, check_h5_export
    from librispeech.wav2vec2 import model as wav2vec2_model

    if model_path.suffix.lower() not in (".h5", ".hdf5") or not model_path.is_file():
        load_keras_model(model_path)  # the one-line error of a missing or unsupported model file
    try:
        encoder_config = check_h5_export(model_path)
    except ModelFileError as error:
        raise ModelPassError(str(error)) from None
    import librispeech.wav2vec2.layers  # noqa: F401  registers the model's layers with Keras

    try:
        model = wav2vec2_model.build_and_assign(encoder_config, None, lambda built: built.load_weights(model_path),
                                                name=model_path.stem)
    except (OSError, KeyError, TypeError, ValueError):
        model = load_keras_model(model_path)
        return dynamic_length_model(model)
    try:
        check_finite_weights(model_path, model)
    except ModelFileError as error:
        raise ModelPassError(str(error)) from None
    return model


def dynamic_length_model(model):
    """The same model (architecture and weights) built for inputs of any length."""
    from librispeech.wav2vec2.model import with_input_length

    return with_input_length(model, None)
