"""Store several segments at once, finish them in order.

An S3 server spends most of a segment's upload verifying its SHA-256 and writing it; one
upload after the other leaves the network idle meanwhile. So up to ``width`` stores run at
once on worker threads, and their results are taken strictly in submission (seq) order:
whatever the caller does with a result — advance the dock's anchor, queue a receipt —
only ever happens for a stored prefix. The first error is re-raised by :meth:`submit` or
:meth:`drain`; :meth:`close` always waits for every started store to end, so nothing
writes into the store after the offload returned.

>>> p = StorePipeline(width=2)
>>> done = []
>>> for n in range(3):
...     p.submit(lambda n=n: n * n, done.append)
>>> p.drain(); p.close(); done
[0, 1, 4]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class StorePipeline:
    def __init__(self, width: int = 2, name: str = "put") -> None:
        self.width = width
        self._pool = ThreadPoolExecutor(width, thread_name_prefix=name)
        self._inflight: deque[tuple[Future[Any], Callable[[Any], None]]] = deque()

    def submit(self, work: Callable[[], Any], then: Callable[[Any], None]) -> None:
        """Start ``work``; once it and everything before it finished, ``then(result)``."""
        self._inflight.append((self._pool.submit(work), then))
        while len(self._inflight) > self.width:
            self._finish_oldest()

    def _finish_oldest(self) -> None:
        future, then = self._inflight.popleft()
        then(future.result())

    def drain(self) -> None:
        while self._inflight:
            self._finish_oldest()

    def close(self) -> None:
        self._inflight.clear()
        self._pool.shutdown(wait=True)
