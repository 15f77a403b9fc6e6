"""A tiny FLUX.1-dev that the pinned engine's own loaders accept, and its text-encoder caches.

Run with the engine environment's Python (it imports torch and the engine's ``library``):

    <engine>/venv/bin/python tests/engine/tinyflux.py build --engine-dir DIR --out DIR
    <engine>/venv/bin/python tests/engine/tinyflux.py te-cache --images DIR [--tokens 16]

What it writes (shapes from the engine's own model classes, so every key its
``load_state_dict(strict=False, assign=True)`` expects exists):

* ``flux1-dev.safetensors``: FLUX at the real width (hidden 3072, 24 heads, context 4096) with
  one double and one single block (the engine counts blocks from the checkpoint's keys), bf16,
  small random weights so a training step gives a finite loss;
* ``clip_l.safetensors`` and ``ae.safetensors``: CLIP-L and the FLUX autoencoder at their
  hard-coded shapes, random weights;
* ``t5xxl_fp16.safetensors``: T5-XXL (4.89B parameters) as a sparse file: a real header, then a
  hole. safetensors memory-maps it; as long as T5 never runs (its outputs are cached beforehand)
  its pages are never read, so it costs no disk and no memory;
* ``t5xxl_fp32.safetensors``: the same in float32, for runs that train in float32;
* ``tokenizers/``: the ``--tokenizer_cache_dir`` layout; a byte-level CLIP vocabulary (no merges)
  and the engine tree's own T5 sentencepiece model (``configs/t5_old``).

``te-cache`` writes ``<stem>_flux_te.npz`` next to each image in the format the engine's
FluxTextEncoderOutputsCachingStrategy reads (strategy_flux.py), with ``--tokens`` T5 positions.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SEED = 20261126


def _engine_imports(engine_dir: Path) -> Any:
    sys.path.insert(0, str(engine_dir))
    from library import flux_models, flux_utils  # the engine's own classes

    return flux_models, flux_utils


def _init_tensor(name: str, shape: tuple[int, ...], generator: Any) -> Any:
    import torch

    if len(shape) == 1 and (name.endswith(".scale") or "norm" in name.rsplit(".", 2)[-2]):
        return torch.ones(shape, dtype=torch.bfloat16)
    if name.endswith(".bias"):
        return torch.zeros(shape, dtype=torch.bfloat16)
    return (torch.randn(shape, generator=generator) * 0.02).to(torch.bfloat16)


def _save_random(model: Any, path: Path, generator: Any) -> int:
    from safetensors.torch import save_file

    tensors = {
        name: _init_tensor(name, tuple(t.shape), generator) for name, t in model.state_dict(keep_vars=True).items()
    }
    save_file(tensors, str(path), metadata={"format": "pt"})
    return sum(t.numel() for t in tensors.values())


def _save_sparse(model: Any, path: Path, dtype: str = "BF16") -> int:
    """A safetensors file whose data region is a hole: the header is real, every byte after it is zero."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    count = 0
    width = {"BF16": 2, "F32": 4}[dtype]
    for name, tensor in model.state_dict(keep_vars=True).items():
        size = tensor.numel() * width
        header[name] = {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
        count += tensor.numel()
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)
    return count


def _clip_tokenizer(target: Path) -> None:
    """A byte-level BPE vocabulary without merges: every character is a token, as CLIPTokenizer expects."""
    from transformers import CLIPTokenizer
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab |= {c + "</w>": len(chars) + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    target.mkdir(parents=True, exist_ok=True)
    (target / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (target / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    CLIPTokenizer(str(target / "vocab.json"), str(target / "merges.txt")).save_pretrained(str(target))


def build(engine_dir: Path, out: Path) -> None:
    import torch

    flux_models, flux_utils = _engine_imports(engine_dir)
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(SEED)
    spec = flux_models.configs["dev"]

    from dataclasses import replace

    with torch.device("meta"):
        flux = flux_models.Flux(replace(spec.params, depth=1, depth_single_blocks=1))
        ae = flux_models.AutoEncoder(spec.ae_params)
    print(f"flux: {_save_random(flux, out / 'flux1-dev.safetensors', generator) / 1e6:.1f}M parameters", flush=True)
    print(f"ae: {_save_random(ae, out / 'ae.safetensors', generator) / 1e6:.1f}M parameters", flush=True)

    # The engine's own loaders build CLIP-L and T5-XXL from their hard-coded configs; an empty
    # state dict leaves every parameter on the meta device, which is all the shapes need.
    clip = flux_utils.load_clip_l(None, torch.bfloat16, "cpu", state_dict={})
    t5 = flux_utils.load_t5xxl(None, torch.bfloat16, "cpu", state_dict={})
    print(f"clip_l: {_save_random(clip, out / 'clip_l.safetensors', generator) / 1e6:.1f}M parameters", flush=True)
    print(f"t5xxl (sparse): {_save_sparse(t5, out / 't5xxl_fp16.safetensors') / 1e9:.2f}B parameters", flush=True)
    # The same in float32, for runs in float32 (mixed_precision "no"): the engine loads T5 in the
    # training precision, and a file already in it stays file-backed (a converted copy would not).
    _save_sparse(t5, out / "t5xxl_fp32.safetensors", dtype="F32")

    tokenizers = out / "tokenizers"
    _clip_tokenizer(tokenizers / "openai_clip-vit-large-patch14")
    t5_dir = tokenizers / "google_t5-v1_1-xxl"
    shutil.copytree(engine_dir / "configs" / "t5_old", t5_dir, dirs_exist_ok=True)


def write_te_caches(images: Path, tokens: int, out: Path | None = None, apply_t5_attn_mask: bool = False) -> list[Path]:
    """`<stem>_flux_te.npz` in `out` (default: beside them) for every image in `images`.

    With these in place the engine never runs T5 or CLIP-L."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    written = []
    target = out or images
    target.mkdir(parents=True, exist_ok=True)
    for image in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        path = target / (image.stem + "_flux_te.npz")
        np.savez(
            path,
            l_pooled=(rng.standard_normal(768) * 0.1).astype(np.float32),
            t5_out=(rng.standard_normal((tokens, 4096)) * 0.1).astype(np.float32),
            txt_ids=np.zeros((tokens, 3), dtype=np.float32),
            t5_attn_mask=np.ones(tokens, dtype=np.int64),
            apply_t5_attn_mask=apply_t5_attn_mask,
        )
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--engine-dir", type=Path, required=True, help="the sd-scripts tree")
    b.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("te-cache")
    c.add_argument("--images", type=Path, required=True)
    c.add_argument("--tokens", type=int, default=16)
    c.add_argument("--out", type=Path, default=None, help="where to write them (default: beside the images)")
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args.engine_dir, args.out)
    else:
        written = write_te_caches(args.images, args.tokens, args.out)
        print(f"{len(written)} text-encoder caches in {args.out or args.images}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
