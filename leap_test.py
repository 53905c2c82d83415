"""Loads the wav2vec2 export (Keras .h5 or ONNX) and holds the Tensorleap integration test (`poetry run test`)."""
import librispeech  # noqa: F401  first: its telemetry guard runs before anything imports code_loader

import argparse
import sys
import warnings

from code_loader.contract.datasetclasses import PredictionTypeHandler
from code_loader.inner_leap_binder.leapbinder_decorators import tensorleap_integration_test, tensorleap_load_model

from leap_binder import (
    alignment_visualizer, audio_player_visualizer, confidence, ctc_loss, error_rates, error_rates_lm, gt_transcript,
    input_audio, input_audio_length, lm_gain, mel_spectrogram_visualizer, metadata_noise, metadata_pace,
    metadata_readability, metadata_records, metadata_speech, metadata_text, preprocess, reference_visualizer,
    transcription_lm_visualizer, transcription_visualizer, waveform_visualizer, word_errors_visualizer)
from librispeech.config import ConfigError, project_config
from librispeech.data import AudioDecodeError, SplitError
from librispeech.lm_decoding import LanguageModelError, lm_decoder
from librispeech.model_file import ModelFileError, load_wav2vec2
from librispeech.tokenizer import vocabulary_tokens

try:
    CHARACTER_LABELS = list(vocabulary_tokens())  # reads the whole configuration, so a bad setting fails here
except ConfigError as error:
    if __name__ == "__main__":  # one line, as main() says every other bad setting
        sys.exit(f"error: {error}")
    raise


@tensorleap_load_model([PredictionTypeHandler("characters", labels=CHARACTER_LABELS, channel_dim=-1)])
def load_model():
    config = project_config()
    return load_wav2vec2(config.model_path, input_samples=config.max_samples)


@tensorleap_integration_test()
def integration_test(sample_id, preprocess_response):
    audio = input_audio(sample_id, preprocess_response)
    audio_length = input_audio_length(sample_id, preprocess_response)
    transcript = gt_transcript(sample_id, preprocess_response)

    model = load_model()
    if project_config().model_path.suffix.lower() == ".onnx":  # an InferenceSession: inputs by name, in order
        logits = model.run(None, {"audio": audio, "audio_length": audio_length})[0]
    else:
        logits = model([audio, audio_length])

    ctc_loss(logits, transcript)
    error_rates(logits, transcript)
    confidence(logits, transcript)

    transcription_visualizer(logits)
    reference_visualizer(transcript)
    alignment_visualizer(logits, transcript)
    mel_spectrogram_visualizer(audio, audio_length)
    waveform_visualizer(audio, audio_length)
    audio_player_visualizer(audio, audio_length)
    word_errors_visualizer(logits, transcript)

    error_rates_lm(logits, transcript)
    lm_gain(logits, transcript)
    transcription_lm_visualizer(logits)

    metadata_speech(sample_id, preprocess_response)
    metadata_text(sample_id, preprocess_response)
    metadata_readability(sample_id, preprocess_response)
    metadata_records(sample_id, preprocess_response)
    metadata_pace(sample_id, preprocess_response)
    metadata_noise(sample_id, preprocess_response)


def run(samples_per_subset: int = 3) -> int:
    """Run the integration test on the first samples of every subset; returns how many ran."""
    count = 0
    for response in preprocess():
        for sample_id in response.sample_ids[:samples_per_subset]:
            integration_test(sample_id, response)
            count += 1
    return count


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Tensorleap integration test on the configured data and model.")
    parser.add_argument("--samples", type=int, default=3, help="samples per subset (default 3)")
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    # audio_length is [1] by design (one number per sample); code-loader's batch-axis heuristic warns on every call.
    warnings.filterwarnings("ignore", message="input_audio_length warning")
    try:
        lm_decoder()  # a missing or broken LM stops the test here, not after the model has run
        count = run(args.samples)
    except (OSError, ConfigError, SplitError, ModelFileError, LanguageModelError, AudioDecodeError) as error:
        sys.exit(f"error: {error}")
    print(f"integration test passed on {count} samples (model: {project_config().model_path})")


if __name__ == "__main__":
    main()
