"""Likeness from faces: the reference of a dataset and the score of sample images (pure but for
file hashes; the faces come from fluxlora_trainer.faces).

* The reference is every dataset image with exactly one face; images without a face or with
  several (which one is the person?) are reported, not used. Its descriptor is the mean of theirs.
* A sample image's likeness is that of its face most like the reference (fluxlora.contract.likeness says
  the definitions); an image without a face has none.
* A sample file with the same bytes as a reference image is never scored: the dataset's own
  images are not samples of what a checkpoint renders.

`fluxlora-trainer likeness --reference DIR --samples DIR` (cli.py) is `score_folders` printed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxlora.contract import likeness

from .faces import DESCRIPTOR_SIZE, FaceModel, ImageFaces, image_files

Descriptor = tuple[float, ...]
# Bound on the reference: the first images by name (an identity dataset holds 10-50).
MAX_REFERENCE_IMAGES = 200
IDENTICAL_NOTE = "identical to a dataset image: not a sample, not scored"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def distance(a: Sequence[float], b: Sequence[float]) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)))


def mean(descriptors: Sequence[Sequence[float]]) -> Descriptor:
    return tuple(sum(d[i] for d in descriptors) / len(descriptors) for i in range(DESCRIPTOR_SIZE))


@dataclass(frozen=True)
class Reference:
    """The faces a run's samples are compared with."""

    images: int
    used: list[str]
    without_face: list[str]
    several_faces: list[str]
    unreadable: list[str]
    centroid: Descriptor | None
    hashes: frozenset[str] = field(default_factory=frozenset)

    @property
    def usable(self) -> bool:
        return self.centroid is not None

    def problem(self) -> str | None:
        """Why it cannot be used (None when it can)."""
        if self.usable:
            return None
        if not self.images:
            return "no image in the dataset snapshot"
        parts = [f"{len(self.without_face)} without a face"]
        if self.several_faces:
            parts.append(f"{len(self.several_faces)} with several faces")
        if self.unreadable:
            parts.append(f"{len(self.unreadable)} unreadable")
        return (
            f"no face in the reference: none of the {self.images} dataset images has exactly one face "
            f"({', '.join(parts)})"
        )

    def status(self) -> dict[str, Any]:
        """status.likeness.reference"""
        unused = [*self.without_face, *self.several_faces, *self.unreadable]
        out: dict[str, Any] = {
            "images": self.images,
            "faces": len(self.used),
            "withoutFace": len(self.without_face),
            "severalFaces": len(self.several_faces),
        }
        if unused:
            out["unused"] = [name[:60] for name in unused[:8]]
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "used": self.used,
            "withoutFace": self.without_face,
            "severalFaces": self.several_faces,
            "unreadable": self.unreadable,
            "centroid": list(self.centroid) if self.centroid is not None else None,
            "hashes": sorted(self.hashes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reference:
        centroid = data.get("centroid")
        if centroid is not None and len(centroid) != DESCRIPTOR_SIZE:
            raise ValueError("the reference centroid is not a 128-d descriptor")
        return cls(
            images=int(data["images"]),
            used=[str(n) for n in data.get("used") or []],
            without_face=[str(n) for n in data.get("withoutFace") or []],
            several_faces=[str(n) for n in data.get("severalFaces") or []],
            unreadable=[str(n) for n in data.get("unreadable") or []],
            centroid=tuple(float(v) for v in centroid) if centroid is not None else None,
            hashes=frozenset(str(h) for h in data.get("hashes") or []),
        )


def build_reference(results: Sequence[ImageFaces], hashes: Iterable[str] = ()) -> Reference:
    used, without, several, unreadable, descriptors = [], [], [], [], []
    for result in results:
        name = Path(result.path).name
        if result.error is not None:
            unreadable.append(name)
        elif not result.faces:
            without.append(name)
        elif len(result.faces) > 1:
            several.append(name)
        else:
            used.append(name)
            descriptors.append(result.faces[0].descriptor)
    return Reference(
        images=len(results),
        used=used,
        without_face=without,
        several_faces=several,
        unreadable=unreadable,
        centroid=mean(descriptors) if descriptors else None,
        hashes=frozenset(hashes),
    )


@dataclass(frozen=True)
class ImageScore:
    path: str
    likeness: float | None  # of its face most like the reference; None: no face (or not scored)
    faces: int
    note: str | None = None

    def as_json(self, threshold: float) -> dict[str, Any]:
        out: dict[str, Any] = {"image": self.path, "faces": self.faces, "likeness": self.likeness}
        out["passed"] = self.likeness is not None and self.likeness >= threshold
        if self.note:
            out["note"] = self.note
        return out


def score_image(result: ImageFaces, reference: Reference, identical: bool = False) -> ImageScore:
    if identical:
        return ImageScore(result.path, None, 0, IDENTICAL_NOTE)
    if result.error is not None:
        return ImageScore(result.path, None, 0, result.error)
    if not result.faces or reference.centroid is None:
        return ImageScore(result.path, None, len(result.faces), "no face" if not result.faces else None)
    centroid = reference.centroid
    best = max(likeness.similarity(distance(face.descriptor, centroid)) for face in result.faces)
    return ImageScore(result.path, best, len(result.faces))


def scored(images: Sequence[ImageScore]) -> list[ImageScore]:
    """The images that count: not the dataset's own."""
    return [s for s in images if s.note != IDENTICAL_NOTE]


def checkpoint_point(step: int, images: Sequence[ImageScore], threshold: float) -> dict[str, Any]:
    """status.likeness.checkpoints[] of one step."""
    counted = scored(images)
    note = None
    if not counted and images:
        note = f"only dataset images ({len(images)}): not scored"
    elif counted and all(s.note and s.note != "no face" for s in counted):
        first = str(counted[0].note)
        note = first if first.startswith("not scored") else f"not scored: {first}"
    return likeness.point(step, [s.likeness for s in counted], threshold, note)


# ----------------------------------------------------------------------------- folders (the CLI)


def score_folders(
    reference_dir: Path, samples_dir: Path, threshold: float, model: FaceModel | None = None
) -> dict[str, Any]:
    """The CLI's report: the reference, each sample image, the likeness of the whole folder."""
    model = model or FaceModel()
    ref_files = image_files(reference_dir)[:MAX_REFERENCE_IMAGES]
    hashes = {sha256_file(p): p.name for p in ref_files}
    reference = build_reference(list(model.each(ref_files)), hashes)
    sample_files = image_files(samples_dir)
    images: list[ImageScore] = []
    seconds = 0.0
    for path in sample_files:
        result = model.faces(path)
        seconds += result.seconds
        images.append(score_image(result, reference, identical=sha256_file(path) in hashes))
    point = checkpoint_point(0, images, threshold) if reference.usable else None
    described = {k: v for k, v in reference.as_json().items() if k not in ("centroid", "hashes")}
    return {
        "reference": {"directory": str(reference_dir), **described, "problem": reference.problem()},
        "samples": [s.as_json(threshold) for s in images],
        "threshold": threshold,
        "likeness": point.get("likeness") if point else None,
        "faces": point["faces"] if point else None,
        "passed": point["passed"] if point else None,
        "note": point.get("note") if point else reference.problem(),
        "secondsPerImage": round(seconds / len(sample_files), 3) if sample_files else None,
    }


def report_text(report: Mapping[str, Any]) -> str:
    ref = report["reference"]
    lines = [
        f"reference {ref['directory']}: {ref['images']} images, {len(ref['used'])} used (exactly one face)"
        + (f"; without a face: {', '.join(ref['withoutFace'])}" if ref["withoutFace"] else "")
        + (f"; with several faces: {', '.join(ref['severalFaces'])}" if ref["severalFaces"] else "")
        + (f"; unreadable: {', '.join(ref['unreadable'])}" if ref["unreadable"] else "")
    ]
    if ref["problem"]:
        return "\n".join([*lines, ref["problem"]]) + "\n"
    threshold = float(report["threshold"])
    for s in report["samples"]:
        name = Path(s["image"]).name
        if s["likeness"] is None:
            lines.append(f"  {name}: {s.get('note') or 'no face'}")
        else:
            verdict = "the person" if s["passed"] else f"below {threshold:g}: not the person"
            lines.append(f"  {name}: likeness {s['likeness']:.3f} ({verdict}; {s['faces']} face(s))")
    counted = [s for s in report["samples"] if s.get("note") != IDENTICAL_NOTE]
    if report["likeness"] is None:
        lines.append(f"likeness: none ({report['note'] or 'no face'})")
    else:
        lines.append(
            f"likeness {report['likeness']:.3f}: mean of the {report['faces']} of {len(counted)} images with a face; "
            f"{report['passed']} at or above {threshold:g}"
        )
    return "\n".join(lines) + "\n"
