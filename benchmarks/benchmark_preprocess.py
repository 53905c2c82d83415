"""Preprocess speed on a LibriSpeech-size split: a generated tree of train-clean-100's 28,539 utterances.

The FLACs are symbolic links to a few real files (preprocess reads headers only), so the tree is cheap to make.
Run: .venv/bin/python benchmarks/benchmark_preprocess.py [--utterances 28539] [--samples all]
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from librispeech import data  # noqa: E402
from librispeech.config import project_config, parse_samples_per_split  # noqa: E402
from dataclasses import replace  # noqa: E402


def make_tree(root: Path, utterances: int, per_chapter: int = 120) -> None:
    sources = []
    for index, seconds in enumerate((2.5, 7.0, 14.0)):
        path = root / f"source-{index}.flac"
        soundfile.write(path, np.random.default_rng(index).normal(0, 0.1, int(seconds * 16000)).astype(np.float32),
                        16000)
        sources.append(path)
    split = root / "train-clean-100"
    for start in range(0, utterances, per_chapter):
        speaker, chapter = 1000 + start // (per_chapter * 4), 50000 + start // per_chapter
        chapter_dir = split / str(speaker) / str(chapter)
        chapter_dir.mkdir(parents=True)
        lines = []
        for utt in range(min(per_chapter, utterances - start)):
            utterance_id = f"{speaker}-{chapter}-{utt:04d}"
            os.symlink(sources[(start + utt) % len(sources)], chapter_dir / f"{utterance_id}.flac")
            lines.append(f"{utterance_id} A TRANSCRIPT OF THE UTTERANCE NUMBER {utt}\n")
        (chapter_dir / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=28539)
    parser.add_argument("--samples", default="all", help="samples per split: an integer or 'all'")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        started = time.perf_counter()
        make_tree(root, args.utterances)
        print(f"generated {args.utterances} utterances in {time.perf_counter() - started:.1f} s")
        config = replace(project_config(), root=root, samples_per_split=parse_samples_per_split(args.samples))
        timings = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            split = data.load_openslr_split("training", config)
            timings.append(time.perf_counter() - started)
        print(f"preprocess of train-clean-100 size ({args.utterances} utterances, samples={args.samples}): "
              f"{len(split.utterances)} selected, best {min(timings):.2f} s, "
              f"median {sorted(timings)[len(timings) // 2]:.2f} s over {args.repeats} runs")


if __name__ == "__main__":
    main()
