"""A single-threaded python-ovs IDL session with deadlines everywhere.

python-ovs has sharp edges that cost seconds when ignored:

* ``Poller.block()`` sleeps until the socket has something or the timer
  fires.  The condition we wait for must be checked after ``idl.run()`` and
  *before* ``block()``; otherwise a reply already processed by ``run()`` is
  only noticed at the next timeout.
* ``Transaction.commit_block()`` and ``Connection.transact_block()`` have no
  deadline; a dead ovs-vswitchd would hang them forever.  We loop ourselves.
* A SUCCESS commit is only written to the database; ovs-vswitchd applies it
  later.  We increment ``Open_vSwitch.next_cfg`` in every change and wait for
  ``cur_cfg`` to reach it before reading ``ofport``/``error``.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar

import ovs.db.idl
import ovs.jsonrpc
import ovs.poller
import ovs.stream

from ovsfab import defaults
from ovsfab.backends.ovs import python_ovs_private
from ovsfab.errors import OperationFailed, PermissionDenied, Unavailable

LOG = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
DB_NAME = "Open_vSwitch"


#: Extra time a batch transaction may take per port it adds or removes.  On
#: the netdev datapath ovs-vswitchd spends ~13 ms per port it removes and, at
#: 1,000 ports on a bridge, adding 250 more took 9.7 s on this 2-core machine
#: under load (docs/performance.md, "At 1,000 ports"): a fixed 10 s made
#: ``apply`` of 1,000 attachments fail although vswitchd was only slow.
BATCH_SECONDS_PER_PORT = 0.05


def batch_timeout(base: float, ports: int) -> float:
    """The deadline of one transaction that adds or removes ``ports`` ports."""
    return base + BATCH_SECONDS_PER_PORT * max(0, ports)


def default_remote() -> str:
    """``OVSFAB_DB``, else ``unix:$OVS_RUNDIR/db.sock``, else the standard socket (this process's environment)."""
    return defaults.default_db(os.environ)


def _quiet_vlog() -> None:
    # python-ovs logs reconnect chatter through its own vlog module, which
    # goes to the root logger; keep it out of the user's terminal.
    logging.getLogger("reconnect").setLevel(logging.WARNING)
    logging.getLogger("jsonrpc").setLevel(logging.WARNING)
    logging.getLogger("poller").setLevel(logging.WARNING)


def _remaining_ms(deadline: float) -> int:
    return max(0, int((deadline - time.monotonic()) * 1000))


#: What to do when a database cannot be reached, or the server lacks it.
_HINTS: Dict[str, Tuple[str, str]] = {
    DB_NAME: ("start Open vSwitch (ovs-ctl start / systemctl start openvswitch-switch) or pass --db",
              "is this an Open_vSwitch database? pass --db"),
    "OVN_Northbound": ("start it with ovsfab ovn central on the central host",
                       "point ovsfab at the OVN central (ovsfab ovn join CENTRAL_IP)"),
    "OVN_Southbound": ("start it with ovsfab ovn central on the central host",
                       "point ovsfab at the OVN central (ovsfab ovn join CENTRAL_IP)"),
}


def _unreachable(remote: str, err: int, db: str = DB_NAME) -> Unavailable:
    if err == errno.EACCES:
        return PermissionDenied(f"cannot open {db} at {remote}: permission denied", "run ovsfab as root")
    return Unavailable(f"cannot reach {db} at {remote}: {os.strerror(err)}", _HINTS.get(db, _HINTS[DB_NAME])[0])


def fetch_schema(remote: str, deadline: float, db: str = DB_NAME) -> dict:
    """Fetch database ``db``'s schema from the server itself (no version skew)."""
    # The first JSON-RPC of every session (and the ovn commands' probes):
    # from here on python-ovs parses with fastjson (see python_ovs_private).
    python_ovs_private.use_fast_parser()
    err, stream = ovs.stream.Stream.open_block(ovs.stream.Stream.open(remote), _remaining_ms(deadline))
    if err or stream is None:
        raise _unreachable(remote, err or errno.ECONNREFUSED, db)
    rpc = ovs.jsonrpc.Connection(stream)
    try:
        request = ovs.jsonrpc.Message.create_request("get_schema", [db])
        err = rpc.send(request)
        if err:
            raise _unreachable(remote, err, db)
        while True:
            rpc.run()
            err, msg = rpc.recv()
            if msg is not None:
                if msg.type == ovs.jsonrpc.Message.T_REPLY and msg.id == request.id:
                    return msg.result
                if msg.type == ovs.jsonrpc.Message.T_ERROR:
                    raise Unavailable(f"the OVSDB server at {remote} has no {db} database",
                                      _HINTS.get(db, _HINTS[DB_NAME])[1])
                continue
            if err and err != errno.EAGAIN:
                raise _unreachable(remote, err, db)
            if time.monotonic() >= deadline:
                raise Unavailable(f"{db} at {remote} did not answer within the deadline",
                                  "check that its ovsdb-server is running and not overloaded")
            poller = ovs.poller.Poller()
            rpc.wait(poller)
            rpc.recv_wait(poller)
            poller.timer_wait(_remaining_ms(deadline))
            poller.block()
    finally:
        rpc.close()


class _NotifyingIdl(ovs.db.idl.Idl):
    """An Idl that passes its row notifications on (python-ovs's hook is a method)."""

    def __init__(self, remote: str, helper: ovs.db.idl.SchemaHelper, leader_only: bool = True) -> None:
        self.listeners: List[Callable[[str, object, object], None]] = []
        super().__init__(remote, helper, leader_only=leader_only)

    def notify(self, event, row, updates=None):  # noqa: ANN001 - python-ovs signature
        for listener in self.listeners:
            listener(event, row, updates)


class IdlSession:
    """One IDL connection, monitoring only the tables and columns asked for."""

    def __init__(self, remote: str, columns: Mapping[str, Sequence[str]],
                 timeout: float = DEFAULT_TIMEOUT,
                 listeners: Sequence[Callable[[str, object, object], None]] = (),
                 db: str = DB_NAME, leader_only: bool = True) -> None:
        """Connect to database ``db`` and sync; ``listeners`` see every row change, the initial sync included.

        A listed column the server's schema lacks is left out (older OVN
        schemas, e.g. Port_Binding.up before 21.03); a missing table is an error.
        ``leader_only=False`` lets a clustered database's follower answer.
        """
        _quiet_vlog()
        # An explicit choice, made here rather than at import: the schema and
        # the initial sync are the bulk of what an IDL parses.
        python_ovs_private.use_fast_parser()
        self.remote = remote
        self.timeout = timeout
        self.db = db
        deadline = time.monotonic() + timeout
        schema = fetch_schema(remote, deadline, db)
        helper = ovs.db.idl.SchemaHelper(schema_json=schema)
        for table, cols in columns.items():
            known = schema.get("tables", {}).get(table)
            if known is None:
                raise Unavailable(f"{db} at {remote} has no table {table}",
                                  f"is this an {db} database of a supported version?")
            helper.register_columns(table, [c for c in cols if c in known.get("columns", {})])
        self.idl = _NotifyingIdl(remote, helper, leader_only=leader_only)
        self.idl.listeners.extend(listeners)
        self.run_until(self.idl.has_ever_connected, deadline, f"the initial {db} sync")

    # -- waiting -------------------------------------------------------
    def run_until(self, condition: Callable[[], bool], deadline: float, what: str) -> None:
        """Process messages until ``condition()`` holds; raise at the deadline."""
        while True:
            self.idl.run()
            # Check after run() and before block(): see the module docstring.
            if condition():
                return
            if not python_ovs_private.session_alive(self.idl):
                raise Unavailable(f"lost the connection to OVSDB at {self.remote} while waiting for {what}")
            if time.monotonic() >= deadline:
                raise Unavailable(f"timed out waiting for {what} from OVSDB at {self.remote}",
                                  "check that ovsdb-server and ovs-vswitchd are running")
            poller = ovs.poller.Poller()
            self.idl.wait(poller)
            poller.timer_wait(_remaining_ms(deadline))
            poller.block()

    def table(self, name: str) -> Dict[object, object]:
        """The rows of a monitored table, by UUID."""
        return self.idl.tables[name].rows

    def root(self):  # -> ovs.db.idl.Row
        """The single Open_vSwitch row."""
        rows = list(self.table("Open_vSwitch").values())
        if not rows:
            raise OperationFailed("the OVSDB database has no Open_vSwitch row",
                                  "initialise it with ovs-ctl start (or ovs-vsctl --no-wait init)")
        return rows[0]

    # -- transactions --------------------------------------------------
    def transact(self, build: Callable[[ovs.db.idl.Transaction], T],
                 wait_applied: bool = True, comment: str = "ovsfab",
                 timeout: Optional[float] = None) -> Tuple[T, bool]:
        """Build and commit one transaction; rebuild it on TRY_AGAIN.

        ``build`` gets a fresh Transaction on each try and reads the current
        IDL state, so a concurrent change by another client is seen on the
        retry.  Returns ``(build's result, changed)``; when ``wait_applied``,
        returns only after ovs-vswitchd has applied the change.  ``timeout``
        (default: the session's) bounds the commit and the wait together; a
        batch of many ports passes a longer one (see :func:`batch_timeout`).
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            txn = ovs.db.idl.Transaction(self.idl)
            txn.add_comment(comment)
            try:
                result = build(txn)
            except BaseException:
                txn.abort()
                raise
            if wait_applied:
                self.root().increment("next_cfg")
            status = self._commit(txn, deadline)
            if status == ovs.db.idl.Transaction.TRY_AGAIN:
                LOG.debug("OVSDB transaction raced another client; retrying")
                self.idl.run()
                continue
            if status == ovs.db.idl.Transaction.UNCHANGED:
                return result, False
            if status != ovs.db.idl.Transaction.SUCCESS:
                raise OperationFailed(f"OVSDB refused the change: {txn.get_error()}")
            if wait_applied:
                target = txn.get_increment_new_value()
                self.wait_applied(target, deadline)
            return result, True

    def _commit(self, txn: ovs.db.idl.Transaction, deadline: float) -> int:
        Txn = ovs.db.idl.Transaction
        while True:
            status = txn.commit()
            if status != Txn.INCOMPLETE:
                return status
            self.idl.run()
            status = txn.commit()
            if status != Txn.INCOMPLETE:
                return status
            if time.monotonic() >= deadline:
                txn.abort()
                raise Unavailable(f"OVSDB at {self.remote} did not confirm the change in time",
                                  "check that ovsdb-server is running; nothing was changed unless it applies later")
            poller = ovs.poller.Poller()
            self.idl.wait(poller)
            txn.wait(poller)
            poller.timer_wait(_remaining_ms(deadline))
            poller.block()

    def wait_applied(self, next_cfg: int, deadline: float) -> None:
        """Wait until ovs-vswitchd reports ``cur_cfg >= next_cfg``."""
        def applied() -> bool:
            cur = self.root().cur_cfg
            return isinstance(cur, int) and cur >= next_cfg

        try:
            self.run_until(applied, deadline, "ovs-vswitchd to apply the change")
        except Unavailable as exc:
            raise Unavailable(
                "ovs-vswitchd did not apply the change in time",
                "check that ovs-vswitchd is running (ovs-ctl status) and see its log",
            ) from exc

    def close(self) -> None:
        self.idl.close()

