"""`poetry run train-demo` end to end on the bundled corpus: one short epoch, the log, the export."""
import csv
import json

import numpy as np
import pytest

from librispeech.config import BUNDLED_CORPUS, project_config


def test_train_demo_logs_each_epoch_and_exports_a_float32_fixed_length_model(tmp_path, capsys):
    import keras

    from librispeech import metrics
    from librispeech_tools import training

    output = tmp_path / "demo.h5"
    arguments = ["--corpus", str(BUNDLED_CORPUS), "--corpus-split", "train-clean-100", "--utterances", "20",
                 "--epochs", "1", "--batch-size", "4", "--learning-rate", "1e-4",
                 "--precision", "mixed_bfloat16", "--output", str(output)]
    for earlier in (output, output.with_suffix(".json"), output.with_suffix(".training.csv")):
        earlier.write_text("an earlier run's")  # replaced together at the end
    training.train(training.parse_args(arguments))
    assert not list(tmp_path.glob("*.partial*"))
    # 19 utterances in batches of 4: 5 steps, fewer than the default warm-up of 300
    assert "5 steps in all, so the warm-up is 4 steps, not 300" in capsys.readouterr().err
    assert keras.mixed_precision.global_policy().name == "float32"  # training's policy does not leak

    rows = list(csv.DictReader(output.with_suffix(".training.csv").open()))
    assert [row["epoch"] for row in rows] == ["1"] and np.isfinite(float(rows[0]["train_loss"]))
    recorded = json.loads(output.with_suffix(".json").read_text())
    assert recorded["epoch"] == 1 and recorded["precision"] == "mixed_bfloat16"
    assert recorded["training_utterances"] == 19  # one of the 20 is the model-selection slice
    assert (recorded["corpus"], recorded["corpus_split"], recorded["utterances"], recorded["seed"]) == (
        str(BUNDLED_CORPUS), "train-clean-100", 20, 0)  # what reproduces the run

    model = keras.models.load_model(output, compile=False)
    assert model.inputs[0].shape[1] == project_config().max_samples
    assert {layer.dtype_policy.compute_dtype for layer in model.layers} == {"float32"}
    # the logged bundled-corpus figures are the exported model's own (logged from the any-length float32 copy;
    # padding-invariant, so only a rare argmax tie may differ)
    waveforms, references = training.bundled_corpus()
    rates = metrics.corpus_error_rates(references, training.transcribe(model, waveforms))
    assert rates["wer"] == pytest.approx(recorded["bundled_wer"], abs=0.01)
    assert rates["cer"] == pytest.approx(recorded["bundled_cer"], abs=0.01)


def test_an_interrupted_run_leaves_the_earlier_export_and_its_records_as_they_were(tmp_path, monkeypatch):
    """The export, its .json and its .training.csv are written beside the output and replaced together at the end:
    a run stopped in its first epoch neither empties the earlier log nor pairs a new model with an old record."""
    from librispeech_tools import training

    output = tmp_path / "demo.h5"
    earlier = {path: f"earlier {path.suffix}" for path in (output, output.with_suffix(".json"),
                                                           output.with_suffix(".training.csv"))}
    for path, text in earlier.items():
        path.write_text(text)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "batches", interrupted)
    arguments = ["--corpus", str(BUNDLED_CORPUS), "--corpus-split", "train-clean-100", "--utterances", "8",
                 "--output", str(output)]
    with pytest.raises(KeyboardInterrupt):
        training.train(training.parse_args(arguments))
    assert {path: path.read_text() for path in earlier} == earlier


def test_train_demo_without_a_corpus_says_how_to_make_one(tmp_path):
    from librispeech_tools import training

    with pytest.raises(SystemExit, match="make_training_corpus.py"):
        training.train(training.parse_args(["--corpus", str(tmp_path), "--output", str(tmp_path / "demo.h5")]))


def test_train_demo_refuses_what_would_waste_or_fake_a_run_before_training(tmp_path, tiny_model, capsys):
    """An --output Keras cannot save (or under a file), a NaN or negative learning rate (its model would be NaN), a
    negative seed, a corpus sample that leaves nothing to train on, and an --init that is not an export of the demo
    config are each one line, before any training step."""
    from librispeech_tools import training

    with pytest.raises(SystemExit):
        training.parse_args(["--output", str(tmp_path / "demo.onnx")])
    assert "--output must end in .h5 or .hdf5 (the Keras export Tensorleap takes)" in capsys.readouterr().err
    afile = tmp_path / "afile"
    afile.write_text("")
    for arguments, says in ((["--learning-rate", "nan"], "--learning-rate must be a positive number"),
                            (["--learning-rate", "-1"], "--learning-rate must be a positive number"),
                            (["--seed", "-1"], "--seed at least 0"),
                            (["--output", str(afile / "runs" / "m.h5")], f"{afile} is a file, not a folder")):
        with pytest.raises(SystemExit):
            training.parse_args(arguments)
        assert says in capsys.readouterr().err
    corpus = ["--corpus", str(BUNDLED_CORPUS), "--corpus-split", "train-clean-100", "--output", str(tmp_path / "m.h5")]
    with pytest.raises(SystemExit, match="1 utterance\\(s\\) leave none to train on beside the 1 held out"):
        training.train(training.parse_args(corpus + ["--utterances", "1"]))
    not_hdf5 = tmp_path / "notes.h5"
    not_hdf5.write_text("not a model")
    for init, says in ((tmp_path / "absent.h5", "train-demo: --init: no wav2vec2 model at"),
                       (not_hdf5, "is not an HDF5 file"),
                       (tiny_model, f"train-demo: --init {tiny_model} is not an export of the demo config")):
        with pytest.raises(SystemExit, match=says):
            training.train(training.parse_args(corpus + ["--utterances", "4", "--init", str(init)]))
    assert not (tmp_path / "m.h5").exists() and not (tmp_path / "m.training.csv").exists()
    (tmp_path / "folder.h5").mkdir()
    with pytest.raises(SystemExit):
        training.parse_args(["--output", str(tmp_path / "folder.h5")])
    assert "is a folder: name the .h5 file to write" in capsys.readouterr().err
    with pytest.raises(SystemExit, match=f"train-demo: --output .*m.h5: cannot write in {afile}/runs"):
        training.check_output_folder(afile / "runs" / "m.h5")
    (tmp_path / "empty" / "train-synthetic").mkdir(parents=True)
    with pytest.raises(SystemExit, match="train-demo: cannot train on .*empty/train-synthetic: .*no usable utterance"):
        training.train(training.parse_args(["--corpus", str(tmp_path / "empty"), "--output", str(tmp_path / "m.h5")]))
