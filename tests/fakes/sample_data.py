"""Small valid training images (PNG, written with the standard library) and their captions."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

# The smallest side the built-in profiles can bucket: bucketResoSteps (64), with bucketNoUpscale.
SIDE = 64


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, seed: int = 0) -> bytes:
    """An RGB PNG with a gradient that differs per seed (so every image has its own bytes)."""
    rows = []
    for y in range(height):
        row = bytearray([0])  # filter type 0
        for x in range(width):
            row += bytes([(seed * 37 + x * 3) % 256, (seed * 11 + y * 3) % 256, (seed * 91 + x + y) % 256])
        rows.append(bytes(row))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + _chunk(b"IEND", b"")
    )


def write_dataset(
    directory: Path,
    count: int,
    *,
    side: int = SIDE,
    captions: bool = True,
    start: int = 0,
    trigger: str = "ohwx person",
) -> list[Path]:
    """`img<i>.png` (side x side) and, unless captions is False, `img<i>.txt`."""
    directory.mkdir(parents=True, exist_ok=True)
    images = []
    for i in range(start, start + count):
        image = directory / f"img{i:03d}.png"
        image.write_bytes(png_bytes(side, side, seed=i))
        images.append(image)
        if captions:
            (directory / f"img{i:03d}.txt").write_text(f"{trigger}, photo {i}\n", encoding="utf-8")
    return images
