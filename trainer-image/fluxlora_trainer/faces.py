"""Faces in images: dlib's detector and face recognition model, run offline.

The models are the files the `face-recognition-models` package ships (no download at run time):
the HOG frontal face detector (built into dlib), the 5-point landmark model that aligns a face,
and the ResNet that maps an aligned face to a 128-d descriptor (the same person is usually at
Euclidean distance < 0.6). `dlib-bin` provides prebuilt dlib wheels.

Each image is scaled (up or down, bilinear) so that its longer side is ``WORK_SIDE`` px before
detection: the cost per image is the same whatever its size (about 0.3 s on one CPU core), and
faces down to about 8% of the image side are found. A detection counts as a face when the
detector's score is at least ``MIN_DETECTION_SCORE``: lower ones are mostly texture (on
scikit-image's astronaut, the patch on the suit scores 0.05-0.42, her face 0.9-1.5).

Run as ``python -m fluxlora_trainer.faces embed [--nice N] FILE...`` it prints one JSON object
per file (the trainer's runtime calls it as a separate process, so the scorer can never slow or
break the training process: a crash or a hang is only a checkpoint without a score).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORK_SIDE = 1024
MIN_DETECTION_SCORE = 0.5
DESCRIPTOR_SIZE = 128
# The images a dataset directory holds, as the engine reads them (fluxlora_trainer.dataset).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})


class FaceModelUnavailable(RuntimeError):
    """dlib or the model files are missing (or cannot be loaded)."""


@dataclass(frozen=True)
class Face:
    score: float  # the detector's confidence
    box: tuple[int, int, int, int]  # left, top, right, bottom, in the original image's pixels
    descriptor: tuple[float, ...]  # 128-d

    def as_json(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 3),
            "box": list(self.box),
            "descriptor": [round(v, 6) for v in self.descriptor],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Face:
        box = [int(v) for v in data["box"]]
        descriptor = tuple(float(v) for v in data["descriptor"])
        if len(box) != 4 or len(descriptor) != DESCRIPTOR_SIZE:
            raise ValueError("a face needs a box of 4 numbers and a 128-d descriptor")
        return cls(float(data["score"]), (box[0], box[1], box[2], box[3]), descriptor)


@dataclass(frozen=True)
class ImageFaces:
    """The faces of one image file, or why it could not be read."""

    path: str
    faces: list[Face] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "faces": [f.as_json() for f in self.faces],
            "seconds": round(self.seconds, 3),
        }
        if self.error is not None:
            out["error"] = self.error
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageFaces:
        return cls(
            path=str(data["path"]),
            faces=[Face.from_json(f) for f in data.get("faces") or []],
            error=str(data["error"]) if data.get("error") is not None else None,
            seconds=float(data.get("seconds") or 0.0),
        )


def image_files(directory: Path) -> list[Path]:
    """The images directly in `directory` (sorted by name); engine caches and captions are not images."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


LANDMARKS_MODEL = "shape_predictor_5_face_landmarks.dat"
RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"


def models_directory() -> Path:
    """Where face-recognition-models keeps its model files, found without importing it: its
    __init__ imports pkg_resources, which setuptools >= 81 no longer has (the engine pins 84)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelUnavailable("the face scorer needs the package face-recognition-models (not installed)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class FaceModel:
    """The detector, the landmark model and the recognition model, loaded once."""

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError as exc:  # also an old CPU: dlib's wheel may need instructions it lacks
            raise FaceModelUnavailable(
                f"the face scorer needs the packages dlib-bin and face-recognition-models ({exc})"
            ) from exc
        models = models_directory()
        try:
            self._detector = dlib.get_frontal_face_detector()
            self._landmarks = dlib.shape_predictor(str(models / LANDMARKS_MODEL))
            self._recognizer = dlib.face_recognition_model_v1(str(models / RECOGNITION_MODEL))
        except (RuntimeError, OSError) as exc:
            raise FaceModelUnavailable(f"cannot load the face models: {exc}") from exc

    def faces(self, path: Path) -> ImageFaces:
        started = time.perf_counter()
        try:
            found = self._faces(path)
        except (OSError, ValueError, SyntaxError) as exc:  # PIL: unreadable, truncated or not an image
            return ImageFaces(str(path), error=f"cannot read the image: {exc}", seconds=time.perf_counter() - started)
        return ImageFaces(str(path), found, seconds=time.perf_counter() - started)

    def _faces(self, path: Path) -> list[Face]:
        import numpy as np
        from PIL import Image

        with Image.open(path) as opened:
            rgb = opened.convert("RGB")
        scale = WORK_SIDE / max(rgb.size)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        pixels = np.asarray(rgb.resize(size, Image.Resampling.BILINEAR))
        detections, scores, _ = self._detector.run(pixels, 0, 0.0)
        out = []
        for rect, score in zip(detections, scores, strict=True):
            if score < MIN_DETECTION_SCORE:
                continue
            shape = self._landmarks(pixels, rect)
            descriptor = tuple(float(v) for v in self._recognizer.compute_face_descriptor(pixels, shape))
            box = tuple(round(v / scale) for v in (rect.left(), rect.top(), rect.right(), rect.bottom()))
            out.append(Face(float(score), (box[0], box[1], box[2], box[3]), descriptor))
        return sorted(out, key=lambda f: -f.score)

    def each(self, paths: Sequence[Path]) -> Iterator[ImageFaces]:
        for path in paths:
            yield self.faces(path)


def _main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m fluxlora_trainer.faces")
    sub = parser.add_subparsers(dest="command", required=True)
    embed = sub.add_parser("embed", help="print the faces of each image as one JSON object per line")
    embed.add_argument("--nice", type=int, default=0, help="lower this process's priority first (os.nice)")
    embed.add_argument("files", nargs="*")
    args = parser.parse_args(argv)
    if args.nice > 0:
        os.nice(args.nice)
    try:
        model = FaceModel()
    except FaceModelUnavailable as exc:
        print(json.dumps({"unavailable": str(exc)}), flush=True)
        return 3
    for result in model.each([Path(f) for f in args.files]):
        print(json.dumps(result.as_json(), separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a separate process by fluxlora_trainer.scoring
    sys.exit(_main(sys.argv[1:]))
