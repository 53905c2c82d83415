"""`poetry run train-demo`: train a small wav2vec2 (this project's Keras model) on synthetic espeak-ng speech.

The real checkpoint cannot be downloaded everywhere, so the repository ships a demo model that really transcribes.
It trains with the integration's own CTC loss (librispeech.metrics.ctc_loss) on a generated LibriSpeech-layout
corpus (scripts/make_training_corpus.py) whose sentences never occur in the bundled sample corpus. A held-out slice
of that corpus picks the best epoch; corpus WER/CER on the bundled corpus (never trained on) is logged every epoch.
The best epoch is exported with the project's fixed input length to --output (model/trained-wav2vec2.h5 unless
named; the shipped demo model is model/demo-wav2vec2.h5).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from librispeech.config import BUNDLED_CORPUS, REPO_ROOT, project_config

# The base model's conv kernels and strides (so the same 20 ms frames) on a narrow stack; a small pre-LN
# ("stable layer norm") transformer, which trains from scratch more reliably than post-LN.
DEMO_CONFIG = {
    "model_type": "wav2vec2",
    "architectures": ["Wav2Vec2ForCTC"],
    "conv_dim": [32, 64, 96, 128, 128, 128, 128],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_bias": True,
    "feat_extract_norm": "layer",
    "feat_extract_activation": "gelu",
    "do_stable_layer_norm": True,
    "hidden_size": 192,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 768,
    "hidden_act": "gelu",
    "hidden_dropout": 0.05,
    "attention_dropout": 0.05,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.0,
    "final_dropout": 0.0,
    "num_conv_pos_embeddings": 64,
    "num_conv_pos_embedding_groups": 8,
    "layer_norm_eps": 1e-5,
    "vocab_size": 32,
    "pad_token_id": 0,
    "ctc_loss_reduction": "sum",
}
WIDTH_STEP = 16000        # batches are zero-padded to whole seconds: few distinct shapes to trace
LABEL_STEP = 32           # labels zero-padded to a multiple of this: CTC's cost grows with the padded width
MAX_SECONDS = 16.0


# ---------------------------------------------------------------- data

def load_utterances(root: Path, split_name: str, limit: int | None, seed: int):
    """Normalised waveforms and reference transcripts of a LibriSpeech-layout split (seeded sample of `limit`)."""
    from librispeech import data

    config = replace(project_config(), root=root, splits={**project_config().splits, "training": split_name},
                     samples_per_split=limit, seed=seed, max_samples=int(MAX_SECONDS * project_config().sample_rate))
    split = data.load_openslr_split("training", config)
    waveforms = [data.normalize_audio(split.audio(i), config.normalize_epsilon) for i in split.utterances]
    return waveforms, [u.transcript for u in split.utterances.values()]


def bundled_corpus():
    """Every utterance of the bundled sample corpus, all three splits."""
    from librispeech import data

    config = replace(project_config(), root=BUNDLED_CORPUS, samples_per_split=None)
    waveforms, references = [], []
    for subset in config.subsets:
        split = data.load_openslr_split(subset, config)
        waveforms += [data.normalize_audio(split.audio(i), config.normalize_epsilon) for i in split.utterances]
        references += [u.transcript for u in split.utterances.values()]
    return waveforms, references


def batches(waveforms, batch_size: int, rng: np.random.Generator | None = None):
    """Index groups of similar length (little padding); shuffled when rng is given."""
    order = np.argsort([len(w) for w in waveforms], kind="stable")
    groups = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(groups)
    return groups


def pack_audio(waveforms, group, width: int | None = None):
    """Zero-padded batch (to whole seconds, or to `width`, a fixed-length model's input) and real lengths."""
    width = width or int(np.ceil(max(len(waveforms[i]) for i in group) / WIDTH_STEP) * WIDTH_STEP)
    audio = np.zeros((len(group), width), np.float32)
    for row, index in enumerate(group):
        audio[row, :len(waveforms[index])] = waveforms[index]
    return audio, np.array([[len(waveforms[i])] for i in group], np.float32)


def pack_labels(label_ids, group):
    width = int(np.ceil(max(len(label_ids[i]) for i in group) / LABEL_STEP) * LABEL_STEP)
    labels = np.zeros((len(group), width), np.int32)
    for row, index in enumerate(group):
        labels[row, :len(label_ids[index])] = label_ids[index]
    return labels


# ---------------------------------------------------------------- model

def transcribe(model, waveforms, batch_size: int = 8) -> list[str]:
    from librispeech import tokenizer

    hypotheses = [""] * len(waveforms)
    fixed_width = model.inputs[0].shape[1]  # None for a model built for any length
    for group in batches(waveforms, batch_size):
        logits = np.asarray(model.predict_on_batch(list(pack_audio(waveforms, group, fixed_width))))
        for row, index in enumerate(group):
            hypotheses[index] = tokenizer.decode_greedy(logits[row])
    return hypotheses


def export_fixed_length(model, output: Path) -> None:
    """Rebuild with the project's fixed input length (what Tensorleap gets), copy the weights, save as .h5."""
    from librispeech.wav2vec2 import model as wav2vec2_model

    fixed = wav2vec2_model.with_input_length(model, project_config().max_samples, name="demo_wav2vec2_for_ctc")
    output.parent.mkdir(parents=True, exist_ok=True)
    fixed.save(output)


def partial_path(output: Path) -> Path:
    """Where a run writes its export until it ends (same folder, so the final rename is atomic)."""
    return output.with_name(f"{output.stem}.partial{output.suffix}")


def check_output_folder(output: Path) -> None:
    """Make --output's folder and prove it writable, or exit with one line saying why."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output.parent):
            pass
    except OSError as error:
        sys.exit(f"train-demo: --output {output}: cannot write in {output.parent}: {error.strerror or error}")


def init_weights(path: Path, demo_model) -> list:
    """The weights of an earlier export of the demo config (--init), or a one-line exit saying why not."""
    from librispeech.model_file import ModelFileError, load_keras_h5, require_model_file

    try:
        require_model_file(path)
        weights = load_keras_h5(path).get_weights()
    except ModelFileError as error:
        sys.exit(f"train-demo: --init: {error}")
    shapes, demo_shapes = [w.shape for w in weights], [w.shape for w in demo_model.get_weights()]
    if shapes != demo_shapes:
        sys.exit(f"train-demo: --init {path} is not an export of the demo config ({len(shapes)} weights, shaped "
                 f"{shapes[:3]}..., where the demo model has {len(demo_shapes)}, shaped {demo_shapes[:3]}...)")
    return weights


def build_trainable_model(precision: str, learning_rate):
    """The demo config for any input length, computing in `precision` (a Keras dtype policy), compiled with AdamW
    and the integration's CTC loss. The global policy is float32 again afterwards."""
    import keras

    from librispeech import metrics
    from librispeech.wav2vec2 import model as wav2vec2_model

    keras.mixed_precision.set_global_policy(precision)
    try:
        model = wav2vec2_model.build_wav2vec2_for_ctc(DEMO_CONFIG, None, name="demo_wav2vec2_for_ctc")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=0.01, clipnorm=5.0),
                  loss=lambda labels, logits: metrics.ctc_loss(logits, labels))
    return model


def train(args) -> dict:
    import keras
    from tqdm import tqdm

    from librispeech import data, metrics, tokenizer
    from librispeech.wav2vec2 import model as wav2vec2_model

    keras.utils.set_random_seed(args.seed)
    corpus_root = args.corpus
    if not (corpus_root / args.corpus_split).is_dir():
        sys.exit(f"train-demo: no training corpus at {corpus_root / args.corpus_split}; make it with "
                 f"`python scripts/make_training_corpus.py --out {corpus_root} --utterances {args.utterances}`")
    # evaluation and export in float32 whatever the training precision: the figures logged are the export's
    evaluation_model = wav2vec2_model.build_wav2vec2_for_ctc(DEMO_CONFIG, None, name="demo_wav2vec2_for_ctc")
    initial_weights = None if args.init is None else init_weights(args.init, evaluation_model)  # before the corpus
    check_output_folder(args.output)  # before the corpus is read: a folder it cannot write is one line, not a traceback
    try:
        waveforms, transcripts = load_utterances(corpus_root, args.corpus_split, args.utterances, args.seed)
    except (data.SplitError, OSError) as error:  # an empty corpus, an unreadable file
        sys.exit(f"train-demo: cannot train on {corpus_root / args.corpus_split}: {error}")
    held_out = max(1, len(waveforms) // 20)  # model selection slice, never trained on
    if len(waveforms) <= held_out:
        sys.exit(f"train-demo: {len(waveforms)} utterance(s) leave none to train on beside the {held_out} held out "
                 f"for model selection: use --utterances 2 or more")
    select_waveforms, select_references = waveforms[:held_out], transcripts[:held_out]
    waveforms, transcripts = waveforms[held_out:], transcripts[held_out:]
    label_ids = [tokenizer.get_tokenizer()(text).input_ids for text in transcripts]
    test_waveforms, test_references = bundled_corpus()
    hours = sum(len(w) for w in waveforms) / project_config().sample_rate / 3600
    print(f"training on {len(waveforms)} utterances ({hours:.2f} h), selecting on {held_out}, "
          f"testing on {len(test_waveforms)} bundled utterances")

    steps_per_epoch = len(batches(waveforms, args.batch_size))
    total_steps = args.epochs * steps_per_epoch
    warmup_steps = min(args.warmup_steps, total_steps - 1)  # a short run still decays after its warm-up
    if warmup_steps < args.warmup_steps:
        print(f"train-demo: {total_steps} steps in all, so the warm-up is {warmup_steps} steps, not "
              f"{args.warmup_steps}", file=sys.stderr)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=total_steps - warmup_steps, warmup_target=args.learning_rate, warmup_steps=warmup_steps,
        alpha=0.05)
    model = build_trainable_model(args.precision, schedule)
    if initial_weights is not None:  # continue from an earlier export (same config)
        model.set_weights(initial_weights)

    rng = np.random.default_rng(args.seed)
    best = {"select_wer": float("inf")}
    # Staged beside the output and moved into place together at the end: an interrupted or failed run leaves an
    # earlier export, its .json and its .training.csv as they were (the .csv is no longer emptied at the start).
    log_path = args.output.with_suffix(".training.csv")
    staged_output = partial_path(args.output)
    staged_log = staged_output.with_suffix(".training.csv")
    with open(staged_log, "w", newline="") as log_file:
        log = csv.writer(log_file)
        log.writerow(["epoch", "train_loss", "select_wer", "select_cer", "bundled_wer", "bundled_cer", "seconds"])
        for epoch in range(1, args.epochs + 1):
            started, losses = time.perf_counter(), []
            progress = tqdm(batches(waveforms, args.batch_size, rng), desc=f"epoch {epoch}/{args.epochs}",
                            unit="batch")
            for group in progress:
                audio, lengths = pack_audio(waveforms, group)
                losses.append(float(model.train_on_batch([audio, lengths], pack_labels(label_ids, group))))
                progress.set_postfix(loss=f"{np.mean(losses[-50:]):.2f}")
            evaluation_model.set_weights(model.get_weights())
            select = metrics.corpus_error_rates(select_references, transcribe(evaluation_model, select_waveforms))
            bundled = metrics.corpus_error_rates(test_references, transcribe(evaluation_model, test_waveforms))
            seconds = time.perf_counter() - started
            log.writerow([epoch, f"{np.mean(losses):.4f}", f"{select['wer']:.4f}", f"{select['cer']:.4f}",
                          f"{bundled['wer']:.4f}", f"{bundled['cer']:.4f}", f"{seconds:.1f}"])
            log_file.flush()
            print(f"epoch {epoch}: loss {np.mean(losses):.3f}; held-out WER {select['wer']:.2%} CER "
                  f"{select['cer']:.2%}; bundled corpus WER {bundled['wer']:.2%} CER {bundled['cer']:.2%}; "
                  f"{seconds:.0f} s")
            if select["wer"] <= best["select_wer"]:
                best = {"epoch": epoch, "select_wer": select["wer"], "select_cer": select["cer"],
                        "bundled_wer": bundled["wer"], "bundled_cer": bundled["cer"]}
                export_fixed_length(evaluation_model, staged_output)
    best.update(training_utterances=len(waveforms), training_hours=round(hours, 3), epochs=args.epochs,
                batch_size=args.batch_size, learning_rate=args.learning_rate, precision=args.precision,
                init=str(args.init) if args.init else None, corpus=str(args.corpus), corpus_split=args.corpus_split,
                utterances=args.utterances, warmup_steps=args.warmup_steps, seed=args.seed, config=DEMO_CONFIG)
    staged_json = staged_output.with_suffix(".json")
    staged_json.write_text(json.dumps(best, indent=1) + "\n")
    for staged, final in ((staged_output, args.output), (staged_log, log_path),
                          (staged_json, args.output.with_suffix(".json"))):
        os.replace(staged, final)
    print(f"best epoch {best['epoch']}: bundled corpus WER {best['bundled_wer']:.2%}, CER {best['bundled_cer']:.2%}; "
          f"saved {args.output}, log {log_path}")
    return best


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="train-demo", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=REPO_ROOT / "data" / "train-synthetic",
                        help="training corpus root (scripts/make_training_corpus.py --out)")
    parser.add_argument("--corpus-split", default="train-synthetic")
    parser.add_argument("--utterances", type=int, default=16000, help="seeded sample of the corpus")
    parser.add_argument("--epochs", type=int, default=11)
    parser.add_argument("--batch-size", type=int, default=6)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="float32",
                        help="training compute precision; evaluation and export are float32 either way "
                             "(mixed_bfloat16 pays off on CPUs with native bfloat16 and on GPUs: "
                             "benchmarks/TRAINING_RESULTS.md)")
    parser.add_argument("--init", type=Path, help="start from this export's weights instead of random ones")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "model" / "trained-wav2vec2.h5",
                        help="the export (with .json and .training.csv beside it); the shipped demo model is "
                             "model/demo-wav2vec2.h5: name it to replace it")
    args = parser.parse_args(argv)
    if min(args.epochs, args.batch_size, args.utterances) < 1 or args.warmup_steps < 0:
        parser.error("--epochs, --batch-size and --utterances must be at least 1, --warmup-steps at least 0")
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0) or args.seed < 0:
        parser.error("--learning-rate must be a positive number and --seed at least 0")
    # refused now, not after the corpus is read and an epoch trained
    if args.output.suffix not in (".h5", ".hdf5"):
        parser.error(f"--output must end in .h5 or .hdf5 (the Keras export Tensorleap takes), got {args.output}")
    blocking = next((folder for folder in (args.output.parent, *args.output.parent.parents)
                     if folder.exists() and not folder.is_dir()), None)
    if blocking is not None:
        parser.error(f"--output {args.output}: {blocking} is a file, not a folder")
    if args.output.is_dir():
        parser.error(f"--output {args.output} is a folder: name the .h5 file to write")
    return args


def main(argv=None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
