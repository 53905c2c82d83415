import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import make_config, tone, write_tables, write_utterance
from librispeech import data
from librispeech.config import parse_samples_per_split

SPLITS = {"training": "train-clean-100", "validation": "dev-clean", "test": "test-clean"}


@pytest.fixture
def corpus(tmp_path):
    """Three splits, two speakers each, tables present; plus one utterance of every bad kind in dev-clean."""
    root = tmp_path / "LibriSpeech"
    for index, split in enumerate(SPLITS.values()):
        for speaker in (100 + 10 * index, 101 + 10 * index):
            for utt in range(3):
                write_utterance(root, split, speaker, 7000 + speaker, utt, f"hello world number {utt}",
                                tone(0.5 + 0.1 * utt))
    dev = root / "dev-clean"
    write_utterance(root, "dev-clean", 110, 7110, 10, "THE FILE IS MISSING")
    write_utterance(root, "dev-clean", 110, 7110, 11, "   ", tone(0.5))
    broken = write_utterance(root, "dev-clean", 110, 7110, 12, "BROKEN AUDIO")
    (dev / "110" / "7110" / f"{broken}.flac").write_bytes(b"this is not a flac file")
    write_utterance(root, "dev-clean", 110, 7110, 13, "FAR TOO LONG", tone(3.0))
    soundfile.write(dev / "110" / "7110" / "110-7110-0014.flac", tone(0.5), 16000)  # no transcript line
    # test-clean's speakers (120, 121) and chapters have no rows
    write_tables(root, {100: ("F", "Ada Reader"), 101: ("M", "Al Reader"), 110: ("M", "Bob | Speaker"),
                        111: ("F", "Bea Speaker")},
                 {7100: (100, "42", "The First Chapter"), 7101: (101, "42", "Chapter Two"),
                  7110: (110, "43", "A | B"), 7111: (111, "43", "C")},
                 {"42": "A Book Title", "43": "Another Book"})
    return root


def test_openslr_splits_sample_ids_and_records(corpus):
    config = make_config(corpus, data__samples_per_split="all", audio__max_samples=32000)
    splits = data.load_all_splits(config)
    assert [s.split for s in splits.values()] == list(SPLITS.values())
    assert len(splits["training"].utterances) == 6 and len(splits["test"].utterances) == 6
    assert list(splits["training"].utterances) == sorted(splits["training"].utterances)
    utterance = splits["training"].utterances["100-7100-0001"]
    assert utterance.transcript == "HELLO WORLD NUMBER 1"  # upper-cased
    assert (utterance.speaker_id, utterance.chapter_id, utterance.num_samples) == (100, 7100, 9600)
    records = data.record_fields(utterance, splits["training"].corpus_info)
    assert records == {"sex": "F", "speaker_name": "Ada Reader", "speaker_minutes": 12.34,
                       "speaker_subset": "train-clean-100", "chapter_title": "The First Chapter",
                       "chapter_minutes": 3.21, "book_id": "42", "book_title": "A Book Title"}
    # A '|' inside a name or chapter title is kept (LibriSpeech's SPEAKERS.TXT has such names).
    dev = splits["validation"]
    assert data.record_fields(dev.utterances["110-7110-0000"], dev.corpus_info)["speaker_name"] == "Bob | Speaker"
    assert data.record_fields(dev.utterances["110-7110-0000"], dev.corpus_info)["chapter_title"] == "A | B"
    # Speakers missing from the tables give None, not an error.
    assert set(data.record_fields(splits["test"].utterances["120-7120-0000"], dev.corpus_info).values()) == {None}


def test_bad_inputs_are_left_out_and_reported(corpus, caplog):
    config = make_config(corpus, data__samples_per_split="all", audio__max_samples=32000)
    with caplog.at_level(logging.WARNING, logger="librispeech"):
        dev = data.load_openslr_split("validation", config)
    reasons = {e.id: e.reason for e in dev.excluded}
    assert reasons == {"110-7110-0010": data.MISSING_AUDIO, "110-7110-0011": data.EMPTY_TRANSCRIPT,
                       "110-7110-0012": data.UNREADABLE_AUDIO, "110-7110-0013": data.TOO_LONG,
                       "110-7110-0014": data.MISSING_TRANSCRIPT}
    assert not set(reasons) & set(dev.utterances)
    assert len(dev.utterances) == 6
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "dev-clean" in lines[0] and "left out 5 of 11 utterances examined" in lines[0]
    assert "110-7110-0010" in lines[0]


def test_transcript_files_as_editors_write_them(tmp_path, caplog):
    """A byte-order mark, CRLF endings, a tab after the id, a line given twice and a second .trans.txt: every
    utterance is read once under its own id, and each repeat is reported."""
    root = tmp_path / "LibriSpeech"
    chapter = root / "dev-clean" / "5" / "50"
    chapter.mkdir(parents=True)
    for utt in range(5):
        soundfile.write(chapter / f"5-50-{utt:04d}.flac", tone(0.5), 16000)
    (chapter / "5-50.trans.txt").write_bytes(
        b"\xef\xbb\xbf5-50-0000 FIRST LINE\r\n5-50-0001\tA TAB\r\n5-50-0002 TWICE\r\n5-50-0002 TWICE\r\n"
        b"5-50-0004 \n5-50-0004 TOO LATE\n")  # its first line is empty: left out, and so is the repeat
    (chapter / "extra.trans.txt").write_text("5-50-0003 ONLY HERE\n5-50-0000 ANOTHER TEXT\n", encoding="utf-8")
    config = make_config(root, data__samples_per_split="all")
    with caplog.at_level(logging.WARNING, logger="librispeech"):
        dev = data.load_openslr_split("validation", config)
    assert {u.id: u.transcript for u in dev.utterances.values()} == {
        "5-50-0000": "FIRST LINE", "5-50-0001": "A TAB", "5-50-0002": "TWICE", "5-50-0003": "ONLY HERE"}
    assert [(e.id, e.reason, e.detail) for e in dev.excluded] == [
        ("5-50-0000", data.REPEATED_ID, f"{chapter / 'extra.trans.txt'}: other transcript: 'ANOTHER TEXT'"),
        ("5-50-0002", data.REPEATED_ID, f"{chapter / '5-50.trans.txt'}: same transcript"),
        ("5-50-0004", data.EMPTY_TRANSCRIPT, str(chapter / "5-50.trans.txt")),
        ("5-50-0004", data.REPEATED_ID, f"{chapter / '5-50.trans.txt'}: other transcript: 'TOO LATE'")]
    assert "left out 4 of 8 utterances examined" in caplog.records[0].getMessage()


def test_files_outside_chapter_folders_and_utterances_without_table_rows_are_reported(corpus, tmp_path, caplog):
    test = corpus / "test-clean"
    (test / "120" / "stray.flac").write_bytes((test / "120" / "7120" / "120-7120-0000.flac").read_bytes())
    (test / "120" / "7120" / "nested").mkdir()
    (test / "120" / "7120" / "nested" / "120-7120.trans.txt").write_text("120-7120-0099 DEEPER\n")
    (test / "120" / "7120" / "nested" / "120-7120-0000.flac").write_bytes(b"")  # a copy of a kept utterance
    (test / "120" / "7120" / "folder.trans.txt").mkdir()  # not a file: not read
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "linked.flac").write_bytes(b"")
    (test / "linked").symlink_to(tmp_path / "elsewhere")  # followed, as the listing follows links
    (test / "120" / "7120" / "up").symlink_to(test)  # a loop: walked once
    config = make_config(corpus, data__samples_per_split="all", audio__max_samples=32000)
    with caplog.at_level(logging.WARNING, logger="librispeech"):
        split = data.load_openslr_split("test", config)
    outside = {e.id: e.detail for e in split.excluded if e.reason == data.OUTSIDE_CHAPTER_FOLDER}
    nested = test / "120" / "7120" / "nested"
    assert outside == {"120/stray.flac": str(test / "120" / "stray.flac"),
                       "linked/linked.flac": str(test / "linked" / "linked.flac"),
                       "120/7120/nested/120-7120-0000.flac": str(nested / "120-7120-0000.flac"),
                       "120/7120/nested/120-7120.trans.txt": str(nested / "120-7120.trans.txt")}
    assert "120-7120-0000" in split.utterances  # the copy's entry does not read as the kept utterance's id
    assert ("test-clean (test): 6 of 6 utterances have no SPEAKERS.TXT row and 6 no CHAPTERS.TXT row in "
            f"{corpus} (first: 120-7120-0000); their records fields are None") in caplog.text

def test_a_folder_that_cannot_be_listed_stops_the_split_naming_it(corpus, monkeypatch):
    unreadable = corpus / "test-clean" / "121" / "7121"
    list_folder = os.scandir

    def scandir(path="."):
        if Path(path) == unreadable:  # as chmod 000 does for a user without root's capabilities
            raise PermissionError(13, "Permission denied", str(path))
        return list_folder(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(PermissionError, match=re.escape(str(unreadable))):
        data.load_openslr_split("test", make_config(corpus, data__samples_per_split="all"))


def test_hf_audio_gone_after_the_listing_is_an_audio_decode_error():
    utterance = data.Utterance("1-2-0003", 1, 2, "HELLO", 16000, 16000, 1, hf_row=0)
    split = data.SplitData("training", "train.clean.100", "huggingface", {utterance.id: utterance}, [],
                           data.CorpusInfo(), 16000, [{"audio": {"bytes": None, "path": "/gone/1-2-0003.flac"}}])
    with pytest.raises(data.AudioDecodeError, match=r"cannot read audio of 1-2-0003 \(row 0 of the HF dataset\): "
                                                    r"no audio bytes, and its path '/gone/1-2-0003.flac'"):
        split.audio("1-2-0003")

def test_latin_1_lines_are_read_as_latin_1_with_a_warning(corpus, caplog):
    (corpus / "SPEAKERS.TXT").write_bytes("100  | F | train-clean-100 | 1.0 | Zoë Ångström\n".encode("latin-1")
                                          + "110  | M | train-clean-100 | 2.0 | Jürgen Ünal\n".encode("utf-8"))
    with caplog.at_level(logging.WARNING, logger="librispeech"):
        info = data.read_corpus_info(corpus)
    assert (info.speakers[100].name, info.speakers[110].name) == ("Zoë Ångström", "Jürgen Ünal")
    assert "SPEAKERS.TXT: 1 line(s) are not UTF-8; read as Latin-1" in caplog.text



def test_table_rows_that_cannot_be_read_are_skipped_with_a_warning(corpus, caplog):
    (corpus / "SPEAKERS.TXT").write_text(
        ";ID | SEX | SUBSET | MINUTES | NAME\n100 | F | train-clean-100 | 1.0 | Ann\n"
        "101 | M | train-clean-100 | 2.0\nX7 | F | dev-clean | 3.0 | Eve\n\n"
        "7001\u00b2 | F | dev-clean | 1.0 | Sup\n"  # str.isdigit() accepts the superscript two, int() does not
        "102 | M | dev-clean | nan | Nan\n103 | F | dev-clean | inf | Inf\n104 | F | dev-clean | -3 | Neg\n",
        encoding="utf-8")
    (corpus / "BOOKS.TXT").write_text(";ID | TITLE\nB-12 | A Title | extra\nno bar here\n")
    with caplog.at_level(logging.WARNING, logger="librispeech"):
        info = data.read_corpus_info(corpus)
    assert list(info.speakers) == [100, 102, 103, 104] and info.books == {"B-12": "A Title"}
    assert info.speakers[100].minutes == 1.0
    assert [info.speakers[s].minutes for s in (102, 103, 104)] == [None] * 3  # metadata stays finite, minutes >= 0
    assert ("SPEAKERS.TXT: 3 row(s) skipped, not 5 '|'-separated fields starting with a number; "
            "e.g. '101 | M | train-clean-100 | 2.0'") in caplog.text
    assert "BOOKS.TXT: 1 row(s) skipped, not 2 '|'-separated fields; e.g. 'no bar here'" in caplog.text

def test_preprocess_loads_the_corpus_once_per_configuration(corpus, monkeypatch):
    """code-loader's integration test calls preprocess again after every sample."""
    monkeypatch.setenv("LIBRISPEECH_ROOT", str(corpus))
    monkeypatch.setattr(data, "load_all_splits", lambda config: {"calls": object()})
    first = data.configured_splits()
    assert data.configured_splits() is first
    from librispeech import config as config_module

    config_module.project_config.cache_clear()  # another configuration: loaded anew
    assert data.configured_splits() is not first


@pytest.mark.parametrize("splits", [{"training": "train-clean-100", "validation": "dev-clean"},
                                    {"training": "train-clean-100", "validation": "dev-clean", "test": None}])
def test_the_test_subset_is_optional(corpus, splits):
    """A root with only a training and a validation split (code-loader's check needs those two)."""
    import shutil

    from librispeech.config import ConfigError

    shutil.rmtree(corpus / "test-clean")
    config = make_config(corpus, data__splits=splits)
    assert config.subsets == ("training", "validation")
    assert list(data.load_all_splits(config)) == ["training", "validation"]
    with pytest.raises(ConfigError, match="no split is configured for the test subset"):
        data.load_split("test", config)


@pytest.mark.parametrize("splits, says", [
    ({"training": "train-clean-100", "test": "test-clean"}, "data.splits in librispeech/config.yaml names no split "
                                                            "for validation"),
    ({"training": "train-clean-100", "validation": ""}, "names no split for validation"),
    ({"training": "a", "validation": "b", "dev": "c"}, "has unknown subset(s) dev"),
    ("train-clean-100", "must map training, validation, test to split names"),
])
def test_a_bad_split_table_is_one_clear_error(splits, says):
    from librispeech.config import ConfigError

    with pytest.raises(ConfigError, match=re.escape(says)):
        make_config(data__splits=splits)


def test_a_sample_reports_exclusions_out_of_the_headers_it_read(tmp_path, caplog):
    """A 3-utterance sample of a 100-utterance split reads one batch of 64 headers, not all 100."""
    root = tmp_path / "LibriSpeech"
    for utt in range(100):
        audio = tone(0.5) if utt % 10 else tone(0.5)[:100]  # every tenth too short for its word
        write_utterance(root, "train-clean-100", 1, 2, utt, "HELLO", audio)
    with caplog.at_level(logging.WARNING, logger="librispeech"):
        split = data.load_openslr_split("training", make_config(root, data__samples_per_split=3))
    assert len(split.utterances) == 3 and 0 < len(split.excluded) < 10
    [line] = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]  # (and: no table rows)
    assert f"left out {len(split.excluded)} of 64 utterances examined" in line


def test_no_warning_for_clean_split(corpus, caplog):
    config = make_config(corpus, data__samples_per_split="all", audio__max_samples=32000)
    with caplog.at_level(logging.WARNING, logger="librispeech"):
        data.load_openslr_split("training", config)
    assert caplog.records == []


def test_seeded_sample_is_deterministic(corpus):
    config = make_config(corpus, data__samples_per_split=3)
    first = list(data.load_openslr_split("training", config).utterances)
    again = list(data.load_openslr_split("training", config).utterances)
    other_seed = [list(data.load_openslr_split("training", make_config(
        corpus, data__samples_per_split=3, data__seed=seed)).utterances) for seed in range(1, 6)]
    assert first == again and len(first) == 3
    assert any(ids != first for ids in other_seed)


def test_sample_keeps_its_size_when_files_are_bad(corpus):
    config = make_config(corpus, data__samples_per_split=6, audio__max_samples=32000)
    assert len(data.load_openslr_split("validation", config).utterances) == 6


def test_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-clean-100.*not a folder"):
        data.load_openslr_split("training", make_config(tmp_path))


def test_split_without_usable_audio_is_a_clear_error(tmp_path):
    write_utterance(tmp_path, "train-clean-100", 1, 2, 0, "NO AUDIO HERE")
    with pytest.raises(ValueError, match="no usable utterance.*missing audio file"):
        data.load_openslr_split("training", make_config(tmp_path))


def test_resampled_and_stereo_audio(tmp_path):
    write_utterance(tmp_path, "train-clean-100", 1, 2, 0, "eight kilohertz", tone(1.0, 8000), sample_rate=8000)
    write_utterance(tmp_path, "train-clean-100", 1, 2, 1, "two channels", tone(1.0, channels=2))
    split = data.load_openslr_split("training", make_config(tmp_path))
    resampled, stereo = split.audio("1-2-0000"), split.audio("1-2-0001")
    assert split.utterances["1-2-0000"].num_samples == len(resampled) == 16000
    assert split.utterances["1-2-0000"].source_sample_rate == 8000
    assert stereo.ndim == 1 and stereo.dtype == np.float32 and len(stereo) == 16000
    np.testing.assert_allclose(stereo, tone(1.0), atol=1e-4)
    assert split.audio("1-2-0001") is stereo  # decoded once, then cached


def test_resampled_audio_is_the_same_tone_at_16_khz(tmp_path):
    """An 8 kHz 220 Hz tone read through the loader is the tone generated at 16 kHz. Away from the clip's edges
    (where the resampling filter rings against the abrupt start and end, about 50 samples) the difference is only
    the 16-bit FLAC quantisation (2^-16) and the resampler's passband ripple: 5e-4 is 0.17% of the 0.3 amplitude,
    while a one-sample shift would differ by 0.3 * 2 pi 220 / 16000 = 0.026 and a sample-and-hold by ~0.013."""
    write_utterance(tmp_path, "train-clean-100", 1, 2, 0, "eight kilohertz", tone(1.0, 8000), sample_rate=8000)
    resampled = data.load_openslr_split("training", make_config(tmp_path)).audio("1-2-0000")
    np.testing.assert_allclose(resampled[50:-50], tone(1.0)[50:-50], atol=5e-4)
    spectrum = np.abs(np.fft.rfft(resampled))
    assert np.fft.rfftfreq(len(resampled), 1 / 16000)[np.argmax(spectrum)] == 220.0  # 1 Hz bins over one second


def test_book_title_falls_back_to_the_project_title_and_a_title_without_bar_is_the_chapter_title(corpus):
    """README, OpenSLR layout: the book title comes from BOOKS.TXT, else CHAPTERS' project title (the text after
    the last '|'); a 7-field CHAPTERS row whose titles field has no '|' is all chapter title, with no project title."""
    (corpus / "CHAPTERS.TXT").write_text(
        ";ID    |READER|MINUTES| SUBSET           | PROJ.|BOOK ID| CH. TITLE | PROJECT TITLE\n"
        "7100   | 100  | 3.21  | train-clean-100  | 111  | 42    | In Books | Project Forty-Two\n"
        "7101   | 101  | 4.50  | train-clean-100  | 112  | 99    | Not In Books | The Project Title\n"
        "7110   | 110  | 1.00  | dev-clean        | 113  | 77    | Only A Chapter Title\n")
    (corpus / "BOOKS.TXT").write_text(";ID    |TITLE |...\n42     | A Book Title | extra\n")
    splits = data.load_all_splits(make_config(corpus, data__samples_per_split="all", audio__max_samples=32000))
    training, dev = splits["training"], splits["validation"]
    in_books = data.record_fields(training.utterances["100-7100-0000"], training.corpus_info)
    assert (in_books["chapter_title"], in_books["book_title"]) == ("In Books", "A Book Title")
    fallback = data.record_fields(training.utterances["101-7101-0000"], training.corpus_info)
    assert (fallback["chapter_title"], fallback["book_id"], fallback["book_title"]) == (
        "Not In Books", "99", "The Project Title")
    untitled = data.record_fields(dev.utterances["110-7110-0000"], dev.corpus_info)
    assert (untitled["chapter_title"], untitled["book_id"], untitled["book_title"]) == (
        "Only A Chapter Title", "77", None)
    assert untitled["chapter_minutes"] == 1.0
    assert dev.corpus_info.chapters[7110].project_title is None


def test_normalize_is_the_feature_extractors_and_pad():
    """The model input as Wav2Vec2FeatureExtractor(do_normalize=True) makes it (transformers, no torch needed)."""
    from transformers import Wav2Vec2FeatureExtractor

    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
    rng = np.random.default_rng(3)
    for audio in (rng.normal(0.1, 0.3, 16000).astype(np.float32), np.zeros(400, np.float32),
                  np.full(800, 0.5, np.float32)):
        expected = extractor(audio, sampling_rate=16000, return_tensors="np").input_values[0]
        np.testing.assert_allclose(data.normalize_audio(audio, 1e-7), expected, rtol=1e-6, atol=1e-6)
    audio = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    normalized = data.normalize_audio(audio, 1e-7)
    padded = data.pad_to(normalized, 6)
    assert padded.dtype == np.float32 and padded.tolist()[4:] == [0.0, 0.0]
    with pytest.raises(ValueError, match="do not fit"):
        data.pad_to(normalized, 3)


def test_samples_per_split_parsing():
    assert parse_samples_per_split("all") is None and parse_samples_per_split(" 12 ") == 12
    for bad in ("0", "-3", "some"):
        with pytest.raises(ValueError, match="positive integer or 'all'"):
            parse_samples_per_split(bad)


def test_environment_overrides(corpus, monkeypatch):
    from librispeech.config import project_config

    monkeypatch.setenv("LIBRISPEECH_ROOT", str(corpus))
    monkeypatch.setenv("LIBRISPEECH_SAMPLES_PER_SPLIT", "2")
    config = project_config()
    assert config.root == corpus and config.samples_per_split == 2
    assert len(data.load_split("test").utterances) == 2


def test_hf_environment_overrides(monkeypatch):
    from librispeech.config import ConfigError, project_config

    monkeypatch.setenv("LIBRISPEECH_SOURCE", "huggingface")
    monkeypatch.setenv("LIBRISPEECH_HF_DATASET", "/data/librispeech-copy")
    monkeypatch.setenv("LIBRISPEECH_HF_CONFIG", "all")
    config = project_config()
    assert config.source == "huggingface" and config.hf_dataset == "/data/librispeech-copy"
    assert config.hf_config == "all" and config.hf_splits == {
        "training": "train.clean.100", "validation": "validation.clean", "test": "test.clean"}
    project_config.cache_clear()
    monkeypatch.setenv("LIBRISPEECH_HF_CONFIG", "nope")
    with pytest.raises(ConfigError, match=r"HF config \(LIBRISPEECH_HF_CONFIG\) 'nope' has no split names"):
        project_config()


def test_an_empty_environment_variable_counts_as_unset():
    """Every override alike: a platform secret holding an empty value leaves config.yaml's setting in force."""
    import yaml

    from librispeech import config

    raw = yaml.safe_load(config.CONFIG_FILE.read_text(encoding="utf-8"))
    names = ("LIBRISPEECH_ROOT", "LIBRISPEECH_SAMPLES_PER_SPLIT", "LIBRISPEECH_SOURCE", "LIBRISPEECH_HF_DATASET",
             "LIBRISPEECH_HF_CONFIG", "WAV2VEC_MODEL", "LIBRISPEECH_LM", "LIBRISPEECH_LEXICON")
    assert config.build_config(raw, dict.fromkeys(names, "")) == config.build_config(raw, {})


def test_relative_paths_read_from_the_current_folder_or_the_repository_root(tmp_path, monkeypatch):
    """A relative path in an environment variable is the current folder's; one in config.yaml the repository's."""
    import yaml

    from librispeech import config

    raw = yaml.safe_load(config.CONFIG_FILE.read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)
    environ = {"LIBRISPEECH_ROOT": "corpus/LibriSpeech", "WAV2VEC_MODEL": "models/mine.onnx"}
    from_environment = config.build_config(raw, environ)
    assert from_environment.root == tmp_path / "corpus" / "LibriSpeech"
    assert from_environment.model_path == tmp_path / "models" / "mine.onnx"
    raw["data"]["root"] = "data/LibriSpeech"
    from_file = config.build_config(raw, {})
    assert from_file.root == config.REPO_ROOT / "data" / "LibriSpeech"
    assert from_file.model_path == config.REPO_ROOT / "model" / "demo-wav2vec2.h5"
    raw["data"]["hf_dataset"] = "data"  # a folder of the repository; a hub id stays a hub id
    assert config.build_config(raw, {}).hf_dataset == str(config.REPO_ROOT / "data")
    raw["data"]["hf_dataset"] = "openslr/librispeech_asr"
    assert config.build_config(raw, {}).hf_dataset == "openslr/librispeech_asr"


def _hf_rows(root):
    """The rows of an OpenSLR tree in openslr/librispeech_asr's columns, FLAC bytes inline."""
    rows = []
    for flac in sorted(root.glob("*/*/*/*.flac")):
        speaker, chapter, _ = flac.stem.split("-")
        transcripts = dict(line.split(" ", 1) for line in
                           (flac.parent / f"{speaker}-{chapter}.trans.txt").read_text().splitlines())
        if flac.stem in transcripts:
            rows.append({"file": str(flac), "audio": {"bytes": flac.read_bytes(), "path": flac.name},
                         "text": transcripts[flac.stem].upper(), "speaker_id": int(speaker),
                         "chapter_id": int(chapter), "id": flac.stem, "split": flac.parts[-4]})
    return rows


def _hf_dataset(corpus, split: str, hf_split: str | None = None):
    """One split of the OpenSLR tree as a datasets.Dataset in openslr/librispeech_asr's columns."""
    import datasets

    # Audio stored as Arrow does it ({bytes, path}); datasets would need torchcodec to encode an Audio feature.
    audio_storage = {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}
    features = datasets.Features({"file": datasets.Value("string"), "audio": audio_storage,
                                  "text": datasets.Value("string"), "speaker_id": datasets.Value("int64"),
                                  "chapter_id": datasets.Value("int64"), "id": datasets.Value("string")})
    rows = [{k: v for k, v in r.items() if k != "split"} for r in _hf_rows(corpus) if r["split"] == split]
    return datasets.Dataset.from_list(rows, features=features,
                                      split=datasets.NamedSplit(hf_split) if hf_split else None)


@pytest.mark.parametrize("layout", ["save_to_disk", "parquet", "push_to_hub"])
def test_hf_datasets_path_matches_openslr(corpus, tmp_path, layout):
    datasets = pytest.importorskip("datasets")
    hf_names = {"train-clean-100": "train.100", "dev-clean": "validation", "test-clean": "test"}
    per_split = {hf_names[name]: _hf_dataset(corpus, name) for name in hf_names}
    location = tmp_path / "hf_copy"
    if layout == "save_to_disk":
        datasets.DatasetDict(per_split).save_to_disk(str(location))
    elif layout == "parquet":  # the hub's converted layout: {config}/{split}/0000.parquet
        for name, dataset in per_split.items():
            (location / "clean" / name).mkdir(parents=True)
            dataset.to_parquet(str(location / "clean" / name / "0000.parquet"))
    else:  # push_to_hub's shards: {config}/{split}-00000-of-0000N.parquet
        (location / "clean").mkdir(parents=True)
        for name, dataset in per_split.items():
            for index in range(2):
                dataset.shard(2, index, contiguous=True).to_parquet(
                    str(location / "clean" / f"{name}-{index:05d}-of-00002.parquet"))

    openslr = make_config(corpus, data__samples_per_split="all", audio__max_samples=32000)
    hf = make_config(corpus, data__samples_per_split="all", audio__max_samples=32000,
                     data__source="huggingface", data__hf_dataset=str(location))
    for subset in ("training", "validation", "test"):
        from_tree, from_hf = data.load_split(subset, openslr), data.load_split(subset, hf)
        assert list(from_hf.utterances) == list(from_tree.utterances)
        for utterance_id, utterance in from_tree.utterances.items():
            assert from_hf.utterances[utterance_id].transcript == utterance.transcript
            assert from_hf.utterances[utterance_id].num_samples == utterance.num_samples
            np.testing.assert_array_equal(from_hf.audio(utterance_id), from_tree.audio(utterance_id))
            # The HF copy has no SPEAKERS/CHAPTERS/BOOKS tables: records are all None.
            assert set(data.record_fields(utterance, from_hf.corpus_info).values()) == {None}
    # The broken FLAC and the too-long one are left out on this path too.
    reasons = {e.reason for e in data.load_split("validation", hf).excluded}
    assert {data.UNREADABLE_AUDIO, data.TOO_LONG} <= reasons


def test_hf_single_saved_split_serves_only_its_own_name(corpus, tmp_path, caplog):
    pytest.importorskip("datasets")
    named, unnamed = tmp_path / "named", tmp_path / "unnamed"
    _hf_dataset(corpus, "test-clean", "test").save_to_disk(str(named))
    _hf_dataset(corpus, "test-clean").save_to_disk(str(unnamed))
    config = make_config(corpus, data__source="huggingface", data__hf_dataset=str(named), data__samples_per_split="all")
    assert list(data.load_split("test", config).utterances) == list(data.load_split(
        "test", make_config(corpus, data__samples_per_split="all")).utterances)
    with pytest.raises(FileNotFoundError, match=r"holds one split, 'test', not 'train.100'"):
        data.open_hf_split(config, "training")
    sliced = tmp_path / "sliced"  # load_dataset(..., split="test[:2]") names its split so
    _hf_dataset(corpus, "test-clean", "test[:2]").save_to_disk(str(sliced))
    assert len(data.open_hf_split(make_config(corpus, data__source="huggingface", data__hf_dataset=str(sliced)),
                                  "test")) == len(_hf_dataset(corpus, "test-clean"))
    with caplog.at_level("WARNING", logger="librispeech"):
        data.open_hf_split(make_config(corpus, data__source="huggingface", data__hf_dataset=str(unnamed)), "training")
    assert "no split name: it is used as split 'train.100'" in caplog.text


def test_hf_configs_awkward_rows_and_incomplete_copies(corpus, tmp_path, caplog):
    """The hub's `all` config (split test.clean), a row without a speaker id and one whose bytes are not audio; a
    push_to_hub copy missing a shard and a copy without the hub's columns are one clear error each."""
    datasets = pytest.importorskip("datasets")
    rows = _hf_dataset(corpus, "test-clean").to_list()
    rows[0] = {**rows[0], "speaker_id": None}
    rows[1] = {**rows[1], "audio": {"bytes": b"not audio", "path": "x.flac"}}
    rows[2] = {**rows[2], "id": None}
    rows[3] = {**rows[3], "audio": None}
    rows[4] = {**rows[4], "id": rows[5]["id"], "text": rows[5]["text"]}  # row 5 repeats it
    dataset = datasets.Dataset.from_list(rows, features=_hf_dataset(corpus, "test-clean").features)
    (tmp_path / "hub" / "all" / "test.clean").mkdir(parents=True)
    dataset.to_parquet(str(tmp_path / "hub" / "all" / "test.clean" / "0000.parquet"))
    config = make_config(corpus, data__source="huggingface", data__hf_dataset=str(tmp_path / "hub"),
                         data__hf_config="all", data__samples_per_split="all")
    with caplog.at_level(logging.WARNING, logger="librispeech"):
        test = data.load_split("test", config)
    assert test.utterances[rows[0]["id"]].speaker_id == -1  # as an OpenSLR file name without one
    assert ("test.clean (test): 1 row(s) have a speaker_id or chapter_id that is missing or not a whole number "
            "(first: row 0, None); their speaker or chapter is -1") in caplog.text
    empty = next(e for e in test.excluded if e.id == rows[3]["id"])
    assert empty.reason == data.UNREADABLE_AUDIO and empty.detail == "ValueError: row 3: its audio cell is empty"
    assert (rows[5]["id"], data.REPEATED_ID, "row 5: same transcript") in {
        (e.id, e.reason, e.detail) for e in test.excluded}
    unreadable = next(e for e in test.excluded if e.id == rows[1]["id"])
    assert unreadable.reason == data.UNREADABLE_AUDIO and "row 1: Error opening its audio" in unreadable.detail
    assert "BytesIO" not in unreadable.detail
    assert ("(row 2)", data.NO_ID) in {(e.id, e.reason) for e in test.excluded}

    (tmp_path / "pushed" / "clean").mkdir(parents=True)
    dataset.shard(2, 1, contiguous=True).to_parquet(str(tmp_path / "pushed" / "clean" / "test-00001-of-00002.parquet"))
    pushed = make_config(corpus, data__source="huggingface", data__hf_dataset=str(tmp_path / "pushed"))
    with pytest.raises(FileNotFoundError, match="only some of the 2 parquet shards"):
        data.open_hf_split(pushed, "test")
    (tmp_path / "bare" / "clean" / "test").mkdir(parents=True)
    dataset.remove_columns(["chapter_id"]).to_parquet(str(tmp_path / "bare" / "clean" / "test" / "0000.parquet"))
    bare = make_config(corpus, data__source="huggingface", data__hf_dataset=str(tmp_path / "bare"))
    with pytest.raises(FileNotFoundError, match="has no column.s. chapter_id"):
        data.open_hf_split(bare, "test")


@pytest.mark.parametrize("column, values, says", [
    ("text", [7] * 20, "has a text column of Value.'int64'.*, not strings"),
    ("audio", [7] * 20, "has an audio column of Value.'int64'.*, which is not audio"),
])
def test_hf_columns_of_another_type_are_one_clear_error(corpus, tmp_path, column, values, says):
    pytest.importorskip("datasets")
    dataset = _hf_dataset(corpus, "test-clean")
    dataset = dataset.remove_columns([column]).add_column(column, values[:len(dataset)])
    (tmp_path / "hub" / "clean" / "test").mkdir(parents=True)
    dataset.to_parquet(str(tmp_path / "hub" / "clean" / "test" / "0000.parquet"))
    config = make_config(corpus, data__source="huggingface", data__hf_dataset=str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match=says):
        data.load_split("test", config)


def test_hf_speaker_ids_that_are_not_whole_numbers_are_minus_one_with_a_warning(corpus, tmp_path, caplog):
    pytest.importorskip("datasets")
    dataset = _hf_dataset(corpus, "test-clean")
    speakers = [f"spk{value}" if index < 2 else str(value) for index, value in enumerate(dataset["speaker_id"])]
    dataset = dataset.remove_columns(["speaker_id"]).add_column("speaker_id", speakers)
    dataset.save_to_disk(str(tmp_path / "saved"))
    config = make_config(corpus, data__source="huggingface", data__hf_dataset=str(tmp_path / "saved"),
                         data__samples_per_split="all")
    with caplog.at_level(logging.WARNING, logger="librispeech"):
        test = data.load_split("test", config)
    by_row = {u.hf_row: u.speaker_id for u in test.utterances.values()}
    assert by_row[0] == by_row[1] == -1 and by_row[2] == int(speakers[2])
    assert "2 row(s) have a speaker_id or chapter_id that is missing or not a whole number (first: row 0, 'spk" \
        in caplog.text


def test_hf_config_picks_its_split_names():
    from librispeech import config as config_module

    assert make_config(data__hf_config="all").hf_splits["test"] == "test.clean"
    assert make_config(data__hf_config="other").hf_splits["training"] == "train.500"
    with pytest.raises(config_module.ConfigError, match="'nope' has no split names under data.hf_splits"):
        make_config(data__hf_config="nope")
    flat = {"training": "train.100", "validation": "validation", "test": "test"}  # a config.yaml from before
    assert make_config(data__hf_splits=flat).hf_splits == flat
    with pytest.raises(config_module.ConfigError, match="names no split for validation"):
        make_config(data__hf_splits={"training": "a", "test": "b"})
    assert make_config(data__source="huggingface", data__hf_splits={"training": "a", "validation": "b"}).subsets == (
        "training", "validation")


def _hub_shaped_copy(corpus, location) -> None:
    """The hub's parquet layout of openslr/librispeech_asr: {config}/{split}/0000.parquet."""
    for name, hf_split in {"train-clean-100": "train.100", "dev-clean": "validation", "test-clean": "test"}.items():
        (location / "clean" / hf_split).mkdir(parents=True)
        _hf_dataset(corpus, name).to_parquet(str(location / "clean" / hf_split / "0000.parquet"))


def test_hf_hub_split_fetches_only_that_splits_files(corpus, tmp_path, monkeypatch, caplog):
    """load_dataset(id, config, split=...) would download and prepare every split of the config (~30 GB for clean):
    only the asked split's parquet files are fetched. A hub dataset without them goes through load_dataset."""
    import fnmatch
    import shutil

    import datasets
    import huggingface_hub

    hub = tmp_path / "hub"
    _hub_shaped_copy(corpus, hub)
    calls = []

    def snapshot_download(repo_id, repo_type, allow_patterns):
        calls.append((repo_id, repo_type, allow_patterns))
        cache = tmp_path / f"cache{len(calls)}"
        for path in hub.rglob("*"):
            name = path.relative_to(hub).as_posix()
            if path.is_file() and any(fnmatch.fnmatch(name, pattern) for pattern in allow_patterns):
                (cache / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, cache / name)
        cache.mkdir(exist_ok=True)
        return str(cache)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    config = make_config(corpus, data__source="huggingface", data__hf_dataset="openslr/librispeech_asr",
                         data__samples_per_split="all", audio__max_samples=32000)
    from_hub = data.load_split("test", config)
    from_tree = data.load_split("test", make_config(corpus, data__samples_per_split="all", audio__max_samples=32000))
    assert list(from_hub.utterances) == list(from_tree.utterances)
    assert calls[0][:2] == ("openslr/librispeech_asr", "dataset") and "clean/test/*.parquet" in calls[0][2]
    assert [p.relative_to(tmp_path / "cache1").as_posix() for p in (tmp_path / "cache1").rglob("*.parquet")] == [
        "clean/test/0000.parquet"]

    loaded = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: loaded.append((args, kwargs)) or
                        _hf_dataset(corpus, "test-clean"))
    with caplog.at_level("WARNING", logger="librispeech"):
        fallback = data.load_split("test", make_config(corpus, data__source="huggingface", data__hf_dataset="x/y",
                                                       data__hf_config="other", data__samples_per_split="all",
                                                       audio__max_samples=32000))
    assert loaded == [(("x/y", "other"), {"split": "test"})] and list(fallback.utterances) == list(from_tree.utterances)
    assert "has no parquet files for split 'test' of config 'other'" in caplog.text


def test_hf_hub_split_offline_is_read_from_the_cache(corpus, tmp_path, monkeypatch):
    """huggingface_hub itself, offline: a cached snapshot of the split is read; an uncached dataset is one line."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    repo = tmp_path / "cache" / "datasets--openslr--librispeech_asr"
    _hub_shaped_copy(corpus, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    config = make_config(corpus, data__source="huggingface", data__hf_dataset="openslr/librispeech_asr",
                         data__samples_per_split="all", audio__max_samples=32000)
    assert list(data.load_split("validation", config).utterances) == list(data.load_split(
        "validation", make_config(corpus, data__samples_per_split="all", audio__max_samples=32000)).utterances)
    with pytest.raises(FileNotFoundError, match=r"cannot load the HF dataset 'other/corpus' .*[^.]\. HF_HUB_OFFLINE is "
                                                r"set and nothing is cached for it: set LIBRISPEECH_HF_DATASET"):
        data.open_hf_split(make_config(data__source="huggingface", data__hf_dataset="other/corpus"), "test")


def test_hf_dataset_path_that_does_not_exist_is_named_so(tmp_path):
    config = make_config(data__source="huggingface", data__hf_dataset=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="is not a folder here, nor a hub id"):
        data.open_hf_split(config, "test")


def test_hf_missing_split_is_a_clear_error(tmp_path):
    (tmp_path / "clean").mkdir()
    config = make_config(data__source="huggingface", data__hf_dataset=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no parquet files for split 'train.100'"):
        data.load_split("training", config)


def test_a_root_above_the_librispeech_folder_is_named_in_the_error(corpus, tmp_path):
    """The tarballs extract to LibriSpeech/: pointing at the folder above is a common slip, and the error says so."""
    import shutil

    shutil.move(str(corpus), str(tmp_path / "download" / "LibriSpeech"))
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"is not a folder ({tmp_path / 'download' / 'LibriSpeech'} has it: set LIBRISPEECH_ROOT to that folder)")):
        data.load_split("validation", make_config(tmp_path / "download"))


def test_hf_parquet_copy_whose_datasets_cache_cannot_be_written_is_one_clear_error(corpus, tmp_path, monkeypatch):
    """datasets reads a parquet split through an Arrow copy in its cache: where that cannot be written (a read-only
    or full disk, a home that is not a folder), the error names the cache and the ways out."""
    datasets = pytest.importorskip("datasets")
    (tmp_path / "hf_copy" / "clean" / "test").mkdir(parents=True)
    _hf_dataset(corpus, "test-clean").to_parquet(str(tmp_path / "hf_copy" / "clean" / "test" / "0000.parquet"))
    not_a_folder = tmp_path / "home"
    not_a_folder.write_text("")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", not_a_folder / ".cache")
    config = make_config(corpus, data__source="huggingface", data__hf_dataset=str(tmp_path / "hf_copy"))
    with pytest.raises(OSError, match=r"datasets cannot write its Arrow copy of the parquet files of split 'test' .*"
                                      r"home/\.cache .*set HF_DATASETS_CACHE to a writable folder"):
        data.open_hf_split(config, "test")


def test_hf_parquet_cache_under_a_home_that_cannot_be_made_is_one_clear_error(corpus, tmp_path, monkeypatch):
    """The default cache is HOME/.cache/huggingface/datasets: where HOME cannot be made (HOME=/nonexistent on a
    read-only root) or is a file, makedirs fails on a folder above the cache, and the error names that folder."""
    datasets = pytest.importorskip("datasets")
    (tmp_path / "hf_copy" / "clean" / "test").mkdir(parents=True)
    _hf_dataset(corpus, "test-clean").to_parquet(str(tmp_path / "hf_copy" / "clean" / "test" / "0000.parquet"))
    not_a_folder = tmp_path / "home"
    not_a_folder.write_text("")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", not_a_folder / ".cache" / "huggingface" / "datasets")
    config = make_config(corpus, data__source="huggingface", data__hf_dataset=str(tmp_path / "hf_copy"))
    with pytest.raises(OSError, match=r"datasets cannot write its Arrow copy .*home/\.cache/huggingface/datasets "
                                      r"\(Not a directory: .*home/\.cache\): set HF_DATASETS_CACHE"):
        data.open_hf_split(config, "test")


def test_hf_parquet_errors_of_a_full_disk_are_the_cache_s_and_those_of_the_data_stay_theirs(corpus, tmp_path,
                                                                                            monkeypatch):
    """A full disk while datasets writes its Arrow copy reaches us wrapped in a DatasetGenerationError, with no path:
    that is the cache's. A data file that cannot be read (a path outside the cache) keeps its own error."""
    import errno

    datasets = pytest.importorskip("datasets")
    (tmp_path / "hf_copy" / "clean" / "test").mkdir(parents=True)
    data_file = tmp_path / "hf_copy" / "clean" / "test" / "0000.parquet"
    _hf_dataset(corpus, "test-clean").to_parquet(str(data_file))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    config = make_config(corpus, data__source="huggingface", data__hf_dataset=str(tmp_path / "hf_copy"))

    def fails_with(error):
        def load_dataset(*args, **kwargs):
            raise error
        monkeypatch.setattr(datasets, "load_dataset", load_dataset)

    def generation_error(cause):
        try:
            raise datasets.exceptions.DatasetGenerationError("An error occurred while generating the dataset") \
                from cause
        except datasets.exceptions.DatasetGenerationError as error:
            return error

    fails_with(generation_error(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError, match=r"in its cache, .*cache \(No space left on device\): set HF_DATASETS_CACHE"):
        data.open_hf_split(config, "test")
    fails_with(PermissionError(errno.EACCES, "Permission denied", str(data_file)))
    with pytest.raises(PermissionError, match=r"^\[Errno 13\] Permission denied: .*0000\.parquet'$"):
        data.open_hf_split(config, "test")
    fails_with(generation_error(PermissionError(errno.EACCES, "Permission denied")))  # whose? not said: kept
    with pytest.raises(datasets.exceptions.DatasetGenerationError):
        data.open_hf_split(config, "test")
