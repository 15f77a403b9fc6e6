"""Dataset check, snapshot and hash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from trainer_helpers import write_images

from fluxlora_trainer import termination
from fluxlora_trainer.dataset import DatasetError, check_dataset, dataset_hash, snapshot


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
        ("emptycaption", termination.EXIT_DATASET_CAPTIONS, "1 of 2 images have no caption"),
        ("zerobyte", termination.EXIT_DATASET_UNREADABLE, "empty image"),
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
    if setup == "emptycaption":
        write_images(d, 2)
        (d / "img001.txt").write_text("  \n")
    if setup == "zerobyte":
        write_images(d, 1)
        (d / "img000.png").write_bytes(b"")
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
