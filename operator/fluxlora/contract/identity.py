"""The run a trainer works for and the operator's objects belong to."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunRef:
    """Identity of the FluxLoraRun that owns the objects."""

    name: str
    namespace: str
    uid: str
