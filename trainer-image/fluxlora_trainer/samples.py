"""The engine's sample images: noticed, kept beside their checkpoint, published as thumbnails.

What the engine does (flux_train_utils.sample_images at the pinned commit, observed in
tests/engine): it writes ``<output_dir>/sample/<name>_<step:06d>_<prompt:02d>_<YYYYmmddHHMMSS>_<seed>.png``
with PIL straight to that name, the one before the first step as ``<name>_e000000_...``; the
step is the engine's own step of this attempt (a resumed attempt counts from 0, as its
checkpoint names do).

The ``SampleWatcher`` takes a file once it is a whole PNG (it ends with the IEND chunk), moves
it beside the checkpoint of the same step and attempt, under that checkpoint's name
(``<name>-step<step:08d>-sample<prompt:02d>.png`` next to ``<name>-step<step:08d>.safetensors``),
and makes its thumbnail: a WebP of at most 128 px a side and 12 KiB. The ``SamplePublisher``
keeps the run's FluxLoraSampleSet (fluxlora.contract.sampleset: size-bounded, steps thinned) and sends
it through a ``SampleSetSink``, rate-limited and never raising: a lost update only delays the
dashboard, never the training.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxlora.contract import sampleset

from .engine import step_checkpoint_name
from .report import SampleSetSink

log = logging.getLogger(__name__)

PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
SAMPLE_DIR = "sample"


@dataclass(frozen=True)
class EngineSample:
    """One image the engine wrote: its file, the engine step (of this attempt) and the prompt index."""

    path: Path
    engine_step: int
    prompt: int


def sample_name_pattern(output_name: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(output_name)}_(?:(\d{{6,}})|e(\d{{6,}}))_(\d{{2,}})_\d{{14}}(?:_\d+)?\.png$")


def parse_sample(path: Path, output_name: str) -> EngineSample | None:
    """The engine's sample file name, read; None for anything else (epoch samples other than the first)."""
    m = sample_name_pattern(output_name).match(path.name)
    if m is None:
        return None
    step, epoch, prompt = m.group(1), m.group(2), int(m.group(3))
    if step is not None:
        return EngineSample(path, int(step), prompt)
    if int(epoch) == 0:  # --sample_at_first: before the first step
        return EngineSample(path, 0, prompt)
    return None


def is_whole_png(path: Path) -> bool:
    """PIL writes the file in place: it is whole once it ends with the IEND chunk."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return False
            f.seek(0, os.SEEK_END)
            if f.tell() < len(PNG_END) + 8:
                return False
            f.seek(-len(PNG_END), os.SEEK_END)
            return f.read() == PNG_END
    except OSError:
        return False


def kept_name(output_name: str, engine_step: int, prompt: int) -> str:
    """Where the original is kept: named after the checkpoint of its step, in the same directory."""
    return f"{Path(step_checkpoint_name(output_name, engine_step)).stem}-sample{prompt:02d}.png"


def thumbnail(path: Path) -> tuple[bytes, int, int]:
    """A WebP of at most THUMBNAIL_MAX_SIDE px a side and THUMBNAIL_MAX_BYTES, and the original's size."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        rgb = image.convert("RGB")
    side = sampleset.THUMBNAIL_MAX_SIDE
    for quality in (80, 60, 40, 20, 10):
        small = rgb.copy()
        small.thumbnail((side, side))
        buffer = io.BytesIO()
        small.save(buffer, format="WEBP", quality=quality, method=4)
        data = buffer.getvalue()
        if len(data) <= sampleset.THUMBNAIL_MAX_BYTES:
            return data, width, height
        if quality == 20:
            side //= 2  # a picture of pure noise: smaller, then lower quality
    raise ValueError(f"cannot make a thumbnail of {path} within {sampleset.THUMBNAIL_MAX_BYTES} bytes")


class SampleWatcher:
    """Finds the engine's new sample images in one attempt's output directory."""

    def __init__(
        self,
        output_dir: Path,
        output_name: str,
        *,
        attempt: int,
        global_step: Callable[[int], int],
        relative: Callable[[Path], str],
    ) -> None:
        self.output_dir = output_dir
        self.sample_dir = output_dir / SAMPLE_DIR
        self.output_name = output_name
        self.attempt = attempt
        self.global_step = global_step
        self.relative = relative

    def scan(self) -> list[dict[str, Any]]:
        """Whole new images, moved beside their checkpoint, as FluxLoraSampleSet samples (oldest first)."""
        try:
            names = sorted(os.listdir(self.sample_dir))
        except OSError:
            return []
        found = []
        for name in names:
            sample = parse_sample(self.sample_dir / name, self.output_name)
            if sample is None or not is_whole_png(sample.path):
                continue
            kept = self.output_dir / kept_name(self.output_name, sample.engine_step, sample.prompt)
            try:
                os.replace(sample.path, kept)
                data, width, height = thumbnail(kept)
            except (OSError, ValueError) as exc:
                log.warning("sample image %s: %s", sample.path, exc)
                continue
            step = self.global_step(sample.engine_step)
            log.info("sample image of global step %d, prompt %d: %s", step, sample.prompt, kept)
            found.append(
                {
                    "step": step,
                    "prompt": sample.prompt,
                    "image": self.relative(kept),
                    "width": width,
                    "height": height,
                    "attempt": self.attempt,
                    "thumbnail": base64.b64encode(data).decode("ascii"),
                }
            )
        return sorted(found, key=lambda s: (s["step"], s["prompt"]))


class SamplePublisher:
    """The run's FluxLoraSampleSet: kept here, sent as a merge patch of its fields when it changed,
    at most once per `min_interval` (at once with `force`). Never raises."""

    def __init__(
        self,
        sink: SampleSetSink,
        namespace: str,
        name: str,
        prompts: Sequence[str],
        *,
        min_interval: float = 10.0,
        max_bytes: int = sampleset.MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.namespace = namespace
        self.name = name
        self.min_interval = min_interval
        self.max_bytes = max_bytes
        self.clock = clock
        self._lock = threading.Lock()
        self.body: dict[str, Any] = {
            "run": name,
            "prompts": list(prompts),
            "samples": [],
            "droppedSteps": 0,
            "maxBytes": max_bytes,
        }
        self._dirty = False
        self._last_sent: float | None = None
        self.sent: list[int] = []  # bytes of each patch sent
        self.failures = 0

    def resume(self, up_to_step: int) -> None:
        """Keep what earlier attempts published, up to the step this attempt starts at."""
        try:
            existing = self.sink.get_sample_set(self.namespace, self.name)
        except Exception as exc:  # an old Role, the API server away: start from nothing
            log.warning("cannot read sample set %s/%s (earlier samples dropped): %s", self.namespace, self.name, exc)
            return
        if existing:
            with self._lock:
                self.body = sampleset.fit(self.body | sampleset.up_to(existing, up_to_step), self.max_bytes)
                self._dirty = True

    @property
    def latest_step(self) -> int | None:
        latest = self.body.get("latestStep")
        return int(latest) if latest is not None else None

    def add(self, samples: Sequence[Mapping[str, Any]]) -> None:
        if not samples:
            return
        with self._lock:
            self.body = sampleset.merged(self.body, samples, self.max_bytes)
            self._dirty = True

    def tick(self, force: bool = False) -> bool:
        with self._lock:
            if not self._dirty:
                return False
            now = self.clock()
            if not force and self._last_sent is not None and now - self._last_sent < self.min_interval:
                return False
            body = dict(self.body)
            try:
                self.sink.patch_sample_set(self.namespace, self.name, body)
            except Exception as exc:  # never let publishing kill training
                self.failures += 1
                self._last_sent = now  # retry after min_interval
                log.warning("publishing the sample set failed (will retry): %s", exc)
                return False
            self.sent.append(sampleset.body_size(body))
            self._dirty = False
            self._last_sent = now
            return True

    def flush(self) -> bool:
        return self.tick(force=True)
