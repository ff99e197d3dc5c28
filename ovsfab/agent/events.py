"""Docker events, read in a thread and handed to the agent's main loop.

The docker SDK's event stream is a blocking HTTP read, so it gets its own
thread; everything else (OVSDB, netlink) stays in the main thread, because
python-ovs is not thread-safe.  The thread only puts items on a queue and
pokes a pipe the main loop polls, so the main loop sleeps in one ``poll()``
on the IDL socket, this pipe and a timer -- no busy loop, ~0 CPU when idle.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass
from typing import Any, Optional


from ovsfab import defaults

LOG = logging.getLogger(__name__)

#: Container events that can change what an attachment needs.  ``die``
#: covers stop and kill; ``restart`` follows ``start`` after docker restart.
EVENTS = ("start", "restart", "die", "destroy", "unpause")


@dataclass(frozen=True)
class Item:
    """One thing for the main loop: a container event, or a connection change."""

    kind: str  # "event" | "connected" | "lost"
    container_id: str = ""
    action: str = ""
    detail: str = ""


class Waker:
    """A self-pipe: any thread (or a signal handler) wakes the main loop's poll()."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def wake(self) -> None:
        try:
            os.write(self.write_fd, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (a wake-up is pending anyway) or closed at exit

    def drain(self) -> None:
        try:
            while os.read(self.read_fd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class DockerEvents(threading.Thread):
    """Follows dockerd's container events; reconnects with backoff when dockerd goes away.

    Puts ``Item("connected")`` each time the stream (re)opens -- the main loop
    then reconciles everything, since events may have been missed -- and
    ``Item("lost")`` when it breaks.
    """

    def __init__(self, out: "queue.Queue[Item]", waker: Waker, backoff_max: float = 2.0) -> None:
        super().__init__(name="docker-events", daemon=True)
        self.out = out
        self.waker = waker
        self.backoff_max = backoff_max
        self._halt = threading.Event()
        self._stream: Any = None
        self._lock = threading.Lock()

    def _put(self, item: Item) -> None:
        self.out.put(item)
        self.waker.wake()

    def stop(self) -> None:
        """Ask the thread to end; closes the stream to unblock its read."""
        self._halt.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # closing from another thread races the read; either way it ends
                pass

    def run(self) -> None:
        import docker  # noqa: PLC0415 - lazy: only the agent needs the event stream

        base_url = defaults.docker_host(os.environ)
        delay = 0.1
        connected_once = False
        live = False  # say "lost" once per outage, not once per retry
        while not self._halt.is_set():
            client: Optional[Any] = None
            try:
                # timeout=None: the stream is idle for as long as nothing happens.
                client = docker.APIClient(base_url=base_url, timeout=10)
                stream = client.events(decode=True, filters={"type": "container", "event": list(EVENTS)})
                with self._lock:
                    self._stream = stream
                if self._halt.is_set():
                    break
                self._put(Item("connected", detail="reconnected" if connected_once else "connected"))
                connected_once = live = True
                delay = 0.1
                for ev in stream:
                    if self._halt.is_set():
                        break
                    cid = ev.get("id") or (ev.get("Actor") or {}).get("ID") or ""
                    action = ev.get("Action") or ev.get("status") or ""
                    if cid:
                        self._put(Item("event", cid, action))
                # The stream ended: dockerd closed it (shutting down).
                if not self._halt.is_set() and live:
                    self._put(Item("lost", detail="event stream closed"))
                    live = False
            except Exception as exc:  # dockerd unreachable / restarting: retry with backoff
                if self._halt.is_set():
                    break
                LOG.debug("docker events: %s: %s", type(exc).__name__, exc)
                if live:
                    self._put(Item("lost", detail=type(exc).__name__))
                    live = False
            finally:
                with self._lock:
                    self._stream = None
                if client is not None:
                    try:
                        client.close()
                    except Exception:
                        pass
            if self._halt.wait(delay):
                break
            delay = min(self.backoff_max, delay * 2)
