"""Inputs that used to break the analysis: utterances too short for their transcript, long transcripts, broken
model files (issue 12). The property-based version of these checks is tests/test_fuzz.py."""
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile

from conftest import make_config, tone, write_utterance
from librispeech import data, metrics, tokenizer
from librispeech.model_file import ModelFileError, load_wav2vec2

REPO = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO / "model" / "demo-wav2vec2.h5"
FRAMES = 1747  # model frames of the 559,280-sample input
BLANK_LOGIT = 1e4  # what the model emits on padded frames


def base_stack_frames(num_samples: int) -> int:
    """wav2vec2's 16 kHz frame rule in closed form: a 400-sample window every 320 samples."""
    return 0 if num_samples < 400 else (num_samples - 400) // 320 + 1


def model_like_logits(real_frames: int, rng, frames: int = FRAMES) -> np.ndarray:
    """[1, frames, 32]: random logits on the real frames, the certain blank the model emits past them."""
    logits = np.zeros((1, frames, 32), np.float32)
    logits[0, :, 0] = BLANK_LOGIT
    logits[0, :real_frames] = rng.normal(size=(real_frames, 32)) * 3
    return logits


# ---------------------------------------------------------------- the frame rule preprocessing uses

@pytest.mark.parametrize("num_samples", [0, 1, 399, 400, 719, 720, 721, 16000, 559280])
def test_model_frames_is_the_base_conv_stack(num_samples):
    assert data.model_frames(num_samples) == base_stack_frames(num_samples)


@pytest.mark.parametrize("text, needed", [("YES", 3), ("HELLO", 6), ("BOOKKEEPER", 13), ("A B", 3), ("'''", 5),
                                          ("AA  AA", 7)])
def test_min_ctc_frames_counts_a_blank_between_equal_neighbours(text, needed):
    assert tokenizer.min_ctc_frames(text) == needed


# ---------------------------------------------------------------- preprocess excludes what CTC cannot align

def test_preprocess_excludes_audio_too_short_for_its_transcript(tmp_path):
    root = tmp_path / "LibriSpeech"
    cases = {"YES_200": (200, "YES"), "YES_399": (399, "YES"), "HELLO_400": (400, "HELLO"),
             "HELLO_2000": (2000, "HELLO"), "A_400": (400, "A")}
    ids = {}
    for utt, (name, (samples, text)) in enumerate(cases.items()):
        ids[name] = write_utterance(root, "train-clean-100", 1, 2, utt, text, tone(1.0)[:samples])
    split = data.load_split("training", make_config(root, data__samples_per_split="all"))
    excluded = {e.id: e for e in split.excluded}
    for name in ("YES_200", "YES_399", "HELLO_400"):
        assert excluded[ids[name]].reason == data.TOO_SHORT_FOR_TRANSCRIPT, name
    assert "0 frames < 3 needed" in excluded[ids["YES_200"]].detail
    assert "1 frames < 6 needed" in excluded[ids["HELLO_400"]].detail
    assert set(split.utterances) == {ids["HELLO_2000"], ids["A_400"]}  # 6 frames for HELLO's 6; 1 frame for A


def test_hidden_files_are_ignored_and_a_flac_without_a_length_is_unreadable(tmp_path):
    """A corpus copied by macOS has `._NAME` AppleDouble files beside each file; a FLAC written by a streaming
    encoder may leave its length unset (soundfile then says 2**63 - 1 frames and cannot decode it)."""
    root = tmp_path / "LibriSpeech"
    good = write_utterance(root, "train-clean-100", 1, 2, 0, "HELLO", tone(1.0))
    no_length = write_utterance(root, "train-clean-100", 1, 2, 1, "HELLO", tone(1.0))
    chapter = root / "train-clean-100" / "1" / "2"
    flac = bytearray((chapter / f"{no_length}.flac").read_bytes())
    flac[21] &= 0xF0  # STREAMINFO's 36-bit total-samples field: bits 4-7 of byte 21 and bytes 22-25
    flac[22:26] = bytes(4)
    (chapter / f"{no_length}.flac").write_bytes(bytes(flac))
    apple_double = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X"
    for name in ("._1-2.trans.txt", f"._{good}.flac"):
        (chapter / name).write_bytes(apple_double)
    (root / "train-clean-100" / "1" / ".Trash").mkdir()
    split = data.load_split("training", make_config(root, data__samples_per_split="all"))
    assert set(split.utterances) == {good}
    assert [(e.id, e.reason) for e in split.excluded] == [(no_length, data.UNREADABLE_AUDIO)]
    assert "gives no length" in split.excluded[0].detail


def test_files_that_are_neither_flac_nor_transcripts_are_said_not_read(tmp_path, caplog):
    """Audio in another format or with another suffix (.wav, .FLAC) is not LibriSpeech's: one warning counts it."""
    root = tmp_path / "LibriSpeech"
    good = write_utterance(root, "train-clean-100", 1, 2, 0, "HELLO", tone(1.0))
    chapter = root / "train-clean-100" / "1" / "2"
    soundfile.write(chapter / "1-2-0001.wav", tone(1.0), 16000)
    soundfile.write(chapter / "1-2-0002.FLAC", tone(1.0), 16000, format="FLAC")
    (root / "train-clean-100" / "notes.txt").write_text("mine")
    (chapter / ".DS_Store").write_bytes(b"")  # hidden: not the corpus's, not said
    with caplog.at_level("WARNING", logger="librispeech"):
        split = data.load_split("training", make_config(root, data__samples_per_split="all"))
    assert set(split.utterances) == {good}
    assert (f"train-clean-100 (training): 3 file(s) not read, being neither .flac audio nor .trans.txt transcripts "
            f"(first: {chapter / '1-2-0001.wav'})") in caplog.text


def test_audio_that_fails_to_decode_after_listing_names_its_file(tmp_path, monkeypatch):
    """Listing reads headers only: a damaged body behind a good header, or audio that decodes to another length than
    its header gave, is an AudioDecodeError naming the file when the sample is read."""
    root = tmp_path / "LibriSpeech"
    cut = write_utterance(root, "train-clean-100", 1, 2, 0, "HELLO", tone(2.0))
    short = write_utterance(root, "train-clean-100", 1, 2, 1, "HELLO", tone(2.0))
    flac = root / "train-clean-100" / "1" / "2" / f"{cut}.flac"
    flac.write_bytes(flac.read_bytes()[:flac.stat().st_size // 2])
    split = data.load_split("training", make_config(root, data__samples_per_split="all"))
    assert set(split.utterances) == {cut, short}
    with pytest.raises(data.AudioDecodeError, match=f"cannot decode audio of {cut} \\({re.escape(str(flac))}\\)"):
        split.audio(cut)
    read = data.read_audio

    def one_sample_short(*arguments, **keywords):
        decoded = read(*arguments, **keywords)
        return data.DecodedAudio(decoded.waveform[:-1], decoded.clipping_fraction)

    monkeypatch.setattr(data, "read_audio", one_sample_short)
    with pytest.raises(data.AudioDecodeError, match="decodes to 31999 samples, but its header gave 32000"):
        split.audio(short)


def test_preprocess_keeps_a_703_character_transcript_on_34_seconds(tmp_path):
    """Issue 12: valid CTC input (1,700+ frames for 703 labels) that the 630-wide label used to refuse."""
    root = tmp_path / "LibriSpeech"
    words = ("THE QUICK BROWN FOX JUMPS OVER A LAZY DOG AND " * 20)
    text = words[:703].rstrip()
    utterance = write_utterance(root, "train-clean-100", 1, 2, 0, text, tone(34.0))
    config = make_config(root, data__samples_per_split="all")
    split = data.load_split("training", config)
    assert list(split.utterances) == [utterance] and not split.excluded
    label = tokenizer.encode_transcript(split.utterances[utterance].transcript, config.max_label_length)
    assert tokenizer.decode_reference(label) == text  # no truncation


def test_preprocess_excludes_a_transcript_past_the_label_width(tmp_path):
    root = tmp_path / "LibriSpeech"
    long_one = write_utterance(root, "train-clean-100", 1, 2, 0, "AB " * 10, tone(1.0))
    short_one = write_utterance(root, "train-clean-100", 1, 2, 1, "AB", tone(1.0))
    split = data.load_split("training", make_config(root, data__samples_per_split="all",
                                                    text__max_label_length=20))
    assert list(split.utterances) == [short_one]
    [excluded] = split.excluded
    assert (excluded.id, excluded.reason) == (long_one, data.LABEL_TOO_LONG)
    assert excluded.detail == "29 tokens > max_label_length=20"


def test_label_width_holds_any_transcript_the_model_can_align():
    """A label longer than the frames of the longest input can never be aligned, so the width never refuses an
    utterance the model could transcribe."""
    config = make_config()
    assert config.max_label_length >= base_stack_frames(config.max_samples) == FRAMES


def test_float_audio_beyond_full_scale_is_clipped_with_a_warning(tmp_path, caplog):
    import soundfile

    wave = np.full(4000, 0.5, np.float32)
    wave[10], wave[20], wave[30] = np.nan, np.inf, -7.0
    path = tmp_path / "odd.wav"
    soundfile.write(path, wave, 16000, subtype="FLOAT")
    decoded = data.decode_audio(str(path), 16000, name="odd")
    assert np.isfinite(decoded).all() and decoded[10] == 0 and decoded[20] == 1 and decoded[30] == -1
    assert decoded[0] == 0.5
    assert "odd: audio has NaN" in caplog.text


# ---------------------------------------------------------------- ctc_loss is always finite

@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("real_frames, text", [(0, "YES"), (1, "HELLO"), (5, "HELLO")])
def test_ctc_loss_of_an_infeasible_sample_is_zero(real_frames, text, dtype):
    """No CTC path fits: TensorFlow's kernel gives inf ("No valid path found"); the fallback gives 0."""
    rng = np.random.default_rng(0)
    feasible = model_like_logits(60, rng)
    logits = np.concatenate([model_like_logits(real_frames, rng), feasible]).astype(dtype)
    labels = np.stack([tokenizer.encode_transcript(text, 630)] * 2).astype(dtype)
    loss = np.asarray(metrics.ctc_loss(logits, labels))
    assert loss[0] == metrics.INFEASIBLE_LOSS == 0.0
    assert np.isfinite(loss[1]) and loss[1] > 0


def test_ctc_loss_of_non_finite_logits_is_zero_and_leaves_the_others():
    rng = np.random.default_rng(1)
    logits = np.concatenate([model_like_logits(50, rng) for _ in range(3)])
    labels = np.stack([tokenizer.encode_transcript("CAT", 40)] * 3)
    clean = np.asarray(metrics.ctc_loss(logits, labels))
    logits[1, 3, 5], logits[2, 7, 0] = np.nan, np.inf
    loss = np.asarray(metrics.ctc_loss(logits, labels))
    assert loss[0] == pytest.approx(clean[0]) and loss[1] == loss[2] == 0.0


def test_ctc_loss_fallback_has_a_zero_gradient():
    """Training uses this loss: an infeasible or non-finite sample must not put inf/NaN into the gradient."""
    import tensorflow as tf

    rng = np.random.default_rng(2)
    logits = np.concatenate([model_like_logits(50, rng, 80), model_like_logits(2, rng, 80),
                             model_like_logits(50, rng, 80)])
    logits[2, 0, 0] = np.nan
    variable = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(metrics.ctc_loss(variable, np.stack([tokenizer.encode_transcript("HELLO", 40)] * 3)))
    gradient = tape.gradient(loss, variable).numpy()
    assert np.isfinite(gradient).all()
    assert np.abs(gradient[0]).sum() > 0 and np.abs(gradient[1:]).sum() == 0


# ---------------------------------------------------------------- broken model files

def _broken_files(folder: Path) -> dict[str, Path]:
    demo = DEMO_MODEL.read_bytes()
    files = {"missing": folder / "absent.h5", "not_hdf5": folder / "notes.h5", "truncated": folder / "cut.h5",
             "bad_header": folder / "header.h5", "plain_hdf5": folder / "plain.h5",
             "damaged_weights": folder / "nan.h5", "wrong_suffix": folder / "model.bin",
             "upper_case_suffix": folder / "MODEL.H5"}
    files["not_hdf5"].write_text("this is not a model\n")
    files["truncated"].write_bytes(demo[:len(demo) // 2])
    files["bad_header"].write_bytes(demo[:600] + bytes(4000) + demo[4600:])
    with h5py.File(files["plain_hdf5"], "w") as handle:
        handle["x"] = np.arange(3)
    damaged = bytearray(demo)  # the float32 bytes FF FF FF FF are NaN
    damaged[5_000_000:5_020_000] = b"\xff" * 20_000
    files["damaged_weights"].write_bytes(bytes(damaged))
    files["wrong_suffix"].write_bytes(demo)
    files["upper_case_suffix"].write_bytes(demo)
    return files


@pytest.fixture(scope="module")
def broken_files(tmp_path_factory):
    return _broken_files(tmp_path_factory.mktemp("broken"))


@pytest.mark.parametrize("kind, says", [
    ("missing", "no wav2vec2 model at"), ("not_hdf5", "is not an HDF5 file"),
    ("truncated", "is truncated or corrupt: cannot open it as HDF5 (OSError: Unable to synchronously open file "
                  "(truncated file"),
    ("bad_header", "is truncated or corrupt"), ("plain_hdf5", "is an HDF5 file but not a Keras model export"),
    ("damaged_weights", "has NaN or infinite values; the file is damaged"),
    ("wrong_suffix", "unsupported model file type '.bin'"),
    ("upper_case_suffix", "Keras loads an .h5 model only under a lower-case suffix; rename it to MODEL.h5")])
def test_broken_model_file_is_one_line_naming_the_path(broken_files, kind, says):
    with pytest.raises(ModelFileError) as raised:
        load_wav2vec2(broken_files[kind])
    message = str(raised.value)
    assert str(broken_files[kind]) in message and says in message and "\n" not in message


def test_evaluate_refuses_an_upper_case_suffix_as_the_runtime_does(broken_files):
    """evaluate's ONNX Runtime engine reads an .h5 without Keras, which would take MODEL.H5: the local report would
    run on a file the runtime's loader refuses."""
    from librispeech_tools.model_pass import ModelPassError, onnx_model_pass_of_h5

    with pytest.raises(ModelPassError, match="only under a lower-case suffix; rename it to MODEL.h5"):
        onnx_model_pass_of_h5(broken_files["upper_case_suffix"])


def test_keras_model_that_is_not_wav2vec2(tmp_path):
    import keras

    path = tmp_path / "dense.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(path)
    with pytest.raises(ModelFileError, match=r"dense.h5 is a Keras model \('sequential'\) but not a wav2vec2 export"):
        load_wav2vec2(path)


def test_export_with_another_conv_stack_is_refused(tmp_path):
    from librispeech.wav2vec2 import model as wav2vec2_model

    config = {"conv_dim": [8, 8], "conv_kernel": [10, 8], "conv_stride": [5, 4], "hidden_size": 8,
              "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
              "num_conv_pos_embeddings": 4, "num_conv_pos_embedding_groups": 2}
    path = tmp_path / "other-stack.h5"
    wav2vec2_model.build_wav2vec2_for_ctc(config, 16000).save(path)
    with pytest.raises(ModelFileError, match=r"conv stack kernels \[10, 8\] / strides \[5, 4\] differ"):
        load_wav2vec2(path)


@pytest.mark.parametrize("change, says", [
    ({"vocab_size": 40}, "the model has 40 output tokens with the CTC blank at id 0, but the runtime's vocabulary"),
    ({"pad_token_id": 31}, "the model has 32 output tokens with the CTC blank at id 31"),
])
@pytest.mark.parametrize("suffix", [".h5", ".onnx"])
def test_export_with_another_vocabulary_is_refused(tmp_path, change, says, suffix):
    """Its logits would be read with the runtime's vocab.json: every transcript and loss would be wrong."""
    from conftest import TINY_CONFIG
    from librispeech.wav2vec2 import model as wav2vec2_model
    from librispeech_tools.onnx_wav2vec2 import save_onnx

    model = wav2vec2_model.build_wav2vec2_for_ctc({**TINY_CONFIG, **change}, 16000 if suffix == ".h5" else None)
    path = tmp_path / f"other-vocabulary{suffix}"
    model.save(path) if suffix == ".h5" else save_onnx(model, path)
    with pytest.raises(ModelFileError, match=re.escape(says)):
        load_wav2vec2(path)


@pytest.mark.parametrize("engine", ["onnxruntime", "keras"])
def test_evaluate_refuses_an_h5_with_another_vocabulary_on_every_engine(tmp_path, engine):
    """evaluate's model passes read the .h5 without load_wav2vec2; they must refuse what it refuses."""
    from conftest import TINY_CONFIG
    from librispeech.wav2vec2 import model as wav2vec2_model
    from librispeech_tools.model_pass import ModelPassError, load_model_pass

    path = tmp_path / "other-vocabulary.h5"
    wav2vec2_model.build_wav2vec2_for_ctc({**TINY_CONFIG, "vocab_size": 40}, 16000).save(path)
    with pytest.raises(ModelPassError, match=re.escape("the model has 40 output tokens")):
        load_model_pass(path, engine=engine)


def test_demo_model_still_loads():
    model = load_wav2vec2(DEMO_MODEL)
    assert [tensor.name for tensor in model.inputs] == ["audio", "audio_length"]


def _command_line(arguments: list[str], model: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WAV2VEC_MODEL": str(model), "TL_DISABLE_ANALYTICS": "true", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *arguments], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("command", ["leap_test", "evaluate"])
def test_command_lines_report_a_truncated_model_in_one_line(broken_files, tmp_path, command):
    path = broken_files["truncated"]
    arguments = ([str(REPO / "leap_test.py"), "--samples", "1"] if command == "leap_test" else
                 ["-m", "librispeech_tools.evaluate", "--model", str(path), "--limit", "1", "--out",
                  str(tmp_path / "report")])
    result = _command_line(arguments, path, tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert str(path) in last and "truncated" in last


def test_leap_test_names_audio_that_fails_to_decode_in_one_line(tmp_path):
    import shutil

    corpus = tmp_path / "LibriSpeech"
    shutil.copytree(REPO / "data" / "LibriSpeech", corpus)
    for flac in corpus.rglob("*.flac"):  # the header still gives the full length: listing keeps them
        flac.write_bytes(flac.read_bytes()[:flac.stat().st_size // 2])
    env = {**os.environ, "LIBRISPEECH_ROOT": str(corpus), "TL_DISABLE_ANALYTICS": "true", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(REPO / "leap_test.py"), "--samples", "1"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"error: cannot decode audio of (\S+) \(.*/\1\.flac\): .+", last), last
