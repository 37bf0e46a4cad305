"""Request deadlines enforced by one watchdog task per event loop instead of a timer per request, and the
model call's concurrency cap.

``asyncio.timeout`` puts a timer handle on the event loop's heap when entered and cancels it on exit; the
firewall needs two per request (the request and the model call), about 15 µs of CPU together. Here a request
registers a :class:`Deadline` (a dictionary insert), and a watchdog task that wakes every ``tick`` seconds
cancels the tasks whose deadline has passed. A deadline therefore fires up to ``tick`` late (50 ms against
timeouts of seconds). The watchdog exits when no deadline is live and is started again by the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

__all__ = ["ConcurrencyCap", "Deadline", "Deadlines"]


class Deadline:
    """One task's deadline: ``when`` (``time.monotonic()`` seconds), ``reason`` (why it is set) and whether
    the watchdog has cancelled the task for it (``expired``: the reason it expired for)."""

    __slots__ = ("expired", "reason", "task", "when")

    def __init__(self, task: asyncio.Task[object], when: float, reason: str) -> None:
        self.task = task
        self.when = when
        self.reason = reason
        self.expired: str | None = None

    def timed_out(self) -> bool:
        """After a ``CancelledError``: whether it came from this deadline. If so the task's cancellation is
        withdrawn (the caller answers the timeout); otherwise the error is someone else's to propagate."""
        if self.expired is None:
            return False
        self.task.uncancel()
        return True


class Deadlines:
    """The live deadlines of one event loop's requests and the watchdog that enforces them."""

    def __init__(self, tick_s: float = 0.05) -> None:
        self.tick_s = tick_s
        self._live: dict[asyncio.Task[object], Deadline] = {}
        self._watchdog: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def enter(self, seconds: float, reason: str) -> Deadline:
        """Give the running task ``seconds`` from now; call :meth:`leave` with the result when it is done."""
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - ASGI apps always run inside a task
            raise RuntimeError("Deadlines.enter must be called from a task.")
        deadline = Deadline(task, time.monotonic() + seconds, reason)
        self._live[task] = deadline
        watchdog = self._watchdog
        if watchdog is None or watchdog.done() or self._loop is not task.get_loop():
            self._loop = task.get_loop()
            self._watchdog = self._loop.create_task(self._watch())
        return deadline

    def leave(self, deadline: Deadline) -> None:
        if self._live.get(deadline.task) is deadline:
            del self._live[deadline.task]

    async def _watch(self) -> None:
        while self._live:
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            for deadline in [d for d in self._live.values() if d.when <= now and d.expired is None]:
                deadline.expired = deadline.reason
                deadline.task.cancel()


class ConcurrencyCap:
    """At most ``limit`` holders at once; the others wait in arrival order (``asyncio.Semaphore``'s rules).

    A plain counter decides the uncontended case (``try_acquire``): the semaphore's ``locked``, ``acquire``
    and ``release`` cost about six Python calls per request. A released slot passes straight to the oldest
    waiter, so a newcomer cannot overtake it.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_acquire(self) -> bool:
        if self.held < self.limit and not self._waiters:
            self.held += 1
            return True
        return False

    async def acquire(self) -> None:
        """Wait for a slot; bound the wait from outside (``asyncio.timeout``), a cancelled wait holds none."""
        if self.try_acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot arrived as the wait was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the waiter: ``held`` is unchanged
                return
        self.held -= 1
