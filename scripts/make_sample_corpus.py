"""Regenerate the bundled sample corpus (data/LibriSpeech): synthetic espeak-ng speech in LibriSpeech's layout.

    python scripts/make_sample_corpus.py [--out data/LibriSpeech] [--jobs 2]

Deterministic: the books, speakers, voices and sentences are fixed in librispeech_tools/sample_corpus.yaml, and
espeak-ng and sox give the same audio for the same input, so the files come out the same, byte for byte, on every run
(with the same tool versions; tests/test_synthetic.py checks it).
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
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "data" / "LibriSpeech",
                        help="the LibriSpeech/ folder to (re)write (default: the bundled corpus)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel jobs (default: CPU count)")
    return parser.parse_args(argv)


def folder_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing the package
    from librispeech_tools import synthetic

    started = time.perf_counter()
    try:
        stats = synthetic.write_corpus(args.out, synthetic.sample_corpus_plan(), jobs=args.jobs, progress=True,
                                       description="sample corpus")
    except (synthetic.CorpusFolderError, synthetic.MissingToolError) as error:  # tools: after the folder's checks
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(stats.summary())
    print(f"wrote {args.out} ({folder_bytes(args.out) / 2**20:.2f} MiB of files) in "
          f"{time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
