"""Likeness of every checkpoint while the engine trains: off its path, bounded, never fatal.

The runtime's main loop hands this module the sample images the SampleWatcher took and the
checkpoints the engine announced; a worker thread does the rest:

1. once per run, the reference: the faces of the dataset snapshot, cached in
   ``repro/likeness_reference.json`` for the run's dataset hash (a resumed attempt reuses it);
   no face there -> state Skipped, one warning, nothing else is scored;
2. for each sampled step, once the images of every prompt that counts are there (or a later
   step's arrive, or the attempt ends): their faces, scored against the reference
   (fluxlora_trainer.scoring), recorded in ``status.likeness`` (bounded: fluxlora.contract.likeness) and
   in full in ``repro/likeness.json``;
3. when the best checkpoint changes and its LoRA file is whole: a copy at
   ``<checkpointDir>/<name>-best.safetensors`` (so a checkpoint the engine later removes with
   save_last_n_steps is not lost), named in ``repro/repro.json``; only then is the new best
   published, so the operator's BestCheckpoint event names a file that exists.

Faces are found by a separate process at low priority (``python -m fluxlora_trainer.faces
embed``), with a timeout: a crash, a hang or a missing library costs a score, never the training.
Three failures in a row, or a scorer that cannot start, turn scoring off (state Unavailable).
"""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fluxlora.contract import likeness

from . import checkpoints, engine, repro
from .faces import ImageFaces, image_files
from .files import copy_atomic, write_atomic
from .runspec import RunSpec
from .scoring import (
    MAX_REFERENCE_IMAGES,
    ImageScore,
    Reference,
    build_reference,
    checkpoint_point,
    score_image,
    sha256_file,
)

log = logging.getLogger(__name__)

REFERENCE_FILE = "likeness_reference.json"
SCORES_FILE = "likeness.json"
NICE = 10
FAILURES_BEFORE_OFF = 3
# Steps waiting to be scored at most; a step sampled beyond that is recorded as not scored
# (the scorer cannot keep up: a run sampling at every step of a fast GPU).
MAX_BACKLOG = 16


def reference_timeout(images: int) -> float:
    return 120.0 + 5.0 * images


def step_timeout(images: int) -> float:
    return 60.0 + 5.0 * images


class ScorerError(Exception):
    """The face scorer failed on this request (crash, timeout, bad output)."""


class ScorerUnavailable(ScorerError):
    """The face scorer cannot run here at all (dlib or its models missing)."""


class Embedder(Protocol):
    def embed(self, paths: Sequence[Path], timeout: float) -> list[ImageFaces]: ...

    def stop(self) -> None: ...


class SubprocessEmbedder:
    """`python -m fluxlora_trainer.faces embed` per request, at low priority, with a timeout."""

    def __init__(self, python: str | None = None, nice: int = NICE, env: Mapping[str, str] | None = None) -> None:
        self.python = python or sys.executable
        self.nice = nice
        self.env = dict(env) if env is not None else None
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def embed(self, paths: Sequence[Path], timeout: float) -> list[ImageFaces]:
        argv = [self.python, "-m", "fluxlora_trainer.faces", "embed", "--nice", str(self.nice), "--", *map(str, paths)]
        with self._lock:
            if self._stopped:
                raise ScorerError("stopped")
            try:
                self._proc = subprocess.Popen(  # argv list, never a shell
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=self.env,
                )
            except OSError as exc:
                raise ScorerUnavailable(f"cannot start the face scorer {self.python}: {exc}") from exc
            proc = self._proc
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise ScorerError(f"the face scorer took more than {timeout:.0f} s for {len(paths)} images") from None
        finally:
            with self._lock:
                self._proc = None
        results: list[ImageFaces] = []
        for line in out.splitlines():
            try:
                data = json.loads(line)
                if "unavailable" in data:
                    raise ScorerUnavailable(str(data["unavailable"]))
                results.append(ImageFaces.from_json(data))
            except (ValueError, KeyError, TypeError) as exc:
                raise ScorerError(f"the face scorer wrote something else than faces: {exc}") from exc
        if proc.returncode != 0 or len(results) != len(paths):
            last = (err.strip().splitlines() or ["no output"])[-1][:300]
            raise ScorerError(f"the face scorer exited with code {proc.returncode} ({last})")
        return results

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()


@dataclass(frozen=True)
class _Score:
    step: int
    images: dict[int, Path]  # prompt -> image


@dataclass(frozen=True)
class _Skip:
    step: int
    images: int


@dataclass(frozen=True)
class _Checkpoint:
    step: int
    path: Path


_STOP = object()


class CheckpointScorer:
    """One attempt's likeness scoring (see the module's docstring)."""

    def __init__(
        self,
        run: RunSpec,
        *,
        prompts: Sequence[int],
        threshold: float,
        embedder: Embedder | None = None,
        dataset_hash: str | None = None,
        idle_seconds: float = 1.0,
    ) -> None:
        self.run = run
        self.prompts = sorted(set(prompts))
        self.threshold = threshold
        self.embedder: Embedder = embedder or SubprocessEmbedder()
        self.dataset_hash = dataset_hash
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._jobs: queue.Queue[object] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pending: dict[int, dict[int, Path]] = {}
        self._queued_steps: set[int] = set()
        self._backlog = 0  # score jobs queued, not yet done
        # state (under _lock)
        self.state = likeness.PREPARING
        self.message: str | None = "embedding the faces of the dataset snapshot"
        self.reference: Reference | None = None
        self.points: list[dict[str, Any]] = []  # bounded: status.likeness.checkpoints
        self.dropped = 0
        self.history: list[dict[str, Any]] = []  # every step, with its images: repro/likeness.json
        self.checkpoints: dict[int, str] = {}  # global step -> LoRA file relative to the output claim
        self._checkpoint_paths: dict[int, Path] = {}
        self.best: dict[str, Any] | None = None  # published (copied)
        self._wanted: dict[str, Any] | None = None  # best by score, maybe not copied yet
        self._failures = 0
        self._changed = True

    # -- the main loop's side ---------------------------------------------------------------
    def resume(self, status: Mapping[str, Any], start_step: int) -> None:
        """Continue the run's record up to the step this attempt starts at."""
        points, best, dropped = likeness.up_to(status, start_step)
        with self._lock:
            self.points, self.dropped = points, dropped
            self.history = [dict(p) for p in points]
            if best is not None:
                self.best = self._wanted = dict(best)
                self.checkpoints[int(best["step"])] = str(best["checkpoint"])
            self._changed = True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="likeness", daemon=True)
        self._thread.start()

    def add_samples(self, samples: Sequence[Mapping[str, Any]]) -> None:
        """Samples as the SampleWatcher published them (global step, prompt, image relative to the claim)."""
        for sample in samples:
            prompt = int(sample["prompt"])
            if prompt in self.prompts:
                step = int(sample["step"])
                self._pending.setdefault(step, {})[prompt] = self.run.layout.absolute(str(sample["image"]))
        latest = max(self._pending, default=None)
        for step in sorted(self._pending):
            if set(self._pending[step]) >= set(self.prompts) or (latest is not None and step < latest):
                self._queue_step(step)

    def _queue_step(self, step: int) -> None:
        images = self._pending.pop(step)
        if step in self._queued_steps:
            return
        self._queued_steps.add(step)
        with self._lock:
            behind = self._backlog >= MAX_BACKLOG
            self._backlog += 0 if behind else 1
        self._jobs.put(_Skip(step, len(images)) if behind else _Score(step, images))

    def checkpoint_saved(self, step: int, path: Path) -> None:
        self._jobs.put(_Checkpoint(step, path))

    def status(self) -> dict[str, Any] | None:
        """status.likeness when it changed since the last call, else None."""
        with self._lock:
            if not self._changed:
                return None
            self._changed = False
            return self._status()

    def _status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "message": (self.message or "")[: likeness.MESSAGE_MAX] or None,
            "threshold": self.threshold,
            "prompts": list(self.prompts),
            "reference": self.reference.status() if self.reference is not None else None,
            "checkpoints": [dict(p) for p in self.points] or None,
            "droppedSteps": self.dropped or None,
            "best": dict(self.best) if self.best is not None else None,
        }

    def finish(self, timeout: float) -> bool:
        """Score what is left (every sample is in: the engine has exited), wait at most `timeout`
        seconds; True when everything was scored."""
        for step in sorted(self._pending):
            self._queue_step(step)
        self._jobs.put(_STOP)
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("likeness: not finished %.0f s after the engine exited; the rest is not scored", timeout)
            self.stop()
            return False
        return True

    def stop(self) -> None:
        """Stop at once (SIGTERM): the running request is killed, the queue dropped."""
        self._stop.set()
        self.embedder.stop()
        self._jobs.put(_STOP)

    # -- the worker -----------------------------------------------------------------------------
    def _work(self) -> None:
        try:
            self._prepare()
            while not self._stop.is_set():
                try:
                    job = self._jobs.get(timeout=self.idle_seconds)
                except queue.Empty:
                    self._copy_best()
                    continue
                if job is _STOP:
                    self._copy_best(final=True)
                    return
                if isinstance(job, _Checkpoint):
                    self._on_checkpoint(job)
                elif isinstance(job, _Score):
                    if self.state == likeness.SCORING:
                        self._score(job)
                    with self._lock:
                        self._backlog -= 1
                elif isinstance(job, _Skip) and self.state == likeness.SCORING:
                    note = f"not scored: the scorer was {MAX_BACKLOG} steps behind"
                    self._record(job.step, [ImageScore("", None, 0, note)] * job.images, [])
                self._copy_best()
        except Exception as exc:  # the thread must never take the runtime down
            log.exception("likeness: scoring stopped")
            self._set_state(likeness.UNAVAILABLE, f"scoring stopped: {type(exc).__name__}: {exc}")

    def _set_state(self, state: str, message: str | None) -> None:
        with self._lock:
            self.state, self.message, self._changed = state, message, True

    def _prepare(self) -> None:
        reference = self._cached_reference()
        if reference is None:
            files = (
                image_files(self.run.layout.dataset_snapshot)[:MAX_REFERENCE_IMAGES]
                if self.run.layout.dataset_snapshot.is_dir()
                else []
            )
            started = time.monotonic()
            try:
                results = self.embedder.embed(files, reference_timeout(len(files))) if files else []
            except ScorerError as exc:
                log.warning("likeness is not scored: %s (training goes on)", exc)
                self._set_state(likeness.UNAVAILABLE, f"the face scorer could not run: {exc}")
                return
            reference = build_reference(results, (sha256_file(p) for p in files))
            log.info(
                "likeness: reference of %d images (%d used) in %.1f s",
                reference.images,
                len(reference.used),
                time.monotonic() - started,
            )
            self._cache_reference(reference)
        with self._lock:
            self.reference = reference
        skipped = [*reference.without_face, *reference.several_faces, *reference.unreadable]
        if skipped:
            log.info(
                "likeness: reference images not used (no face, several faces or unreadable): %s", ", ".join(skipped)
            )
        problem = reference.problem()
        if problem is not None:
            log.warning("likeness is not scored: %s (training goes on)", problem)
            self._set_state(likeness.SKIPPED, problem)
            return
        self._set_state(
            likeness.SCORING,
            f"scoring the samples of prompts {', '.join(map(str, self.prompts))} against {len(reference.used)} "
            f"reference face(s)",
        )

    def _reference_cache(self) -> Path:
        return self.run.layout.repro_dir / REFERENCE_FILE

    def _cached_reference(self) -> Reference | None:
        if not self.dataset_hash:
            return None
        try:
            data = json.loads(self._reference_cache().read_text(encoding="utf-8"))
            if data.get("datasetHash") != self.dataset_hash:
                return None
            return Reference.from_json(data["reference"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _cache_reference(self, reference: Reference) -> None:
        if not self.dataset_hash:
            return
        try:
            _write_json(self._reference_cache(), {"datasetHash": self.dataset_hash, "reference": reference.as_json()})
        except OSError as exc:
            log.warning("likeness: cannot cache the reference: %s", exc)

    def _on_checkpoint(self, job: _Checkpoint) -> None:
        with self._lock:
            if job.step not in self._checkpoint_paths:  # a step checkpoint beats the final copy of the same step
                self._checkpoint_paths[job.step] = job.path
                self.checkpoints[job.step] = self.run.layout.relative(job.path)
            self._choose_best()

    def _score(self, job: _Score) -> None:
        assert self.reference is not None
        reference = self.reference
        ordered = [job.images[p] for p in sorted(job.images)]
        identical = {path: _hash_or_none(path) in reference.hashes for path in ordered}
        to_embed = [p for p in ordered if not identical[p]]
        try:
            faces = (
                dict(zip(to_embed, self.embedder.embed(to_embed, step_timeout(len(to_embed))), strict=True))
                if to_embed
                else {}
            )
            self._failures = 0
            images = [
                score_image(faces[p], reference)
                if p in faces
                else score_image(ImageFaces(str(p)), reference, identical=True)
                for p in ordered
            ]
        except ScorerError as exc:
            self._failures += 1
            log.warning("likeness of step %d: %s", job.step, exc)
            images = [ImageScore(str(p), None, 0, f"not scored: {exc}") for p in ordered]
            if isinstance(exc, ScorerUnavailable) or self._failures >= FAILURES_BEFORE_OFF:
                self._set_state(likeness.UNAVAILABLE, f"the face scorer failed {self._failures} time(s): {exc}")
        detail = [s.as_json(self.threshold) | {"image": self.run.layout.relative(s.path)} for s in images]
        self._record(job.step, images, detail)

    def _record(self, step: int, images: Sequence[ImageScore], detail: list[dict[str, Any]]) -> None:
        point = checkpoint_point(step, images, self.threshold)
        shown = point.get("likeness", point.get("note"))
        log.info("likeness of step %d: %s (%d of %d images with a face)", step, shown, point["faces"], point["samples"])
        with self._lock:
            keep = self._wanted["step"] if self._wanted else None
            self.points, dropped = likeness.added(self.points, point, keep)
            self.dropped += dropped
            self.history = [h for h in self.history if h["step"] != step] + [point | {"images": detail}]
            self.history.sort(key=lambda h: int(h["step"]))
            self._choose_best()
            self._changed = True
        self._write_scores()

    def _choose_best(self) -> None:
        self._wanted = likeness.best_of(self.history, self.checkpoints) or self._wanted

    def _copy_best(self, final: bool = False) -> None:
        with self._lock:
            wanted = dict(self._wanted) if self._wanted else None
            published = self.best
        if wanted is None or (published is not None and published["step"] == wanted["step"]):
            return
        source = self._checkpoint_paths.get(int(wanted["step"]))
        if source is None:
            return
        problem = checkpoints.lora_problem(source)
        if problem is not None and not final:
            return  # the engine is still writing it
        dst = self.run.layout.checkpoint_dir / engine.best_checkpoint_name(self.run.output_name)
        best = dict(wanted)
        if problem is None:
            try:
                copy_atomic(source, dst)
                best["file"] = self.run.layout.relative(dst)
            except OSError as exc:
                log.warning("likeness: cannot copy the best checkpoint %s: %s", source, exc)
        else:
            log.warning("likeness: the best checkpoint %s is not whole (%s): not copied", source, problem)
        with self._lock:
            self.best = best
            self._changed = True
        log.info("likeness: %s", likeness.best_text(best))
        try:
            repro.record_best(self.run, best, self.threshold, SCORES_FILE)
        except OSError as exc:
            log.warning("likeness: cannot name the best checkpoint in repro.json: %s", exc)
        self._write_scores()

    def _write_scores(self) -> None:
        with self._lock:
            body = {
                "threshold": self.threshold,
                "prompts": self.prompts,
                "reference": {k: v for k, v in self.reference.as_json().items() if k not in ("centroid", "hashes")}
                if self.reference
                else None,
                "best": self.best,
                "checkpoints": self.history,
            }
        try:
            _write_json(self.run.layout.repro_dir / SCORES_FILE, body)
        except OSError as exc:
            log.warning("likeness: cannot write %s: %s", SCORES_FILE, exc)


def _hash_or_none(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def _write_json(path: Path, body: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(body, indent=1, sort_keys=True) + "\n")
