"""`evaluate` against the Hugging Face PyTorch recipe, side by side, on the same utterances and the same weights.

The recipe is what a user would otherwise write: Wav2Vec2ForCTC, one unpadded utterance at a time, greedy decoding,
jiwer. Both run the full-size base architecture (wav2vec2-base-960h) with the same random weights: a PyTorch
checkpoint made from Wav2Vec2Config's defaults and exported to Keras with `export-model`.

Measured, in interleaved rounds (so a busy machine slows both alike), each as a whole process:
  end to end   `evaluate` (every metric, metadata, tables, summary, plots) vs the recipe (transcripts and WER);
  model pass   only the model calls: evaluate's model pass (length buckets) vs the recipe's model(...) calls.
for each of --engines: `keras` (the float .h5 run by Keras), `onnxruntime-h5` (the same .h5 converted in memory and
run by ONNX Runtime: evaluate's default on CPU), `onnxruntime` (the float .onnx file) and `onnxruntime-int8`
(export-model --int8: not float-exact, so its WER is printed beside the float one).

    .venv/bin/python benchmarks/benchmark_evaluate.py compare --torch-python /tmp/recipe-venv/bin/python \\
        --evaluate-python /tmp/eval-venv/bin/python [--work /tmp/evaluate-benchmark] [--utterances 24] \\
        [--rounds 3] [--engines keras onnxruntime-h5 onnxruntime-int8]

--torch-python is a Python with torch and transformers (this project's tests never need torch); --evaluate-python one
with this project installed as the README says (no torch). The corpus (espeak-ng speech from
librispeech_tools/synthetic.py, a LibriSpeech layout under --work) and both checkpoints are made on the first run and
reused. Without a subcommand it runs `compare`. `pinned` runs the two model passes at the same time, each on a core of
its own with one thread, swapping cores between rounds. The subcommands `corpus`, `checkpoint`, `recipe` and
`model-pass` are the pieces they run. Where espeak-ng is missing (or to grow a corpus with the same utterances),
`repeat` makes a larger corpus of copies of one: `repeat --corpus WORK/corpus-24 --copies 4 --out WORK/corpus-96`,
then `compare --utterances 96` uses it.

On a GPU: `--recipe-device cuda` runs the recipe there, and evaluate runs where Keras' backend puts the model (e.g.
KERAS_BACKEND=jax with jax's CUDA plugin; TensorFlow need not be installed); benchmarks/GPU_RESULTS.md has a run.

It also prints the arithmetic: the corpus's float32 forward work (librispeech_tools/flops.py), the GFLOP/s each model
pass and the recipe's model calls reached, numpy's float32 matmul rate on this machine before and after the rounds,
and two ceilings: `model_pass_ceiling_vs_recipe`, how much faster than the recipe's model calls any float32 engine
could be on this machine if every op ran at that matmul rate, and `end_to_end_ceiling_vs_recipe`, evaluate against
the recipe with such a model pass and the rest of its work as measured.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing

SPLIT = "test-clean"
SENTENCES_PER_UTTERANCE = 2  # the training generator's sentences are short; two make ~8 s, like LibriSpeech


# ---------------------------------------------------------------- pieces (each a whole process)

def make_corpus(root: Path, utterances: int, seed: int) -> None:
    """A LibriSpeech-layout corpus of `utterances` espeak-ng utterances (not the bundled corpus's sentences)."""
    from librispeech_tools import synthetic

    plan = synthetic.training_corpus_plan(utterances * SENTENCES_PER_UTTERANCE, seed=seed, split=SPLIT)
    specs = plan.utterances
    joined = tuple(replace(specs[i], spoken_text=" ".join(s.spoken_text for s in specs[i:i + SENTENCES_PER_UTTERANCE]))
                   for i in range(0, len(specs), SENTENCES_PER_UTTERANCE))
    stats = synthetic.write_corpus(root, replace(plan, utterances=joined), jobs=os.cpu_count() or 1)
    print(stats.summary())


def repeat_corpus(source: Path, target: Path, copies: int) -> None:
    """A LibriSpeech-layout corpus of `copies` copies of `source`'s utterances (every split folder), the first under
    their own ids and each other under new speaker and chapter ids (shifted past the largest id of each in the folders
    and in SPEAKERS.TXT / CHAPTERS.TXT, whose rows are copied likewise): the same audio and texts, as a larger run.
    Everything is read and checked before anything is written."""
    if copies < 1:
        raise ValueError(f"--copies must be at least 1, not {copies}")
    if target.exists():
        raise FileExistsError(f"{target} exists; give a new folder")
    chapters = []  # (split, speaker, chapter, transcript, [(utterance id, text)])
    for transcript in sorted(source.glob("*/*/*/*.trans.txt")):
        split, speaker, chapter = transcript.parents[2].name, transcript.parents[1].name, transcript.parent.name
        if not (speaker.isdigit() and chapter.isdigit()):
            raise ValueError(f"{transcript}: speaker and chapter folders must be numbers, as in LibriSpeech")
        utterances = []
        for number, line in enumerate(transcript.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            utterance_id, _, text = line.strip().partition(" ")
            if not utterance_id.startswith(f"{speaker}-{chapter}-") or not (transcript.parent /
                                                                           f"{utterance_id}.flac").is_file():
                raise ValueError(f"{transcript}:{number}: {utterance_id!r} is not an utterance of this chapter folder "
                                 f"with its .flac")
            utterances.append((utterance_id, text))
        chapters.append((split, int(speaker), int(chapter), transcript, utterances))
    if not chapters:
        raise FileNotFoundError(f"{source} holds no SPLIT/SPEAKER/CHAPTER/*.trans.txt")
    tables = {}  # name -> (its lines, the number of leading id columns)
    for name, id_columns in (("SPEAKERS.TXT", 1), ("CHAPTERS.TXT", 2)):
        if (source / name).is_file():
            lines = (source / name).read_text(encoding="utf-8").splitlines()
            for number, line in enumerate(lines, 1):
                if line.strip() and not line.startswith(";") and not all(
                        field.strip().isdigit() for field in line.split("|", id_columns)[:id_columns]):
                    raise ValueError(f"{source / name}:{number}: the first {id_columns} column(s) must be ids")
            tables[name] = (lines, id_columns)

    def table_ids(name: str, column: int) -> list[int]:
        lines, id_columns = tables.get(name, ([], 1))
        return [int(line.split("|", id_columns)[column]) for line in lines
                if line.strip() and not line.startswith(";")]

    speaker_ids = [c[1] for c in chapters] + table_ids("SPEAKERS.TXT", 0) + table_ids("CHAPTERS.TXT", 1)
    chapter_ids = [c[2] for c in chapters] + table_ids("CHAPTERS.TXT", 0)
    speaker_shift, chapter_shift = (10 ** len(str(max(ids))) for ids in (speaker_ids, chapter_ids))
    shutil.copytree(source, target)
    try:
        for name, (lines, id_columns) in tables.items():
            shifts = (speaker_shift,) if id_columns == 1 else (chapter_shift, speaker_shift)
            entries = [line.split("|", id_columns) for line in lines if line.strip() and not line.startswith(";")]
            copied = []
            for copy in range(1, copies):
                for fields in entries:  # the ids shifted, the rest of the row as it is
                    ids = [str(int(field) + shift * copy).ljust(len(field)) for field, shift in zip(fields, shifts)]
                    copied.append("|".join(ids + fields[id_columns:]))
            (target / name).write_text("\n".join(lines + copied) + "\n", encoding="utf-8")
        for split, speaker, chapter, transcript, utterances in chapters:
            for copy in range(1, copies):
                new_speaker, new_chapter = speaker + speaker_shift * copy, chapter + chapter_shift * copy
                folder = target / split / str(new_speaker) / str(new_chapter)
                folder.mkdir(parents=True)
                rows = []
                for utterance_id, text in utterances:
                    new_id = f"{new_speaker}-{new_chapter}-{utterance_id.rsplit('-', 1)[1]}"
                    shutil.copyfile(transcript.parent / f"{utterance_id}.flac", folder / f"{new_id}.flac")
                    rows.append(f"{new_id} {text}")
                (folder / f"{new_speaker}-{new_chapter}.trans.txt").write_text("\n".join(rows) + "\n",
                                                                               encoding="utf-8")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # no half-made corpus that a rerun would refuse
        raise
    print(f"{target}: {copies} copies of the {sum(len(c[4]) for c in chapters)} utterances of {source}")


def make_checkpoint(folder: Path) -> None:
    """(torch) A random full-size base Wav2Vec2ForCTC with the project's vocabulary, saved as an HF checkpoint."""
    import torch
    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                              Wav2Vec2Processor)

    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(Wav2Vec2Config(vocab_size=32, pad_token_id=0)).eval()
    tokenizer = Wav2Vec2CTCTokenizer(str(REPO_ROOT / "librispeech" / "vocab.json"), unk_token="<unk>",
                                     pad_token="<pad>", word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                         return_attention_mask=False)  # as wav2vec2-base-960h
    model.save_pretrained(folder)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)


def read_corpus(root: Path) -> list[tuple[Path, str]]:
    pairs = []
    for transcripts in sorted((root / SPLIT).rglob("*.trans.txt")):
        for line in transcripts.read_text(encoding="utf-8").splitlines():
            utterance_id, _, text = line.partition(" ")
            pairs.append((transcripts.parent / f"{utterance_id}.flac", text))
    return pairs


def run_recipe(checkpoint: Path, corpus: Path, model_calls_only: bool, device: str = "cpu") -> dict:
    """(torch) The HF recipe: one unpadded utterance at a time, greedy decoding, jiwer. On a GPU (`device` "cuda")
    each call's time includes moving its input there and its logits back, as evaluate's model pass does."""
    import jiwer
    import soundfile
    import torch
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    processor = Wav2Vec2Processor.from_pretrained(checkpoint)
    model = Wav2Vec2ForCTC.from_pretrained(checkpoint).eval().to(device)
    pairs = read_corpus(corpus)
    inputs = []
    for path, _ in pairs:
        audio, rate = soundfile.read(path, dtype="float32")
        inputs.append(processor(audio, sampling_rate=rate, return_tensors="pt").input_values)
    references, hypotheses, model_seconds, first_call = [], [], 0.0, None
    for (_, reference), input_values in zip(pairs, inputs):
        started = time.perf_counter()
        with torch.inference_mode():
            logits = model(input_values.to(device)).logits.cpu()
        model_seconds += time.perf_counter() - started
        first_call = model_seconds if first_call is None else first_call
        if not model_calls_only:
            references.append(reference)
            hypotheses.append(processor.batch_decode(torch.argmax(logits, dim=-1))[0])
    result = {"model_seconds": model_seconds, "first_call": first_call, "torch_threads": torch.get_num_threads(),
              "device": str(torch.device(device)), "audio_seconds": sum(x.shape[-1] for x in inputs) / 16000}
    if not model_calls_only:
        result["wer"] = jiwer.wer(references, hypotheses)
    return result


def run_model_pass(model_path: Path, corpus: Path, batch_size: int | None, growth: float | None, xla: bool,
                   engine: str, sessions: int | None = None) -> dict:
    """evaluate's model pass alone, on the same inputs and batches (unless `growth` asks for other buckets), its
    calls run as evaluate runs them (calls_in_order: several at once with several ONNX Runtime sessions); timed as
    the seconds during which a call ran."""
    import librispeech  # noqa: F401  telemetry guard
    import numpy as np

    from librispeech import data
    from librispeech_tools import model_pass

    waveforms = {path.stem: data.decode_audio(str(path), 16000) for path, _ in read_corpus(corpus)}
    num_samples = {k: len(w) for k, w in waveforms.items()}
    engine_pass = model_pass.load_model_pass(model_path, engine, jit_compile=xla, sessions=sessions,
                                             call_seconds=lambda fixed_samples: model_pass.onnx_call_seconds(
                                                 list(num_samples.values()), batch_size, 559280, 16000, fixed_samples))
    batch_size = batch_size or model_pass.default_batch_size(engine_pass, max(num_samples.values()), 16000)
    if growth == model_pass.BUCKET_GROWTH:  # as evaluate
        batches = model_pass.plan_model_batches(num_samples, batch_size, engine_pass, 559280, 16000)
    else:
        buckets = None if growth is None else model_pass.bucket_lengths(559280, 16000, growth)
        batches = model_pass.plan_batches(num_samples, batch_size, buckets)
    def inputs():
        for batch in batches:
            audio = np.stack([data.model_input(waveforms[i], 1e-7, batch.length) for i in batch.ids])
            lengths = np.array([[len(waveforms[i])] for i in batch.ids], dtype=np.float32)
            yield lengths, (audio, lengths, batch.rows)

    timing, first_call, busy = model_pass.ModelPassTiming(), None, model_pass.BusyClock()
    for lengths, _ in model_pass.calls_in_order(engine_pass, inputs(), busy):
        timing.add(busy.seconds() - timing.seconds, float(lengths.sum()) / 16000, len(lengths))
        first_call = timing.seconds if first_call is None else first_call
    return {"model_seconds": timing.seconds, "audio_seconds": timing.audio_seconds, "batches": timing.batches,
            "engine": engine_pass.engine, "sessions": engine_pass.parallel_calls, "first_call": first_call,
            "padded_seconds": sum(b.length * max(b.rows, len(b.ids)) for b in batches) / 16000}


# ---------------------------------------------------------------- the side-by-side run

def timed(command: list[str], env: dict | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                            env={**os.environ, "TL_DISABLE_ANALYTICS": "true", **(env or {})})
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return seconds, result.stdout


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


# engine -> (model file, export-model options that make it, evaluate's --engine)
ENGINES = {"keras": ("base-random.h5", [], "keras"),
           "onnxruntime-h5": ("base-random.h5", [], "onnxruntime"),  # the .h5 converted in memory (evaluate's default)
           "onnxruntime": ("base-random.onnx", [], "auto"),
           "onnxruntime-int8": ("base-random-int8.onnx", ["--int8"], "auto")}


def compare(args) -> None:
    from librispeech_tools.flops import float32_matmul_rate

    work = args.work
    corpus, checkpoint = work / f"corpus-{args.utterances}", work / "hf-base-random"
    python = str(args.evaluate_python or sys.executable)
    this = [python, str(Path(__file__).resolve())]
    torch_script = [str(args.torch_python), str(Path(__file__).resolve())]
    if not (corpus / SPLIT).is_dir():
        timed(this + ["corpus", "--out", str(corpus), "--utterances", str(args.utterances), "--seed", str(args.seed)])
    if not (checkpoint / "config.json").is_file():
        timed(torch_script + ["checkpoint", "--out", str(checkpoint)])
    models = {}
    for engine in args.engines:
        file_name, options, _ = ENGINES[engine]
        models[engine] = work / file_name
        if not models[engine].is_file():
            timed([sys.executable, "-m", "librispeech_tools.export", "--checkpoint", str(checkpoint), "--output",
                   str(models[engine]), *options])
    env = {"LIBRISPEECH_ROOT": str(corpus)}
    results: dict[str, list[float]] = {"recipe": [], "pytorch model calls": []}
    for engine in args.engines:
        results.update({f"evaluate {engine}": [], f"model pass {engine}": []})
    details = {}
    matmul_rates = [float32_matmul_rate()]
    print(f"load before: {os.getloadavg()}", flush=True)
    for round_ in range(args.rounds):
        for engine, model in models.items():
            out = work / f"report-{args.utterances}-{engine}-{round_}"
            if out.exists():
                shutil.rmtree(out)
            command = [python, "-m", "librispeech_tools.evaluate", "--split", SPLIT, "--model", str(model),
                       "--out", str(out), "--engine", ENGINES[engine][2], *args.evaluate_args]
            seconds, stdout = timed(command, env)
            results[f"evaluate {engine}"].append(seconds)
            print(f"  evaluate {engine}: {seconds:.1f} s", file=sys.stderr, flush=True)  # in case a round is cut off
            details[f"evaluate {engine}"] = {**json.loads((out / "run.json").read_text()),
                                             "summary": stdout.strip().splitlines()[-1]}
            if args.ablation:  # the same run with the metadata in line (default: in a worker process)
                shutil.rmtree(out)
                seconds, _ = timed(command + ["--metadata-workers", "0"], env)
                results.setdefault(f"evaluate {engine}, metadata in line", []).append(seconds)
        recipe_command = torch_script + ["recipe", "--checkpoint", str(checkpoint), "--corpus", str(corpus),
                                         "--device", args.recipe_device]
        seconds, stdout = timed(recipe_command)
        results["recipe"].append(seconds)
        print(f"  recipe: {seconds:.1f} s", file=sys.stderr, flush=True)
        details["recipe"] = last_json(stdout)
        for engine, model in models.items():
            for sessions in [None, *(args.sessions if engine != "keras" else [])]:  # None: evaluate's default
                name = f"model pass {engine}" + (f", {sessions} sessions" if sessions else "")
                _, stdout = timed(this + ["model-pass", "--model", str(model), "--corpus", str(corpus), "--engine",
                                          ENGINES[engine][2]] + (["--xla"] if args.xla else [])
                                  + (["--sessions", str(sessions)] if sessions else [])
                                  + (["--batch-size", str(args.batch_size)] if args.batch_size else []))
                details[name] = last_json(stdout)
                results.setdefault(name, []).append(details[name]["model_seconds"])
        _, stdout = timed(recipe_command + ["--model-calls-only"])
        details["pytorch model calls"] = last_json(stdout)
        results["pytorch model calls"].append(details["pytorch model calls"]["model_seconds"])
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in results.items())
              + f"; load {os.getloadavg()[0]:.2f}", flush=True)
    matmul_rates.append(float32_matmul_rate())
    medians = {name: statistics.median(values) for name, values in results.items()}
    audio = details["recipe"]["audio_seconds"]
    ratios = {engine: {"end_to_end": medians["recipe"] / medians[f"evaluate {engine}"],
                       "model_pass": medians["pytorch model calls"] / medians[f"model pass {engine}"],
                       **{f"model_pass_{n}_sessions": medians["pytorch model calls"]
                          / medians[f"model pass {engine}, {n} sessions"] for n in args.sessions if engine != "keras"}}
              for engine in models}
    print(json.dumps({"utterances": args.utterances, "audio_seconds": audio, "rounds": results, "medians": medians,
                      "ratios_vs_recipe": ratios,
                      "arithmetic": arithmetic(corpus, medians, details, list(models), matmul_rates),
                      "details": details, "load_after": os.getloadavg()}, indent=1))


def arithmetic(corpus: Path, medians: dict[str, float], details: dict, engines: list[str],
               matmul_rates: list[float]) -> dict:
    """The float32 work of the corpus's forward passes (2 x multiply-adds, librispeech_tools/flops.py: fixed for the
    float model), the rate each model pass ran it at, and the ceilings: how much faster than the recipe any float32
    engine could be if every op of the model ran at numpy's matmul rate on this machine, for the model calls alone
    and for evaluate end to end (its other work as measured in the run)."""
    import soundfile

    from librispeech.wav2vec2.configuration import Wav2Vec2Config
    from librispeech_tools.flops import forward_flops

    work = sum(forward_flops(Wav2Vec2Config(), soundfile.info(str(path)).frames) for path, _ in read_corpus(corpus))
    rates = {name: work / medians[name] / 1e9 for name in medians if "model" in name}
    fastest_model_pass = work / max(matmul_rates)
    end_to_end = {engine: medians["recipe"] / (medians[f"evaluate {engine}"] + fastest_model_pass
                                               - details[f"evaluate {engine}"]["model_pass"]["seconds"])
                  for engine in engines}
    return {"gflop": work / 1e9, "gflop_per_second": rates,
            "numpy_float32_matmul_gflop_per_second": [rate / 1e9 for rate in matmul_rates],
            "model_pass_ceiling_vs_recipe": medians["pytorch model calls"] / fastest_model_pass,
            "end_to_end_ceiling_vs_recipe": end_to_end}


def pinned(args) -> None:
    """The two model passes at the same time, each on its own core with one thread (taskset, OMP/TF thread counts),
    swapping cores between rounds: both see the same background load, which a shared machine shifts by minutes."""
    work = args.work
    corpus, checkpoint = work / f"corpus-{args.utterances}", work / "hf-base-random"
    file_name, _, engine = ENGINES[args.engines[0]]
    keras_command = [sys.executable, str(Path(__file__).resolve()), "model-pass", "--model", str(work / file_name),
                     "--corpus", str(corpus), "--engine", engine]
    torch_command = [str(args.torch_python), str(Path(__file__).resolve()), "recipe", "--checkpoint",
                     str(checkpoint), "--corpus", str(corpus), "--model-calls-only"]
    env = {**os.environ, "TL_DISABLE_ANALYTICS": "true", "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
           "TF_NUM_INTEROP_THREADS": "1"}
    ours = f"model pass {args.engines[0]}"
    results = {ours: [], "pytorch model calls": []}
    for round_ in range(args.rounds):
        cores = ("0", "1") if round_ % 2 == 0 else ("1", "0")
        processes = [subprocess.Popen(["taskset", "-c", core] + command, cwd=REPO_ROOT, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                     for core, command in zip(cores, (keras_command, torch_command))]
        outputs = [last_json(process.communicate()[0]) for process in processes]
        for name, output in zip(results, outputs):
            results[name].append(output["model_seconds"])
        print(f"round {round_ + 1} ({args.engines[0]} on core {cores[0]}): " + ", ".join(f"{k} {v[-1]:.1f} s"
              for k, v in results.items()) + f"; load {os.getloadavg()[0]:.2f}", flush=True)
    medians = {name: statistics.median(values) for name, values in results.items()}
    print(json.dumps({"rounds": results, "medians": medians,
                      "model_pass_ratio": medians["pytorch model calls"] / medians[ours]}))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    corpus = commands.add_parser("corpus")
    corpus.add_argument("--out", type=Path, required=True)
    corpus.add_argument("--utterances", type=int, default=24)
    corpus.add_argument("--seed", type=int, default=14)
    repeat = commands.add_parser("repeat", help="a corpus of copies of another, under new speaker and chapter ids")
    repeat.add_argument("--corpus", type=Path, required=True)
    repeat.add_argument("--copies", type=int, required=True)
    repeat.add_argument("--out", type=Path, required=True)
    checkpoint = commands.add_parser("checkpoint")
    checkpoint.add_argument("--out", type=Path, required=True)
    recipe = commands.add_parser("recipe")
    recipe.add_argument("--checkpoint", type=Path, required=True)
    recipe.add_argument("--corpus", type=Path, required=True)
    recipe.add_argument("--model-calls-only", action="store_true")
    recipe.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    model_pass = commands.add_parser("model-pass")
    model_pass.add_argument("--model", type=Path, required=True)
    model_pass.add_argument("--corpus", type=Path, required=True)
    model_pass.add_argument("--batch-size", type=int, help="default: evaluate's")
    model_pass.add_argument("--growth", type=float, default=1.1,
                            help="bucket growth; 1.1 (default): evaluate's batches; 0: no buckets (exact lengths)")
    model_pass.add_argument("--xla", action="store_true")
    model_pass.add_argument("--engine", default="auto", help="evaluate's --engine")
    model_pass.add_argument("--sessions", type=int, help="evaluate's --sessions")
    for command in (parser, commands.add_parser("compare"), commands.add_parser("pinned")):
        command.add_argument("--torch-python", type=Path, help="a Python with torch and transformers")
        command.add_argument("--evaluate-python", type=Path,
                             help="the Python that runs evaluate and its model pass (default: this one). Give one "
                                  "installed as the README says, without torch: where torch is installed, "
                                  "transformers imports it (~2 s) just to load the tokenizer")
        command.add_argument("--work", type=Path, default=Path("/tmp/evaluate-benchmark"))
        command.add_argument("--utterances", type=int, default=24)
        command.add_argument("--seed", type=int, default=14)
        command.add_argument("--rounds", type=int, default=3)
        command.add_argument("--batch-size", type=int, help="for the model-pass process (default: evaluate's)")
        command.add_argument("--xla", action="store_true", help="for the model-pass process")
        command.add_argument("--sessions", type=int, nargs="+", default=[],
                             help="also time the model pass with each of these ONNX Runtime session counts "
                                  "(compare; the default count is always timed; not for --engines keras)")
        command.add_argument("--engines", nargs="+", choices=list(ENGINES), default=["onnxruntime-h5"],
                             help="evaluate's model and engine: keras (.h5 in Keras), onnxruntime-h5 (.h5 converted "
                                  "in memory: evaluate's default on CPU), onnxruntime (.onnx file), onnxruntime-int8 "
                                  "(int8 .onnx); `pinned` uses the first")
        command.add_argument("--recipe-device", default="cpu",
                             help="where the recipe runs PyTorch: cpu or cuda (evaluate runs where Keras' backend "
                                  "puts it: e.g. KERAS_BACKEND=jax with jax's CUDA plugin)")
        command.add_argument("--ablation", action="store_true",
                             help="also time evaluate with --metadata-workers 0 (metadata in line)")
        command.add_argument("--evaluate-args", nargs=argparse.REMAINDER, default=[],
                             help="extra arguments for evaluate (last)")
    args = parser.parse_args(argv)
    if args.command == "corpus":
        make_corpus(args.out, args.utterances, args.seed)
    elif args.command == "repeat":
        repeat_corpus(args.corpus, args.out, args.copies)
    elif args.command == "checkpoint":
        make_checkpoint(args.out)
    elif args.command == "recipe":
        print(json.dumps(run_recipe(args.checkpoint, args.corpus, args.model_calls_only, args.device)))
    elif args.command == "model-pass":
        print(json.dumps(run_model_pass(args.model, args.corpus, args.batch_size, args.growth or None, args.xla,
                                        args.engine, args.sessions)))
    else:
        if args.torch_python is None:
            parser.error("--torch-python is required: a Python with torch and transformers")
        (pinned if args.command == "pinned" else compare)(args)


if __name__ == "__main__":
    main()
