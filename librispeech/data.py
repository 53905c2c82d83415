"""LibriSpeech utterances per Tensorleap subset, from the OpenSLR folder tree or the HF datasets copy.

Preprocessing reads directory listings, transcripts and audio headers only; audio is decoded on demand (one small
cache per split, so the input encoder and the metadata of a sample share one decode).
"""
from __future__ import annotations

import contextlib
import errno
import io
import logging
import math
import os
import random
import re
import sys
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import soundfile

from librispeech.config import SUBSETS, ConfigError, ProjectConfig, project_config
from librispeech.model_file import first_line
from librispeech.tokenizer import label_length, min_ctc_frames, normalize_transcript
from librispeech.wav2vec2.configuration import Wav2Vec2Config

logger = logging.getLogger("librispeech")
OFFLINE_HINT = ("Without network, HF_HUB_OFFLINE=1 reads what an earlier run cached, or set LIBRISPEECH_HF_DATASET "
                "to a local copy")
OFFLINE_HINT_SET = "HF_HUB_OFFLINE is set and nothing is cached for it: set LIBRISPEECH_HF_DATASET to a local copy"


class SplitError(ValueError):
    """A configured split that has no usable utterance (every one left out, with the reasons)."""


class AudioDecodeError(ValueError):
    """A listed utterance's audio that fails to decode, or decodes to another length than its header gave. Listing
    reads headers only, so a damaged body behind a good header (a truncated or corrupted file) shows here."""


# Why an utterance was left out.
MISSING_AUDIO = "missing audio file"
MISSING_TRANSCRIPT = "audio file without a transcript line"
EMPTY_TRANSCRIPT = "empty transcript"
UNREADABLE_AUDIO = "unreadable audio"
TOO_LONG = "longer than the model input (max_samples)"
EMPTY_AUDIO = "no audio samples"
UNKNOWN_LENGTH_FRAMES = 2 ** 62  # soundfile's frame count for a header without a length (2**63 - 1)
LABEL_TOO_LONG = "transcript longer than the label width (max_label_length)"
TOO_SHORT_FOR_TRANSCRIPT = "audio too short for its transcript (fewer model frames than CTC needs)"
REPEATED_ID = "utterance id given again (its first line or row decides)"
NO_ID = "HF row without an utterance id"
OUTSIDE_CHAPTER_FOLDER = "not in a SPLIT/SPEAKER/CHAPTER/ folder (the OpenSLR layout)"
WARNING_IDS_SHOWN = 5


@dataclass(frozen=True)
class Utterance:
    id: str
    speaker_id: int
    chapter_id: int
    transcript: str          # upper-cased, single-spaced
    num_samples: int         # at the model's sample rate, after resampling
    source_sample_rate: int
    channels: int
    audio_path: str | None = None  # OpenSLR tree
    hf_row: int | None = None      # row of the HF dataset
    audio_bytes: int | None = None  # the audio's size when its header was read (evaluate's resume digest takes it)


@dataclass(frozen=True)
class ExcludedUtterance:
    id: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class SpeakerInfo:
    sex: str | None
    subset: str | None
    minutes: float | None
    name: str | None


@dataclass(frozen=True)
class ChapterInfo:
    reader_id: int | None
    minutes: float | None
    subset: str | None
    book_id: str | None
    title: str | None
    project_title: str | None


@dataclass(frozen=True)
class CorpusInfo:
    """SPEAKERS.TXT, CHAPTERS.TXT and BOOKS.TXT joined by id; empty when the files are absent."""
    speakers: dict[int, SpeakerInfo] = field(default_factory=dict)
    chapters: dict[int, ChapterInfo] = field(default_factory=dict)
    books: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class SplitData:
    """What a PreprocessResponse carries: the selected utterances and what was left out, and why."""
    subset: str
    split: str
    source: str
    utterances: dict[str, Utterance]
    excluded: list[ExcludedUtterance]
    corpus_info: CorpusInfo
    sample_rate: int
    hf_dataset: Any = None
    audio_cache_size: int = 16
    _audio_cache: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def audio(self, sample_id: str) -> np.ndarray:
        """The utterance's mono float32 waveform at the model's sample rate (unpadded, not normalised)."""
        return self.decoded(sample_id).waveform

    def clipping_fraction(self, sample_id: str) -> float:
        """The fraction of the file's frames with a channel at full scale, before the downmix and resampling that
        move clipped samples off full scale."""
        return self.decoded(sample_id).clipping_fraction

    def decoded(self, sample_id: str) -> DecodedAudio:
        if sample_id in self._audio_cache:
            self._audio_cache.move_to_end(sample_id)
            return self._audio_cache[sample_id]
        utterance = self.utterances[sample_id]
        if utterance.audio_path is not None:
            source, name = utterance.audio_path, f"{sample_id} ({utterance.audio_path})"
        else:
            name = f"{sample_id} (row {utterance.hf_row} of the HF dataset)"
            try:
                source = io.BytesIO(_hf_audio_bytes(self.hf_dataset, utterance.hf_row))
            except ValueError as error:  # its file went away after the listing
                raise AudioDecodeError(f"cannot read audio of {name}: {error}") from None
        decoded = read_audio(source, self.sample_rate, name=name)
        if len(decoded.waveform) != utterance.num_samples:  # preprocessing's lengths and frame counts would be wrong
            raise AudioDecodeError(f"audio of {name} decodes to {len(decoded.waveform)} samples, but its header "
                                   f"gave {utterance.num_samples}: the file is damaged")
        self._audio_cache[sample_id] = decoded
        if len(self._audio_cache) > self.audio_cache_size:
            self._audio_cache.popitem(last=False)
        return decoded


FULL_SCALE = 1.0 - 2.0 ** -15  # int16's largest value as soundfile decodes it: a sample this loud is clipped
# Formats whose loudest sample decodes below that (soundfile's subtype names): their clipping would go uncounted.
# mu-law's and A-law's top code holds everything from ~0.965 of full scale up: the file cannot tell clipping there.
FULL_SCALE_BY_SUBTYPE = {"PCM_S8": 1.0 - 2.0 ** -7, "PCM_U8": 1.0 - 2.0 ** -7,
                         "ULAW": 32124 / 32768, "ALAW": 32256 / 32768}


def full_scale_fraction(samples: np.ndarray, full_scale: float = FULL_SCALE) -> float:
    """The fraction of frames ([frames] or [frames, channels]) with a sample at full scale; 0 for none."""
    if not len(samples):
        return 0.0
    return float(np.mean(np.abs(samples.reshape(len(samples), -1)).max(axis=1) >= full_scale))


@dataclass(frozen=True)
class DecodedAudio:
    waveform: np.ndarray  # mono float32 at the model's sample rate
    clipping_fraction: float  # of the file's frames with a channel at full scale, as the file holds them


def decode_audio(source, sample_rate: int, name: str = "") -> np.ndarray:
    """Decode, average channels to mono, resample to sample_rate (soxr, as librosa does). Samples beyond full scale
    (float files only) are clipped to [-1, 1] and NaN set to 0, with a warning."""
    return read_audio(source, sample_rate, name).waveform


def read_audio(source, sample_rate: int, name: str = "") -> DecodedAudio:
    """decode_audio's waveform, and the clipping of the file itself: averaging a clipped channel with a clean one,
    or resampling, moves its clipped samples off full scale."""
    try:
        with soundfile.SoundFile(source) as sound:
            subtype, rate = sound.subtype, sound.samplerate
            samples = sound.read(dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises several types for corrupt data
        raise AudioDecodeError(f"cannot decode audio of {name or source}: {error}") from error
    if not (np.isfinite(samples).all() and np.abs(samples).max(initial=0.0) <= 1.0):
        # only float files can hold these; full scale is 1.0, as for integer PCM
        logger.warning("%s: audio has NaN, infinite or beyond-full-scale samples; NaN set to 0, the rest clipped "
                       "to [-1, 1]", name or source)
        samples = np.clip(np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    clipped = full_scale_fraction(samples, FULL_SCALE_BY_SUBTYPE.get(subtype, FULL_SCALE))
    mono = samples.mean(axis=1)
    if rate != sample_rate:
        import librosa

        mono = librosa.resample(mono, orig_sr=rate, target_sr=sample_rate)
    return DecodedAudio(np.ascontiguousarray(mono, dtype=np.float32), clipped)


# Model frames are counted with the conv stack of the default (base) config: kernels 10,3,3,3,3,2,2 and strides
# 5,2,2,2,2,2,2, shared by wav2vec2-base, -large and the demo model. Preprocessing runs without the model, so it
# cannot read the stack from it; load_wav2vec2 refuses a model whose conv stack differs.
FRAME_CONFIG = Wav2Vec2Config()


def model_frames(num_samples: int) -> int:
    """Output frames of the model for num_samples samples at its sample rate (0 below 400 samples)."""
    return FRAME_CONFIG.num_frames(num_samples)


def resampled_length(frames: int, rate: int, sample_rate: int) -> int:
    return frames if rate == sample_rate else int(math.ceil(frames * sample_rate / rate))


# ---------------------------------------------------------------- corpus tables (SPEAKERS / CHAPTERS / BOOKS)

def read_lines(path: Path) -> list[str]:
    """The lines of a corpus text file, each UTF-8 (a byte-order mark is dropped) or else Latin-1, never mangled,
    with one warning per file; any line ending (\\n, \\r\\n, \\r), and no other character, ends a line."""
    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    lines, latin_1 = [], 0
    for line in raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(line.decode("latin-1"))
            latin_1 += 1
    if latin_1:
        logger.warning("%s: %d line(s) are not UTF-8; read as Latin-1", path, latin_1)
    return lines


def _table_rows(path: Path, fields: int, numbered: bool = True) -> Iterable[list[str]]:
    """Rows of a LibriSpeech '|' table; the last field keeps any further '|' (some names contain one). A row with
    fewer fields, or (`numbered`) whose first field is not a number, is skipped and counted in one warning."""
    skipped = []
    for line in read_lines(path):
        if line.startswith(";") or not line.strip():
            continue
        parts = [part.strip() for part in line.split("|", fields - 1)]
        if len(parts) == fields and (_is_whole_number(parts[0]) or not numbered):
            yield parts
        else:
            skipped.append(line.strip())
    if skipped:
        logger.warning("%s: %d row(s) skipped, not %d '|'-separated fields%s; e.g. %r", path, len(skipped), fields,
                       " starting with a number" if numbered else "", skipped[0])


def _is_whole_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²', which int() refuses."""
    return text.isascii() and text.isdigit()


def _as_float(text: str) -> float | None:
    """A minutes cell as a number; None where it is empty, not a number, negative or not finite ('nan', 'inf')."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def read_corpus_info(root: Path) -> CorpusInfo:
    speakers, chapters, books = {}, {}, {}
    if (root / "SPEAKERS.TXT").is_file():
        for speaker, sex, subset, minutes, name in _table_rows(root / "SPEAKERS.TXT", 5):
            speakers[int(speaker)] = SpeakerInfo(sex or None, subset or None, _as_float(minutes), name or None)
    if (root / "CHAPTERS.TXT").is_file():
        for chapter, reader, minutes, subset, _project, book, titles in _table_rows(root / "CHAPTERS.TXT", 7):
            # "CH. TITLE | PROJECT TITLE": a chapter title may itself contain '|', so split on the last one.
            title, _, project_title = titles.rpartition("|") if "|" in titles else (titles, "", "")
            chapters[int(chapter)] = ChapterInfo(
                int(reader) if _is_whole_number(reader) else None, _as_float(minutes), subset or None,
                book or None, title.strip() or None, project_title.strip() or None)
    if (root / "BOOKS.TXT").is_file():
        for book, rest in _table_rows(root / "BOOKS.TXT", 2, numbered=False):
            books[book] = rest.split("|")[0].strip() or None
    return CorpusInfo(speakers, chapters, books)


# ---------------------------------------------------------------- selection shared by both sources

@dataclass(frozen=True)
class _Candidate:
    id: str
    transcript: str
    speaker_id: int
    chapter_id: int
    audio_path: str | None = None
    hf_row: int | None = None


def _audio_header(read_info: Callable[[], tuple[Any, int | None]], candidate: _Candidate, config: ProjectConfig):
    """(Utterance, None) or (None, ExcludedUtterance) from the transcript and the audio header alone. read_info
    gives soundfile's info and the audio's size in bytes."""
    labels = label_length(candidate.transcript)
    if labels > config.max_label_length:
        return None, ExcludedUtterance(candidate.id, LABEL_TOO_LONG,
                                       f"{labels} tokens > max_label_length={config.max_label_length}")
    try:
        info, audio_bytes = read_info()
    except Exception as error:
        return None, ExcludedUtterance(candidate.id, UNREADABLE_AUDIO, first_line(error))
    if info.frames >= UNKNOWN_LENGTH_FRAMES:  # libsndfile cannot decode such a file either (it seeks past the end)
        return None, ExcludedUtterance(candidate.id, UNREADABLE_AUDIO,
                                       "its header gives no length (a FLAC with total samples 0: an empty file, or "
                                       "one from a streaming encoder); if it holds audio, re-encode it")
    num_samples = resampled_length(info.frames, info.samplerate, config.sample_rate)
    if num_samples <= 0:
        return None, ExcludedUtterance(candidate.id, EMPTY_AUDIO)
    if num_samples > config.max_samples:
        return None, ExcludedUtterance(
            candidate.id, TOO_LONG, f"{num_samples} samples ({num_samples / config.sample_rate:.2f} s) > "
                                    f"max_samples={config.max_samples}")
    frames, needed = model_frames(num_samples), min_ctc_frames(candidate.transcript)
    if frames < needed:  # no CTC alignment exists: the loss would be infinite
        return None, ExcludedUtterance(candidate.id, TOO_SHORT_FOR_TRANSCRIPT,
                                       f"{num_samples} samples give {frames} frames < {needed} needed for {labels} tokens")
    return Utterance(candidate.id, candidate.speaker_id, candidate.chapter_id, candidate.transcript, num_samples,
                     info.samplerate, info.channels, candidate.audio_path, candidate.hf_row, audio_bytes), None


def _select(candidates: list[_Candidate], header: Callable[[_Candidate], tuple], config: ProjectConfig):
    """Seeded sample of valid utterances: shuffle all ids, then read headers until enough pass. Returns the
    selection, the excluded ones and how many headers were read.

    Only headers are read, in small parallel batches (soundfile releases the GIL while reading).
    """
    order = sorted(candidates, key=lambda c: c.id)
    random.Random(config.seed).shuffle(order)
    wanted = len(order) if config.samples_per_split is None else config.samples_per_split
    selected, excluded = [], []
    with ThreadPoolExecutor(max_workers=8) as pool:
        start = 0
        while len(selected) < wanted and start < len(order):
            batch = order[start:start + max(64, 2 * (wanted - len(selected)))]
            start += len(batch)
            for utterance, problem in pool.map(header, batch):
                if problem is not None:
                    excluded.append(problem)
                elif len(selected) < wanted:
                    selected.append(utterance)
    return sorted(selected, key=lambda u: u.id), excluded, start


def _report(split: SplitData, examined: int) -> None:
    """One warning line for the split's exclusions, out of the utterances examined (a sample reads only the headers
    it needs; problems found without headers, such as a missing file, are counted over the whole split)."""
    if not split.excluded:
        return
    reasons = Counter(e.reason for e in split.excluded)
    first = ", ".join(e.id for e in split.excluded[:WARNING_IDS_SHOWN])
    logger.warning("%s (%s): left out %d of %d utterances examined (%s); first: %s%s. Full list: "
                   "PreprocessResponse.data.excluded", split.split, split.subset, len(split.excluded), examined,
                   ", ".join(f"{n} {r}" for r, n in reasons.most_common()), first,
                   ", ..." if len(split.excluded) > WARNING_IDS_SHOWN else "")


def _repeat(first_transcripts: dict[str, str], utterance_id: str, transcript: str,
            where: str) -> ExcludedUtterance | None:
    """An id given again (a transcript line repeated, a second .trans.txt, a repeated HF row) is left out, whatever
    became of its first line or row (kept, or left out for its own reason); the detail names where the repeat is
    (`where`: its file or row) and whether the texts differ. `first_transcripts` records each id's first
    transcript."""
    if utterance_id not in first_transcripts:
        first_transcripts[utterance_id] = transcript
        return None
    first = first_transcripts[utterance_id]
    return ExcludedUtterance(utterance_id, REPEATED_ID, f"{where}: same transcript" if transcript == first
                             else f"{where}: other transcript: {transcript[:60]!r}")


def _finish(subset: str, split_name: str, config: ProjectConfig, candidates: list[_Candidate],
            structural: list[ExcludedUtterance], header, corpus_info: CorpusInfo, hf_dataset=None) -> SplitData:
    selected, header_problems, headers_read = _select(candidates, header, config)
    excluded = sorted(structural, key=lambda e: e.id) + header_problems
    split = SplitData(subset, split_name, config.source, {u.id: u for u in selected}, excluded, corpus_info,
                      config.sample_rate, hf_dataset)
    _report(split, headers_read + len(structural))
    if not selected:
        raise SplitError(f"{split_name} ({subset}): no usable utterance among {len(candidates) + len(structural)}; "
                         f"reasons: {dict(Counter(e.reason for e in excluded))}")
    return split


# ---------------------------------------------------------------- OpenSLR folder tree

def _chapter_candidates(chapter_dir: Path, names: list[str], first_transcripts: dict[str, str]
                        ) -> tuple[list[_Candidate], list[ExcludedUtterance]]:
    """The utterances of one SPEAKER/CHAPTER folder from its .flac and .trans.txt file names."""
    candidates, problems, listed = [], [], set()
    # Paths as strings, made only for the candidates: a Path per file was a third of listing train-clean-100
    folder = str(chapter_dir)
    flacs = {name.removesuffix(".flac"): name for name in names if name.endswith(".flac")}
    ids = {}  # (speaker, chapter) as written -> their numbers: parsed once per folder, not per line
    for transcript_file in (chapter_dir / name for name in names if name.endswith(".trans.txt")):
        for line in read_lines(transcript_file):
            if not line.strip():
                continue
            utterance_id, text = (line.split(None, 1) + [""])[:2]  # any whitespace after the id (a tab too)
            listed.add(utterance_id)
            speaker, chapter = (utterance_id.split("-", 2) + ["", ""])[:2]
            if (speaker, chapter) not in ids:
                ids[speaker, chapter] = _id_number(speaker), _id_number(chapter)
            transcript = normalize_transcript(text)
            repeat = _repeat(first_transcripts, utterance_id, transcript, str(transcript_file))
            if repeat is not None:
                problems.append(repeat)
            elif not transcript:
                problems.append(ExcludedUtterance(utterance_id, EMPTY_TRANSCRIPT, str(transcript_file)))
            elif utterance_id not in flacs:
                problems.append(ExcludedUtterance(utterance_id, MISSING_AUDIO,
                                                  str(chapter_dir / f"{utterance_id}.flac")))
            else:
                candidates.append(_Candidate(utterance_id, transcript, *ids[speaker, chapter],
                                             audio_path=folder + os.sep + flacs[utterance_id]))
    problems += [ExcludedUtterance(stem, MISSING_TRANSCRIPT, folder + os.sep + name)
                 for stem, name in sorted(flacs.items()) if stem not in listed]
    return candidates, problems


def _raise(error: OSError):
    raise error


def load_openslr_split(subset: str, config: ProjectConfig, corpus_info: CorpusInfo | None = None) -> SplitData:
    split_name = config.splits[subset]
    split_dir = config.root / split_name
    if not split_dir.is_dir():
        inside = config.root / "LibriSpeech"  # the folder the OpenSLR tarballs extract to
        hint = (f" ({inside} has it: set LIBRISPEECH_ROOT to that folder)" if (inside / split_name).is_dir() else "")
        raise FileNotFoundError(
            f"LibriSpeech split {split_name!r} (the {subset} subset) not found: {split_dir} is not a folder{hint}. "
            f"Set LIBRISPEECH_ROOT to the LibriSpeech/ folder that holds the split folders, or change "
            f"data.splits in librispeech/config.yaml.")
    candidates, structural, first_transcripts, walked, unread = [], [], {}, set(), []
    # one listing, linked folders too; a folder that cannot be listed stops it (as an unreadable .trans.txt does)
    # rather than leaving its utterances out unseen
    for folder, subfolders, files in os.walk(split_dir, onerror=_raise, followlinks=True):
        if os.path.realpath(folder) in walked:  # a link back up the tree
            subfolders[:] = []
            continue
        walked.add(os.path.realpath(folder))
        # hidden files and folders are not the corpus's (macOS writes `._NAME` beside every file it copies)
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        visible = [name for name in files if not name.startswith(".")]
        names = sorted(name for name in visible if name.endswith((".flac", ".trans.txt")))
        unread += [os.path.join(folder, name) for name in visible if not name.endswith((".flac", ".trans.txt"))]
        if len(Path(folder).relative_to(split_dir).parts) == 2:  # SPEAKER/CHAPTER: its files are the corpus
            found, problems = _chapter_candidates(Path(folder), names, first_transcripts)
            candidates += found
            structural += problems
        else:  # beside the speaker or chapter folders, or deeper: not read, so listed by their path in the split (a
            # copy's file name would read as the id of the utterance it copies, which may be kept)
            structural += [ExcludedUtterance(os.path.relpath(os.path.join(folder, name), split_dir),
                                             OUTSIDE_CHAPTER_FOLDER, os.path.join(folder, name)) for name in names]

    def header(candidate: _Candidate):
        return _audio_header(lambda: (soundfile.info(candidate.audio_path), os.path.getsize(candidate.audio_path)),
                             candidate, config)

    if unread:  # not utterances, but said: audio in another format or with another suffix (.wav, .FLAC) is not read
        logger.warning("%s (%s): %d file(s) not read, being neither .flac audio nor .trans.txt transcripts (first: "
                       "%s)", split_name, subset, len(unread), sorted(unread)[0])
    corpus_info = corpus_info if corpus_info is not None else read_corpus_info(config.root)
    split = _finish(subset, split_name, config, candidates, structural, header, corpus_info)
    _report_missing_records(split, config.root)
    return split


def _report_missing_records(split: SplitData, root: Path) -> None:
    """One warning when selected utterances have no SPEAKERS.TXT or CHAPTERS.TXT row: their `records` are None."""
    utterances = split.utterances.values()
    no_speaker = [u.id for u in utterances if u.speaker_id not in split.corpus_info.speakers]
    no_chapter = [u.id for u in utterances if u.chapter_id not in split.corpus_info.chapters]
    if no_speaker or no_chapter:
        logger.warning("%s (%s): %d of %d utterances have no SPEAKERS.TXT row and %d no CHAPTERS.TXT row in %s "
                       "(first: %s); their records fields are None", split.split, split.subset, len(no_speaker),
                       len(utterances), len(no_chapter), root, (no_speaker or no_chapter)[0])


# ---------------------------------------------------------------- HF datasets (openslr/librispeech_asr)

HF_COLUMNS = frozenset({"audio", "id", "text", "speaker_id", "chapter_id"})  # openslr/librispeech_asr's, read here


def saved_to_disk(location: Path) -> bool:
    """A save_to_disk copy (a DatasetDict or one Dataset): it has no configs, unlike the hub and its parquet copies."""
    return (location / "dataset_dict.json").is_file() or (location / "state.json").is_file()


def open_hf_split(config: ProjectConfig, subset: str):
    """The HF split with audio left undecoded (datasets >= 4 would need torchcodec to decode it)."""
    import datasets

    split_name = config.hf_splits[subset]
    location = Path(config.hf_dataset).expanduser()
    if location.exists():
        if saved_to_disk(location):
            loaded = datasets.load_from_disk(str(location))
            if isinstance(loaded, datasets.DatasetDict):
                if split_name not in loaded:
                    raise FileNotFoundError(f"split {split_name!r} not in {location} (has {list(loaded)})")
                loaded = loaded[split_name]
            elif loaded.split is not None and str(loaded.split).split("[")[0] != split_name:  # "test[:5]": a slice
                raise FileNotFoundError(f"{location} holds one split, {str(loaded.split)!r}, not {split_name!r} "
                                        f"(save a DatasetDict to have every subset)")
            elif loaded.split is None:
                logger.warning("%s holds one dataset with no split name: it is used as split %r (%s subset)",
                               location, split_name, subset)
            dataset = loaded
        else:  # a parquet copy laid out as on the hub (folders per split, or push_to_hub's shard names)
            dataset = _load_parquet_split(location, config, split_name)
    elif location.is_absolute() or config.hf_dataset.startswith((".", "~")) or config.hf_dataset.count("/") > 1:
        raise FileNotFoundError(f"the HF dataset {config.hf_dataset!r} (LIBRISPEECH_HF_DATASET) is not a folder here, "
                                f"nor a hub id (NAME or OWNER/NAME)")
    else:
        dataset = _load_hub_split(config, split_name)
    missing = sorted(HF_COLUMNS - set(dataset.column_names))
    if missing:
        raise FileNotFoundError(f"the HF dataset {config.hf_dataset!r} split {split_name!r} has no column(s) "
                                f"{', '.join(missing)} (openslr/librispeech_asr has {', '.join(sorted(HF_COLUMNS))})")
    text = dataset.features["text"]
    if not (isinstance(text, datasets.Value) and text.dtype in ("string", "large_string")):
        raise FileNotFoundError(f"the HF dataset {config.hf_dataset!r} split {split_name!r} has a text column of "
                                f"{text}, not strings")
    try:
        return dataset.cast_column("audio", datasets.Audio(decode=False))
    except Exception as error:  # pyarrow: not an Audio column, nor paths or bytes it could be read from
        raise FileNotFoundError(f"the HF dataset {config.hf_dataset!r} split {split_name!r} has an audio column of "
                                f"{dataset.features['audio']}, which is not audio ({first_line(error)})") from None


def _parquet_patterns(hf_config: str, split_name: str) -> list[str]:
    """Where a split's parquet files are, as the hub lays them out (folders per split, or push_to_hub's shards)."""
    return [f"{hf_config}/{split_name}/*.parquet", f"{hf_config}/{split_name}-*.parquet",
            f"{split_name}/*.parquet", f"{split_name}-*.parquet", f"data/{split_name}-*.parquet"]


def _split_parquet_files(location: Path, patterns: list[str]) -> list[Path]:
    """The files of the first pattern that matches any (not macOS's ._* copies)."""
    return next((found for pattern in patterns if (found := sorted(
        path for path in location.glob(pattern) if not path.name.startswith(".")))), [])


# A parquet split is read through an Arrow copy in datasets' cache: these errors, on a path in that cache (or, for a
# full disk, while the copy is written), are the cache's, not the data's.
CACHE_WRITE_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.ENOSPC, errno.EDQUOT}
DISK_FULL_ERRORS = {errno.ENOSPC, errno.EDQUOT}


def _cache_write_error(error: BaseException, cache: str) -> OSError | None:
    """The OSError behind a failed load_dataset where it is the cache's, else None: one on a path in the cache, or a
    full disk while datasets writes the Arrow copy (it wraps that in a DatasetGenerationError, with no path)."""
    from datasets.exceptions import DatasetGenerationError

    wrapped = isinstance(error, DatasetGenerationError)
    cause = error.__cause__ if wrapped else error
    if not isinstance(cause, OSError) or cause.errno not in CACHE_WRITE_ERRORS:
        return None
    if cause.filename is None:
        return cause if wrapped and cause.errno in DISK_FULL_ERRORS else None
    try:
        failed, cache_folder = Path(os.fsdecode(cause.filename)).resolve(), Path(cache).resolve()
        # in the cache, or a folder above it that makedirs could not make (HOME=/nonexistent on a read-only root, or
        # a home that is a file: the error names /nonexistent or HOME/.cache, not the cache itself)
        return cause if failed.is_relative_to(cache_folder) or cache_folder.is_relative_to(failed) else None
    except (OSError, ValueError, TypeError):
        return None


def _load_parquet_split(location: Path, config: ProjectConfig, split_name: str, files: list[Path] | None = None):
    """files: the split's parquet files where the caller has already found them."""
    import datasets

    patterns = _parquet_patterns(config.hf_config, split_name)
    files = files or _split_parquet_files(location, patterns)
    if not files:
        found = sorted({str(path.parent.relative_to(location)) for path in location.rglob("*.parquet")})
        raise FileNotFoundError(
            f"no parquet files for split {split_name!r} of config {config.hf_config!r} under {location} "
            f"(expected one of {', '.join(patterns)}; folders with parquet files: "
            f"{', '.join(found[:8]) or 'none'}). The hub's configs are clean, other and all (whose splits "
            f"are test.clean, ...): set LIBRISPEECH_HF_CONFIG")
    _check_shard_set(files)
    try:
        return datasets.load_dataset("parquet", data_files={split_name: [str(f) for f in files]}, split=split_name)
    except (OSError, datasets.exceptions.DatasetGenerationError) as error:
        cache = str(datasets.config.HF_DATASETS_CACHE)
        cause = _cache_write_error(error, cache)
        if cause is None:
            raise
        raise OSError(cause.errno, f"datasets cannot write its Arrow copy of the parquet files of split "
                      f"{split_name!r} (about their size) in its cache, {cache} ({cause.strerror}"
                      + (f": {cause.filename}" if cause.filename else "") + "): set HF_DATASETS_CACHE to a "
                      "writable folder with room, or use a save_to_disk copy, which is read in place") from error


def _load_hub_split(config: ProjectConfig, split_name: str):
    """Only the split's parquet files are fetched, into huggingface_hub's cache (which HF_HUB_OFFLINE=1 then reads):
    datasets' load_dataset(id, config, split=...) downloads and prepares every split of the config, ~30 GB for
    clean's training sets when only test (350 MB) is asked for. A dataset not stored as parquet goes that way."""
    import datasets
    import huggingface_hub

    patterns = _parquet_patterns(config.hf_config, split_name)
    try:
        folder = Path(huggingface_hub.snapshot_download(config.hf_dataset, repo_type="dataset",
                                                        allow_patterns=patterns))
        files = _split_parquet_files(folder, patterns)
        if not files:
            logger.warning("the HF dataset %r has no parquet files for split %r of config %r (%s): loading it with "
                           "datasets.load_dataset, which downloads and prepares every split of the config",
                           config.hf_dataset, split_name, config.hf_config, ", ".join(patterns))
            return datasets.load_dataset(config.hf_dataset, config.hf_config, split=split_name)
    except Exception as error:  # offline, unknown id, config or split: huggingface_hub and datasets raise many kinds
        from huggingface_hub import constants  # what datasets downloads with (it reads HF_HUB_OFFLINE)

        raise FileNotFoundError(f"cannot load the HF dataset {config.hf_dataset!r} (config {config.hf_config!r}, "
                                f"split {split_name!r}): {first_line(error).rstrip('.')}. "
                                f"{OFFLINE_HINT_SET if constants.HF_HUB_OFFLINE else OFFLINE_HINT}") from None
    return _load_parquet_split(folder, config, split_name, files)


def _check_shard_set(files: list[Path]) -> None:
    """push_to_hub names its shards NAME-0000i-of-0000N.parquet: all N must be there, or rows would be missing."""
    totals = {match.group(1) for path in files if (match := re.search(r"-\d+-of-(\d+)\.parquet$", path.name))}
    for total in totals:
        if sum(path.name.endswith(f"-of-{total}.parquet") for path in files) != int(total):
            raise FileNotFoundError(f"only some of the {int(total)} parquet shards of {files[0].parent} are there "
                                    f"({', '.join(p.name for p in files)}): copy all of them")


def _hf_audio_bytes(dataset, row: int) -> bytes:
    audio = dataset[int(row)]["audio"]
    if not audio:
        raise ValueError("its audio cell is empty")
    if audio.get("bytes"):
        return audio["bytes"]
    if audio.get("path") and Path(audio["path"]).is_file():
        return Path(audio["path"]).read_bytes()
    raise ValueError(f"no audio bytes, and its path {audio.get('path')!r} is not a readable file")


def _whole_number(value) -> int | None:
    """A speaker or chapter id as a number; None where it is missing or not a whole number."""
    if isinstance(value, str):
        value = value.strip()
        return int(value) if _is_whole_number(value) else None
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer()):
        return int(value)
    return None


def _id_number(value) -> int:
    """A speaker or chapter id as a number; -1 where a row has none (as for an OpenSLR file name without one)."""
    number = _whole_number(value)
    return -1 if number is None else number


def load_hf_split(subset: str, config: ProjectConfig) -> SplitData:
    dataset = open_hf_split(config, subset)
    columns = dataset.select_columns(["id", "text", "speaker_id", "chapter_id"]).to_dict()
    candidates, structural, first_transcripts, no_number = [], [], {}, []
    for row, (utterance_id, text, speaker, chapter) in enumerate(
            zip(columns["id"], columns["text"], columns["speaker_id"], columns["chapter_id"])):
        transcript = normalize_transcript(text or "")
        if utterance_id is None or not str(utterance_id).strip():
            structural.append(ExcludedUtterance(f"(row {row})", NO_ID, f"row {row}"))
            continue
        repeat = _repeat(first_transcripts, str(utterance_id), transcript, f"row {row}")
        if repeat is not None:
            structural.append(repeat)
        elif not transcript:
            structural.append(ExcludedUtterance(str(utterance_id), EMPTY_TRANSCRIPT, f"row {row}"))
        else:
            unreadable = [value for value in (speaker, chapter) if _whole_number(value) is None]
            if unreadable:
                no_number.append((row, unreadable[0]))
            candidates.append(_Candidate(str(utterance_id), transcript, _id_number(speaker), _id_number(chapter),
                                         hf_row=row))
    if no_number:  # kept (the id and text are fine), said: the speaker tables would group them as one
        logger.warning("%s (%s): %d row(s) have a speaker_id or chapter_id that is missing or not a whole number "
                       "(first: row %d, %r); their speaker or chapter is -1", config.hf_splits[subset], subset,
                       len(no_number), *no_number[0])

    def header(candidate: _Candidate):
        def read_info():
            try:
                audio = _hf_audio_bytes(dataset, candidate.hf_row)
                return soundfile.info(io.BytesIO(audio)), len(audio)
            except Exception as error:  # name the row, not the in-memory buffer soundfile names
                raise ValueError(f"row {candidate.hf_row}: " + re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>",
                                                                     "its audio", str(error))) from None
        return _audio_header(read_info, candidate, config)

    return _finish(subset, config.hf_splits[subset], config, candidates, structural, header, CorpusInfo(), dataset)


def load_split(subset: str, config: ProjectConfig | None = None) -> SplitData:
    config = config or project_config()
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}; expected one of {SUBSETS}")
    if subset not in config.subsets:
        raise ConfigError(f"no split is configured for the {subset} subset (data.splits / data.hf_splits in "
                          f"librispeech/config.yaml)")
    if config.source == "huggingface":
        return load_hf_split(subset, config)
    return load_openslr_split(subset, config)


def load_all_splits(config: ProjectConfig | None = None) -> dict[str, SplitData]:
    config = config or project_config()
    if config.source == "huggingface":
        return {subset: load_hf_split(subset, config) for subset in config.subsets}
    corpus_info = read_corpus_info(config.root)  # read the tables once for all splits
    return {subset: load_openslr_split(subset, config, corpus_info) for subset in config.subsets}


_configured_splits: tuple[ProjectConfig, dict[str, SplitData]] | None = None


@contextlib.contextmanager
def warnings_on_stdout():
    """Send this package's warnings (utterances left out, records missing) to the stdout of the moment: Tensorleap
    shows the user what the dataset's parse prints (code-loader's check_dataset keeps stdout, not stderr), and with
    no handler of its own a library's warning would reach stderr only."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def configured_splits() -> dict[str, SplitData]:
    """load_all_splits() of project_config(), loaded once per configuration: code-loader's integration test runs
    preprocess again after every sample (its leap_binder.check()), and a whole split's headers take seconds."""
    global _configured_splits
    config = project_config()
    if _configured_splits is None or _configured_splits[0] is not config:
        _configured_splits = (config, load_all_splits(config))
    return _configured_splits[1]


# ---------------------------------------------------------------- model inputs

def normalize_audio(audio: np.ndarray, epsilon: float) -> np.ndarray:
    """Zero mean, unit variance over the real samples, as Wav2Vec2FeatureExtractor(do_normalize=True)."""
    audio = np.asarray(audio, dtype=np.float32)
    return ((audio - audio.mean()) / np.sqrt(audio.var() + epsilon)).astype(np.float32)


def model_input(waveform: np.ndarray, epsilon: float, length: int) -> np.ndarray:
    """The model's `audio` input: the waveform normalised, then zero-padded to `length` samples (the platform's
    max_samples; evaluate's real length or length bucket)."""
    return pad_to(normalize_audio(waveform, epsilon), length)


def pad_to(values: np.ndarray, length: int) -> np.ndarray:
    if len(values) > length:
        raise ValueError(f"{len(values)} samples do not fit the model input of {length}")
    padded = np.zeros(length, dtype=np.float32)
    padded[:len(values)] = values
    return padded


# ---------------------------------------------------------------- speaker / chapter / book records

RECORD_TYPES = {  # key -> metadata type name, so a None value still has a declared type
    "sex": "string", "speaker_name": "string", "speaker_minutes": "float", "speaker_subset": "string",
    "chapter_title": "string", "chapter_minutes": "float", "book_id": "string", "book_title": "string",
}


def record_fields(utterance: Utterance, corpus_info: CorpusInfo) -> dict[str, str | float | None]:
    """The speaker, chapter and book behind an utterance; None where the corpus tables do not say."""
    speaker = corpus_info.speakers.get(utterance.speaker_id, SpeakerInfo(None, None, None, None))
    chapter = corpus_info.chapters.get(utterance.chapter_id, ChapterInfo(None, None, None, None, None, None))
    book_title = corpus_info.books.get(chapter.book_id) if chapter.book_id else None
    return {
        "sex": speaker.sex, "speaker_name": speaker.name, "speaker_minutes": speaker.minutes,
        "speaker_subset": speaker.subset, "chapter_title": chapter.title, "chapter_minutes": chapter.minutes,
        "book_id": chapter.book_id, "book_title": book_title or chapter.project_title,
    }
