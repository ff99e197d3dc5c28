"""Do/undo steps, rolled back in reverse order on failure.

Every operation runs its changes as named steps.  A step that changed
something registers its undo; when a later step fails, the done steps are
undone in reverse order, undo errors are logged (never hide the first
error), and the first error is re-raised.

Test hook: when the request's ``fault`` (a front end takes it from the
environment variable ``OVSFAB_INJECT_FAULT``, see ovsfab/ops/context.py) names a
step, the plan raises :class:`~ovsfab.errors.InjectedFault` right after that
step was done, so tests can prove that every step is undone.  When it is
``kill:<step>``, the process sends itself SIGKILL at that point instead: no
undo, no ``finally``, no OVSDB or netlink session closed -- what a crash or
``kill -9`` leaves behind, so tests can prove that the next run converges
(tests/test_crash.py, docs/reliability.md).
"""

from __future__ import annotations

import logging
import os
import signal
from types import TracebackType
from typing import Callable, List, Optional, Tuple, Type, TypeVar

from ovsfab.errors import InjectedFault

LOG = logging.getLogger(__name__)
T = TypeVar("T")

FAULT_ENV = "OVSFAB_INJECT_FAULT"
#: Prefix of the hook's value that asks for SIGKILL instead of an exception.
KILL_PREFIX = "kill:"


class Plan:
    """A context manager collecting undo actions of done steps."""

    def __init__(self, operation: str, fault: Optional[str] = None) -> None:
        self.operation = operation
        self._undo: List[Tuple[str, Callable[[], object]]] = []
        self._fault = fault

    def step(self, name: str, do: Callable[[], T], undo: Optional[Callable[[], object]] = None) -> T:
        """Run ``do``; remember ``undo`` for rollback; honour the fault hook."""
        LOG.debug("%s: %s", self.operation, name)
        result = do()
        if undo is not None:
            self._undo.append((name, undo))
        self.checkpoint(name)
        return result

    def add_undo(self, name: str, undo: Callable[[], object]) -> None:
        """Register an undo for a change made outside ``step``."""
        self._undo.append((name, undo))

    def checkpoint(self, name: str) -> None:
        """Raise the injected fault (or die, ``kill:``) if the test hook names this step."""
        _inject(self._fault, name, self.operation)

    def rollback(self) -> None:
        """Undo every done step in reverse order; log (never raise) undo errors."""
        while self._undo:
            name, undo = self._undo.pop()
            try:
                LOG.debug("%s: undo %s", self.operation, name)
                undo()
            except Exception as exc:  # keep undoing: the first error is what matters
                LOG.error("%s: undo of %s failed: %s", self.operation, name, exc)

    def __enter__(self) -> "Plan":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        if exc is not None:
            self.rollback()
        else:
            self._undo.clear()


def fault_point(name: str, operation: str, fault: Optional[str]) -> None:
    """The test hook for code that is not a :class:`Plan` (reconcile's batch restore)."""
    _inject(fault, name, operation)


def _inject(fault: Optional[str], name: str, operation: str) -> None:
    """Act on the hook's value ``fault`` at step ``name``: raise, SIGKILL ourselves, or nothing."""
    if fault == name:
        raise InjectedFault(f"fault injected after step {name!r} of {operation}", "unset OVSFAB_INJECT_FAULT")
    if fault == KILL_PREFIX + name:
        LOG.debug("%s: killing this process after step %s (%s)", operation, name, FAULT_ENV)
        # SIGKILL, not exit(): nothing may run after this point, as in a real crash.
        os.kill(os.getpid(), signal.SIGKILL)
