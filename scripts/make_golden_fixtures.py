"""Create the golden parity fixtures in tests/fixtures/golden/ (needs torch and transformers).

Each fixture is a tiny random Hugging Face Wav2Vec2ForCTC checkpoint in the real HF format (config.json +
model.safetensors) with a fixed input waveform (input.npy, normalised float32) and the PyTorch outputs for it
(logits.npy [frames, vocab] and last_hidden_state.npy [frames, hidden], float32, unpadded, batch 1):

* group  - feat_extract_norm "group", post-LN transformer (base-like); newer weight-norm names
           (parametrizations.weight.original0/1); conv without bias; even positional kernel.
* layer  - feat_extract_norm "layer", do_stable_layer_norm (pre-LN, large/lv60-like); conv with bias.
* legacy - group variant saved with the legacy weight-norm names weight_g/weight_v (as in wav2vec2-base-960h), an
           odd positional kernel, layer_norm_eps 1e-3 and a vocab.json in the folder.

Every parameter is random, the norm weights and biases included (HF's init leaves LayerNorm at 1/0, which would hide
a swapped gamma/beta). Run: .venv/bin/python scripts/make_golden_fixtures.py [--output tests/fixtures/golden]
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import librispeech  # noqa: F401  first: its telemetry guard runs before anything imports code_loader

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "tests" / "fixtures" / "golden"

TINY = dict(vocab_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            conv_dim=(24, 20, 28), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4, layer_norm_eps=1e-5, pad_token_id=0, mask_time_prob=0.05)

FIXTURES = {
    "group": dict(config=dict(TINY, feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False),
                  samples=4000, legacy_names=False, seed=1),
    "layer": dict(config=dict(TINY, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
                  samples=3517, legacy_names=False, seed=2),
    "legacy": dict(config=dict(TINY, feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False,
                               num_conv_pos_embeddings=15, layer_norm_eps=1e-3),
                   samples=4567, legacy_names=True, seed=3),
}


def randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Random biases and norm parameters; the positional conv's weight-norm g perturbed per tap."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if "layer_norm" in name and name.endswith("weight"):
                parameter.copy_(1.0 + 0.3 * noise)
            elif name.endswith("bias") or name.endswith("masked_spec_embed"):
                parameter.copy_(0.2 * noise)
            elif name.endswith("original0") or name.endswith("weight_g"):  # weight-norm g: one per kernel tap
                parameter.mul_(0.5 + torch.rand(parameter.shape, generator=generator))
            elif name.startswith("lm_head"):
                parameter.copy_(0.3 * noise)


def waveform(samples: int, seed: int) -> np.ndarray:
    """A fixed, speech-band-ish test signal, normalised like Wav2Vec2FeatureExtractor (zero mean, unit variance)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000.0
    signal = sum(rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * rng.uniform(80, 3000) * t + rng.uniform(0, 6))
                 for _ in range(5))
    signal = signal * (0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)) + 0.3 * rng.normal(size=samples)
    return ((signal - signal.mean()) / np.sqrt(signal.var() + 1e-7)).astype(np.float32)


def make_fixture(name: str, spec: dict, output: Path) -> None:
    folder = output / name
    shutil.rmtree(folder, ignore_errors=True)
    torch.manual_seed(spec["seed"])
    generator = torch.Generator().manual_seed(spec["seed"])
    model = Wav2Vec2ForCTC(Wav2Vec2Config(**spec["config"])).eval()
    randomize(model, generator)
    audio = waveform(spec["samples"], spec["seed"])
    with torch.inference_mode():
        logits = model(torch.from_numpy(audio[None])).logits[0].numpy()
        hidden = model.wav2vec2(torch.from_numpy(audio[None])).last_hidden_state[0].numpy()

    model.save_pretrained(folder, safe_serialization=True)
    for extra in folder.iterdir():
        if extra.name not in ("config.json", "model.safetensors"):
            extra.unlink()
    if spec["legacy_names"]:
        state = {key.replace("parametrizations.weight.original0", "weight_g")
                    .replace("parametrizations.weight.original1", "weight_v"): value.contiguous()
                 for key, value in model.state_dict().items()}
        assert any(key.endswith("weight_g") for key in state), "no weight-norm parameters to rename"
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
        shutil.copyfile(REPO_ROOT / "librispeech" / "vocab.json", folder / "vocab.json")

    # the saved checkpoint must reproduce the reference in transformers itself
    reloaded = Wav2Vec2ForCTC.from_pretrained(folder).eval()
    with torch.inference_mode():
        again = reloaded(torch.from_numpy(audio[None])).logits[0].numpy()
    if not np.array_equal(again, logits):
        raise RuntimeError(f"{name}: the saved checkpoint does not reproduce its logits "
                           f"(max diff {np.abs(again - logits).max()})")
    (folder / "model.safetensors").chmod(0o644)
    np.save(folder / "input.npy", audio)
    np.save(folder / "logits.npy", logits.astype(np.float32))
    np.save(folder / "last_hidden_state.npy", hidden.astype(np.float32))
    size = sum(f.stat().st_size for f in folder.iterdir())
    print(f"{name}: {audio.size} samples -> logits {logits.shape}, {size / 1024:.0f} KiB in {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, spec in FIXTURES.items():
        make_fixture(name, spec, args.output)


if __name__ == "__main__":
    main()
