import librispeech  # noqa: F401  first: its telemetry guard runs before anything imports code_loader

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

from librispeech import config as config_module

SAMPLE_RATE = 16000

# datasets keeps an Arrow copy of each parquet split it reads in HF_DATASETS_CACHE (default ~/.cache/huggingface):
# the tests' copies go to a folder of their own, removed at exit, so a run needs no writable home and leaves nothing
# in the user's cache. Set before anything imports datasets; subprocesses inherit it.
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="librispeech-tests-hf-datasets-")
atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], True)


def tone(seconds: float, sample_rate: int = SAMPLE_RATE, frequency: float = 220.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


def write_utterance(root: Path, split: str, speaker: int, chapter: int, utt: int, text: str,
                    audio: np.ndarray | None = None, sample_rate: int = SAMPLE_RATE) -> str:
    """Write one utterance in OpenSLR layout (appending to the chapter's trans.txt); returns its id."""
    chapter_dir = root / split / str(speaker) / str(chapter)
    chapter_dir.mkdir(parents=True, exist_ok=True)
    utterance_id = f"{speaker}-{chapter}-{utt:04d}"
    if audio is not None:
        soundfile.write(chapter_dir / f"{utterance_id}.flac", audio, sample_rate)
    with open(chapter_dir / f"{speaker}-{chapter}.trans.txt", "a", encoding="utf-8") as handle:
        handle.write(f"{utterance_id} {text}\n")
    return utterance_id


def write_tables(root: Path, speakers: dict[int, tuple[str, str]], chapters: dict[int, tuple[int, str, str]],
                 books: dict[str, str]) -> None:
    """SPEAKERS/CHAPTERS/BOOKS.TXT in LibriSpeech's format. speakers: id -> (sex, name);
    chapters: id -> (reader, book id, title); books: id -> title."""
    (root / "SPEAKERS.TXT").write_text(
        "; header comment\n;ID  |SEX| SUBSET           |MINUTES| NAME\n"
        + "".join(f"{s:<5}| {sex} | train-clean-100  | 12.34 | {name}\n" for s, (sex, name) in speakers.items()))
    (root / "CHAPTERS.TXT").write_text(
        ";ID    |READER|MINUTES| SUBSET           | PROJ.|BOOK ID| CH. TITLE | PROJECT TITLE\n"
        + "".join(f"{c:<7}| {r:<5}| 3.21  | train-clean-100  | 111  | {b:<6}| {t} | Project {b}\n"
                  for c, (r, b, t) in chapters.items()))
    (root / "BOOKS.TXT").write_text(";ID    |TITLE |...\n" + "".join(
        f"{b:<7}| {t} | extra\n" for b, t in books.items()))


def make_config(root: Path | None = None, **overrides):
    """A ProjectConfig from the project's config.yaml with some fields replaced (environment ignored)."""
    with open(config_module.CONFIG_FILE, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    if root is not None:
        raw["data"]["root"] = str(root)
    for section_key, value in overrides.items():
        section, key = section_key.split("__")
        raw[section][key] = value
    return config_module.build_config(raw, {})


# A tiny wav2vec2 with the base model's 20 ms frames (so the fixed 34.955 s input stays cheap), random weights.
TINY_CONFIG = {
    "conv_dim": [16, 16, 16, 16, 16, 16, 16], "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2], "feat_extract_norm": "group", "do_stable_layer_norm": False,
    "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
    "num_conv_pos_embeddings": 8, "num_conv_pos_embedding_groups": 2, "vocab_size": 32,
}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """TINY_CONFIG saved as an .h5 at the project's input length (for the integration test and the report)."""
    from librispeech.wav2vec2 import model as wav2vec2_model

    path = tmp_path_factory.mktemp("model") / "tiny-wav2vec2.h5"
    wav2vec2_model.build_wav2vec2_for_ctc(TINY_CONFIG, config_module.project_config().max_samples).save(path)
    return path


@pytest.fixture(autouse=True)
def fresh_config(monkeypatch):
    """Every test reads the configuration anew; environment overrides set by a test stay in that test."""
    for name in ("LIBRISPEECH_ROOT", "LIBRISPEECH_SAMPLES_PER_SPLIT", "LIBRISPEECH_SOURCE",
                 "LIBRISPEECH_HF_DATASET", "LIBRISPEECH_HF_CONFIG", "WAV2VEC_MODEL", "LIBRISPEECH_LM",
                 "LIBRISPEECH_LEXICON"):
        monkeypatch.delenv(name, raising=False)
    config_module.project_config.cache_clear()
    yield
    config_module.project_config.cache_clear()
