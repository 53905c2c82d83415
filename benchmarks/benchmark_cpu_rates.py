"""How close the model pass comes to this CPU: ONNX Runtime's float32 rate on the base model, per core, against
numpy's float32 matrix product, on one thread and on all of them.

For each count of sessions S (the model pass's `--sessions`), S threads each call a session of their own with
cores // S intra-op threads on the same `--seconds` of audio, `--calls` times each; the rate is the forward pass's
FLOPs (librispeech_tools/flops.py) over the wall time. numpy's [512, 768] x [768, 3072] product (base's feed-forward
shape) is timed on one thread (threadpoolctl) and on all cores. Where ONNX Runtime already runs at numpy's rate
per core, no float32 engine gets much further on that CPU: the model pass's ratio to PyTorch is then set by how far
below that rate PyTorch runs. `--fma-peak` adds the CPU's own float32 peak: benchmarks/fma_peak.c (fused
multiply-adds on registers, no memory), compiled with the C compiler here, one copy per core at once.

Run: .venv/bin/python benchmarks/benchmark_cpu_rates.py --model base-random.h5 --sessions 1 2 [--fma-peak]
(any wav2vec2 .h5 export; `benchmark_evaluate.py checkpoint` and `export-model` make the full-size random one)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import librispeech  # noqa: F401,E402  first: its telemetry guard runs before anything imports code_loader


def positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value
    return parse


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a wav2vec2 .h5 export")
    parser.add_argument("--sessions", type=positive(int), nargs="+", default=[1], help="counts of sessions run at once")
    parser.add_argument("--seconds", type=positive(float), default=8.0, help="audio per call")
    parser.add_argument("--calls", type=positive(int), default=4, help="timed calls per session, after a warm-up call")
    parser.add_argument("--fma-peak", action="store_true", help="also the CPU's float32 FMA peak (needs a C compiler)")
    return parser.parse_args(argv)


FMA_PEAK_SOURCE = Path(__file__).resolve().parent / "fma_peak.c"


def fma_peak_rates(copies: list[int]) -> dict[int, float]:
    """The summed GFLOP/s of fma_peak.c run as each count of `copies` at once (1: one core; all: the all-core rate),
    compiled once."""
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        sys.exit("benchmark_cpu_rates: --fma-peak needs a C compiler (gcc or cc, or CC=...)")
    rates = {}
    with tempfile.TemporaryDirectory() as folder:
        program = Path(folder) / "fma_peak"
        subprocess.run([compiler, "-O2", "-march=native", "-o", str(program), str(FMA_PEAK_SOURCE)], check=True)
        for count in copies:
            running = [subprocess.Popen([str(program)], stdout=subprocess.PIPE, text=True) for _ in range(count)]
            lines = [copy.communicate()[0] for copy in running]
            rates[count] = sum(max(float(rate) for rate in re.findall(r"([\d.]+) GFLOP/s", line)) for line in lines)
    return rates


def numpy_rate(threads: int) -> float:
    from threadpoolctl import threadpool_limits

    from librispeech_tools.flops import float32_matmul_rate

    with threadpool_limits(limits=threads, user_api="blas"):  # numpy's BLAS on `threads` threads
        return float32_matmul_rate()


def onnx_rate(layers, sessions: int, cores: int, num_samples: int, calls: int, flops: int) -> dict:
    import numpy as np

    from librispeech_tools.onnx_wav2vec2 import OnnxWithHiddenState

    model = OnnxWithHiddenState.from_keras(layers, sessions=sessions, threads=cores)
    audio = np.random.default_rng(0).standard_normal((1, num_samples), dtype=np.float32) * 0.1
    inputs = [audio, np.array([[num_samples]], np.float32)]

    def run(count: int) -> None:
        for _ in range(count):
            model.predict_on_batch(inputs)

    with ThreadPoolExecutor(sessions) as pool:
        list(pool.map(run, [1] * sessions))  # warm-up: every session's first call
        started = time.perf_counter()
        list(pool.map(run, [calls] * sessions))
        wall = time.perf_counter() - started
    threads = max(1, cores // sessions) if sessions > 1 else cores  # as OnnxWithHiddenState gives them
    rate = sessions * calls * flops / wall
    return {"sessions": sessions, "threads_each": threads, "seconds_per_call": wall / calls,
            "gflops": rate / 1e9, "gflops_per_core": rate / 1e9 / min(cores, sessions * threads)}


def main(argv=None) -> None:
    args = parse_args(argv)
    from librispeech.config import project_config
    from librispeech.model_file import ModelFileError, first_line
    from librispeech_tools.flops import forward_flops
    from librispeech_tools.h5_layers import read_h5_layers
    from librispeech_tools.model_pass import usable_cores

    cores = usable_cores()
    try:
        layers = read_h5_layers(args.model, name=args.model.stem)
    except (ModelFileError, KeyError, ValueError, OSError) as error:  # missing, damaged, or not a wav2vec2 export
        sys.exit(f"benchmark_cpu_rates: {args.model}: {first_line(error)}")
    num_samples = round(args.seconds * project_config().sample_rate)
    flops = forward_flops(layers.config, num_samples)
    rows = [{"engine": "FMA peak", "threads": threads, "gflops": gflops}
            for threads, gflops in (fma_peak_rates(sorted({1, cores})) if args.fma_peak else {}).items()]
    rows += [{"engine": "numpy matmul", "threads": threads, "gflops": numpy_rate(threads) / 1e9}
             for threads in sorted({1, cores})]
    rows += [{"engine": "onnxruntime", **onnx_rate(layers, s, cores, num_samples, args.calls, flops)}
             for s in args.sessions]
    print(f"{cores} cores; {flops / 1e9:.4g} GFLOP per {args.seconds:g} s call", file=sys.stderr)
    for row in rows:
        print(json.dumps({k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    main()
