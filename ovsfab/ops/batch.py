"""Work that runs beside the caller's: the one executor reconcile and apply share.

Batch operations overlap waits that do not depend on each other: dockerd
answering several inspects, packet sockets closing (each waits for an RCU
grace period), ovs-vswitchd removing ports while the caller re-creates
veths.  Both are standard :mod:`concurrent.futures` futures, so a failure in
the background is raised where its result is asked for.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, List, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Timed:
    """A call running in a thread of its own: ``result()`` joins it; ``seconds`` says how long it took."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.seconds = 0.0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ovsfab-background")

        def timed() -> Any:
            t0 = time.monotonic()
            try:
                return fn(*args)
            finally:
                self.seconds = time.monotonic() - t0

        self._future: "Future[Any]" = self._pool.submit(timed)
        self._pool.shutdown(wait=False)

    def result(self) -> Any:
        """What the call returned; raises what it raised."""
        return self._future.result()


def in_background(fn: Callable[..., Any], *args: Any) -> Timed:
    """Start ``fn(*args)`` beside the caller."""
    return Timed(fn, *args)


def map_parallel(fn: Callable[[T], R], items: Iterable[T], workers: int, name: str = "ovsfab") -> List[R]:
    """``[fn(x) for x in items]`` with up to ``workers`` at a time, in order; the first error is raised."""
    items = list(items)
    if len(items) <= 1 or workers <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix=name) as pool:
        return list(pool.map(fn, items))
