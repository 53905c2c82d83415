"""Word timing, confidence and word alignment (librispeech/words.py) against hand-made logits whose words, frames and
probabilities are known, and the registered `confidence` metric and `word_errors` visualizer through code-loader."""
import math

import numpy as np
import pytest

from librispeech import words
from librispeech.tokenizer import decode_greedy, encode_transcript, vocabulary_tokens

VOCAB = {token: i for i, token in enumerate(vocabulary_tokens())}
FRAMES = 120


def logit_for(probability: float) -> float:
    """The logit that, against 31 zero logits, has this softmax probability: p = e^L / (e^L + 31)."""
    return math.log(31 * probability / (1 - probability))


def spelled(plan: list[tuple[str, int, int, float]], frames: int = FRAMES) -> np.ndarray:
    """Logits [frames, 32]: blank everywhere (p = 0.999), and each (word, first frame, frames per character, p) spelled
    with every character held for that many frames, characters separated by one blank frame, at probability p, and
    followed (after a blank frame) by one word-delimiter frame at 0.999."""
    logits = np.zeros((frames, len(VOCAB)), np.float32)
    logits[:, 0] = logit_for(0.999)
    for word, start, hold, probability in plan:
        frame = start
        for character in word:
            logits[frame:frame + hold] = 0.0
            logits[frame:frame + hold, VOCAB[character]] = logit_for(probability)
            frame += hold + 1
        logits[frame] = 0.0
        logits[frame, VOCAB["|"]] = logit_for(0.999)
    return logits


def word_span(start: int, word: str, hold: int) -> tuple[int, int]:
    """The expected [first, end) frames: first character's first frame to the last character's last frame + 1."""
    return start, start + len(word) * (hold + 1) - 1


def label(text: str) -> np.ndarray:
    return encode_transcript(text, 630)


def test_word_frames_times_and_confidence_of_hand_made_logits():
    plan = [("HELLO", 5, 2, 0.8), ("WORLD", 30, 3, 0.6)]
    found = words.hypothesis_words(spelled(plan))
    assert [w.word for w in found] == ["HELLO", "WORLD"]
    for word, (text, start, hold, probability) in zip(found, plan):
        first, end = word_span(start, text, hold)
        assert (word.start_frame, word.end_frame) == (first, end)
        assert word.start_seconds == pytest.approx(first * 0.02) and word.end_seconds == pytest.approx(end * 0.02)
        # its frames: len*hold character frames at p, len-1 blank frames between them at 0.999
        characters, blanks = len(text) * hold, len(text) - 1
        assert word.confidence == pytest.approx((characters * probability + blanks * 0.999) / (characters + blanks),
                                                abs=1e-5)


def test_frame_seconds_is_the_conv_stride_over_the_sample_rate():
    assert words.frame_seconds() == pytest.approx(320 / 16000)


def test_words_are_the_greedy_hypothesis_on_random_logits():
    rng = np.random.default_rng(0)
    for _ in range(20):
        logits = rng.normal(0, 3, (80, len(VOCAB))).astype(np.float32)
        logits[:, VOCAB["|"]] += 2.0  # more word breaks
        assert [w.word for w in words.hypothesis_words(logits)] == decode_greedy(logits).split()


def test_perfect_logits_are_all_correct_and_sure():
    text = "THE KEEPER'S ASSISTANT WAS A CHEERFUL FELLOW"
    frame = 2
    plan = []
    for word in text.split():
        plan.append((word, frame, 1, 0.9999))
        frame += 2 * len(word) + 2
    logits = spelled(plan, frames=frame + 5)
    aligned = words.scored_words(logits, text)
    assert [entry.kind for entry, _ in aligned] == ["correct"] * 7
    values = words.confidence_of_sample(logits, text)
    assert values["mean_word_confidence"] == pytest.approx(1.0, abs=1e-3)
    assert values["min_word_confidence"] == pytest.approx(1.0, abs=1e-3)
    assert values["low_confidence_words"] == values["low_confidence_errors"] == values["confident_errors"] == 0


def _plan(text: str, probabilities: dict[str, float] | None = None, frames: int = FRAMES):
    """Logits spelling text, one frame per character, p = 0.99 unless given for a word."""
    frame, plan = 2, []
    for word in text.split():
        plan.append((word, frame, 1, (probabilities or {}).get(word, 0.99)))
        frame += 2 * len(word) + 2
    assert frame < frames
    return spelled(plan, frames=frames)


def test_a_planted_substitution_is_one_and_a_confident_error():
    logits = _plan("HE SAID IT WAS NOEWN", {"NOEWN": 0.95})
    aligned = words.align_words("HE SAID IT WAS NOON", "HE SAID IT WAS NOEWN")
    assert [(e.kind, e.reference, e.hypothesis) for e in aligned][-1] == ("substitution", "NOON", "NOEWN")
    assert [e.kind for e in aligned][:4] == ["correct"] * 4
    values = words.confidence_of_sample(logits, "HE SAID IT WAS NOON")
    assert values["confident_errors"] == 1 and values["low_confidence_words"] == 0


def test_an_unsure_error_counts_as_low_confidence():
    logits = _plan("HE SAID IT WAS NOEWN", {"NOEWN": 0.3, "HE": 0.35})
    values = words.confidence_of_sample(logits, "HE SAID IT WAS NOON")
    # NOEWN: 4 characters at 0.3 and 3 blanks at 0.999 -> 0.6; HE: 2 at 0.35, 1 blank -> 0.566: both over 0.5
    assert values["low_confidence_words"] == 0
    logits = _plan("HE SAID IT WAS NOEWN", {"NOEWN": 0.1, "HE": 0.2})  # 0.47 and 0.466
    values = words.confidence_of_sample(logits, "HE SAID IT WAS NOON")
    assert values["low_confidence_words"] == 2 and values["low_confidence_errors"] == 1
    assert values["confident_errors"] == 0
    assert values["min_word_confidence"] == pytest.approx((2 * 0.2 + 0.999) / 3, abs=1e-4)


def test_merged_split_inserted_and_deleted_words():
    aligned = words.align_words("HE SAID IT WAS", "HE SAIDIT WAS")
    assert [(e.kind, e.reference, e.hypothesis) for e in aligned] == [
        ("correct", "HE", "HE"), ("substitution", "SAID", "SAIDIT"), ("deletion", "IT", None),
        ("correct", "WAS", "WAS")]
    aligned = words.align_words("A CLEAR SKY", "A VERY CLEAR SKY")
    assert [e.kind for e in aligned] == ["correct", "insertion", "correct", "correct"]
    assert aligned[1].hypothesis == "VERY" and aligned[1].hypothesis_index == 1
    assert [e.kind for e in words.align_words("A CLEAR SKY", "")] == ["deletion"] * 3
    with pytest.raises(ValueError, match="non-empty reference"):
        words.align_words(" ", "A")


def test_alignment_counts_equal_jiwers_measures():
    import jiwer

    rng = np.random.default_rng(1)
    vocabulary = ["A", "B", "C", "D", "E"]
    for _ in range(50):
        reference = " ".join(rng.choice(vocabulary, rng.integers(1, 8)))
        hypothesis = " ".join(rng.choice(vocabulary, rng.integers(0, 8)))
        kinds = [e.kind for e in words.align_words(reference, hypothesis)]
        measures = jiwer.process_words(reference, hypothesis)
        assert (kinds.count("correct"), kinds.count("substitution"), kinds.count("insertion"),
                kinds.count("deletion")) == (measures.hits, measures.substitutions, measures.insertions,
                                             measures.deletions)
        # the hypothesis words in order, and the reference words in order
        assert [e.hypothesis for e in words.align_words(reference, hypothesis) if e.hypothesis] == hypothesis.split()
        assert [e.reference for e in words.align_words(reference, hypothesis) if e.reference] == reference.split()


def test_empty_hypothesis_has_no_confidence():
    logits = spelled([])
    values = words.confidence_of_sample(logits, "A CLEAR SKY")
    assert values["mean_word_confidence"] is None and values["min_word_confidence"] is None
    assert values["low_confidence_words"] == values["confident_errors"] == 0


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf in the softmax
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_logit_in_a_words_frames_leaves_no_confidence(bad):
    """README's `confidence` row and confidence_of_sample: a NaN or infinite logit in a word's frames gives None for
    the mean and minimum and 0 for the counts (the planted confident error is not counted either)."""
    logits = _plan("HE SAID IT WAS NOEWN", {"NOEWN": 0.95})
    assert words.confidence_of_sample(logits, "HE SAID IT WAS NOON")["confident_errors"] == 1
    broken = logits.copy()
    frame = int(np.argmax(broken[:, VOCAB["S"]]))  # SAID's first frame; its winning token stays S
    broken[frame, VOCAB["S"]] = bad
    assert decode_greedy(broken) == "HE SAID IT WAS NOEWN"
    values = words.confidence_of_sample(broken, "HE SAID IT WAS NOON")
    assert values == {"mean_word_confidence": None, "min_word_confidence": None, "low_confidence_words": 0,
                      "low_confidence_errors": 0, "confident_errors": 0}
    assert words.confidence(broken, label("HE SAID IT WAS NOON"))["mean_word_confidence"] == [None]
    # The same logit on a blank frame outside every word changes nothing.
    outside = logits.copy()
    outside[-1, 0] = bad
    assert words.confidence_of_sample(outside, "HE SAID IT WAS NOON") == words.confidence_of_sample(
        logits, "HE SAID IT WAS NOON")


def test_float16_logits_give_the_same_metric():
    logits = _plan("HE SAID IT WAS NOEWN", {"NOEWN": 0.95})
    as_float32 = words.confidence(logits, label("HE SAID IT WAS NOON"))
    as_float16 = words.confidence(logits.astype(np.float16), label("HE SAID IT WAS NOON"))
    assert as_float16["confident_errors"] == as_float32["confident_errors"] == [1]
    assert as_float16["mean_word_confidence"][0] == pytest.approx(as_float32["mean_word_confidence"][0], abs=1e-3)


# ---------------------------------------------------------------- through code-loader (leap_binder)

@pytest.fixture(scope="module")
def binder():
    import leap_binder

    return leap_binder


def test_confidence_metric_through_code_loader(binder):
    reference = "HE SAID IT WAS NOON"
    batch = np.stack([_plan(reference), _plan("HE SAID IT WAS NOEWN", {"NOEWN": 0.95}), _plan("")])
    labels = np.stack([label(reference)] * 3)
    values = binder.confidence(batch, labels)
    assert set(values) == set(words.CONFIDENCE_KEYS)
    assert values["confident_errors"] == [0, 1, 0]
    assert values["mean_word_confidence"][2] is None
    assert values["mean_word_confidence"][0] == pytest.approx(0.99, abs=0.01)


def test_word_errors_visualizer_through_code_loader(binder):
    from code_loader.contract.visualizer_classes import LeapTextMask

    mask = binder.word_errors_visualizer(_plan("HE SAIDIT WAS HUMER"), label("HE SAID IT WAS HUMOUR"))
    assert isinstance(mask, LeapTextMask) and mask.labels == ["correct", "substitution", "insertion", "deletion"]
    assert mask.text == ["HE", "SAIDIT[SAID]", "[-IT]", "WAS", "HUMER[HUMOUR]"]
    assert mask.mask.tolist() == [1, 2, 4, 1, 2]
    inserted = binder.word_errors_visualizer(_plan("A VERY CLEAR SKY"), label("A CLEAR SKY"))
    assert inserted.text == ["A", "VERY", "CLEAR", "SKY"] and inserted.mask.tolist() == [1, 3, 1, 1]
    perfect = binder.word_errors_visualizer(_plan("HE SAID IT"), label("HE SAID IT"))
    assert perfect.mask.tolist() == [1, 1, 1] and perfect.text == ["HE", "SAID", "IT"]


def test_frame_confidences_equal_scipys_softmax():
    from scipy.special import softmax

    logits = np.random.default_rng(2).normal(0, 5, (300, 32)).astype(np.float32)
    logits[0] = [1e4] + [0.0] * 31  # a padded frame: a certain blank
    expected = softmax(logits.astype(np.float64), axis=-1).max(axis=-1)
    np.testing.assert_allclose(words.frame_confidences(logits), expected, rtol=1e-6)
    np.testing.assert_allclose(words.frame_confidences(logits.astype(np.float16)),
                               softmax(logits.astype(np.float16).astype(np.float64), axis=-1).max(axis=-1), rtol=1e-6)
