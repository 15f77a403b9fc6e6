"""Real faces shipped in a package, and pictures without one, for the likeness tests and benchmark.

scikit-image ships them inside its wheel (nothing is downloaded): ``data.astronaut()`` (Eileen
Collins, 512 x 512, her face about 90 px), ``data.lfw_subset()`` (100 faces of other people
from Labeled Faces in the Wild, 25 x 25, and 100 pictures without a face) and photographs
without a person (coffee, rocket, chelsea the cat, ...).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from skimage import data

NO_FACE_PICTURES = ("coffee", "rocket", "chelsea", "hubble_deep_field", "brick", "coins")


def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


def face_crop() -> Image.Image:
    """The astronaut's head and shoulders (256 x 256)."""
    return astronaut().crop((100, 0, 356, 256))


def rescaled(image: Image.Image, factor: float) -> Image.Image:
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.BICUBIC)


def flipped(image: Image.Image) -> Image.Image:
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def blurred(image: Image.Image, radius: float) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius))


def noised(image: Image.Image, sigma: float, seed: int = 0) -> Image.Image:
    pixels = np.asarray(image.convert("RGB")).astype(np.float64)
    noisy = pixels + np.random.default_rng(seed).normal(0.0, sigma, pixels.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def two_faces() -> Image.Image:
    """Two people side by side: the astronaut and another face (which one is the person?)."""
    left = face_crop()
    right = other_people(1)[0].resize((256, 256), Image.Resampling.BICUBIC)
    both = Image.new("RGB", (512, 256))
    both.paste(left, (0, 0))
    both.paste(right, (256, 0))
    return both


def other_people(count: int) -> list[Image.Image]:
    """Faces of other people (LFW, 25 x 25 grey, shown at 150 px)."""
    faces = data.lfw_subset()[:100]
    return [
        Image.fromarray((faces[i] * 255).astype(np.uint8)).convert("RGB").resize((150, 150), Image.Resampling.BICUBIC)
        for i in range(min(count, len(faces)))
    ]


def no_face(name: str) -> Image.Image:
    return Image.fromarray(getattr(data, name)()).convert("RGB")


def save(image: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.convert("RGB").save(path)
    return path
