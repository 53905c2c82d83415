"""Model pass of the full-size base wav2vec2 on a GPU: our Keras Wav2Vec2ForCTC (JAX backend) against Hugging Face's
PyTorch Wav2Vec2ForCTC, same weights, same utterances, same run, reported as real-time factor (RTF: seconds of model
time per second of audio).

Workload (issue 14, GPU clause):
  * --utterances lengths (default 24) drawn with a fixed seed from a log-normal (sigma 0.55) scaled to LibriSpeech
    test-clean's mean of 7.4 s, clipped to 2-35 s; random-noise audio (the weights are random too, so only the
    shapes matter).
    One utterance per call, as `evaluate --batch-size 1` and the HF recipe run them.
    - Keras: each utterance zero-padded to its length bucket (librispeech_tools/model_pass.py bucket_lengths: 10%
      steps, whole 20 ms frames), with audio_length = its real length (the model masks the padding), so XLA compiles
      one function per bucket. Every used bucket is compiled (warmed up) before timing; compile time is reported apart.
    - PyTorch: each utterance unpadded, eager, under torch.inference_mode (the default attention implementation).
  * --batch (default 8) utterances of --batch-seconds (default 15 s) in one call.

Engines (timed in interleaved rounds; each call is host numpy in -> host numpy logits out, so transfers count):
  keras              Keras predict_on_batch (JAX backend: jax.jit), JAX's default matmul/conv precision (on an
                     Ampere/Hopper GPU that lets XLA use TF32 for float32 dots and convolutions)
  keras-jit          jax.jit of model.stateless_call with the weights as arguments (JAX only): the same model
                     without predict_on_batch's Python path, to separate that overhead from the model's
  keras-highest      keras under jax.default_matmul_precision("highest") (true float32); JAX only; its buckets are
                     compiled again (about 3x slower than the default's), so it runs only if --time-budget allows
                     (on an H200 the full run with it takes ~480 s: pass --time-budget 900)
  pytorch            HF Wav2Vec2ForCTC, float32, PyTorch's defaults (matmul TF32 off; cuDNN convolutions TF32 on)
  pytorch-tf32       the same with torch.backends.cuda.matmul.allow_tf32 = True as well
  pytorch-fp32       the same with both TF32 switches off (strict float32): the parity reference

Parity: max |logits difference| over every utterance's real frames between each engine and pytorch-fp32.

Run (GPU, JAX; results in benchmarks/GPU_RESULTS.md):
  KERAS_BACKEND=jax python benchmarks/benchmark_gpu.py --time-budget 900 --markdown $OUT/gpu_results.md
Debug on CPU (any backend, tiny):
  KERAS_BACKEND=tensorflow .venv/bin/python benchmarks/benchmark_gpu.py --layers 1 --utterances 2 --repeats 1 \
      --batch 2 --batch-seconds 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import librispeech  # noqa: F401,E402  first: its telemetry guard runs before anything imports code_loader

SAMPLE_RATE = 16000
TEST_CLEAN_MEAN_SECONDS = 7.4
MIN_SECONDS, MAX_SECONDS = 2.0, 35.0
HIGHEST_COMPILE_FACTOR = 3.5  # projected compile time of keras-highest, as a multiple of keras's


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=24, help="utterances in the one-per-call workload")
    parser.add_argument("--seed", type=int, default=0, help="seed of the lengths, the audio and the weights")
    parser.add_argument("--sigma", type=float, default=0.55, help="log-normal sigma of the utterance lengths")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per utterance and engine (median kept)")
    parser.add_argument("--batch", type=int, default=8, help="batch size of the batched workload (0: skip it)")
    parser.add_argument("--batch-seconds", type=float, default=15.0, help="audio per sample in the batched workload")
    parser.add_argument("--batch-repeats", type=int, default=10, help="timed calls per engine, batched workload")
    parser.add_argument("--layers", type=int, default=12, help="transformer layers (12 = base)")
    parser.add_argument("--engines", nargs="+", default=None,
                        help="subset of: keras keras-jit keras-highest pytorch pytorch-tf32 pytorch-fp32 (default: "
                             "all but keras-jit that apply; pytorch-fp32 is always computed for parity)")
    parser.add_argument("--time-budget", type=float, default=330.0,
                        help="seconds; keras-highest (a second set of compiles) is skipped when the projected run "
                             "would exceed it")
    parser.add_argument("--markdown", type=Path, default=None, help="write the results table here")
    parser.add_argument("--json", type=Path, default=None, help="write the raw results here")
    return parser.parse_args(argv)


def bucket_lengths(max_samples: int, sample_rate: int) -> list[int]:
    """librispeech_tools.model_pass.bucket_lengths (imported when it imports here; else the same rule)."""
    try:
        from librispeech_tools.model_pass import bucket_lengths as evaluate_buckets
        return evaluate_buckets(max_samples, sample_rate)
    except Exception:  # noqa: BLE001  the GPU image lacks some of evaluate's dependencies
        import numpy as np
        lengths, length = [], 1.0 * sample_rate
        while length < max_samples:
            lengths.append(int(np.ceil(length / 320)) * 320)
            length *= 1.1
        return sorted(set(lengths) - {max_samples} | {max_samples})


def utterance_lengths(count: int, seed: int, sigma: float) -> list[int]:
    """`count` lengths in samples: log-normal draws scaled to a mean of TEST_CLEAN_MEAN_SECONDS, clipped to
    MIN..MAX_SECONDS."""
    import numpy as np
    rng = np.random.default_rng(seed)
    seconds = rng.lognormal(0.0, sigma, count)
    seconds *= TEST_CLEAN_MEAN_SECONDS / seconds.mean()
    return [int(s * SAMPLE_RATE) for s in np.clip(seconds, MIN_SECONDS, MAX_SECONDS)]


class TorchPrecision:
    """Sets PyTorch's two TF32 switches (matmul, cuDNN) for the calls that follow."""

    def __init__(self, torch):
        self.torch = torch

    def set(self, matmul_tf32: bool, cudnn_tf32: bool) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
            self.torch.backends.cudnn.allow_tf32 = cudnn_tf32


def median(values):
    import numpy as np
    return float(np.median(values))


def main(argv=None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX and torch share the GPU's memory
    backend = os.environ["KERAS_BACKEND"]

    import contextlib

    import numpy as np
    import keras
    import torch
    import transformers
    from transformers import Wav2Vec2Config as HFConfig, Wav2Vec2ForCTC

    from librispeech.wav2vec2.configuration import Wav2Vec2Config
    from librispeech.wav2vec2.convert_hf import convert_to_keras

    jax = None
    if backend == "jax":
        import jax

    engines = args.engines or (["keras"] + (["keras-highest"] if jax else []) +
                               ["pytorch", "pytorch-tf32", "pytorch-fp32"])
    for jax_only in ("keras-highest", "keras-jit"):
        if jax_only in engines and jax is None:
            engines.remove(jax_only)
    keras_engines = [name for name in engines if name.startswith("keras")]
    torch_engines = [name for name in engines if name.startswith("pytorch")]

    torch_device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = TorchPrecision(torch)
    torch_modes = {"pytorch": (False, True), "pytorch-tf32": (True, True), "pytorch-fp32": (False, False)}
    # with defaults captured, so that the label says what "pytorch" really ran with
    default_modes = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)

    # ---- models: HF PyTorch with random weights, the same weights converted into the Keras model (any length)
    config = Wav2Vec2Config(num_hidden_layers=args.layers)
    torch.manual_seed(args.seed)
    reference = Wav2Vec2ForCTC(HFConfig(**config.to_dict())).eval()
    weights = {key: value.detach().numpy() for key, value in reference.state_dict().items()}
    build_started = time.perf_counter()
    model = convert_to_keras(config.to_dict(), weights, None, progress=False)
    model.compile(jit_compile="auto")  # JAX: jax.jit; TF: tf.function
    build_seconds = time.perf_counter() - build_started
    reference = reference.to(torch_device)

    gpu_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)"
    jax_devices = ", ".join(str(d) for d in jax.devices()) if jax else "-"
    versions = (f"python {platform.python_version()}, keras {keras.__version__} (backend {backend}), "
                + (f"jax {jax.__version__}, " if jax else "")
                + f"torch {torch.__version__}, transformers {transformers.__version__}, numpy {np.__version__}")
    print(f"GPU: {gpu_name}; JAX devices: {jax_devices}; torch device: {torch_device}")
    print(f"versions: {versions}")
    print(f"PyTorch TF32 defaults: matmul {default_modes[0]}, cuDNN {default_modes[1]}")
    print(f"model: base config, {config.num_hidden_layers} layers, {model.count_params():,} parameters; Keras model "
          f"built and weights converted in {build_seconds:.1f} s")

    jitted = {}

    def keras_call(name):
        if name == "keras-jit":  # one jitted function for every call, so its compiled shapes are shared
            if not jitted:
                forward = jax.jit(lambda trainable, non_trainable, audio, lengths:
                                  model.stateless_call(trainable, non_trainable, [audio, lengths])[0])

                def call(audio, lengths):
                    # the variables' current arrays: Keras' own predict function donates and replaces them
                    return np.asarray(forward([v.value for v in model.trainable_variables],
                                              [v.value for v in model.non_trainable_variables], audio, lengths))
                jitted["call"] = call
            return jitted["call"]
        scope = (lambda: jax.default_matmul_precision("highest")) if name == "keras-highest" else contextlib.nullcontext

        def call(audio, lengths):
            with scope():
                return np.asarray(model.predict_on_batch([audio, lengths]))
        return call

    def torch_call(name):
        mode = torch_modes[name]

        def call(audio):
            precision.set(*mode)
            with torch.inference_mode():
                logits = reference(torch.from_numpy(audio).to(torch_device)).logits
                return logits.cpu().numpy()
        return call

    # ---- workload 1: utterances, one per call
    lengths = utterance_lengths(args.utterances, args.seed, args.sigma)
    rng = np.random.default_rng(args.seed + 1)
    audios = [rng.normal(0, 1, (1, n)).astype(np.float32) for n in lengths]
    buckets = bucket_lengths(int(MAX_SECONDS * SAMPLE_RATE), SAMPLE_RATE)
    bucket_of = [next(b for b in buckets if b >= n) for n in lengths]
    used_buckets = sorted(set(bucket_of))
    audio_seconds = sum(lengths) / SAMPLE_RATE
    print(f"\nworkload: {len(lengths)} utterances, {audio_seconds:.1f} s of audio, "
          f"mean {audio_seconds / len(lengths):.2f} s, min {min(lengths) / SAMPLE_RATE:.2f} s, "
          f"max {max(lengths) / SAMPLE_RATE:.2f} s; "
          f"{len(used_buckets)} of {len(buckets)} buckets used")
    print(f"  lengths (s): {' '.join(f'{n / SAMPLE_RATE:.2f}' for n in sorted(lengths))}")

    def padded(index):
        audio = np.zeros((1, bucket_of[index]), np.float32)
        audio[:, :lengths[index]] = audios[index]
        return audio, np.array([[lengths[index]]], np.float32)

    calls = {}
    for name in keras_engines:
        call = keras_call(name)
        calls[name] = [(lambda i=i, c=call: c(*padded(i))) for i in range(len(lengths))]
    for name in torch_engines:
        call = torch_call(name)
        calls[name] = [(lambda i=i, c=call: c(audios[i])) for i in range(len(lengths))]

    # warm-up: compile every used bucket per Keras engine (timed: the compile cost); torch: CUDA/cuBLAS start-up
    compile_seconds = {}
    for name in keras_engines:
        if name == "keras-highest":
            elapsed = time.perf_counter() - started
            # on an H200, precision "highest" compiled 3.2x slower than the default (25 s against 8 s a bucket)
            projected = elapsed + compile_seconds.get("keras", 0.0) * HIGHEST_COMPILE_FACTOR + 60.0
            if projected > args.time_budget:
                print(f"keras-highest skipped: {elapsed:.0f} s elapsed, its compiles would take the run to "
                      f"~{projected:.0f} s > --time-budget {args.time_budget:g} s")
                del calls[name]
                continue
        call = keras_call(name)
        total = 0.0
        for bucket in used_buckets:
            start = time.perf_counter()
            call(np.zeros((1, bucket), np.float32), np.array([[bucket]], np.float32))
            seconds = time.perf_counter() - start
            total += seconds
            print(f"  compile {name} bucket {bucket / SAMPLE_RATE:6.2f} s: {seconds:5.1f} s", flush=True)
        compile_seconds[name] = total
        print(f"{name}: {len(used_buckets)} buckets compiled in {total:.1f} s")
    warm_torch = time.perf_counter()
    for name in torch_engines:
        for index in (0, 1 % len(lengths)):
            calls[name][index]()
    print(f"torch warm-up: {time.perf_counter() - warm_torch:.1f} s")

    # parity outputs (first call after warm-up), then interleaved timed rounds
    outputs = {name: [fn() for fn in fns] for name, fns in calls.items()}
    times = {name: [[] for _ in lengths] for name in calls}
    for _ in range(args.repeats):
        for index in range(len(lengths)):
            for name, fns in calls.items():
                start = time.perf_counter()
                fns[index]()
                times[name][index].append(time.perf_counter() - start)

    frames = [config.num_frames(n) for n in lengths]
    parity_ref = "pytorch-fp32" if "pytorch-fp32" in outputs else None
    utterance_rows = {}
    print(f"\none utterance per call, {args.repeats} timed calls per utterance (median per utterance, summed):")
    for name in calls:
        model_seconds = sum(median(t) for t in times[name])
        difference = None
        if parity_ref and name != parity_ref:
            difference = max(float(np.abs(outputs[name][i][0, :n] - outputs[parity_ref][i][0, :n]).max())
                             for i, n in enumerate(frames))
        utterance_rows[name] = {"model_seconds": model_seconds, "rtf": model_seconds / audio_seconds,
                                "compile_seconds": compile_seconds.get(name), "max_abs_logits_diff": difference}
        print(f"  {name:14s} {model_seconds:7.3f} s for {audio_seconds:.1f} s of audio  "
              f"RTF {model_seconds / audio_seconds:.5f}  ({audio_seconds / model_seconds:7.1f}x real time)"
              + (f"  compile {compile_seconds[name]:.1f} s" if name in compile_seconds else "")
              + (f"  max |logits - {parity_ref}| {difference:.2e}" if difference is not None else ""))
    for name in keras_engines:
        if name in utterance_rows and "pytorch" in utterance_rows:
            speed = utterance_rows["pytorch"]["model_seconds"] / utterance_rows[name]["model_seconds"]
            print(f"  {name} vs pytorch: {speed:.2f}x PyTorch's throughput")

    # ---- workload 2: a batch of equal-length utterances
    batch_rows = {}
    if args.batch:
        batch_samples = int(round(args.batch_seconds * SAMPLE_RATE))
        batch_audio = rng.normal(0, 1, (args.batch, batch_samples)).astype(np.float32)
        batch_lengths = np.full((args.batch, 1), batch_samples, np.float32)
        batch_calls = {name: (lambda c=keras_call(name): c(batch_audio, batch_lengths))
                       for name in keras_engines if name in calls}
        batch_calls.update({name: (lambda c=torch_call(name): c(batch_audio)) for name in torch_engines})
        batch_out, batch_first = {}, {}
        for name, call in batch_calls.items():
            start = time.perf_counter()
            batch_out[name] = call()
            batch_first[name] = time.perf_counter() - start
        batch_times = {name: [] for name in batch_calls}
        for _ in range(args.batch_repeats):
            for name, call in batch_calls.items():
                start = time.perf_counter()
                call()
                batch_times[name].append(time.perf_counter() - start)
        batch_audio_seconds = args.batch * batch_samples / SAMPLE_RATE
        print(f"\nbatch {args.batch} x {args.batch_seconds:g} s ({batch_audio_seconds:g} s of audio per call), "
              f"{args.batch_repeats} timed calls (median):")
        for name, values in batch_times.items():
            seconds = median(values)
            difference = None
            if parity_ref and name != parity_ref:
                difference = float(np.abs(batch_out[name] - batch_out[parity_ref]).max())
            batch_rows[name] = {"seconds_per_call": seconds, "rtf": seconds / batch_audio_seconds,
                                "first_call_seconds": batch_first[name], "max_abs_logits_diff": difference}
            print(f"  {name:14s} {seconds:7.4f} s/call  RTF {seconds / batch_audio_seconds:.5f}  "
                  f"({batch_audio_seconds / seconds:7.1f}x real time)  first call {batch_first[name]:.1f} s"
                  + (f"  max |logits - {parity_ref}| {difference:.2e}" if difference is not None else ""))

    total_seconds = time.perf_counter() - started
    print(f"\ntotal run time {total_seconds:.0f} s")

    # ---- reports
    labels = {
        "keras": "Keras 3, JAX backend (jit), JAX default precision",
        "keras-highest": "Keras 3, JAX backend (jit), precision 'highest' (fp32)",
        "keras-jit": "jax.jit(model.stateless_call), JAX default precision (no predict_on_batch)",
        "pytorch": (f"HF PyTorch eager fp32, torch defaults (matmul TF32 {'on' if default_modes[0] else 'off'}, "
                    f"cuDNN TF32 {'on' if default_modes[1] else 'off'})"),
        "pytorch-tf32": "HF PyTorch eager, matmul + cuDNN TF32 on",
        "pytorch-fp32": "HF PyTorch eager, strict fp32 (TF32 off): parity reference",
    }
    if backend != "jax":
        labels["keras"] = f"Keras 3, {backend} backend (predict_on_batch)"
    lines = [
        "| engine | utterances: model s | RTF | x real time | vs pytorch | compile s | max abs logits diff vs "
        "pytorch-fp32 | batch: s/call | batch RTF | batch max abs diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    def fmt(value, spec, missing="-"):
        return missing if value is None else format(value, spec)

    for name in calls:
        row, batch = utterance_rows[name], batch_rows.get(name, {})
        speed = (utterance_rows["pytorch"]["model_seconds"] / row["model_seconds"]) if "pytorch" in utterance_rows \
            else None
        cells = [f"{name}: {labels[name]}", fmt(row["model_seconds"], ".3f"), fmt(row["rtf"], ".5f"),
                 fmt(1 / row["rtf"], ".0f"), fmt(speed, ".2f") + ("x" if speed else ""),
                 fmt(row["compile_seconds"], ".1f"), fmt(row["max_abs_logits_diff"], ".2e", "reference"),
                 fmt(batch.get("seconds_per_call"), ".4f"), fmt(batch.get("rtf"), ".5f"),
                 fmt(batch.get("max_abs_logits_diff"), ".2e", "reference" if batch else "-")]
        lines.append("| " + " | ".join(cells) + " |")
    header = [
        f"GPU: {gpu_name}; JAX devices: {jax_devices}",
        f"versions: {versions}",
        f"model: base config, {config.num_hidden_layers} layers, {model.count_params():,} parameters, random weights "
        f"(torch seed {args.seed}), converted HF -> Keras",
        f"utterances: {len(lengths)}, {audio_seconds:.1f} s of audio (mean {audio_seconds / len(lengths):.2f} s, "
        f"{min(lengths) / SAMPLE_RATE:.2f}-{max(lengths) / SAMPLE_RATE:.2f} s), one per call, {args.repeats} timed "
        f"calls each (median); Keras padded to {len(used_buckets)} length buckets (10% steps), compiled before timing",
        f"batch: {args.batch} x {args.batch_seconds:g} s, {args.batch_repeats} timed calls (median)",
        "RTF = model seconds / audio seconds (host numpy in, host numpy logits out)",
    ]
    markdown = "\n".join(["# wav2vec2 base model pass on GPU", ""] + [f"- {h}" for h in header] + [""] + lines) + "\n"
    print("\n" + markdown)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "gpu": gpu_name, "jax_devices": jax_devices, "versions": versions, "lengths_samples": lengths,
            "buckets_used": used_buckets, "audio_seconds": audio_seconds, "utterances": utterance_rows,
            "batch": batch_rows, "compile_seconds": compile_seconds, "total_seconds": total_seconds,
            "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))


if __name__ == "__main__":
    main()
