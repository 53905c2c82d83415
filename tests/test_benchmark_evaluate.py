"""benchmarks/benchmark_evaluate.py's corpus copies (`repeat`): a larger run of the same utterances."""
import importlib.util
import logging
from pathlib import Path

import pytest
from conftest import make_config

from librispeech import data

REPO_ROOT = Path(__file__).resolve().parent.parent

spec = importlib.util.spec_from_file_location("benchmark_evaluate", REPO_ROOT / "benchmarks" / "benchmark_evaluate.py")
benchmark_evaluate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark_evaluate)


def test_repeat_makes_copies_the_listing_reads_with_their_records(tmp_path, caplog):
    source = REPO_ROOT / "data" / "LibriSpeech"
    config = make_config(source, data__samples_per_split="all")
    original = data.load_openslr_split("test", config)
    target = tmp_path / "copies"
    benchmark_evaluate.repeat_corpus(source, target, 3)
    with caplog.at_level(logging.WARNING, logger="librispeech"):
        copies = data.load_openslr_split("test", make_config(target, data__samples_per_split="all"))
    assert "no SPEAKERS.TXT row" not in caplog.text  # every copy's speaker and chapter has its records
    assert len(copies.utterances) == 3 * len(original.utterances) and not copies.excluded
    by_text = {}
    for utterance_id, utterance in copies.utterances.items():
        by_text.setdefault((utterance.transcript, utterance.num_samples), []).append(utterance_id)
    assert sorted(map(len, by_text.values())) == [3] * len(original.utterances)  # each utterance three times
    for utterance_id in original.utterances:  # the first copy keeps the ids; the others' speakers have the records
        assert utterance_id in copies.utterances
    info = copies.corpus_info
    for ids in by_text.values():
        speakers = [int(i.split("-")[0]) for i in ids]
        chapters = [int(i.split("-")[1]) for i in ids]
        assert len(set(speakers)) == 3 and len(set(chapters)) == 3
        assert len({info.speakers[s].sex for s in speakers}) == 1 and all(info.chapters[c].reader_id == s
                                                                           for s, c in zip(speakers, chapters))
    with pytest.raises(FileExistsError):
        benchmark_evaluate.repeat_corpus(source, target, 2)
    with pytest.raises(ValueError, match="--copies must be at least 1"):
        benchmark_evaluate.repeat_corpus(source, tmp_path / "none", 0)
    with pytest.raises(FileNotFoundError, match="holds no"):
        benchmark_evaluate.repeat_corpus(tmp_path / "empty", tmp_path / "none", 2)


def test_repeat_keeps_the_records_rows_as_they_are_and_checks_before_writing(tmp_path):
    """LibriSpeech's padded rows, a '|' inside a name or title and rows without a folder: the copies' rows keep the
    rest of the line, and their ids pass the tables' largest too (no id twice). A damaged transcript line is refused
    before anything is written."""
    import shutil

    source = tmp_path / "LibriSpeech"
    chapter = source / "test-clean" / "14" / "208"
    chapter.mkdir(parents=True)
    some_flac = next((REPO_ROOT / "data" / "LibriSpeech" / "test-clean").rglob("*.flac"))
    shutil.copyfile(some_flac, chapter / "14-208-0000.flac")
    (chapter / "14-208.trans.txt").write_text("14-208-0000 A TEXT\n\n", encoding="utf-8")
    (source / "SPEAKERS.TXT").write_text("; ID | SEX | SUBSET | MINUTES | NAME\n14   | F | test-clean       | 25.03 | "
                                         "|CBW|Simon\n2001 | M | train-other-500  | 30.00 | Nobody\n", encoding="utf-8")
    (source / "CHAPTERS.TXT").write_text("; ID | READER | MINUTES | SUBSET | PROJ. | BOOK ID | CH. TITLE | PROJECT "
                                         "TITLE\n208    | 14     | 13.48 | test-clean       | 3313   | 2004   | "
                                         "Chapter 1|A | The Book\n", encoding="utf-8")
    target = tmp_path / "copies"
    benchmark_evaluate.repeat_corpus(source, target, 2)
    speakers = (target / "SPEAKERS.TXT").read_text(encoding="utf-8").splitlines()
    assert speakers[-2:] == ["10014| F | test-clean       | 25.03 | |CBW|Simon",
                             "12001| M | train-other-500  | 30.00 | Nobody"]  # ids past 2001, the table's largest
    chapters = (target / "CHAPTERS.TXT").read_text(encoding="utf-8").splitlines()
    assert chapters[-1] == "1208   |10014   | 13.48 | test-clean       | 3313   | 2004   | Chapter 1|A | The Book"
    info = data.read_corpus_info(target)
    assert info.speakers[10014].name == "|CBW|Simon" and info.chapters[1208].reader_id == 10014
    assert info.chapters[1208].title == "Chapter 1|A"
    assert (target / "test-clean" / "10014" / "1208" / "10014-1208.trans.txt").read_text() == "10014-1208-0000 A TEXT\n"

    (chapter / "14-208.trans.txt").write_text("14-208-0000 A TEXT\n14-208-0001 NO AUDIO\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"14-208.trans.txt:2: '14-208-0001' is not an utterance of this chapter"):
        benchmark_evaluate.repeat_corpus(source, tmp_path / "refused", 2)
    assert not (tmp_path / "refused").exists()
