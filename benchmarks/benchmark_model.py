"""Inference speed of the native Keras Wav2Vec2ForCTC and its ONNX export against Hugging Face's PyTorch model.

The full-size base config (wav2vec2-base-960h: 7 conv layers, 12 x 768 transformer, vocab 32) with random weights on
--seconds of audio (default 15 s) per sample, at each batch size. With torch installed, the PyTorch model's random
weights are converted into the Keras model, so the run also reports the logits difference at full size.

Engines (timed in interleaved rounds, so a busy machine slows all of them alike):
  keras        the Keras model, compiled predict function (TF backend: tf.function; JAX: jax.jit)
  keras-xla    TF backend only: the same with model.compile(jit_compile=True) (XLA)
  onnxruntime  the ONNX export of the same model (librispeech_tools/onnx_wav2vec2.py) in ONNX Runtime's CPU
               provider, default graph optimisations (needs onnx and onnxruntime)
  onnxruntime-int8  the int8 export (export-model --int8: int8 feature-encoder convs and MatMuls, activations
               quantized per utterance); not float-exact, so its logits difference to PyTorch is printed with it
  openvino     the same float32 ONNX export compiled by OpenVINO's CPU plugin with f32 inference precision (needs the
               openvino package, which the project does not depend on: tried as a faster float32 engine)
  keras-bf16   the same weights in a Keras model built under the mixed_bfloat16 policy (bfloat16 matmuls and convs,
               float32 norms and CTC head); not float-exact. Fast only on CPUs with native bfloat16 (AMX, AVX512-BF16)
  pytorch      HF Wav2Vec2ForCTC under torch.inference_mode (default attention implementation)
  pytorch-bf16 the same under torch.autocast("cpu", bfloat16): the fair reference for keras-bf16
  pytorch-int8 the same after torch.ao.quantization.quantize_dynamic on its nn.Linear layers (int8 weights,
               activations quantized per call): PyTorch's own CPU int8 recipe, the reference for onnxruntime-int8

Run (CPU):  .venv/bin/python benchmarks/benchmark_model.py --batch-sizes 1 8 --repeats 3
JAX on GPU: KERAS_BACKEND=jax python benchmarks/benchmark_model.py --backend jax --batch-sizes 1 8 --no-pytorch
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import librispeech  # noqa: F401  first: its telemetry guard runs before anything imports code_loader


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per engine and batch size")
    parser.add_argument("--seconds", type=float, default=15.0, help="audio per sample (max_samples = seconds * 16k)")
    parser.add_argument("--backend", choices=("tensorflow", "jax", "torch"), default=None,
                        help="Keras backend (default: $KERAS_BACKEND or tensorflow)")
    parser.add_argument("--engines", nargs="+", default=None,
                        help="subset of: keras keras-xla keras-bf16 onnxruntime onnxruntime-int8 openvino pytorch "
                             "pytorch-bf16 pytorch-int8 (default: keras keras-xla onnxruntime onnxruntime-int8 "
                             "pytorch)")
    parser.add_argument("--no-pytorch", action="store_true", help="skip the PyTorch reference")
    parser.add_argument("--layers", type=int, default=12, help="transformer layers (12 = base)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for TF (intra-op), ONNX Runtime (intra-op) and torch alike "
                             "(default: the libraries' defaults)")
    return parser.parse_args(argv)


class _OpenVinoSession:
    """An OpenVINO infer request called like an ONNX Runtime session (run(None, feeds) -> [logits])."""

    def __init__(self, request, output):
        self.request, self.output = request, output

    def run(self, _, feeds):
        return [self.request.infer(feeds)[self.output]]


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    backend = os.environ["KERAS_BACKEND"]

    import numpy as np
    import keras

    if args.threads and backend == "tensorflow":
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)

    from librispeech.wav2vec2.convert_hf import convert_to_keras
    from librispeech.wav2vec2.configuration import Wav2Vec2Config
    from librispeech.wav2vec2.model import build_wav2vec2_for_ctc

    sample_rate = 16000
    max_samples = int(round(args.seconds * sample_rate))
    config = Wav2Vec2Config(num_hidden_layers=args.layers)  # the base-960h architecture
    engines = args.engines or (["keras", "keras-xla"] if backend == "tensorflow" else ["keras"]) + [
        "onnxruntime", "onnxruntime-int8", "pytorch"]
    if args.no_pytorch:
        engines = [name for name in engines if not name.startswith("pytorch")]

    torch = reference = None
    if any(name.startswith("pytorch") for name in engines):
        try:
            import torch
            from transformers import Wav2Vec2Config as HFConfig, Wav2Vec2ForCTC
        except ImportError:
            print("torch/transformers not installed: PyTorch reference skipped")
            engines = [name for name in engines if not name.startswith("pytorch")]
    if torch is not None:
        if args.threads:
            torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        reference = Wav2Vec2ForCTC(HFConfig(**config.to_dict())).eval()
        weights = {key: value.detach().numpy() for key, value in reference.state_dict().items()}
        model = convert_to_keras(config.to_dict(), weights, max_samples, progress=False)
    else:
        model = build_wav2vec2_for_ctc(config, max_samples)

    compiled = {}
    if "keras" in engines:
        compiled["keras"] = model
        model.compile(jit_compile=False)
    if "keras-bf16" in engines:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        compiled["keras-bf16"] = build_wav2vec2_for_ctc(config, max_samples)
        keras.mixed_precision.set_global_policy("float32")
        compiled["keras-bf16"].set_weights(model.get_weights())
    if "keras-xla" in engines:
        xla_model = keras.Model(model.inputs, model.outputs)  # same layers and weights, its own compile flag
        xla_model.compile(jit_compile=True)
        compiled["keras-xla"] = xla_model

    ort_engines = [name for name in ("onnxruntime", "onnxruntime-int8", "openvino") if name in engines]
    if ort_engines:
        try:
            import onnxruntime
            from librispeech_tools.onnx_wav2vec2 import save_onnx
        except ImportError:
            print("onnx/onnxruntime not installed: ONNX Runtime skipped")
            engines = [name for name in engines if name not in ort_engines]
            ort_engines = []
    ort_sessions = {}
    if ort_engines:
        import tempfile

        options = onnxruntime.SessionOptions()
        if args.threads:
            options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        with tempfile.TemporaryDirectory() as folder:
            paths = {"onnxruntime": save_onnx(model, Path(folder) / "float.onnx", max_samples)}
            if "onnxruntime-int8" in ort_engines:
                paths["onnxruntime-int8"] = save_onnx(model, Path(folder) / "int8.onnx", max_samples, int8=True)
            for name in (name for name in ort_engines if name != "openvino"):
                ort_sessions[name] = onnxruntime.InferenceSession(str(paths[name]), options,
                                                                  providers=["CPUExecutionProvider"])
            if "openvino" in ort_engines:
                try:
                    import openvino
                except ImportError:
                    print("openvino not installed: OpenVINO skipped")
                else:
                    properties = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                                  **({"INFERENCE_NUM_THREADS": args.threads} if args.threads else {})}
                    compiled_model = openvino.Core().compile_model(str(paths["onnxruntime"]), "CPU", properties)
                    request = compiled_model.create_infer_request()
                    ort_sessions["openvino"] = _OpenVinoSession(request, compiled_model.output(0))

    threads = []
    if backend == "tensorflow":
        import tensorflow as tf
        threading = tf.config.threading
        threads.append(f"TF {tf.__version__} intra/inter-op threads {threading.get_intra_op_parallelism_threads()}"
                       f"/{threading.get_inter_op_parallelism_threads()} (0 = all cores)")
    if ort_sessions:
        threads.append(f"onnxruntime {onnxruntime.__version__} intra-op threads "
                       f"{args.threads or 'default (physical cores)'}")
    if torch is not None:
        threads.append(f"torch {torch.__version__} threads {torch.get_num_threads()}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; " + "; ".join([f"keras {keras.__version__} backend {backend}", *threads]))
    print(f"model: base config, {config.num_hidden_layers} layers, {model.count_params():,} parameters; "
          f"{args.seconds:g} s per sample = {max_samples} samples -> {config.num_frames(max_samples)} frames")

    rng = np.random.default_rng(0)
    results = {}
    reference_int8 = None
    for batch in args.batch_sizes:
        audio = rng.normal(0, 1, (batch, max_samples)).astype(np.float32)
        lengths = np.full((batch, 1), max_samples, dtype=np.float32)
        calls = {}
        for name, keras_model in compiled.items():
            calls[name] = (lambda m=keras_model: np.asarray(m.predict_on_batch([audio, lengths])))
        for name, ort_session in ort_sessions.items():
            calls[name] = (lambda s=ort_session: s.run(None, {"audio": audio, "audio_length": lengths})[0])
        if "pytorch" in engines:
            audio_torch = torch.from_numpy(audio)

            def run_pytorch():
                with torch.inference_mode():
                    return reference(audio_torch).logits.numpy()
            calls["pytorch"] = run_pytorch
        if "pytorch-bf16" in engines:
            audio_torch = torch.from_numpy(audio)

            def run_pytorch_bf16():
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                    return reference(audio_torch).logits.float().numpy()
            calls["pytorch-bf16"] = run_pytorch_bf16
        if "pytorch-int8" in engines:
            audio_torch = torch.from_numpy(audio)
            if reference_int8 is None:
                reference_int8 = torch.ao.quantization.quantize_dynamic(reference, {torch.nn.Linear},
                                                                        dtype=torch.qint8)

            def run_pytorch_int8():
                with torch.inference_mode():
                    return reference_int8(audio_torch).logits.numpy()
            calls["pytorch-int8"] = run_pytorch_int8

        outputs, warmup = {}, {}
        for name, call in calls.items():  # warm-up (tracing / XLA compilation), and the outputs to compare
            start = time.perf_counter()
            outputs[name] = call()
            warmup[name] = time.perf_counter() - start
        times = {name: [] for name in calls}
        for _ in range(args.repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
        print(f"\nbatch {batch} ({batch * args.seconds:g} s of audio per call), {args.repeats} timed calls each "
              f"(load average now {os.getloadavg()[0]:.1f}):")
        for name in calls:
            best, median = min(times[name]), float(np.median(times[name]))
            results[(batch, name)] = median
            print(f"  {name:11s} median {median:7.3f} s/call (best {best:.3f}, first call {warmup[name]:.1f} s)  "
                  f"real-time factor {median / (batch * args.seconds):.4f}  "
                  f"throughput {batch * args.seconds / median:6.1f} s of audio per s")
        ours = [name for name in calls if not name.startswith("pytorch")]
        if "pytorch" in calls:
            for name in [name for name in calls if name != "pytorch"]:
                ratio = results[(batch, "pytorch")] / results[(batch, name)]
                difference = np.abs(outputs[name] - outputs["pytorch"]).max()
                same_ids = np.mean(outputs[name].argmax(-1) == outputs["pytorch"].argmax(-1))
                print(f"  {name} / pytorch throughput: {ratio:.2f}x   max |logits difference| {difference:.2e}, "
                      f"greedy ids equal on {same_ids:.1%} of frames")
            for label, names in (("fastest of ours", ours),
                                 ("fastest float32 engine", [n for n in ours if not n.endswith(("int8", "bf16"))])):
                fastest = min(names, key=lambda name: results[(batch, name)])
                print(f"  {label}: {fastest}, {results[(batch, 'pytorch')] / results[(batch, fastest)]:.2f}x "
                      f"PyTorch's throughput")
            for ours_name, reference_name in (("keras-bf16", "pytorch-bf16"), ("onnxruntime-int8", "pytorch-bf16"),
                                              ("onnxruntime-int8", "pytorch-int8")):
                if ours_name in calls and reference_name in calls:
                    print(f"  {ours_name} / {reference_name} throughput: "
                          f"{results[(batch, reference_name)] / results[(batch, ours_name)]:.2f}x")
        elif "keras" in calls:  # without PyTorch, each ONNX engine against Keras (int8 is not float-exact)
            for name in (name for name in calls if name.startswith(("onnxruntime", "openvino"))):
                difference = np.abs(outputs[name] - outputs["keras"]).max()
                print(f"  {name} vs keras: max |logits difference| {difference:.2e}")


if __name__ == "__main__":
    main()
