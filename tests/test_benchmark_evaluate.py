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
