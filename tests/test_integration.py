"""`poetry run test` end to end, and the code as the platform loads it (code-loader's LeapLoader)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from librispeech.config import project_config

REPO = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO / "model" / "demo-wav2vec2.h5"


# What Tensorleap does with the pushed code first: LeapLoader on leap_test.py, then its dataset check.
LOADER = (
    "import json, os\n"
    "import numpy as np\n"
    "from code_loader import LeapLoader\n"
    "from code_loader.contract.datasetclasses import RawInputsForHeatmap\n"
    "from code_loader.contract.enums import DataStateEnum\n"
    "loader = LeapLoader(code_path=os.getcwd(), code_entry_name='leap_test.py')\n"
    "result = loader.check_dataset()\n"
    "assert result.is_valid, (result.general_error, [p for p in result.payloads if not p.is_passed])\n"
)


def _loader_report(code: str, model: Path) -> dict:
    """Run LOADER + `code` in a fresh interpreter; the JSON object it prints last."""
    result = _run(LOADER + code, model)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _run(code: str, model: Path, **environment) -> subprocess.CompletedProcess:
    """Each run in a fresh interpreter: code-loader keeps its registrations in process-wide state."""
    env = {**os.environ, "WAV2VEC_MODEL": str(model), "TL_DISABLE_ANALYTICS": "true", **environment}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)


def test_integration_test_passes_on_every_subset(tiny_model):
    result = _run("import leap_test; print('ran', leap_test.run(2))", tiny_model)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ran 6" in result.stdout  # two samples of each of the three subsets
    assert result.stdout.count("Successful!") == 6  # code-loader's leap_binder.check() after each


def test_missing_model_is_a_clear_message(tmp_path):
    result = subprocess.run([sys.executable, "leap_test.py"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "WAV2VEC_MODEL": str(tmp_path / "absent.h5")}, timeout=600)
    assert result.returncode != 0
    assert "no wav2vec2 model at" in result.stderr and "export-model" in result.stderr


@pytest.mark.parametrize("command", [["-m", "librispeech_tools.integration_test"], ["leap_test.py"]])
def test_a_bad_setting_is_one_line_from_the_test_command(command):
    """leap_test reads the configuration on import; the `test` command, and leap_test.py run as a script, report a
    bad value in one line."""
    result = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "LIBRISPEECH_SAMPLES_PER_SPLIT": "abc"})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: samples_per_split (LIBRISPEECH_SAMPLES_PER_SPLIT) must be a positive integer or 'all', got 'abc'")


def test_missing_lm_is_a_clear_message_before_the_model_runs(tmp_path, tiny_model):
    result = subprocess.run([sys.executable, "leap_test.py", "--samples", "1"], cwd=REPO, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "WAV2VEC_MODEL": str(tiny_model),
                                                         "LIBRISPEECH_LM": str(tmp_path / "absent.arpa")})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "absent.arpa" in result.stderr
    assert "Traceback" not in result.stderr and "Successful!" not in result.stdout  # stopped before any sample


def test_platform_loader_parses_the_integration(tiny_model):
    """What Tensorleap does with the pushed code: LeapLoader on leap_test.py, dataset check, then samples."""
    report = _loader_report(
        "ids = loader.get_preprocess_sample_ids()\n"
        "sample_id = ids[DataStateEnum.validation][0]\n"
        "sample = loader.get_sample(DataStateEnum.validation, sample_id)\n"
        "print(json.dumps({'inputs': {k: list(v.shape) for k, v in sample.inputs.items()},\n"
        "                  'gt': {k: list(v.shape) for k, v in sample.gt.items()},\n"
        "                  'metadata': sorted(sample.metadata), 'subsets': len(ids),\n"
        "                  'layers': sorted(loader.custom_layers())}))\n", tiny_model)
    assert report["inputs"] == {"audio": [559280], "audio_length": [1]}
    assert report["gt"] == {"transcript": [project_config().max_label_length]}
    assert "speech_rms_std" in report["metadata"] and "readability_dale_chall_readability_score" in report["metadata"]
    assert "records_sex" in report["metadata"] and report["subsets"] == 3
    assert "pace_pause_count" in report["metadata"] and "noise_snr_db" in report["metadata"]
    assert "librispeech>Wav2Vec2Encoder" in report["layers"]  # as the .h5 names it


def test_the_platform_s_dataset_log_says_what_was_left_out(tmp_path, tiny_model):
    """The platform shows the user what its dataset check prints (LeapLoader keeps stdout as print_log): the
    utterances left out, and those of a reader SPEAKERS.TXT lacks, are said there."""
    from conftest import tone, write_tables, write_utterance

    for split in ("train-clean-100", "dev-clean", "test-clean"):
        write_utterance(tmp_path, split, 11, 110, 0, "YES", tone(1.5))
        write_utterance(tmp_path, split, 11, 110, 1, "NO AUDIO HERE")  # a transcript line without its file
        write_utterance(tmp_path, split, 12, 120, 0, "NO", tone(1.5))  # reader 12: no SPEAKERS.TXT row
    write_tables(tmp_path, {11: ("F", "Ann")}, {110: (11, "7", "One"), 120: (12, "7", "Two")}, {"7": "A Book"})
    result = _run(LOADER + "print(json.dumps({'log': result.print_log}))\n", tiny_model,
                  LIBRISPEECH_ROOT=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    log = json.loads(result.stdout.strip().splitlines()[-1])["log"]
    for split in ("train-clean-100", "dev-clean", "test-clean"):
        assert f"{split} (" in log and "left out 1 of 3 utterances examined" in log, log
    assert "1 of 2 utterances have no SPEAKERS.TXT row" in log and "left out" not in result.stderr


def test_platform_loader_runs_every_loss_metric_and_visualizer_on_a_batch(tiny_model):
    """The platform's calls after the model: LeapLoader's run_custom_loss / run_metric / run_visualizer (and the
    mel spectrogram's heatmap) on a batch of two samples' float16 logits, as Tensorleap hands them over."""
    report = _loader_report(
        "from librispeech.model_file import load_wav2vec2\n"
        "state = DataStateEnum.validation\n"
        "ids = loader.get_preprocess_sample_ids()[state][:2]\n"
        "samples = [loader.get_sample(state, i) for i in ids]\n"
        "audio = np.stack([s.inputs['audio'] for s in samples])\n"
        "length = np.stack([s.inputs['audio_length'] for s in samples])\n"
        "logits = np.asarray(load_wav2vec2(os.environ['WAV2VEC_MODEL']).predict_on_batch([audio, length]))\n"
        "tensors = {'logits': logits.astype(np.float16).astype(np.float32), 'audio': audio, 'audio_length': length,\n"
        "           'transcript': np.stack([s.gt['transcript'] for s in samples])}\n"
        "ours = lambda handler: set(handler.arg_names) <= set(tensors)  # not code-loader's built-ins\n"
        "report = {}\n"
        "for name, handler in loader.custom_loss_by_name().items():\n"
        "    if ours(handler):\n"
        "        out = loader.run_custom_loss(name, np.array(ids), state, {a: tensors[a] for a in handler.arg_names})\n"
        "        report[name] = [list(np.shape(out)), bool(np.isfinite(out).all())]\n"
        "for name, handler in loader.metric_by_name().items():\n"
        "    if ours(handler):\n"
        "        out = loader.run_metric(name, np.array(ids), state, {a: tensors[a] for a in handler.arg_names})\n"
        "        values = out.values() if isinstance(out, dict) else [out]\n"
        "        report[name] = [sorted({np.shape(v) for v in values}), all(np.isfinite(v).all() for v in values)]\n"
        "for name, handler in loader.visualizer_by_name().items():\n"
        "    if ours(handler):\n"
        "        one = {a: tensors[a][0] for a in handler.arg_names}\n"
        "        report[name] = type(loader.run_visualizer(name, np.array(ids[:1]), state, dict(one))).__name__\n"
        "        raw_name = loader.get_heatmap_visualizer_raw_vis_input_arg_name(name)\n"
        "        if raw_name is not None:  # as the engine: attributions by name, the inputs under raw_name\n"
        "            attributions = {a: np.abs(v) * 1e-3 for a, v in one.items()}\n"
        "            heat = loader.run_heatmap_visualizer(name, np.array(ids[:1]), state,\n"
        "                                                 {**attributions, raw_name: RawInputsForHeatmap(one)})\n"
        "            result = loader.run_visualizer(name, np.array(ids[:1]), state, dict(one))\n"
        "            shown = result.audio if hasattr(result, 'audio') else result.data\n"
        "            report[name + ' heatmap'] = [list(np.shape(heat)), list(np.shape(shown))]\n"
        "print(json.dumps(report))\n", tiny_model)
    assert report["ctc_loss"] == [[2], True]
    for metric in ("error_rates", "confidence", "error_rates_lm", "lm_gain"):
        assert report[metric] == [[[2]], True], metric
    assert report["transcription"] == "LeapText" and report["alignment"] == "LeapTextMask"
    assert report["mel_spectrogram"] == "LeapImage" and report["audio_player"] == "LeapAudio"
    # Every visualizer of the inputs has a heatmap: with two inputs and none, code-loader's engine fails an assert.
    heatmap_shape, image_shape = report["mel_spectrogram heatmap"]
    assert heatmap_shape == image_shape[:2] and image_shape[0] == 128
    heatmap_shape, graph_shape = report["waveform heatmap"]
    assert heatmap_shape == graph_shape[:1] and graph_shape[1] == 2
    heatmap_shape, audio_shape = report["audio_player heatmap"]
    assert heatmap_shape == audio_shape and audio_shape[0] > 400
    assert {"reference", "word_errors", "waveform", "transcription_lm"} <= set(report)


@pytest.fixture(scope="module")
def demo_model_rates():
    """Corpus WER/CER of the shipped demo model on the whole bundled corpus (never trained on), measured once."""
    import keras

    from librispeech.metrics import corpus_error_rates
    from librispeech_tools.training import bundled_corpus, transcribe

    waveforms, references = bundled_corpus()
    return corpus_error_rates(references, transcribe(keras.models.load_model(DEMO_MODEL, compile=False), waveforms))


def test_demo_model_transcribes_the_bundled_corpus(demo_model_rates):
    """The shipped demo model really transcribes the bundled corpus, and its recorded figures
    (model/demo-wav2vec2.json, quoted in the README) are what it measures now."""
    recorded = json.loads(DEMO_MODEL.with_suffix(".json").read_text())
    rates = demo_model_rates
    # (exported at the fixed input length; padding-invariant, so only a rare argmax tie may differ)
    assert rates["wer"] == pytest.approx(recorded["bundled_wer"], abs=0.01)
    assert rates["cer"] == pytest.approx(recorded["bundled_cer"], abs=0.01)
    assert rates["cer"] < 0.2  # far from an untrained model's ~100%


def test_demo_model_meets_its_goal(demo_model_rates):
    """The demo model's goal: corpus WER <= 25% and CER <= 10% on the bundled corpus, whose sentences it never
    trained on (README, Demo model)."""
    rates = demo_model_rates
    assert rates["wer"] <= 0.25 and rates["cer"] <= 0.10, rates


# ---------------------------------------------------------------------------------------------------------------------
# The same with an ONNX export of the demo model (an onnxruntime.InferenceSession from @tensorleap_load_model)
# ---------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_onnx(tmp_path_factory) -> Path:
    """export-model --checkpoint model/demo-wav2vec2.h5 --output <tmp>/demo-wav2vec2.onnx (dynamic time axis)."""
    from librispeech_tools import export

    path = tmp_path_factory.mktemp("onnx") / "demo-wav2vec2.onnx"
    export.export(DEMO_MODEL, path, verify=False)
    return path


def test_integration_test_passes_with_the_onnx_demo_model(demo_onnx):
    result = _run("import leap_test; print('ran', leap_test.run(2))", demo_onnx)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ran 6" in result.stdout and result.stdout.count("Successful!") == 6


def test_onnx_demo_model_transcribes_like_the_h5(demo_onnx):
    """@tensorleap_load_model returns an InferenceSession for the .onnx, and it gives the .h5's logits on bundled
    utterances through the registered input encoders (fixed 34.955 s input, padded)."""
    code = (
        "import json, numpy as np, keras\n"
        "import leap_binder, leap_test\n"
        "response = leap_binder.preprocess()[1]\n"
        "ids = response.sample_ids[:2]\n"
        "audio = np.stack([leap_binder.input_audio(i, response) for i in ids])\n"
        "lengths = np.stack([leap_binder.input_audio_length(i, response) for i in ids])\n"
        "model = leap_test.load_model()  # code-loader's wrapper around what load_wav2vec2 returned\n"
        "session = model.model\n"
        "onnx_logits = model.run(None, {'audio': audio, 'audio_length': lengths})[0]\n"
        "keras_logits = np.asarray(keras.models.load_model(%r, compile=False).predict_on_batch([audio, lengths]))\n"
        "print(json.dumps({'type': type(session).__name__, 'diff': float(np.abs(onnx_logits - keras_logits).max()),\n"
        "                  'shape': list(onnx_logits.shape)}))\n"
    ) % str(DEMO_MODEL)
    result = _run(code, demo_onnx)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["type"] == "InferenceSession" and report["shape"] == [2, 1747, 32]
    assert report["diff"] <= 1e-4


def test_platform_loader_parses_the_integration_with_onnx(demo_onnx):
    report = _loader_report(
        "ids = loader.get_preprocess_sample_ids()\n"
        "sample = loader.get_sample(DataStateEnum.validation, ids[DataStateEnum.validation][0])\n"
        "print(json.dumps({'inputs': sorted(sample.inputs)}))\n", demo_onnx)
    assert report["inputs"] == ["audio", "audio_length"]
