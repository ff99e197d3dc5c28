"""The rtnetlink socket ovsfab talks to the kernel through: pyroute2 encodes and decodes, no event loop.

pyroute2 0.9's IPRoute runs every request through an asyncio loop: 1-3 ms of
Python per request, ~4 ms to create one, and an event-loop turn per message
of a dump.  Attaching needs a handful of requests per container, and show
dumps every link of the host, so that overhead *was* the cost.  Here a
request is an encode (pyroute2's public message classes), one ``send`` and
one ``recv`` (~0.1 ms); several requests can share one ``send``
(:meth:`Rtnl.many`).  The socket joins no multicast group: it never queues
events nobody reads.

Two things a bare socket must do itself:

* **Receive timeouts.** A reply that never comes (a kernel bug, a namespace
  torn down under us) must not hang the command: every ``recv`` has a
  deadline (:data:`RECV_TIMEOUT`) and ETIMEDOUT is raised past it.
* **ENOBUFS.** The kernel drops a reply (and reports ENOBUFS once) when the
  socket's receive queue is full.  Requests in one ``send`` are handled
  before we read anything, so their acks queue up together: sends are cut
  into batches of :data:`MAX_BATCH` and the buffer is enlarged.  If replies
  are dropped anyway, a dump (a read) is asked again; for changes the
  outcome of the unanswered requests is unknown and ENOBUFS is raised.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from typing import Any, Dict, List, Sequence, Tuple

#: rtnetlink / netlink constants (linux/netlink.h, linux/rtnetlink.h).
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_REPLACE = 0x100
NLM_F_APPEND = 0x800
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_GETNSID = 90
RTEXT_FILTER_SKIP_STATS = 1 << 3
SO_RCVBUFFORCE = 33  # asm-generic/socket.h; the socket module does not name it
_NLMSGHDR = struct.Struct("=IHHII")
_ERRNO = struct.Struct("=i")

#: Seconds a ``recv`` may wait for the kernel's next reply.
RECV_TIMEOUT = 10.0
#: Requests per ``send``: their acks (~0.5-1 KiB of buffer each) must fit the receive queue.
MAX_BATCH = 64
#: Receive buffer asked for (root may exceed net.core.rmem_max).
RCVBUF = 1 << 20
#: Times a dump is asked again after ENOBUFS or an interrupted (NLM_F_DUMP_INTR) dump.
DUMP_RETRIES = 3

Request = Tuple[Any, int, int]


class Rtnl:
    """A bare NETLINK_ROUTE socket in the namespace it was created in."""

    def __init__(self, timeout: float = RECV_TIMEOUT) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        try:
            # Errors come back without the request echoed in them.
            self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            except OSError:  # not root (CAP_NET_ADMIN): as much as rmem_max allows
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            self.sock.settimeout(timeout)
            self.sock.bind((0, 0))
        except OSError:
            self.sock.close()
            raise
        self.timeout = timeout
        self.seq = 0

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def __enter__(self) -> "Rtnl":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def many(self, requests: Sequence[Request]) -> List[Tuple[int, List[Any]]]:
        """Send ``(message, type, flags)`` requests, :data:`MAX_BATCH` per ``send``.

        The kernel handles them in order.  Returns ``(errno, replies)`` for
        each (errno 0: done); a failed request does not stop the ones after
        it.  Raises OSError(ENOBUFS) if the kernel dropped replies, and
        OSError(ETIMEDOUT) if it did not answer within the timeout.
        """
        out: List[Tuple[int, List[Any]]] = []
        for start in range(0, len(requests), MAX_BATCH):
            out += self._batch(requests[start:start + MAX_BATCH])
        return out

    def one(self, msg: Any, mtype: int, flags: int = NLM_F_REQUEST) -> List[Any]:
        """One request; raises OSError(errno) if the kernel refused it."""
        code, replies = self.many([(msg, mtype, flags | NLM_F_REQUEST)])[0]
        if code:
            raise OSError(code, os.strerror(code))
        return replies

    def dump(self, msg: Any, mtype: int) -> List[Any]:
        """Every reply of a dump request (e.g. RTM_GETLINK), asked again if it was cut short."""
        for attempt in range(DUMP_RETRIES + 1):
            try:
                code, replies = self._batch([(msg, mtype, NLM_F_REQUEST | NLM_F_DUMP)], restartable=True)[0]
            except _Restart:
                if attempt == DUMP_RETRIES:
                    raise OSError(errno.EAGAIN, "the kernel's dump kept changing under us") from None
                continue
            if code:
                raise OSError(code, os.strerror(code))
            return replies
        raise AssertionError("unreachable")

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(1 << 16)
        except socket.timeout:
            raise OSError(errno.ETIMEDOUT, f"the kernel did not answer within {self.timeout:g} s") from None

    def _batch(self, requests: Sequence[Request], restartable: bool = False) -> List[Tuple[int, List[Any]]]:
        seqs: Dict[int, int] = {}
        chunks = []
        for i, (msg, mtype, flags) in enumerate(requests):
            self.seq = (self.seq + 1) & 0xFFFFFFFF or 1
            hdr = msg["header"]
            # A dump ends with NLMSG_DONE and is never acknowledged.
            ack = 0 if flags & NLM_F_DUMP == NLM_F_DUMP else NLM_F_ACK
            hdr["type"], hdr["flags"], hdr["sequence_number"], hdr["pid"] = mtype, flags | ack, self.seq, 0
            msg.encode()
            chunks.append(msg.data)
            seqs[self.seq] = i
        self.sock.send(b"".join(chunks))
        out: List[Tuple[int, List[Any]]] = [(0, []) for _ in requests]
        pending = set(seqs)
        interrupted = False
        while pending:
            try:
                data = self._recv()
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                if restartable:
                    self._drain(pending)
                    raise _Restart() from None
                raise OSError(errno.ENOBUFS, f"the kernel dropped replies to {len(pending)} of "
                                             f"{len(requests)} requests; their outcome is unknown") from None
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                length, mtype, flags, seq, _pid = _NLMSGHDR.unpack_from(data, off)
                if length < _NLMSGHDR.size:
                    break
                i = seqs.get(seq)
                if i is not None:
                    interrupted = interrupted or bool(flags & NLM_F_DUMP_INTR)
                    if mtype in (NLMSG_ERROR, NLMSG_DONE):
                        # An ack (or refusal), or the end of a dump (no ack follows it).
                        code = 0
                        if length >= _NLMSGHDR.size + _ERRNO.size:
                            code = -_ERRNO.unpack_from(data, off + _NLMSGHDR.size)[0]
                        out[i] = (code, out[i][1])
                        pending.discard(seq)
                    else:
                        reply = type(requests[i][0])(data[off:off + length])
                        reply.decode()
                        out[i][1].append(reply)
                off += (length + 3) & ~3
        if interrupted and restartable:
            raise _Restart()
        return out

    def _drain(self, pending: set) -> None:
        """Read what is left of a cut-short exchange, so the next one starts clean."""
        self.sock.settimeout(0.2)
        try:
            while pending:
                data = self.sock.recv(1 << 16)
                off = 0
                while off + _NLMSGHDR.size <= len(data):
                    length, mtype, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, off)
                    if length < _NLMSGHDR.size:
                        break
                    if mtype in (NLMSG_ERROR, NLMSG_DONE):
                        pending.discard(seq)
                    off += (length + 3) & ~3
        except OSError:
            pass  # timeout or another ENOBUFS: sequence numbers keep stale replies apart anyway
        finally:
            self.sock.settimeout(self.timeout)


class _Restart(Exception):
    """A dump was cut short (ENOBUFS, NLM_F_DUMP_INTR): ask again."""


def netnsid(sock: Rtnl, pid: "int | None" = None, fd: "int | None" = None) -> "int | None":
    """The id ``sock``'s namespace gives the namespace of ``pid`` (or of the open file ``fd``).

    None when it has none (or the process is gone); ids are what
    IFLA_LINK_NETNSID of a veth refers to.
    """
    from pyroute2.netlink.rtnl.nsidmsg import nsidmsg  # noqa: PLC0415

    msg = nsidmsg()
    msg["attrs"] = [("NETNSA_PID", pid)] if pid is not None else [("NETNSA_FD", fd)]
    try:
        replies = sock.one(msg, RTM_GETNSID)
    except OSError:
        return None
    nsid = replies[0].get_attr("NETNSA_NSID") if replies else None
    if nsid is None:
        return None
    nsid = int(nsid)
    return nsid - (1 << 32) if nsid >= 1 << 31 else nsid  # NETNSA_NSID_NOT_ASSIGNED is -1


#: Longest interface name + NUL (linux/if.h): no link can have a longer one.
IFNAMSIZ = 16


def get_link(sock: Rtnl, name: str) -> "Any | None":
    """The RTM_NEWLINK message of the link ``name`` in ``sock``'s namespace, or None if there is none.

    One request (no dump), statistics left out (they are most of the reply,
    and decoding them is the cost).  Other kernel refusals raise OSError.
    """
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: PLC0415

    if not name or len(name.encode()) >= IFNAMSIZ:
        return None  # the kernel would say ERANGE
    msg = ifinfmsg()
    msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]
    try:
        replies = sock.one(msg, RTM_GETLINK)
    except OSError as exc:
        if exc.errno in (errno.ENODEV, errno.ENOENT):
            return None
        raise
    return replies[0] if replies else None


def link_kind(msg: Any) -> "str | None":
    """IFLA_INFO_KIND of a link message (``bridge``, ``veth``, ``openvswitch``, ...), None for none."""
    info = msg.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None
