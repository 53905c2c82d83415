"""What an `evaluate` run covers: the split (a subset, a folder or an HF split), the seeded selection, a shard of it,
and the digests that tell whether the data changed between runs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from librispeech.config import SUBSETS, ProjectConfig
from librispeech_tools.evaluate_errors import EvaluationError
from librispeech_tools.run_info import RUN_INFO_FILE


def resolve_split(config: ProjectConfig, split: str | None) -> tuple[str, ProjectConfig]:
    """A subset name (training/validation/test), or a split: a folder (its name under the corpus root, or its path:
    its parent is then the root, whose tables are read) or an HF split name, `CONFIG/SPLIT` choosing the hub's
    config too (all/test.clean). Default: the validation split."""
    if split is None:
        return "validation", config
    if split in SUBSETS:
        if split not in config.subsets:
            raise EvaluationError(f"no split is configured for the {split} subset (data.splits in "
                                  f"librispeech/config.yaml): name a split instead")
        return split, config
    if config.source == "huggingface":
        split = split.strip("/")
        if split.count("/") == 1:
            hf_config, split = split.split("/")
            if hf_config not in config.hf_config_splits:
                raise EvaluationError(f"unknown HF config {hf_config!r} in --split {hf_config}/{split}: "
                                      f"data.hf_splits in librispeech/config.yaml lists "
                                      f"{', '.join(config.hf_config_splits)}")
            config = replace(config, hf_config=hf_config, hf_splits=config.hf_config_splits[hf_config])
    named = config.hf_splits if config.source == "huggingface" else config.splits
    for subset, name in named.items():
        if name == split:
            return subset, config
    if config.source == "openslr":
        # a name under the corpus root first, then a path from the current folder (an absolute path is itself)
        candidates = list(dict.fromkeys([Path(os.path.normpath(config.root / split)), Path(os.path.abspath(split))]))
        folder = next((candidate for candidate in candidates if candidate.is_dir()), None)
        if folder is not None:
            for subset, name in config.splits.items():  # a configured split, named by its path
                if folder == Path(os.path.normpath(config.root / name)):
                    return subset, config
            return "validation", replace(config, root=folder.parent,
                                         splits={**config.splits, "validation": folder.name})
        available = sorted(p.name for p in config.root.iterdir() if p.is_dir()) if config.root.is_dir() else []
        raise EvaluationError(f"unknown split {split!r}: no folder {' or '.join(map(str, candidates))} (splits of "
                              f"the corpus at {config.root}: {', '.join(available) or 'none'})")
    return "validation", replace(config, hf_splits={**config.hf_splits, "validation": split})


def saved_copy(config: ProjectConfig) -> Path | None:
    """The HF data's folder when it is a save_to_disk copy, which has no configs (its split names still come from
    data.hf_splits of the configured one)."""
    from librispeech.data import saved_to_disk

    location = Path(config.hf_dataset).expanduser()
    return location if saved_to_disk(location) else None


def split_label(config: ProjectConfig, split_name: str) -> str:
    """The split as report titles and default folder names give it: the HF config names the data too (clean/test and
    other/test are both `test`); a save_to_disk copy has no config, so its folder's name does (a clean and an other
    copy both call their dev set `validation`)."""
    if config.source != "huggingface":
        return split_name
    copy = saved_copy(config)
    return f"{copy.name if copy else config.hf_config}-{split_name}"


def hf_source(config: ProjectConfig) -> str:
    """The HF data as summary.md names it."""
    if saved_copy(config):
        return f"{config.hf_dataset} (a save_to_disk copy)"
    return f"{config.hf_dataset}, config {config.hf_config}"


def load_selection(config: ProjectConfig, subset: str, limit: int | None):
    from librispeech import data

    config = replace(config, samples_per_split=limit)  # None = every utterance of the split
    try:
        split = data.load_split(subset, config)
    except OSError as error:  # a split folder that is missing, a file that cannot be read
        raise EvaluationError(str(error)) from None
    except data.SplitError as error:
        raise EvaluationError(f"empty selection: {error}") from None
    return split


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1-based): every count-th utterance of the split's sorted ids."""
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--shard takes i/n, such as 1/4; got {text!r}") from None
        if not 1 <= index <= count:
            raise argparse.ArgumentTypeError(f"--shard {text}: i must be between 1 and n")
        return cls(index, count)

    def select(self, sample_ids: list[str]) -> list[str]:
        return sorted(sample_ids)[self.index - 1::self.count]


def sample_digests(split) -> dict[str, str]:
    """Per selected sample, a digest of what its row is made from besides the model: transcript, audio (length,
    rate, channels, and its size in bytes as listed: an OpenSLR file's, an HF row's audio cell's, so other audio of
    the same length counts as changed) and records (SPEAKERS/CHAPTERS/BOOKS). Not modification times: a corpus
    copied to another machine for a shard is the same data."""
    from librispeech.data import record_fields

    digests = {}
    for sample_id, utterance in split.utterances.items():
        content = [utterance.transcript, utterance.num_samples, utterance.source_sample_rate, utterance.channels,
                   utterance.audio_bytes, utterance.hf_row, record_fields(utterance, split.corpus_info)]
        digests[sample_id] = hashlib.blake2b(json.dumps(content, sort_keys=True).encode(), digest_size=8).hexdigest()
    return digests


def combined_digest(digests: dict[str, str]) -> str:
    return hashlib.blake2b(json.dumps(sorted(digests.items())).encode(), digest_size=16).hexdigest()


def leave_out_longer_than(split, fixed_samples: int, model_path: Path, shard: bool = False) -> list[str]:
    """A model exported with --max-seconds (an .onnx, or an .h5 run with --fixed-length) takes at most
    fixed_samples: longer utterances are left out and reported like the preprocessing's, never cut to its input.
    A shard left with none is no error: it writes only its run.json, which --merge takes."""
    from librispeech.data import ExcludedUtterance

    longer = sorted(i for i, u in split.utterances.items() if u.num_samples > fixed_samples)
    if not longer:
        return []
    reason = f"longer than the model's fixed input ({fixed_samples} samples)"
    split.excluded += [ExcludedUtterance(i, reason) for i in longer]
    split.utterances = {i: u for i, u in split.utterances.items() if u.num_samples <= fixed_samples}
    print(f"evaluate: {model_path.name} takes at most {fixed_samples} samples; left out {len(longer)} longer "
          f"utterance(s) (first: {longer[0]}; all in summary.md and {RUN_INFO_FILE})", file=sys.stderr)
    if not split.utterances and not shard:
        raise EvaluationError(f"every selected utterance is longer than {model_path.name}'s fixed input of "
                              f"{fixed_samples} samples; export the model without --max-seconds")
    if not split.utterances:
        print(f"evaluate: every utterance of this shard is longer than {model_path.name}'s fixed input (if every "
              f"shard's is, export the model without --max-seconds)", file=sys.stderr)
    return longer
