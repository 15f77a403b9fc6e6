"""One active operator among replicas: a coordination.k8s.io Lease, as controller-runtime does it.

Every replica watches and keeps its indexes warm; only the Lease's holder runs
reconcile passes. The holder renews the Lease every ``renew_seconds``; another
replica takes it once it has gone ``lease_seconds`` without renewal (the holder
died or lost the API server). A holder that cannot renew within its own lease
exits, so two replicas never act at once for longer than a renewal period; even
then the children's fixed names and the status patch's resourceVersion
precondition keep a second actor from creating a Job twice or losing a status.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fluxlora.contract.model import Obj
from fluxlora.contract.timestamps import parse_rfc3339
from fluxlora.controller.kube import ApiError, Kube

log = logging.getLogger(__name__)

MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def _time(value: Any) -> datetime.datetime | None:
    text = str(value or "")
    try:
        return datetime.datetime.strptime(text, MICROTIME).replace(tzinfo=datetime.UTC)
    except ValueError:
        return parse_rfc3339(text)


def stamp(now: datetime.datetime) -> str:
    return now.strftime(MICROTIME)


@dataclass(frozen=True)
class Decision:
    """What to do with the Lease now: ``spec`` to write (None: leave it, another holds it)."""

    spec: Obj | None
    taking_over: bool = False  # from another holder whose lease ran out


def decide(lease: Mapping[str, Any] | None, identity: str, now: datetime.datetime, lease_seconds: int) -> Decision:
    """Renew our own lease, take a free or expired one, or leave another's live lease alone (pure)."""
    spec = dict((lease or {}).get("spec") or {})
    holder = spec.get("holderIdentity")
    renewed = _time(spec.get("renewTime")) or _time(spec.get("acquireTime"))
    duration = int(spec.get("leaseDurationSeconds") or lease_seconds)
    if holder == identity:
        return Decision({**spec, "renewTime": stamp(now), "leaseDurationSeconds": lease_seconds})
    expired = renewed is None or now >= renewed + datetime.timedelta(seconds=duration)
    if holder and not expired:
        return Decision(None)
    return Decision(
        {
            "holderIdentity": identity,
            "acquireTime": stamp(now),
            "renewTime": stamp(now),
            "leaseDurationSeconds": lease_seconds,
            "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (1 if holder else 0),
        },
        taking_over=bool(holder),
    )


@dataclass
class LeaderElection:
    kube: Kube
    namespace: str
    name: str
    identity: str
    lease_seconds: int = 15
    renew_seconds: float = 5.0
    retry_seconds: float = 2.0
    leading: bool = False

    def _try(self) -> bool:
        """One round: True when this replica holds the Lease afterwards."""
        try:
            lease: Obj | None = self.kube.read_lease(self.namespace, self.name)
        except ApiError as exc:
            if exc.status != 404:
                raise
            lease = None
        decision = decide(lease, self.identity, datetime.datetime.now(datetime.UTC), self.lease_seconds)
        if decision.spec is None:
            return False
        try:
            if lease is None:
                self.kube.create_lease(self.namespace, self.name, decision.spec)
            else:  # replaced only if nobody wrote it since it was read
                self.kube.replace_lease(self.namespace, self.name, lease["metadata"]["resourceVersion"], decision.spec)
        except ApiError as exc:
            if exc.status == 409:  # another replica got there first
                return False
            raise
        if decision.taking_over:
            log.info("leader: took over the Lease %s/%s from %s", self.namespace, self.name, lease_holder(lease))
        return True

    async def run(self, on_elected: Callable[[], None], on_lost: Callable[[], None]) -> None:
        """Try until elected (then call on_elected), renew while leading; call on_lost when a renewal
        has failed for a whole lease (the caller exits: its state may be stale)."""
        loop = asyncio.get_running_loop()
        last_renewal = loop.time()
        while True:
            try:
                held = await loop.run_in_executor(None, self._try)
            except Exception as exc:  # the API server unreachable: keep trying
                log.warning("leader: Lease %s/%s: %s", self.namespace, self.name, exc)
                held = False
            now = loop.time()
            if held:
                last_renewal = now
                if not self.leading:
                    self.leading = True
                    log.info("leader: this replica (%s) is active", self.identity)
                    on_elected()
            elif self.leading and now - last_renewal >= self.lease_seconds:
                log.error("leader: the Lease was not renewed for %d s; stepping down", self.lease_seconds)
                self.leading = False
                on_lost()
                return
            await asyncio.sleep(self.renew_seconds if self.leading else self.retry_seconds)


def lease_holder(lease: Mapping[str, Any] | None) -> str | None:
    holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
    return str(holder) if holder else None
