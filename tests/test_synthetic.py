"""The bundled synthetic corpus (data/LibriSpeech) and its generators (librispeech_tools/synthetic.py, scripts/).

Only the tests that run espeak-ng are skipped on a machine without it; the bundled corpus is checked everywhere.
"""
import dataclasses
import importlib.util
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile

from librispeech_tools import synthetic
from librispeech.config import BUNDLED_CORPUS, REPO_ROOT

SPLITS = ("train-clean-100", "dev-clean", "test-clean")
MAX_BYTES_ON_DISK = 5_000_000
UTTERANCE_ID = re.compile(r"(\d+)-(\d+)-(\d{4})")

needs_espeak = pytest.mark.skipif(bool(synthetic.missing_tools()),
                                  reason="espeak-ng and sox are not installed (apt-get install espeak-ng sox)")


def table_rows(path: Path, header: str) -> list[list[str]]:
    """Data rows of a LibriSpeech '|' table, after checking its column header line is there."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert header in lines, f"{path.name} lacks the header {header!r}"
    return [[field.strip() for field in line.split("|")] for line in lines if line.strip() and not line.startswith(";")]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_transcripts(root: Path) -> dict[str, str]:
    """Utterance id -> transcript of every trans.txt under root."""
    transcripts = {}
    for path in sorted(root.rglob("*.trans.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            utterance_id, _, text = line.partition(" ")
            transcripts[utterance_id] = text
    return transcripts


@pytest.fixture(scope="module")
def corpus():
    """Utterance id -> (split, speaker, chapter, transcript, flac path) of the bundled corpus."""
    utterances = {}
    for split in SPLITS:
        for transcript_file in sorted((BUNDLED_CORPUS / split).glob("*/*/*.trans.txt")):
            speaker, chapter = transcript_file.parent.parent.name, transcript_file.parent.name
            assert transcript_file.name == f"{speaker}-{chapter}.trans.txt"
            lines = transcript_file.read_text(encoding="utf-8").splitlines()
            assert lines == sorted(lines), f"{transcript_file} is not sorted"
            for line in lines:
                utterance_id, _, transcript = line.partition(" ")
                assert UTTERANCE_ID.fullmatch(utterance_id).groups()[:2] == (speaker, chapter)
                assert synthetic.TRANSCRIPT_PATTERN.fullmatch(transcript), line
                utterances[utterance_id] = (split, int(speaker), int(chapter), transcript,
                                           transcript_file.parent / f"{utterance_id}.flac")
    return utterances


def test_bundled_corpus_has_the_three_splits_and_only_them():
    assert sorted(p.name for p in BUNDLED_CORPUS.iterdir() if p.is_dir()) == sorted(SPLITS)
    for name in ("SPEAKERS.TXT", "CHAPTERS.TXT", "BOOKS.TXT"):
        assert (BUNDLED_CORPUS / name).is_file()


def test_every_transcript_line_has_a_16khz_mono_flac_and_every_flac_is_listed(corpus):
    assert 60 <= len(corpus) <= 80
    listed = {path for *_, path in corpus.values()}
    assert set(BUNDLED_CORPUS.rglob("*.flac")) == listed
    durations = []
    for utterance_id, (*_, path) in corpus.items():
        info = soundfile.info(path)
        assert (info.format, info.subtype, info.samplerate, info.channels) == ("FLAC", "PCM_16", 16000, 1), path
        durations.append(info.duration)
    assert min(durations) >= 2.0 and max(durations) <= 20.0
    assert max(durations) >= 15.0  # at least one long utterance


def test_every_file_and_folder_follows_the_layout(corpus):
    for path in BUNDLED_CORPUS.rglob("*"):
        relative = path.relative_to(BUNDLED_CORPUS).parts
        if path.is_dir():
            assert len(relative) <= 3 and relative[0] in SPLITS and all(p.isdigit() for p in relative[1:])
        elif len(relative) == 1:
            assert relative[0] in ("SPEAKERS.TXT", "CHAPTERS.TXT", "BOOKS.TXT", synthetic.CORPUS_MARKER)
        else:
            assert len(relative) == 4 and relative[0] in SPLITS, path
            assert path.name.endswith((".flac", ".trans.txt")), path


def test_bundled_corpus_is_at_most_5_mb_on_disk():
    paths = [BUNDLED_CORPUS, *BUNDLED_CORPUS.rglob("*")]
    on_disk = sum(getattr(p.stat(), "st_blocks", 0) * 512 for p in paths)
    content = sum(p.stat().st_size for p in paths if p.is_file())
    assert max(on_disk, content) <= MAX_BYTES_ON_DISK, f"{on_disk} bytes on disk, {content} bytes of files"


def test_speakers_are_disjoint_across_splits_and_of_both_sexes(corpus):
    speakers_of = defaultdict(set)
    for split, speaker, *_ in corpus.values():
        speakers_of[split].add(speaker)
    assert sorted(speakers_of) == sorted(SPLITS)
    for first in SPLITS:
        for second in SPLITS:
            if first != second:
                assert not speakers_of[first] & speakers_of[second]
    sexes = {row[0]: row[1] for row in table_rows(BUNDLED_CORPUS / "SPEAKERS.TXT",
                                                   ";ID  |SEX| SUBSET           |MINUTES| NAME")}
    for split in SPLITS:
        assert {sexes[str(speaker)] for speaker in speakers_of[split]} == {"F", "M"}


def test_tables_parse_and_cover_every_speaker_chapter_and_book(corpus):
    speakers = {row[0]: row for row in table_rows(BUNDLED_CORPUS / "SPEAKERS.TXT",
                                                  ";ID  |SEX| SUBSET           |MINUTES| NAME")}
    chapters = {row[0]: row for row in table_rows(
        BUNDLED_CORPUS / "CHAPTERS.TXT",
        ";ID    |READER|MINUTES| SUBSET           | PROJ.|BOOK ID| CH. TITLE | PROJECT TITLE")}
    books = {row[0]: row for row in table_rows(BUNDLED_CORPUS / "BOOKS.TXT", ";ID    |TITLE |AUTHOR")}
    assert all(len(row) == 5 for row in speakers.values())
    assert all(len(row) == 8 for row in chapters.values())
    assert all(len(row) == 3 and row[1] for row in books.values())

    seconds = {utterance_id: soundfile.info(path).duration for utterance_id, (*_, path) in corpus.items()}
    speaker_minutes, chapter_minutes = defaultdict(float), defaultdict(float)
    for utterance_id, (split, speaker, chapter, *_rest) in corpus.items():
        speaker_minutes[str(speaker)] += seconds[utterance_id] / 60
        chapter_minutes[str(chapter)] += seconds[utterance_id] / 60
        _id, sex, subset, _minutes, name = speakers[str(speaker)]
        assert sex in ("F", "M") and subset == split and name
        _id, reader, _minutes, subset, project, book, title, project_title = chapters[str(chapter)]
        assert reader == str(speaker) and subset == split and project.isdigit() and title and project_title
        assert books[book][1] == project_title
    assert set(speakers) == set(speaker_minutes) and set(chapters) == set(chapter_minutes)
    for speaker, minutes in speaker_minutes.items():
        assert float(speakers[speaker][3]) == pytest.approx(minutes, abs=0.006)
    for chapter, minutes in chapter_minutes.items():
        assert float(chapters[chapter][2]) == pytest.approx(minutes, abs=0.006)


def test_tables_read_by_the_data_loader(corpus):
    from librispeech.data import read_corpus_info

    info = read_corpus_info(BUNDLED_CORPUS)
    assert set(info.speakers) == {speaker for _, speaker, *_ in corpus.values()}
    assert set(info.chapters) == {chapter for _, _, chapter, *_ in corpus.values()}
    assert {chapter.book_id for chapter in info.chapters.values()} <= set(info.books)
    assert all(title for title in info.books.values())


def bundled_files(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob(pattern)) if path.is_file()}


def test_generator_writes_the_bundled_transcripts_and_tables_byte_for_byte(tmp_path):
    """The text files that scripts/make_sample_corpus.py writes from librispeech_tools/sample_corpus.yaml, with the
    durations of the bundled audio, are the committed ones (no espeak-ng needed)."""
    plan = synthetic.sample_corpus_plan()
    plan.validate()
    seconds = {spec.id: soundfile.info(synthetic.utterance_path(BUNDLED_CORPUS, plan.subset_of(spec.speaker_id),
                                                                 spec)).frames / synthetic.SAMPLE_RATE
               for spec in plan.utterances}
    synthetic.write_transcripts(tmp_path, plan)
    synthetic.write_tables(tmp_path, plan, seconds)
    for pattern in ("*.trans.txt", "*.TXT"):
        expected = bundled_files(BUNDLED_CORPUS, pattern)
        assert expected and bundled_files(tmp_path, pattern) == expected


BUNDLED_AUDIO_MADE_WITH = {"espeak-ng": "1.51", "sox": "14.4.2"}  # as data/README.md says


def installed_versions() -> dict[str, str | None]:
    versions = {}
    for tool, pattern in (("espeak-ng", r"text-to-speech: (\S+)"), ("sox", r"SoX v(\S+)")):
        found = re.search(pattern, subprocess.run([tool, "--version"], capture_output=True, text=True).stdout)
        versions[tool] = found.group(1) if found else None
    return versions


@needs_espeak
def test_regenerating_the_bundled_corpus_gives_the_same_bytes(tmp_path):
    """Other espeak-ng or SoX versions render other audio (the transcripts and tables are checked without them)."""
    if installed_versions() != BUNDLED_AUDIO_MADE_WITH:
        pytest.skip(f"the bundled audio was made with {BUNDLED_AUDIO_MADE_WITH}; installed: {installed_versions()}")
    assert load_script("make_sample_corpus").main(["--out", str(tmp_path), "--jobs", "2"]) == 0
    expected = bundled_files(BUNDLED_CORPUS, "*")
    assert len(expected) > 60 and bundled_files(tmp_path, "*") == expected


def test_sample_sentences_cover_the_hard_cases():
    transcripts = synthetic.sample_transcripts()
    words = {word for text in transcripts for word in text.split()}
    assert {"DON'T", "BOOKKEEPER", "COFFEE", "COMMITTEE", "O'CLOCK", "SIXTY", "HUNDRED"} <= words
    plan = synthetic.sample_corpus_plan()
    assert any("<break" in spec.spoken_text for spec in plan.utterances)  # long pauses
    assert len({spec.voice.language for spec in plan.utterances}) >= 4


def test_transcript_from_spoken_text():
    assert synthetic.to_transcript('Don\'t wait, she said. <break time="900ms"/> Twenty-one!') == \
        "DON'T WAIT SHE SAID TWENTY ONE"
    with pytest.raises(ValueError, match="spell numbers out"):
        synthetic.to_transcript("It cost 21 pounds.")


def test_training_sentences_never_equal_a_bundled_sentence_and_cover_its_words():
    plan = synthetic.training_corpus_plan(2000, seed=3)
    plan.validate()
    bundled = synthetic.sample_transcripts()
    transcripts = [spec.transcript for spec in plan.utterances]
    assert not set(transcripts) & bundled
    assert all(3 <= len(text.split()) <= 24 for text in transcripts)
    training_words = {word for text in transcripts for word in text.split()}
    assert {word for text in bundled for word in text.split()} <= training_words
    assert len({spec.voice.espeak_name for spec in plan.utterances}) == len(synthetic.training_speakers())
    assert {spec.voice.language for spec in plan.utterances} >= set(synthetic.SAMPLE_LANGUAGES)


def test_training_plan_skips_a_sentence_equal_to_a_bundled_one(monkeypatch):
    bundled = sorted(synthetic.sample_transcripts())[0]
    real_sentence = synthetic.training_sentence
    calls = []

    def first_one_bundled(rng, pools):
        calls.append(1)
        return (bundled.lower(), bundled) if len(calls) == 1 else real_sentence(rng, pools)

    monkeypatch.setattr(synthetic, "training_sentence", first_one_bundled)
    plan = synthetic.training_corpus_plan(3, seed=0)
    assert len(calls) == 4 and bundled not in {spec.transcript for spec in plan.utterances}


def test_frequency_text_gives_function_words_their_share_of_english():
    # Measured: THE is ~0.1% of the words of a uniform corpus but ~11% of the bundled corpus; the demo model
    # trained on uniform text misheard it most (DE, THER, THEE).
    def share(plan, word):
        words = [w for spec in plan.utterances for w in spec.transcript.split()]
        return words.count(word) / len(words)

    frequency = synthetic.training_corpus_plan(1500, seed=5, text_style="frequency")
    uniform = synthetic.training_corpus_plan(1500, seed=5, text_style="uniform")
    assert share(frequency, "THE") > 0.03 > 0.005 > share(uniform, "THE")
    assert share(frequency, "OF") > 0.01 and share(frequency, "AND") > 0.01
    assert not {spec.transcript for spec in frequency.utterances} & synthetic.sample_transcripts()
    with pytest.raises(ValueError, match="text_style"):
        synthetic.training_corpus_plan(3, text_style="zipf")


def test_frequency_text_without_wordfreq_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "wordfreq", None)  # import wordfreq now raises ImportError
    synthetic.training_word_pools.cache_clear()
    try:
        with pytest.raises(synthetic.MissingToolError, match="wordfreq"):
            synthetic.training_corpus_plan(3, text_style="frequency")
        assert synthetic.training_corpus_plan(3, text_style="uniform").utterances  # uniform needs no wordfreq
    finally:
        synthetic.training_word_pools.cache_clear()


def test_uniform_text_reproduces_the_corpora_of_the_first_demo_phases():
    # A snapshot that pins determinism: data/train-synthetic (phase 1 of the demo model) was made before text styles
    # existed, and regenerating it must give the same sentences (this is its first one, seed 0).
    first = synthetic.training_corpus_plan(1, seed=0, text_style="uniform").utterances[0]
    assert first.transcript.startswith("BLOODED NO HIM POSTS FAULT HAM BODY")


def test_training_plan_is_deterministic_and_a_prefix_of_larger_plans():
    small = synthetic.training_corpus_plan(30, seed=7)
    assert small == synthetic.training_corpus_plan(30, seed=7)
    assert synthetic.training_corpus_plan(150, seed=7).utterances[:30] == small.utterances
    assert synthetic.training_corpus_plan(30, seed=8).utterances != small.utterances


def test_plan_validation_rejects_a_voice_of_the_wrong_sex():
    plan = synthetic.sample_corpus_plan()
    first = plan.utterances[0]
    wrong = synthetic.Voice(first.voice.language, "m1" if first.voice.sex == "F" else "f1")
    broken = synthetic.CorpusPlan(plan.speakers, plan.books, plan.chapters,
                                  (dataclasses.replace(first, voice=wrong),) + plan.utterances[1:])
    with pytest.raises(ValueError, match="sex"):
        broken.validate()


def test_missing_tools_give_a_clear_error(monkeypatch):
    monkeypatch.setattr(synthetic.shutil, "which", lambda name: None)
    with pytest.raises(synthetic.MissingToolError, match="apt-get install espeak-ng sox"):
        synthetic.synthesize("hello", synthetic.Voice("en-us", "f1"))


@needs_espeak
def test_generating_a_tiny_training_corpus(tmp_path):
    module = load_script("make_training_corpus")
    assert module.main(["--out", str(tmp_path), "--utterances", "3", "--seed", "1", "--jobs", "2"]) == 0

    plan = synthetic.training_corpus_plan(3, seed=1)
    transcripts = read_transcripts(tmp_path)
    assert transcripts == {spec.id: spec.transcript for spec in plan.utterances}
    flacs = sorted(tmp_path.rglob("*.flac"))
    assert {path.stem for path in flacs} == set(transcripts)
    for path in flacs:
        assert path.relative_to(tmp_path).parts[0] == "train-synthetic"
        samples, rate = soundfile.read(path, dtype="float32")
        assert rate == 16000 and samples.ndim == 1 and samples.size > 16000 * 0.5
        assert 0.001 < float(np.sqrt(np.mean(samples ** 2))) < 0.2
    speakers = table_rows(tmp_path / "SPEAKERS.TXT", ";ID  |SEX| SUBSET           |MINUTES| NAME")
    assert {row[0] for row in speakers} == {str(spec.speaker_id) for spec in plan.utterances}
    assert (tmp_path / "CHAPTERS.TXT").is_file() and (tmp_path / "BOOKS.TXT").is_file()

    # Its own corpus is regenerated in place (no stale file stays); a split folder it did not make is never deleted.
    stale = tmp_path / "train-synthetic" / "stale.txt"
    stale.write_text("")
    assert module.main(["--out", str(tmp_path), "--utterances", "3", "--seed", "1", "--jobs", "2"]) == 0
    assert not stale.exists() and read_transcripts(tmp_path) == transcripts
    real = tmp_path / "real"  # a real LibriSpeech root: none of the plan's splits, but its own tables
    (real / "dev-clean" / "84" / "121123").mkdir(parents=True)
    (real / "SPEAKERS.TXT").write_text("the real table")
    assert module.main(["--out", str(real), "--utterances", "3", "--seed", "1"]) == 2
    assert load_script("make_sample_corpus").main(["--out", str(real)]) == 2
    assert (real / "SPEAKERS.TXT").read_text() == "the real table" and (real / "dev-clean" / "84").is_dir()
    assert sorted(path.name for path in real.iterdir()) == ["SPEAKERS.TXT", "dev-clean"]


def test_the_generators_refuse_paths_as_splits_foreign_splits_and_unwritable_folders(tmp_path, capsys):
    """Refused before anything is written (no espeak-ng needed): a --split that is a path (an absolute one was
    cleared and written, outside the corpus), a marked corpus holding a split the plan does not make (its tables
    would be rewritten without that split's rows), an --out that is a file or under one, a negative seed (seeds -n
    and n drew the same corpus), more utterances than the chapter ids hold."""
    module = load_script("make_training_corpus")
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    for split in (str(outside), "../precious", "."):
        assert module.main(["--out", str(tmp_path / "new"), "--utterances", "2", "--split", split]) == 2
        assert f"split {split!r} is not a folder name" in capsys.readouterr().err
    assert [path.name for path in outside.iterdir()] == ["keep.txt"] and not (tmp_path / "new").exists()

    marked = tmp_path / "marked"
    (marked / "train-synthetic").mkdir(parents=True)
    (marked / synthetic.CORPUS_MARKER).write_text("")
    assert module.main(["--out", str(marked), "--utterances", "2", "--split", "extra"]) == 2
    assert "holds split(s) train-synthetic that this corpus does not make" in capsys.readouterr().err
    afile = tmp_path / "afile"
    afile.write_text("")
    for out in (afile, afile / "below"):
        assert module.main(["--out", str(out), "--utterances", "2"]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    assert module.main(["--out", str(tmp_path / "new"), "--utterances", "2", "--seed", "-1"]) == 2
    assert "the seed at least 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="utterances must be 1 to "):
        synthetic.training_corpus_plan(10 ** 7)


def test_the_edge_corpus_refuses_a_folder_it_did_not_make(tmp_path, monkeypatch):
    module = load_script("make_edge_corpus")
    real = tmp_path / "real"
    (real / "LibriSpeech" / "dev-clean").mkdir(parents=True)
    monkeypatch.setattr(sys, "argv", ["make_edge_corpus.py", "--out", str(real)])
    with pytest.raises(SystemExit, match="holds files and no expected.tsv"):
        module.main()
    assert [path.name for path in (real / "LibriSpeech").iterdir()] == ["dev-clean"]


@needs_espeak
def test_speech_is_deterministic_and_variants_differ():
    text = "The bookkeeper drank his coffee."
    female = synthetic.synthesize(text, synthetic.Voice("en", "f3", 160, 50))
    assert np.array_equal(female, synthetic.synthesize(text, synthetic.Voice("en", "f3", 160, 50)))
    male = synthetic.synthesize(text, synthetic.Voice("en", "m3", 160, 50))
    assert female.dtype == np.float32 and female.size > 16000 * 0.8
    assert female.size != male.size or not np.allclose(female, male)
    with pytest.raises(ValueError, match="no voice"):
        synthetic.check_voices([synthetic.Voice("en-nowhere", "f1")])
