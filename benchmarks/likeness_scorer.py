#!/usr/bin/env python3
"""The likeness scorer's numbers on real faces (scikit-image's astronaut, transformed; other
people from its LFW subset; pictures without a face): face distances and time per image.

Prints one JSON object:

  load_s                 loading dlib's models in-process
  subprocess_s           one `python -m fluxlora_trainer.faces embed` of one 512 px image, start to
                         end (what the trainer pays per checkpoint on top of the images)
  seconds_per_image      median time of one image (scaled to 1024 px, detection + descriptors), by
                         input size
  same_face              distance to the reference (the 256 px head crop) of rescaled / flipped /
                         rotated copies; likeness = 1 - distance
  degraded_face          the same for blurred, noised and JPEG-crushed copies (null: no face found)
  other_people           LFW faces of other people: found, min / median / max distance
  no_face                detections in pictures without a face (all should be 0)

Usage:  python benchmarks/likeness_scorer.py    (needs the dev extra: dlib-bin, face-recognition-models, scikit-image)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file: `tests.` imports from the repository root

from PIL import Image  # noqa: E402

from fluxlora_trainer.faces import FaceModel  # noqa: E402
from fluxlora_trainer.scoring import build_reference, distance  # noqa: E402

from tests.fakes.face_pictures import (  # noqa: E402 - found through the path set just above
    NO_FACE_PICTURES,
    astronaut,
    blurred,
    face_crop,
    flipped,
    jpeg,
    no_face,
    noised,
    other_people,
    rescaled,
    save,
)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="fluxlora-likeness-bench-"))
    started = time.perf_counter()
    model = FaceModel()
    load_s = time.perf_counter() - started
    reference = build_reference([model.faces(save(face_crop(), work / "reference.png"))])
    assert reference.centroid is not None

    def dist(image: Image.Image, name: str) -> float | None:
        faces = model.faces(save(image, work / f"{name}.png")).faces
        if not faces:
            return None
        return round(min(distance(f.descriptor, reference.centroid or ()) for f in faces), 3)

    crop = face_crop()
    same = {
        "rescaled 0.5x": dist(rescaled(crop, 0.5), "half"),
        "rescaled 2x": dist(rescaled(crop, 2.0), "double"),
        "flipped": dist(flipped(crop), "flip"),
        "flipped 0.7x": dist(flipped(rescaled(crop, 0.7)), "flip07"),
        "rotated 10 deg": dist(crop.rotate(10, resample=Image.Resampling.BILINEAR), "rot10"),
        "whole 512 px picture": dist(astronaut(), "whole"),
    }
    degraded = {
        "blur r=2": dist(blurred(crop, 2), "blur2"),
        "blur r=3": dist(blurred(crop, 3), "blur3"),
        "blur r=5": dist(blurred(crop, 5), "blur5"),
        "noise sigma=20": dist(noised(crop, 20), "noise20"),
        "noise sigma=35": dist(noised(crop, 35), "noise35"),
        "noise sigma=60": dist(noised(crop, 60), "noise60"),
        "jpeg q=8": dist(jpeg(crop, 8), "jpeg8"),
        "jpeg q=3": dist(jpeg(crop, 3), "jpeg3"),
    }
    others = [d for i, face in enumerate(other_people(100)) if (d := dist(face, f"other{i}")) is not None]
    none = {name: len(model.faces(save(no_face(name), work / f"{name}.png")).faces) for name in NO_FACE_PICTURES}

    times: dict[str, float] = {}
    for side in (256, 512, 1024, 2048):
        path = save(astronaut().resize((side, side)), work / f"time{side}.png")
        runs = [model.faces(path).seconds for _ in range(5)]
        times[f"{side}px"] = round(statistics.median(runs), 3)
    one = work / "time512.png"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fluxlora_trainer.faces", "embed", str(one)], check=True, capture_output=True)
    subprocess_s = time.perf_counter() - started

    out: dict[str, Any] = {
        "load_s": round(load_s, 2),
        "subprocess_s": round(subprocess_s, 2),
        "seconds_per_image": times,
        "same_face": same,
        "degraded_face": degraded,
        "other_people": {
            "faces": 100,
            "found": len(others),
            "min": min(others),
            "median": round(statistics.median(others), 3),
            "max": max(others),
        },
        "no_face": none,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
