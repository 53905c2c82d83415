"""Write an edge-case corpus in LibriSpeech's OpenSLR layout, and broken model files, for checking by hand that no
input breaks the analysis (issue 12). Nothing here is kept in the repository.

    python scripts/make_edge_corpus.py --out /tmp/edge
    LIBRISPEECH_ROOT=/tmp/edge/LibriSpeech LIBRISPEECH_SAMPLES_PER_SPLIT=all .venv/bin/test --samples 100
    LIBRISPEECH_ROOT=/tmp/edge/LibriSpeech .venv/bin/evaluate --split dev-clean --out /tmp/edge/report
    .venv/bin/evaluate --model /tmp/edge/models/truncated.h5      # one line per broken file, no traceback

Each split gets the same utterances (ids differ per split): lengths at the conv stack's edges (0, 200, 399, 400,
401, 719, 720 samples, the model input and one past it) with short and long transcripts, the 703-character
transcript on 34 s of audio, a transcript at the label width, silence, full-scale clipping, DC offset, -90 dBFS
audio, 8/16/24-bit FLAC and WAV, float WAV with NaN and beyond-full-scale samples, 8 to 96 kHz, 1 to 6 channels,
lower-case and non-ASCII transcripts, a broken FLAC and a FLAC without a transcript line. The expected decision
for each is written to expected.tsv next to the corpus.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import librispeech  # noqa: F401  first: its telemetry guard runs before anything imports code_loader

import numpy as np
import soundfile

from librispeech.config import project_config

SPLITS = ("train-clean-100", "dev-clean", "test-clean")


def signal(kind: str, samples: int, rate: int = 16000, channels: int = 1) -> np.ndarray:
    t = np.arange(samples)[:, None] / rate
    frequency = 180 + 40 * np.arange(channels)[None, :]
    tone = np.sin(2 * np.pi * frequency * t)
    waves = {"tone": 0.4 * tone, "silence": 0 * tone, "clipping": np.sign(tone) + (tone == 0),
             "dc_offset": 0.6 + 0.1 * tone, "quiet": 10 ** (-90 / 20) * tone}
    return waves[kind].astype(np.float32)


def cases(max_samples: int, max_label_length: int):
    """(name, transcript, audio array or bytes or None, rate, format, subtype, expected)."""
    long_text = ("THE QUICK BROWN FOX JUMPS OVER A LAZY DOG AND " * 20)[:703].rstrip()
    at_width = ("ABCDEFGHIJ KLMNOPQRST UVWXYZ " * 100)[:max_label_length]  # no two equal neighbours
    at_width = at_width[:-1] + "Q" if at_width.endswith(" ") else at_width
    yield "empty_wav", "YES", signal("tone", 0), 16000, "WAV", "PCM_16", "no audio samples"
    for samples, text, expected in [(200, "YES", "too short"), (399, "YES", "too short"), (400, "HELLO", "too short"),
                                    (400, "A", "kept"), (401, "I", "kept"), (719, "AB", "too short"),
                                    (720, "AB", "kept"), (720, "AA", "too short"), (2000, "HELLO", "kept")]:
        yield f"len{samples}_{text}", text, signal("tone", samples), 16000, "FLAC", "PCM_16", expected
    yield "long_703_chars", long_text, signal("tone", 34 * 16000), 16000, "FLAC", "PCM_16", "kept"
    yield "at_label_width", at_width, signal("tone", max_samples), 16000, "FLAC", "PCM_16", "kept"
    yield "past_label_width", at_width + "X", signal("tone", max_samples), 16000, "FLAC", "PCM_16", "label too long"
    yield "max_samples", "YES", signal("tone", max_samples), 16000, "FLAC", "PCM_16", "kept"
    yield "max_plus_one", "YES", signal("tone", max_samples + 1), 16000, "FLAC", "PCM_16", "longer than input"
    for kind in ("silence", "clipping", "dc_offset", "quiet"):
        yield kind, "A QUIET WORD", signal(kind, 32000), 16000, "FLAC", "PCM_24", "kept"
    for rate, channels, fmt, subtype in [(8000, 1, "FLAC", "PCM_S8"), (11025, 2, "WAV", "PCM_U8"),
                                         (22050, 3, "FLAC", "PCM_16"), (44100, 4, "WAV", "PCM_24"),
                                         (48000, 5, "WAV", "FLOAT"), (96000, 6, "FLAC", "PCM_24")]:
        yield (f"{rate}hz_{channels}ch_{subtype}", "FORMATS", signal("tone", rate, rate, channels), rate, fmt, subtype,
               "kept")
    odd = signal("tone", 16000)
    odd[100], odd[200], odd[300] = np.nan, np.inf, -5.0
    yield "float_nan_inf", "ODD SAMPLES", odd, 16000, "WAV", "FLOAT", "kept (clipped, warned)"
    yield "lower_case", "hello there", signal("tone", 16000), 16000, "FLAC", "PCM_16", "kept (upper-cased)"
    yield "non_ascii", "CAFÉ NAÏVE 日本", signal("tone", 32000), 16000, "FLAC", "PCM_16", "kept (<unk>)"
    yield "only_apostrophes", "'''", signal("tone", 16000), 16000, "FLAC", "PCM_16", "kept"
    yield "broken_flac", "BROKEN", b"fLaC but not really", 16000, "FLAC", "PCM_16", "unreadable audio"


def write_corpus(root: Path) -> None:
    config = project_config()
    lines = ["split\tid\tcase\texpected"]
    for split_index, split in enumerate(SPLITS):
        speaker, chapter = 900 + split_index, 9000 + split_index
        folder = root / split / str(speaker) / str(chapter)
        folder.mkdir(parents=True, exist_ok=True)
        transcript_lines = []
        for index, (name, text, audio, rate, fmt, subtype, expected) in enumerate(
                cases(config.max_samples, config.max_label_length)):
            utterance_id = f"{speaker}-{chapter}-{index:04d}"
            path = folder / f"{utterance_id}.flac"  # the tree lists .flac; libsndfile reads a WAV by its content
            if isinstance(audio, bytes):
                path.write_bytes(audio)
            else:
                soundfile.write(path, audio, rate, format=fmt, subtype=subtype)
            transcript_lines.append(f"{utterance_id} {text}")
            lines.append(f"{split}\t{utterance_id}\t{name}\t{expected}")
        orphan = f"{speaker}-{chapter}-9999"
        soundfile.write(folder / f"{orphan}.flac", signal("tone", 8000), 16000)
        lines.append(f"{split}\t{orphan}\tno_transcript_line\taudio file without a transcript line")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(transcript_lines) + "\n", encoding="utf-8")
    (root.parent / "expected.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_broken_models(folder: Path, demo: Path) -> None:
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    data = demo.read_bytes()
    (folder / "truncated.h5").write_bytes(data[:len(data) // 3])
    (folder / "not_hdf5.h5").write_text("not a model\n")
    damaged = bytearray(data)
    damaged[len(data) // 2:len(data) // 2 + 20000] = b"\xff" * 20000
    (folder / "damaged_weights.h5").write_bytes(bytes(damaged))
    with h5py.File(folder / "plain.h5", "w") as handle:
        handle["x"] = np.arange(3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--out", type=Path, required=True, help="folder to create (LibriSpeech/ and models/ in it)")
    args = parser.parse_args()
    # a new or empty folder, or one this wrote before: never a real corpus, whose splits it would add speakers to
    if args.out.exists() and (not args.out.is_dir() or (any(args.out.iterdir())
                                                        and not (args.out / "expected.tsv").is_file())):
        sys.exit(f"make_edge_corpus: {args.out} is a file, or a folder that holds files and no expected.tsv of an "
                 f"earlier edge corpus: choose a new or empty folder")
    try:
        write_corpus(args.out / "LibriSpeech")
        write_broken_models(args.out / "models", project_config().model_path)
    except OSError as error:
        sys.exit(f"make_edge_corpus: cannot write {args.out}: {error.strerror or error}")
    print(f"corpus in {args.out / 'LibriSpeech'}, expected decisions in {args.out / 'expected.tsv'}, "
          f"broken models in {args.out / 'models'}")


if __name__ == "__main__":
    main()
