"""benchmarks/benchmark_cpu_rates.py: ONNX Runtime's rate on a wav2vec2 export per count of sessions, and numpy's."""
import importlib.util
import json
from pathlib import Path

import pytest

from librispeech.config import project_config
from librispeech_tools.flops import forward_flops
from librispeech_tools.h5_layers import read_h5_layers
from librispeech_tools.model_pass import usable_cores

REPO_ROOT = Path(__file__).resolve().parent.parent

SCRIPT = REPO_ROOT / "benchmarks" / "benchmark_cpu_rates.py"
spec = importlib.util.spec_from_file_location("benchmark_cpu_rates", SCRIPT)
benchmark_cpu_rates = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark_cpu_rates)


def test_rates_of_each_session_count_and_of_numpy(tiny_model, capsys):
    benchmark_cpu_rates.main(["--model", str(tiny_model), "--sessions", "1", "2", "--seconds", "0.5", "--calls", "2"])
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    cores = usable_cores()
    numpy_rows = [row for row in rows if row["engine"] == "numpy matmul"]
    onnx_rows = [row for row in rows if row["engine"] == "onnxruntime"]
    assert [row["threads"] for row in numpy_rows] == sorted({1, cores})
    assert [(row["sessions"], row["threads_each"]) for row in onnx_rows] == [(1, cores), (2, max(1, cores // 2))]
    assert all(row["gflops"] > 0 for row in rows)
    flops = forward_flops(read_h5_layers(tiny_model).config, round(0.5 * project_config().sample_rate))
    assert f"{flops / 1e9:.4g} GFLOP per 0.5 s call" in captured.err
    for row in onnx_rows:  # the rate is the calls' FLOPs over their time
        assert row["gflops"] * row["seconds_per_call"] == pytest.approx(row["sessions"] * flops / 1e9, rel=0.01)


@pytest.mark.skipif(benchmark_cpu_rates.shutil.which("gcc") is None, reason="no C compiler")
def test_fma_peak_rows_for_one_core_and_all(tiny_model, capsys):
    """fma_peak.c compiles and runs here; how its rate compares with numpy's is the benchmark's to show, not a test's
    (both are timed, at different moments of a shared machine)."""
    benchmark_cpu_rates.main(["--model", str(tiny_model), "--sessions", "1", "--seconds", "0.5", "--calls", "1",
                              "--fma-peak"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    peaks = {row["threads"]: row["gflops"] for row in rows if row["engine"] == "FMA peak"}
    assert sorted(peaks) == sorted({1, usable_cores()}) and all(0 < rate < 1e5 for rate in peaks.values())


def test_fma_peak_sums_the_copies_run_at_once(tmp_path, monkeypatch):
    """A stand-in compiler whose program prints fma_peak.c's line: each copy's best width counts, summed."""
    compiler = tmp_path / "cc"
    compiler.write_text('#!/bin/sh\nwhile [ "$1" != -o ]; do shift; done\n'
                        'printf \'#!/bin/sh\\necho "float32 FMA peak, one thread: 50.0 GFLOP/s (256-bit), '
                        '60.5 GFLOP/s (512-bit)"\\n\' > "$2"\nchmod +x "$2"\n')
    compiler.chmod(0o755)
    monkeypatch.setenv("CC", str(compiler))
    assert benchmark_cpu_rates.fma_peak_rates([1, 3]) == {1: 60.5, 3: pytest.approx(181.5)}


@pytest.mark.parametrize("option", [["--sessions", "0"], ["--seconds", "nan"], ["--calls", "-1"]])
def test_counts_and_lengths_not_above_zero_are_refused(tmp_path, option, capsys):
    with pytest.raises(SystemExit):
        benchmark_cpu_rates.parse_args(["--model", str(tmp_path / "m.h5"), *option])
    assert "must be above 0" in capsys.readouterr().err


def test_a_file_that_is_not_a_wav2vec2_export_is_one_line(tmp_path):
    (tmp_path / "damaged.h5").write_bytes(b"not hdf5")
    with pytest.raises(SystemExit) as stopped:
        benchmark_cpu_rates.main(["--model", str(tmp_path / "damaged.h5")])
    message = str(stopped.value.code)
    assert message.startswith(f"benchmark_cpu_rates: {tmp_path / 'damaged.h5'}: ") and "\n" not in message
