"""The project's one configuration: librispeech/config.yaml, read once, with environment overrides."""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
CONFIG_FILE = PACKAGE_DIR / "config.yaml"
BUNDLED_CORPUS = REPO_ROOT / "data" / "LibriSpeech"
SUBSETS = ("training", "validation", "test")
REQUIRED_SUBSETS = ("training", "validation")  # code-loader's check needs both; test is optional
MAX_BEAM_WIDTH = 2**31 - 1  # flashlight's LexiconDecoderOptions.beam_size is a C int: wider is a TypeError


class ConfigError(ValueError):
    """A value in config.yaml or its environment overrides that cannot be used; the message names it."""


@dataclass(frozen=True)
class ProjectConfig:
    source: str
    root: Path
    splits: Mapping[str, str]  # Tensorleap subset -> split folder, in SUBSETS order; no "test" when none is set
    hf_dataset: str
    hf_config: str
    hf_splits: Mapping[str, str]  # of hf_config
    hf_config_splits: Mapping[str, Mapping[str, str]]  # every config's, for a run that picks another
    samples_per_split: int | None  # None = every utterance
    seed: int
    sample_rate: int
    max_samples: int
    normalize_epsilon: float
    max_label_length: int
    vocab_file: Path
    model_path: Path
    checkpoint: str
    lm_path: Path
    lexicon_path: Path | None  # None = the LM's unigrams
    beam_width: int
    lm_alpha: float
    lm_beta: float

    @property
    def subsets(self) -> tuple[str, ...]:
        """The subsets that have a split (training and validation always; test where one is configured)."""
        return tuple(self.hf_splits if self.source == "huggingface" else self.splits)

    @property
    def uses_bundled_corpus(self) -> bool:
        return self.source == "openslr" and self.root == BUNDLED_CORPUS


def parse_samples_per_split(value: Any) -> int | None:
    """An integer >= 1, or "all" (None)."""
    if value is None or str(value).strip().lower() == "all":
        return None
    try:
        count = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"samples_per_split (LIBRISPEECH_SAMPLES_PER_SPLIT) must be a positive integer or 'all', "
                          f"got {value!r}") from None
    if count < 1:
        raise ConfigError(f"samples_per_split (LIBRISPEECH_SAMPLES_PER_SPLIT) must be a positive integer or 'all', "
                          f"got {value!r}")
    return count


def number(value: Any, where: str, whole: bool = False, least: float | None = None,
           most: int | None = None) -> int | float:
    """A setting that must be a number (a whole one, at least `least`, at most `most`): ConfigError naming it
    otherwise, rather than a TypeError from deep in a run or a NaN weight that silently empties every LM hypothesis."""
    kind = "a whole number" if whole else "a finite number"
    bounds = (f" from {least:g} to {most}" if least is not None and most is not None
              else f" of at least {least:g}" if least is not None else "")
    ok = (isinstance(value, int) if whole else isinstance(value, (int, float)) and math.isfinite(value))
    if (isinstance(value, bool) or not ok or (least is not None and value < least)
            or (most is not None and value > most)):
        raise ConfigError(f"{where} in librispeech/config.yaml must be {kind}{bounds}, got {value!r}")
    return value


def _resolve(path: str | os.PathLike, base: Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def build_config(raw: Mapping[str, Any], environ: Mapping[str, str]) -> ProjectConfig:
    data, audio, text, model, decoding = raw["data"], raw["audio"], raw["text"], raw["model"], raw["decoding"]
    # An empty variable is an unset one, as for every override here (a platform secret may hold an empty value).
    source = environ.get("LIBRISPEECH_SOURCE") or data["source"]
    if source not in ("openslr", "huggingface"):
        raise ConfigError(f"data source (LIBRISPEECH_SOURCE) must be 'openslr' or 'huggingface', got {source!r}")
    # A relative path in an environment variable is read from the current folder, one in config.yaml from the
    # repository root (the decoding files and the vocabulary: from librispeech/, beside config.yaml).
    root = _resolve(environ["LIBRISPEECH_ROOT"], Path.cwd()) if environ.get("LIBRISPEECH_ROOT") else (
        _resolve(data["root"], REPO_ROOT) if data.get("root") else BUNDLED_CORPUS)
    model_path = _resolve(environ["WAV2VEC_MODEL"], Path.cwd()) if environ.get("WAV2VEC_MODEL") else (
        _resolve(model["path"], REPO_ROOT))
    return ProjectConfig(
        source=source,
        root=root,
        splits=subset_splits(data["splits"], "data.splits"),
        hf_dataset=environ.get("LIBRISPEECH_HF_DATASET") or _repository_folder_or_hub_id(data["hf_dataset"]),
        **_hf_settings(data, environ),
        samples_per_split=parse_samples_per_split(
            environ.get("LIBRISPEECH_SAMPLES_PER_SPLIT") or data["samples_per_split"]),
        seed=number(data["seed"], "data.seed", whole=True),
        sample_rate=number(audio["sample_rate"], "audio.sample_rate", whole=True, least=1),
        max_samples=number(audio["max_samples"], "audio.max_samples", whole=True, least=1),
        normalize_epsilon=float(number(audio["normalize_epsilon"], "audio.normalize_epsilon", least=1e-12)),
        max_label_length=number(text["max_label_length"], "text.max_label_length", whole=True, least=1),
        vocab_file=_resolve(text["vocab_file"], PACKAGE_DIR),
        model_path=model_path,
        checkpoint=model["checkpoint"],
        **_decoding_settings(decoding, environ),
    )


def _repository_folder_or_hub_id(name: str) -> str:
    """config.yaml's HF dataset: a relative folder that exists under the repository root is read from there; else
    the name stays as written (a hub id such as openslr/librispeech_asr, or an absolute folder)."""
    folder = REPO_ROOT / name
    return str(folder) if not Path(name).expanduser().is_absolute() and folder.is_dir() else name


def subset_splits(table: Any, where: str) -> dict[str, str]:
    """Tensorleap subset -> split name, as given at `where` in config.yaml: training and validation are required,
    test may be left out (absent, null or empty: preprocess then has no test subset)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} in librispeech/config.yaml must map {', '.join(SUBSETS)} to split names, "
                          f"got {table!r}")
    unknown = [str(key) for key in table if key not in SUBSETS]
    if unknown:
        raise ConfigError(f"{where} in librispeech/config.yaml has unknown subset(s) {', '.join(unknown)} "
                          f"(expected {', '.join(SUBSETS)})")
    named = {subset: str(table[subset]).strip() for subset in SUBSETS if table.get(subset) is not None}
    splits = {subset: name for subset, name in named.items() if name}
    missing = [subset for subset in REQUIRED_SUBSETS if subset not in splits]
    if missing:
        raise ConfigError(f"{where} in librispeech/config.yaml names no split for {', '.join(missing)} (training "
                          f"and validation are required, test is optional)")
    return splits


def _hf_settings(data: Mapping[str, Any], environ: Mapping[str, str]) -> dict:
    """The HF config (LIBRISPEECH_HF_CONFIG) and its split names. A config the table does not list needs its own
    entry under data.hf_splits."""
    hf_config = environ.get("LIBRISPEECH_HF_CONFIG") or data["hf_config"]
    table = data["hf_splits"]
    if all(isinstance(name, str) for name in table.values()):  # a config.yaml from before: its one config's names
        table = {data["hf_config"]: table}
    if hf_config not in table:
        raise ConfigError(f"HF config (LIBRISPEECH_HF_CONFIG) {hf_config!r} has no split names under data.hf_splits "
                          f"in librispeech/config.yaml (it lists {', '.join(table)})")
    table = {name: subset_splits(splits, f"data.hf_splits.{name}") for name, splits in table.items()}
    return {"hf_config": hf_config, "hf_splits": table[hf_config], "hf_config_splits": table}


def _decoding_settings(decoding: Mapping[str, Any], environ: Mapping[str, str]) -> dict:
    """The LM decoder's settings. An LM from LIBRISPEECH_LM comes with its own words (LIBRISPEECH_LEXICON, or its
    unigrams), never the demo lexicon."""
    if environ.get("LIBRISPEECH_LM"):
        lm_path, lexicon = _resolve(environ["LIBRISPEECH_LM"], Path.cwd()), environ.get("LIBRISPEECH_LEXICON")
    else:
        if not isinstance(decoding["lm"], str) or not decoding["lm"]:
            raise ConfigError(f"decoding.lm in librispeech/config.yaml must be a file path, got {decoding['lm']!r}")
        lm_path, lexicon = _resolve(decoding["lm"], PACKAGE_DIR), environ.get("LIBRISPEECH_LEXICON")
        if not lexicon and decoding.get("lexicon"):
            lexicon = str(_resolve(decoding["lexicon"], PACKAGE_DIR))
    return {"lm_path": lm_path, "lexicon_path": _resolve(lexicon, Path.cwd()) if lexicon else None,
            "beam_width": number(decoding["beam_width"], "decoding.beam_width", whole=True, least=1,
                                 most=MAX_BEAM_WIDTH),
            # a negative LM weight would reward what the LM finds unlikely
            "lm_alpha": float(number(decoding["alpha"], "decoding.alpha", least=0)),
            "lm_beta": float(number(decoding["beta"], "decoding.beta"))}


@functools.cache
def project_config() -> ProjectConfig:
    """The configuration, read on first use (not at import) and kept for the process."""
    with open(CONFIG_FILE, encoding="utf-8") as handle:
        return build_config(yaml.safe_load(handle), os.environ)
