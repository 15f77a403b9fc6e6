"""The face scorer on real faces shipped in a package (scikit-image): the same face rescaled or
flipped is the person, other people are not, pictures without a face have no score (never 0),
and a clean copy always scores above a heavily degraded one. Also `fluxlora-trainer likeness`.

The distances behind these numbers: `python benchmarks/likeness_scorer.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fluxlora_trainer.faces import FaceModel, ImageFaces
from fluxlora_trainer.scoring import IDENTICAL_NOTE, Reference, build_reference, checkpoint_point, score_image

from tests.fakes.face_pictures import (
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
    two_faces,
)

THRESHOLD = 0.4


@pytest.fixture(scope="module")
def model() -> FaceModel:
    return FaceModel()


@pytest.fixture(scope="module")
def reference(model: FaceModel, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    d = tmp_path_factory.mktemp("reference")
    return build_reference([model.faces(save(face_crop(), d / "alice.png"))])


@pytest.fixture
def pictures(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def likeness_of(model: FaceModel, reference: Reference, image: Image.Image, path: Path) -> float | None:
    return score_image(model.faces(save(image, path)), reference).likeness


@pytest.mark.parametrize(
    "name,transform",
    [
        ("half size", lambda im: rescaled(im, 0.5)),
        ("double size", lambda im: rescaled(im, 2.0)),
        ("flipped", flipped),
        ("flipped, 0.7x", lambda im: flipped(rescaled(im, 0.7))),
        ("whole picture", lambda im: astronaut()),
    ],
)
def test_the_same_face_rescaled_or_flipped_is_the_person(  # type: ignore[no-untyped-def]
    model: FaceModel, reference: Reference, pictures: Path, name: str, transform
) -> None:
    value = likeness_of(model, reference, transform(face_crop()), pictures / "x.png")
    assert value is not None and value >= 0.7, (name, value)  # distance <= 0.3


def test_other_people_are_not_the_person(model: FaceModel, reference: Reference, pictures: Path) -> None:
    values = [
        likeness_of(model, reference, face, pictures / f"other{i}.png") for i, face in enumerate(other_people(12))
    ]
    found = [v for v in values if v is not None]
    assert len(found) >= 10, values  # LFW's 25 px faces, shown at 150 px: most are found
    assert max(found) < THRESHOLD, found


@pytest.mark.parametrize("name", NO_FACE_PICTURES)
def test_a_picture_without_a_face_has_no_score_not_zero(
    model: FaceModel, reference: Reference, pictures: Path, name: str
) -> None:
    result = model.faces(save(no_face(name), pictures / f"{name}.png"))
    score = score_image(result, reference)
    assert result.faces == [] and score.likeness is None and score.note == "no face"
    point = checkpoint_point(500, [score, score], THRESHOLD)
    assert "likeness" not in point and point["note"] == "no face in the 2 samples"
    assert (point["faces"], point["passed"]) == (0, 0)


def test_the_reference_uses_images_with_exactly_one_face(model: FaceModel, pictures: Path) -> None:
    files = [
        save(face_crop(), pictures / "a.png"),
        save(flipped(rescaled(face_crop(), 0.8)), pictures / "b.png"),
        save(no_face("coffee"), pictures / "coffee.png"),
        save(two_faces(), pictures / "party.png"),
    ]
    (pictures / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    ref = build_reference([*model.each(files), model.faces(pictures / "broken.png")])
    assert (ref.used, ref.without_face, ref.several_faces, ref.unreadable) == (
        ["a.png", "b.png"],
        ["coffee.png"],
        ["party.png"],
        ["broken.png"],
    )
    assert ref.usable and ref.problem() is None
    assert ref.status()["unused"] == ["coffee.png", "party.png", "broken.png"]
    # An image of two people as a sample: its face most like the reference counts.
    two = score_image(model.faces(pictures / "party.png"), ref)
    assert two.faces == 2 and two.likeness is not None and two.likeness >= 0.7


def test_a_reference_without_a_face_says_why(model: FaceModel, pictures: Path) -> None:
    files = [save(no_face("rocket"), pictures / "r.png"), save(two_faces(), pictures / "two.png")]
    ref = build_reference(list(model.each(files)))
    assert not ref.usable
    assert ref.problem() == (
        "no face in the reference: none of the 2 dataset images has exactly one face (1 without a face, 1 with "
        "several faces)"
    )
    assert score_image(model.faces(files[0]), ref).likeness is None


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    scale=st.floats(min_value=0.6, max_value=1.6),
    flip=st.booleans(),
    degradation=st.sampled_from(["blur", "noise", "jpeg"]),
    strength=st.floats(min_value=0.0, max_value=1.0),
)
def test_a_clean_copy_scores_above_a_heavily_degraded_one(
    model: FaceModel, reference: Reference, tmp_path: Path, scale: float, flip: bool, degradation: str, strength: float
) -> None:
    clean = rescaled(face_crop(), scale)
    clean = flipped(clean) if flip else clean
    degraded = {
        "blur": lambda: blurred(clean, 4 + 5 * strength),
        "noise": lambda: noised(clean, 70 + 40 * strength),
        "jpeg": lambda: jpeg(blurred(clean, 2), 3),
    }[degradation]()
    good = likeness_of(model, reference, clean, tmp_path / "clean.png")
    bad = likeness_of(model, reference, degraded, tmp_path / "degraded.png")
    assert good is not None
    assert bad is None or bad < good, (good, bad)


def test_identical_to_a_dataset_image_is_never_scored(reference: Reference) -> None:
    score = score_image(ImageFaces("x.png"), reference, identical=True)
    assert score.likeness is None and score.note == IDENTICAL_NOTE
    point = checkpoint_point(4, [score], THRESHOLD)
    assert point["samples"] == 0 and "likeness" not in point and point["note"] == "only dataset images (1): not scored"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fluxlora_trainer.cli", "likeness", *args], capture_output=True, text=True, timeout=120
    )


def test_the_cli_scores_folders(tmp_path: Path) -> None:
    ref, samples = tmp_path / "dataset", tmp_path / "samples"
    save(face_crop(), ref / "alice.png")
    save(no_face("coffee"), ref / "coffee.png")
    save(flipped(rescaled(face_crop(), 0.7)), samples / "step500-0.png")
    save(no_face("rocket"), samples / "step500-1.png")
    save(other_people(1)[0], samples / "step500-2.png")
    (samples / "copy.png").write_bytes((ref / "alice.png").read_bytes())

    text = cli("--reference", str(ref), "--samples", str(samples))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == f"reference {ref}: 2 images, 1 used (exactly one face); without a face: coffee.png"
    assert lines[1] == f"  copy.png: {IDENTICAL_NOTE}"
    assert lines[2].startswith("  step500-0.png: likeness 0.") and "(the person; 1 face(s))" in lines[2]
    assert lines[3] == "  step500-1.png: no face"
    assert "below 0.4: not the person" in lines[4]
    assert lines[5].startswith("likeness 0.") and "mean of the 2 of 3 images with a face; 1 at or above 0.4" in lines[5]

    report = json.loads(cli("--reference", str(ref), "--samples", str(samples), "--json", "--threshold", "0.3").stdout)
    assert report["threshold"] == 0.3 and report["faces"] == 2 and report["passed"] == 1
    by_name = {Path(s["image"]).name: s for s in report["samples"]}
    assert by_name["step500-1.png"]["likeness"] is None and by_name["step500-1.png"]["faces"] == 0
    assert report["reference"]["used"] == ["alice.png"] and report["secondsPerImage"] > 0


def test_the_cli_without_a_reference_face_exits_3(tmp_path: Path) -> None:
    ref, samples = tmp_path / "dataset", tmp_path / "samples"
    save(no_face("coffee"), ref / "coffee.png")
    save(face_crop(), samples / "a.png")
    done = cli("--reference", str(ref), "--samples", str(samples))
    assert done.returncode == 3
    assert "no face in the reference: none of the 1 dataset images has exactly one face" in done.stdout
    refused = cli("--reference", str(ref), "--samples", str(samples), "--threshold", "1.5")
    assert refused.returncode == 2 and "--threshold" in refused.stderr


def test_the_face_models_load_where_setuptools_has_no_pkg_resources(pictures: Path) -> None:
    """The engine pins setuptools 84, which has no pkg_resources, and face-recognition-models'
    own __init__ imports it: the trainer image found the scorer "unavailable" until the scorer
    stopped importing that __init__."""
    image = save(face_crop(), pictures / "astronaut.png")
    blocked = (
        "import sys, pathlib; sys.modules['pkg_resources'] = None\n"  # `import pkg_resources` now fails
        "from fluxlora_trainer.faces import FaceModel\n"
        f"print(len(FaceModel().faces(pathlib.Path({str(image)!r})).faces))\n"
    )
    proc = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "1", proc.stdout + proc.stderr
