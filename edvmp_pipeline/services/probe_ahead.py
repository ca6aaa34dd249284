"""Probing ahead of the runs, for ``edvmp ingest`` and ``edvmp redrive``.

Dagster's SQLite storage spends about 15 ms of one core per event, and a truthful partitions
view needs a planned event per (asset, version) when a run is created and a materialisation
per (asset, version) when it ends. While the in-process runner creates a run, and while a run
writes its results, ffprobe would otherwise wait. :class:`ProbeAhead` probes the versions the
coming runs will hold, in order, from the moment they are known; the run's step takes each
version's result instead of probing it again, so the orchestration's writes overlap the
probing instead of adding to it.

Nothing is landed here: the step still claims each version, lands its rows and reports it. A
result the step does not take (the version was claimed by another run, or is not this
process's) is dropped. Runs started by the sensor, the daemon or the UI get the empty default,
whose ``take`` always answers None.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from edvmp_pipeline.domain.records import ObjectVersion, VideoRecord

Probe = Callable[[ObjectVersion, Callable[[str], None]], VideoRecord]
"""Probes one version (retrying transient errors), reporting each retry on the callback."""


@dataclass
class AheadResult:
    """One version probed ahead: its record or the error it raised, how long the probe took,
    and the retry messages to log in the run that takes it."""

    record: VideoRecord | None = None
    error: BaseException | None = None
    seconds: float = 0.0
    retries: list[str] = field(default_factory=list)


@dataclass
class _Slot:
    version: ObjectVersion
    done: threading.Event = field(default_factory=threading.Event)
    started: bool = False
    dropped: bool = False
    result: AheadResult | None = None


class ProbeAhead:
    """Probes scheduled versions in ``workers`` threads, at most ``window`` results ahead of
    the runs that take them (so a large ingest does not hold every record in memory)."""

    def __init__(self, probe: Probe | None = None, *, workers: int = 1, window: int = 0) -> None:
        self._probe = probe
        self._workers = max(1, workers)
        self._room = threading.Semaphore(max(self._workers, window or 0))
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._queue: deque[_Slot] = deque()
        self._stopped = False
        self._threads: list[threading.Thread] = []

    def start(self, items: Iterable[tuple[str, ObjectVersion]]) -> None:
        """Schedule ``items`` (partition key, version), in the order the runs will take them,
        and start the probing threads."""
        if self._probe is None:
            return
        with self._lock:
            for pk, version in items:
                if pk not in self._slots:
                    self._slots[pk] = _Slot(version)
                    self._queue.append(self._slots[pk])
            self._threads = [t for t in self._threads if t.is_alive()]
            missing = self._workers - len(self._threads) if self._queue else 0
            for i in range(missing):
                thread = threading.Thread(target=self._work, name=f"probe-ahead-{i}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def _claim_next(self) -> _Slot | None:
        with self._lock:
            while self._queue and not self._stopped:
                slot = self._queue.popleft()
                if not slot.dropped:
                    slot.started = True
                    return slot
        return None

    def _work(self) -> None:
        assert self._probe is not None
        while True:
            self._room.acquire()
            slot = self._claim_next()
            if slot is None:
                self._room.release()
                return
            result = AheadResult()
            started = time.monotonic()
            try:
                result.record = self._probe(slot.version, result.retries.append)
            except Exception as exc:  # the run classifies it, as if it had probed itself
                result.error = exc
            result.seconds = time.monotonic() - started
            with self._lock:
                if slot.dropped:
                    self._room.release()
                else:
                    slot.result = result
            slot.done.set()

    def take(self, partition_key: str, version: ObjectVersion) -> AheadResult | None:
        """The result for ``version``, waiting for its probe if it is under way; None when
        it was not scheduled (probe it yourself)."""
        with self._lock:
            slot = self._slots.get(partition_key)
            if slot is None or slot.dropped or slot.version != version:
                return None
            if not slot.started:
                # Not begun: the caller probes it now rather than wait for its turn.
                slot.dropped = True
                del self._slots[partition_key]
                return None
        slot.done.wait()
        with self._lock:
            if slot.dropped:
                return None
            slot.dropped = True
            self._slots.pop(partition_key, None)
            self._room.release()
            result, slot.result = slot.result, None
        return result

    def drop(self, partition_keys: Sequence[str]) -> None:
        """Forget ``partition_keys`` (their run is over): results not taken free their room."""
        with self._lock:
            for pk in partition_keys:
                slot = self._slots.pop(pk, None)
                if slot is None or slot.dropped:
                    continue
                slot.dropped = True
                if slot.result is not None:
                    slot.result = None
                    self._room.release()

    def close(self) -> None:
        """Stop probing: a probe under way finishes, nothing new starts."""
        with self._lock:
            self._stopped = True
            for slot in self._slots.values():
                slot.dropped = True
            self._slots.clear()
        for _ in self._threads:
            self._room.release()
