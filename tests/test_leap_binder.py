"""The registered Tensorleap functions, checked by code-loader's own validation, and the integration test."""
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import librispeech

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def binder():
    import leap_binder

    return leap_binder


@pytest.fixture(scope="module")
def validation(binder):
    from librispeech.config import project_config

    project_config.cache_clear()
    responses = binder.preprocess()
    return responses[1]


def test_preprocess_gives_three_subsets_of_string_ids(binder):
    from code_loader.contract.enums import DataStateType

    responses = binder.preprocess()
    assert [r.state for r in responses] == [DataStateType.training, DataStateType.validation, DataStateType.test]
    for response in responses:
        assert response.sample_ids and all(isinstance(i, str) for i in response.sample_ids)
        assert response.sample_ids == list(response.data.utterances)


def test_encoders(binder, validation):
    from librispeech.config import project_config

    config = project_config()
    sample_id = validation.sample_ids[0]
    audio = binder.input_audio(sample_id, validation)
    length = binder.input_audio_length(sample_id, validation)
    transcript = binder.gt_transcript(sample_id, validation)
    assert audio.shape == (config.max_samples,) and audio.dtype == np.float32
    assert length.shape == (1,) and length.dtype == np.float32
    real = int(length[0])
    assert real == len(validation.data.audio(sample_id))
    assert abs(float(audio[:real].mean())) < 1e-4 and abs(float(audio[:real].std()) - 1.0) < 1e-3
    assert not audio[real:].any()
    assert transcript.shape == (config.max_label_length,) and transcript.dtype == np.float32
    from librispeech.tokenizer import decode_reference

    assert decode_reference(transcript) == validation.data.utterances[sample_id].transcript


def _one_hot_logits(text: str, frames: int = 0) -> np.ndarray:
    """Confident logits spelling `text`, one character every other frame."""
    from librispeech.tokenizer import vocabulary_tokens

    frames = max(frames, 2 * len(text) + 2)
    vocab = {t: i for i, t in enumerate(vocabulary_tokens())}
    logits = np.zeros((frames, 32), np.float32)
    logits[:, 0] = 10.0
    for t, character in enumerate(text.replace(" ", "|")):
        logits[2 * t, 0], logits[2 * t, vocab[character]] = 0.0, 10.0
    return logits


def test_loss_and_metrics_through_code_loader(binder, validation):
    sample_id = validation.sample_ids[0]
    transcript = binder.gt_transcript(sample_id, validation)
    text = validation.data.utterances[sample_id].transcript
    good, bad = _one_hot_logits(text), _one_hot_logits("", frames=2 * len(text) + 2)
    loss = binder.ctc_loss(np.stack([good, bad]), np.stack([transcript, transcript]))
    assert loss.shape == (2,) and loss[0] < 1.0 < loss[1]
    rates = binder.error_rates(np.stack([good, bad]), np.stack([transcript, transcript]))
    assert rates["wer"].tolist() == [0.0, 1.0] and rates["wip"].tolist() == [1.0, 0.0]


def test_visualizers_pass_code_loader_validation(binder, validation):
    from code_loader.contract.datasetclasses import RawInputsForHeatmap
    from code_loader.contract.visualizer_classes import LeapAudio, LeapGraph, LeapImage, LeapText, LeapTextMask

    sample_id = validation.sample_ids[0]
    audio = binder.input_audio(sample_id, validation)
    length = binder.input_audio_length(sample_id, validation)
    transcript = binder.gt_transcript(sample_id, validation)
    text = validation.data.utterances[sample_id].transcript
    logits = _one_hot_logits(text[:-1] + "Q")  # last character substituted

    assert isinstance(binder.transcription_visualizer(logits), LeapText)
    assert binder.reference_visualizer(transcript).data == text.split()
    mask = binder.alignment_visualizer(logits, transcript)
    assert isinstance(mask, LeapTextMask) and mask.mask.tolist().count(1) == 1 and mask.mask[-1] == 1
    assert len(mask.text) == len(mask.mask)
    image = binder.mel_spectrogram_visualizer(audio, length)
    assert isinstance(image, LeapImage) and image.data.shape[0] == 128 and image.data.shape[2] == 1
    assert 0.0 <= image.data.min() and image.data.max() <= 255.0
    # As Tensorleap calls it: each argument an attribution (audio_length's, too), the inputs in the raw argument.
    raw = RawInputsForHeatmap({"audio": audio, "audio_length": length})
    heatmap = binder.mel_spectrogram_heatmap(np.abs(audio), np.array([0.37], np.float32), raw)
    assert heatmap.shape == image.data.shape[:2]
    graph = binder.waveform_visualizer(audio, length)
    assert isinstance(graph, LeapGraph) and graph.data.shape[1] == 2 and graph.data.shape[0] <= 2000
    assert binder.waveform_heatmap(np.abs(audio), np.array([0.37], np.float32), raw).shape == graph.data.shape[:1]
    player = binder.audio_player_visualizer(audio, length)
    assert isinstance(player, LeapAudio) and player.sample_rate == 16000 and len(player.audio) == int(length[0])
    np.testing.assert_array_equal(binder.audio_player_heatmap(-audio, np.array([0.37], np.float32), raw),
                                  np.abs(audio[:int(length[0])]))
    # A leading batch axis of one is stripped.
    assert binder.reference_visualizer(transcript[None]).data == text.split()


def test_deleted_characters_are_marked(binder, validation):
    sample_id = validation.sample_ids[0]
    transcript = binder.gt_transcript(sample_id, validation)
    text = validation.data.utterances[sample_id].transcript
    mask = binder.alignment_visualizer(_one_hot_logits(text[1:]), transcript)
    assert mask.text[0] == f"[-{text[0]}]" and mask.mask[0] == 3


# ---------------------------------------------------------------- visualizer content (librispeech/visualizers.py)

def _padded(real: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """The model's input as the encoders give it: the real audio zero-padded to total, and its length."""
    return np.pad(real.astype(np.float32), (0, total - len(real))), np.array([len(real)], np.float32)


def test_transcription_and_insertion_alignment_content():
    from librispeech import visualizers
    from librispeech.tokenizer import encode_transcript

    text = "HELLO BOOKKEEPER WORLD"
    assert visualizers.transcription(_one_hot_logits(text)).data == text.split()
    # Two characters the reference lacks: the only cheapest alignment inserts them (mask 2, "insertion").
    mask = visualizers.alignment(_one_hot_logits("HELLOXX WORLD"), encode_transcript("HELLO WORLD", 64))
    assert mask.text == list("HELLOXX WORLD")
    assert mask.mask.tolist() == [0] * 5 + [2, 2] + [0] * 6
    assert mask.labels[2 - 1] == "insertion"


def test_waveform_rows_are_block_max_and_min_of_the_real_audio():
    from librispeech import visualizers

    real = np.random.default_rng(0).normal(0.3, 1.0, 10007).astype(np.float32)
    audio, length = _padded(real, 16000)
    graph = visualizers.waveform(audio, length, 16000)
    block = -(-len(real) // 2000)  # ceil: the fewest equal blocks that give at most 2000 points
    expected = [[chunk.max(), chunk.min()] for chunk in (real[i:i + block] for i in range(0, len(real), block))]
    np.testing.assert_array_equal(graph.data, np.array(expected, np.float32))
    assert graph.x_range == (0.0, len(real) / 16000)


def test_mel_image_is_librosas_db_mel_spectrogram_low_frequencies_at_the_bottom():
    import librosa

    from librispeech import visualizers
    from librispeech.audio_features import HOP_LENGTH, N_FFT

    t = np.arange(20000) / 16000
    rng = np.random.default_rng(1)
    for real in (rng.normal(0, 1.0, 20000).astype(np.float32), np.sin(2 * np.pi * 7000 * t).astype(np.float32)):
        audio, length = _padded(real, 24000)
        image = visualizers.mel_spectrogram(audio, length, 16000).data[..., 0]
        db = librosa.power_to_db(librosa.feature.melspectrogram(y=real, sr=16000, n_fft=N_FFT, hop_length=HOP_LENGTH,
                                                                n_mels=128), ref=np.max)
        expected = np.flipud((db - db.min()) / (db.max() - db.min()) * 255.0)
        np.testing.assert_allclose(image, expected, atol=1e-3)
    # The 7 kHz sine: the mel band centred nearest 7 kHz, counted from the bottom row, is the brightest.
    centres = librosa.mel_frequencies(n_mels=128 + 2, fmax=8000)[1:-1]
    expected_row = 127 - int(np.argmin(np.abs(centres - 7000)))
    brightest = int(np.argmax(image.mean(axis=1)))
    assert abs(brightest - expected_row) <= 1 and brightest < 16


def test_short_clips_give_spectra_without_librosas_window_warning():
    """A clip shorter than the 2048-sample window is expected (the edge corpus has several): the mel image and the
    speech features are computed without librosa's "n_fft is too large" once per clip."""
    import warnings

    from librispeech import audio_features, visualizers

    short = np.random.default_rng(2).normal(0, 0.1, 700).astype(np.float32)
    audio, length = _padded(short, 24000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert visualizers.mel_spectrogram(audio, length, 16000).data.shape[1] == 2
        audio_features.speech_features(short, 16000)
    assert not [w for w in caught if "too large" in str(w.message)], [str(w.message) for w in caught]


def test_audio_player_is_the_real_audio_at_full_scale():
    from librispeech import visualizers

    real = (2.5 * np.random.default_rng(2).normal(0, 1.0, 5003)).astype(np.float32)  # beyond [-1, 1], as normalised
    audio, length = _padded(real, 8000)
    player = visualizers.audio_player(audio, length, 16000)
    peak = float(np.abs(real).max())
    assert len(player.audio) == len(real) and float(np.abs(player.audio).max()) == pytest.approx(1.0, abs=1e-7)
    np.testing.assert_allclose(player.audio * peak, real, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("k, covering", [
    # 5000 real samples: frames 0..9 (1 + 5000 // 512), centred at 512 f, window [c - 1024, c + 1024) clipped to
    # [0, 5000). Sample 100: frames 0, 1, 2 ([0, 1024), [0, 1536), [0, 2048)); sample 4990: frames 8 ([3072, 5000))
    # and 9 ([3584, 5000)).
    (100, {0: 1024, 1: 1536, 2: 2048}),
    (4990, {8: 1928, 9: 1416}),
])
def test_heatmap_of_an_impulse_is_the_mean_over_the_windows_that_cover_it(k, covering):
    from librispeech import visualizers

    attribution = np.zeros(8000, np.float32)
    attribution[k] = -2.0  # |attribution| is what counts
    attribution[6000] = 50.0  # beyond the real length: ignored
    heatmap = visualizers.mel_spectrogram_heatmap(attribution, np.array([5000], np.float32))
    expected = np.zeros(10)
    for frame, window in covering.items():
        expected[frame] = 2.0 / window
    assert heatmap.shape == (128, 10)
    np.testing.assert_allclose(heatmap, np.tile(expected, (128, 1)), rtol=1e-6)


@pytest.mark.parametrize("real_samples, block", [(5000, 3), (4000, 2), (1500, 1)])
def test_waveform_heatmap_is_the_mean_over_each_point_s_block(real_samples, block):
    """One value per point of the envelope: the mean |attribution| of the samples that point draws (the last block
    is shorter where the real length is not a multiple of the block)."""
    from librispeech import visualizers

    rng = np.random.default_rng(real_samples)
    attribution = rng.normal(size=8000).astype(np.float32)
    attribution[real_samples:] = 50.0  # beyond the real length: ignored
    length = np.array([real_samples], np.float32)
    heatmap = visualizers.waveform_heatmap(attribution, length)
    graph = visualizers.waveform(attribution, length, 16000)
    assert heatmap.shape == graph.data.shape[:1]
    real = np.abs(attribution[:real_samples])
    expected = [real[start:start + block].mean() for start in range(0, real_samples, block)]
    np.testing.assert_allclose(heatmap, expected, rtol=1e-6)


def test_metadata_values_are_plain_and_finite(binder, validation):
    import math

    sample_id = validation.sample_ids[0]
    for function in (binder.metadata_speech, binder.metadata_text, binder.metadata_readability,
                     binder.metadata_records, binder.metadata_pace, binder.metadata_noise):
        values = function(sample_id, validation)
        assert values, function.__name__
        for key, value in values.items():
            assert value is None or type(value) in (int, float, str, bool), (key, type(value))
            if isinstance(value, float):
                assert math.isfinite(value), key


def test_speaker_and_chapter_ids_are_categories_on_the_platform(binder, validation):
    """code-loader types an int as a float column, which the platform bins: ids go as strings, which it groups."""
    from code_loader.contract.enums import DatasetMetadataType
    from code_loader.utils import get_metadata_type_from_variable

    sample_id = validation.sample_ids[0]
    utterance = validation.data.utterances[sample_id]
    values = binder.metadata_speech(sample_id, validation)
    assert (values["speaker_id"], values["chapter_id"]) == (str(utterance.speaker_id), str(utterance.chapter_id))
    assert sample_id.startswith(f"{values['speaker_id']}-{values['chapter_id']}-")
    for key in ("speaker_id", "chapter_id"):
        assert get_metadata_type_from_variable(values[key]) == DatasetMetadataType.string


def test_noise_metadata_counts_clipping_in_the_file(binder, validation, monkeypatch):
    """metadata_noise takes the file's own clipping (SplitData.clipping_fraction), not the mono waveform's."""
    sample_id = validation.sample_ids[0]
    decoded = validation.data.decoded(sample_id)
    monkeypatch.setitem(validation.data._audio_cache, sample_id, replace(decoded, clipping_fraction=0.25))
    assert binder.metadata_noise(sample_id, validation)["clipping_fraction"] == 0.25


def test_pace_and_noise_declare_every_key_type(binder, validation):
    """Their None values (the rates of a silent clip) need declared types: every returned key has one."""
    from code_loader.contract.enums import DatasetMetadataType

    from code_loader import leap_binder as registry

    declared = {handler.name: handler.metadata_type for handler in registry.setup_container.metadata}
    sample_id = validation.sample_ids[0]
    for name, function in (("pace", binder.metadata_pace), ("noise", binder.metadata_noise)):
        types = declared[name]
        assert set(types) == set(function(sample_id, validation)), name
        assert all(isinstance(kind, DatasetMetadataType) for kind in types.values())
    assert declared["pace"]["words_per_second"] == DatasetMetadataType.float


def test_importing_leap_binder_opens_no_connection():
    """With every socket connection failing loudly, the import must still succeed (and telemetry stays off)."""
    script = (
        "import socket\n"
        "def refuse(*args, **kwargs):\n"
        "    raise SystemExit('network connection attempted: %r' % (args,))\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "import leap_binder, leap_test, os\n"
        "assert os.environ['TL_DISABLE_ANALYTICS']\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "TL_DISABLE_ANALYTICS"}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=environment, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_leap_binder_imports_without_tensorflow():
    """Keras on JAX with no TensorFlow installed (evaluate on a GPU image): everything is registered but the custom
    layers, which code-loader checks against tf.keras and only the platform (which has TensorFlow) loads. Here Keras
    keeps its backend and TensorFlow is hidden from then on, as if it were not installed."""
    script = (
        "import sys, json, keras\n"
        "sys.modules['tensorflow'] = None  # importing it now raises ImportError; find_spec finds nothing\n"
        "import leap_binder\n"
        "from code_loader import leap_binder as registry\n"
        "container = registry.setup_container\n"
        "print(json.dumps({'layers': len(container.custom_layers), 'metrics': len(container.metrics)}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["layers"] == 0 and report["metrics"] >= 5


@pytest.mark.parametrize("without_keras", [False, True])
def test_a_run_without_keras_models_imports_no_tensorflow(without_keras):
    """evaluate on ONNX Runtime loads no Keras model and sets WITHOUT_KERAS_ENV: leap_binder then registers everything
    but the custom layers and imports neither Keras nor TensorFlow (~3 s). Unset (the platform, leap_test), the
    custom layers are registered."""
    script = (
        "import sys, json\n"
        "import leap_binder\n"
        "from code_loader import leap_binder as registry\n"
        "container = registry.setup_container\n"
        "print(json.dumps({'layers': len(container.custom_layers), 'metrics': len(container.metrics),\n"
        "                  'imported': sorted(m for m in ('keras', 'tensorflow') if m in sys.modules)}))\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != librispeech.WITHOUT_KERAS_ENV}
    if without_keras:
        environment[librispeech.WITHOUT_KERAS_ENV] = "1"
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=environment, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["metrics"] >= 5
    if without_keras:
        assert report["layers"] == 0 and report["imported"] == []
    else:
        assert report["layers"] > 0 and report["imported"] == ["keras", "tensorflow"]
