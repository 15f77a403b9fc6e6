"""Dataset check, snapshot and hash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fluxlora_trainer import termination
from fluxlora_trainer.dataset import Bucketing, DatasetError, check_dataset, dataset_hash, no_upscale_bucket, snapshot

from tests.fakes.sample_data import png_bytes
from tests.trainer.trainer_helpers import write_images


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    d = tmp_path / "ds"
    write_images(d, 3)
    return d


def test_hash_is_stable_and_ignores_caches(ds: Path, tmp_path: Path) -> None:
    h1 = dataset_hash(ds)
    assert h1.startswith("sha256:") and len(h1) == 7 + 64
    assert dataset_hash(ds) == h1
    (ds / "img000_1024x1024_flux.npz").write_bytes(b"cache")
    (ds / "img000_flux_te.npz").write_bytes(b"cache")
    assert dataset_hash(ds) == h1
    copy = tmp_path / "copy"
    write_images(copy, 3)
    assert dataset_hash(copy) == h1  # content + names, not location or mtime
    os.utime(copy / "img000.png", (1, 1))
    assert dataset_hash(copy) == h1


def test_hash_sensitive_to_every_byte(ds: Path) -> None:
    h1 = dataset_hash(ds)
    img = ds / "img001.png"
    data = bytearray(img.read_bytes())
    seen = {h1}
    for i in range(len(data)):
        changed = bytearray(data)
        changed[i] ^= 0x01
        img.write_bytes(bytes(changed))
        seen.add(dataset_hash(ds))
    img.write_bytes(bytes(data))
    assert len(seen) == len(data) + 1
    assert dataset_hash(ds) == h1


def test_hash_sensitive_to_rename_add_remove_caption(ds: Path) -> None:
    h1 = dataset_hash(ds)
    (ds / "img002.png").rename(ds / "img009.png")
    h_renamed = dataset_hash(ds)
    assert h_renamed != h1
    (ds / "img009.png").rename(ds / "img002.png")
    assert dataset_hash(ds) == h1
    write_images(ds, 1, start=7)
    assert dataset_hash(ds) not in (h1, h_renamed)
    for f in ds.glob("img007.*"):
        f.unlink()
    assert dataset_hash(ds) == h1
    (ds / "img000.txt").write_text("ohwx person, photo 0 \n")
    assert dataset_hash(ds) != h1


def test_moving_bytes_between_files_changes_hash(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x.png").write_bytes(b"ab")
    (a / "y.png").write_bytes(b"c")
    (b / "x.png").write_bytes(b"a")
    (b / "y.png").write_bytes(b"bc")
    assert dataset_hash(a) != dataset_hash(b)


def test_check_counts_and_trigger_word(tmp_path: Path) -> None:
    d = tmp_path / "d"
    write_images(d, 2)
    write_images(d, 2, captions=False, start=5)
    (d / "README.md").write_text("notes")
    (d / "sub").mkdir()
    (d / "img000_flux_te.npz").write_bytes(b"c")
    rep = check_dataset(d, ".txt", trigger_word="ohwx")
    assert rep.images == ["img000.png", "img001.png", "img005.png", "img006.png"]
    assert rep.captions == ["img000.txt", "img001.txt"]
    assert rep.uncaptioned == ["img005.png", "img006.png"]
    assert rep.ignored == ["README.md", "sub/"]


@pytest.mark.parametrize(
    ("setup", "code", "needle"),
    [
        ("missing", termination.EXIT_DATASET_MISSING, "does not exist"),
        ("file", termination.EXIT_DATASET_MISSING, "not a directory"),
        ("empty", termination.EXIT_DATASET_EMPTY, "no images"),
        ("gif", termination.EXIT_DATASET_UNSUPPORTED, "unsupported image type"),
        ("nocaption", termination.EXIT_DATASET_CAPTIONS, "have no caption"),
        # The engine asserts on an empty caption file and raises on one that is not UTF-8; it
        # reads only the first line, so a blank first line would train on an empty caption.
        ("emptycaption", termination.EXIT_DATASET_CAPTIONS, "caption img001.txt is empty"),
        ("blankcaption", termination.EXIT_DATASET_CAPTIONS, "caption img001.txt has a blank first line"),
        ("latin1caption", termination.EXIT_DATASET_CAPTIONS, "caption img001.txt is not UTF-8"),
        ("zerobyte", termination.EXIT_DATASET_UNREADABLE, "empty image"),
        ("notanimage", termination.EXIT_DATASET_UNREADABLE, "img000.png is not an image the engine can read"),
        # The engine matches extensions case-sensitively: it would train without these.
        ("miscased", termination.EXIT_DATASET_UNSUPPORTED, "would not see img000.Png, img001.jpG"),
        # bucketNoUpscale gives a 32x32 image a 0x0 bucket: ZeroDivisionError in the engine.
        ("tiny", termination.EXIT_DATASET_UNSUPPORTED, "small.png is 32x48 px"),
        ("outside", termination.EXIT_DATASET_UNSUPPORTED, "symbolic link to a file outside the dataset directory"),
        ("loop", termination.EXIT_DATASET_UNREADABLE, "cannot follow loop.png"),
        ("badname", termination.EXIT_DATASET_UNSUPPORTED, "is not valid UTF-8"),
        ("huge", termination.EXIT_DATASET_UNSUPPORTED, "img000.png is 2147483648 bytes"),
    ],
)
def test_check_failures(tmp_path: Path, setup: str, code: int, needle: str) -> None:
    d = tmp_path / "d"
    if setup == "file":
        d.write_text("x")
    elif setup != "missing":
        d.mkdir()
    if setup == "empty":
        (d / "notes.txt").write_text("x")
    if setup == "gif":
        write_images(d, 1)
        (d / "anim.gif").write_bytes(b"GIF89a")
    if setup == "nocaption":
        write_images(d, 2, captions=False)
    if setup in ("emptycaption", "blankcaption", "latin1caption"):
        write_images(d, 2)
        content = {
            "emptycaption": b"",
            "blankcaption": b"  \nohwx on line 2\n",
            "latin1caption": "café".encode("latin-1"),
        }
        (d / "img001.txt").write_bytes(content[setup])
    if setup == "zerobyte":
        write_images(d, 1)
        (d / "img000.png").write_bytes(b"")
    if setup == "notanimage":
        write_images(d, 1)
        (d / "img000.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 64)
    if setup == "miscased":
        write_images(d, 2)
        (d / "img000.png").rename(d / "img000.Png")
        (d / "img001.png").rename(d / "img001.jpG")
    if setup == "tiny":
        write_images(d, 1)
        (d / "small.png").write_bytes(png_bytes(32, 48))
        (d / "small.txt").write_text("ohwx\n")
    if setup == "outside":
        write_images(d, 1)
        (tmp_path / "token").write_text("secret")
        (d / "img000.txt").unlink()
        (d / "img000.txt").symlink_to(tmp_path / "token")
    if setup == "loop":
        write_images(d, 1)
        (d / "loop.png").symlink_to(d / "loop.png")
    if setup == "badname":
        write_images(d, 1)
        with open(os.path.join(os.fsencode(d), b"caf\xe9.png"), "wb") as f:
            f.write(png_bytes(64, 64))
    if setup == "huge":
        write_images(d, 1)
        with open(d / "img000.png", "r+b") as f:
            f.truncate(2 << 30)  # sparse: 2 GiB apparent, nothing on disk
    with pytest.raises(DatasetError) as err:
        check_dataset(d, ".txt", trigger_word=None)
    assert err.value.code == code
    assert needle in err.value.reason
    assert "\n" not in err.value.reason


def test_snapshot_copies_exactly_what_is_hashed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_images(src, 3)
    (src / "README.md").write_text("not trained")
    (src / "img000_flux_te.npz").write_bytes(b"cache")
    dst = tmp_path / "snap"
    rep = check_dataset(src)
    digest = snapshot(src, rep, dst)
    assert sorted(p.name for p in dst.iterdir()) == rep.files
    assert digest == dataset_hash(dst)
    # engine caches written later do not change it; a stray file is removed on the next snapshot
    (dst / "img000_1024x1024_flux.npz").write_bytes(b"c")
    (dst / "stray.png").write_bytes(b"s")
    assert snapshot(src, rep, dst) == digest
    assert not (dst / "stray.png").exists() and (dst / "img000_1024x1024_flux.npz").exists()


def test_images_the_engine_buckets_pass(tmp_path: Path) -> None:
    d = tmp_path / "d"
    write_images(d, 1)
    (d / "wide.PNG").write_bytes(png_bytes(640, 64))  # upper case is one of the engine's own extensions
    (d / "wide.txt").write_text("ohwx\n")
    rep = check_dataset(d, ".txt", bucketing=Bucketing(resolution=512, bucket_reso_steps=64))
    assert rep.images == ["img000.png", "wide.PNG"]
    # Without bucketNoUpscale the engine scales images into its buckets: small ones are fine.
    (d / "small.png").write_bytes(png_bytes(16, 16))
    (d / "small.txt").write_text("ohwx\n")
    assert "small.png" in check_dataset(d, ".txt", bucketing=Bucketing(bucket_no_upscale=False)).images


@pytest.mark.parametrize(
    ("size", "resolution", "steps", "bucket"),
    [
        ((64, 64), 512, 64, (64, 64)),
        ((100, 70), 512, 64, (64, 64)),
        ((63, 500), 512, 64, (0, 448)),
        ((2048, 1024), 512, 64, (640, 320)),  # shrunk to the area first, as the engine does
        ((4000, 40), 256, 32, (0, 0)),  # the engine raises ZeroDivisionError here
    ],
)
def test_no_upscale_bucket_follows_the_engine(
    size: tuple[int, int], resolution: int, steps: int, bucket: tuple[int, int]
) -> None:
    assert no_upscale_bucket(*size, resolution, steps) == bucket


def test_symlinks_inside_the_dataset_are_copied_as_files(tmp_path: Path) -> None:
    d = tmp_path / "d"
    write_images(d, 1)
    (d / "same.png").symlink_to(d / "img000.png")
    (d / "same.txt").write_text("ohwx\n")
    rep = check_dataset(d)
    assert rep.images == ["img000.png", "same.png"]
    dst = tmp_path / "snap"
    snapshot(d, rep, dst)
    assert not (dst / "same.png").is_symlink() and (dst / "same.png").read_bytes() == (d / "img000.png").read_bytes()


def test_a_snapshot_through_a_symlink_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_images(src, 1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.png").write_bytes(b"someone else's file")
    (tmp_path / "snap").symlink_to(elsewhere)
    with pytest.raises(DatasetError, match="is a symbolic link"):
        snapshot(src, check_dataset(src), tmp_path / "snap")
    assert (elsewhere / "keep.png").exists()
