"""Make a synthetic training corpus for the small demo model: random sentences spoken by many espeak-ng voices.

    python scripts/make_training_corpus.py --out data/train-synthetic --utterances 4000 [--seed 0] [--jobs 2]
                                           [--text-style frequency|uniform]

Writes LibriSpeech's layout under --out: one split folder (default train-synthetic/) with speaker/chapter folders,
FLACs and trans.txt files, plus SPEAKERS.TXT, CHAPTERS.TXT and BOOKS.TXT. The sentences are composed from common
English words and the bundled corpus's vocabulary but never equal a bundled sentence. Every accent and male/female
variant of the bundled corpus is covered, with speed, pitch, word gaps, level, silences and light noise varied per
utterance. Deterministic per seed; utterance i depends only on (seed, i), so a larger corpus extends a smaller one.
data/train-synthetic/ is git-ignored: do not commit it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "data" / "train-synthetic",
                        help="root folder of the corpus (default: data/train-synthetic)")
    parser.add_argument("--utterances", type=int, required=True, help="how many utterances to make")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel jobs (default: CPU count)")
    parser.add_argument("--text-style", choices=("uniform", "frequency"), default="frequency",
                        help="frequency (default): half the words drawn by their frequency in English, so THE, OF "
                             "and A are as common as in real text; uniform: every word equally likely (the demo "
                             "model's phases 1-6)")
    parser.add_argument("--split", default="train-synthetic", help="name of the split folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.utterances < 1:
        print("error: --utterances must be at least 1", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing the package
    from librispeech_tools import synthetic

    try:  # espeak-ng and sox are checked by write_corpus, after these checks and the folder's: they need neither
        plan = synthetic.training_corpus_plan(args.utterances, seed=args.seed, split=args.split,
                                              text_style=args.text_style)
        plan.validate()  # a --split that is a path, before any folder is touched
    except (synthetic.MissingToolError, ValueError) as error:  # ValueError: the plan's numbers or split name
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.out.resolve() == (REPO_ROOT / "data" / "LibriSpeech").resolve():
        print("error: --out is the bundled sample corpus; choose another folder", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        stats = synthetic.write_corpus(args.out, plan, jobs=args.jobs, progress=True, description="training corpus")
    except (synthetic.CorpusFolderError, synthetic.MissingToolError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    print(stats.summary())
    print(f"wrote {args.out} in {elapsed:.1f} s ({args.utterances / elapsed:.1f} utterances/s, "
          f"{sum(stats.seconds.values()) / elapsed:.0f}x real time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
