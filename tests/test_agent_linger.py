"""Group commit during a burst: the agent waits a moment for more attaches only once a burst is on.

Pure logic of ``ControlServer.serve_pending`` (which requests form one
group), on a real listening socket and intake thread; running the groups is
replaced by a recorder (the transaction itself is tested with OVS in
tests/test_fastpath.py).  Adds ~1.5 s to the suite.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any, Dict, List

import pytest

from ovsfab.agent import server as srv
from ovsfab.agent.intake import send_reply
from ovsfab.agent.protocol import PROTOCOL, netns_id


class Recorder(srv.ControlServer):
    """Records the size of every group it would commit (and of each request run alone), and answers each."""

    def __init__(self, path: str) -> None:
        super().__init__(lambda: None, path)
        self.groups: List[int] = []

    def _add(self, groups: Dict[str, Any], key: str, conn: Any, req: Dict[str, Any], sync: bool = False) -> None:
        groups.setdefault(key, srv._Group()).conns.append(conn)  # noqa: SLF001 - no attach is run

    def _commit(self, group: Any) -> None:
        self.groups.append(len(group.conns))
        for conn in group.conns:
            send_reply(conn, {"v": PROTOCOL, "declined": "recorded"})

    def handle(self, req: Dict[str, Any]) -> Dict[str, Any]:
        self.groups.append(1)
        return {"v": PROTOCOL, "declined": "recorded"}


def attach_request(i: int) -> bytes:
    return json.dumps({"v": PROTOCOL, "op": "attach", "netns": netns_id(),
                       "params": {"bridge": "br0", "container": f"netns:x{i}", "addresses": []},
                       "context": {"db": "unix:/nowhere", "backend": "ovs"}}).encode()


def send(path: str, i: int, replies: List[bytes]) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect(path)
        s.sendall(attach_request(i))
        s.shutdown(socket.SHUT_WR)
        replies.append(s.recv(4096))


def wait_ready(server: srv.ControlServer, n: int) -> None:
    """Until the intake holds n complete requests."""
    assert server.intake is not None
    deadline = time.monotonic() + 10
    while server.intake.ready.qsize() < n:
        assert time.monotonic() < deadline, "the intake never completed the requests"
        time.sleep(0.005)


@pytest.fixture
def server(tmp_path, monkeypatch):
    if not hasattr(socket, "SO_PEERCRED"):
        pytest.skip("needs SO_PEERCRED")
    # Generous windows, so that a loaded machine cannot make the test flaky:
    # the late requests below come 0.3 s after the first.
    monkeypatch.setattr(srv, "LINGER_QUIET", 1.0)
    monkeypatch.setattr(srv, "LINGER_MAX", 3.0)
    s = Recorder(str(tmp_path / "agent.sock"))
    s.open()
    yield s
    s.close()


def late(path: str, first: int, count: int, replies: List[bytes]) -> List[threading.Thread]:
    """``count`` clients that connect 0.3 s from now."""
    def run(i: int) -> None:
        time.sleep(0.3)
        send(path, i, replies)

    threads = [threading.Thread(target=run, args=(first + k,)) for k in range(count)]
    for t in threads:
        t.start()
    return threads


def test_a_lone_attach_is_served_at_once_and_starts_no_burst(server):
    replies: List[bytes] = []
    first = threading.Thread(target=send, args=(server.path, 0, replies))
    first.start()
    wait_ready(server, 1)
    threads = late(server.path, 1, 2, replies)
    assert server.serve_pending() == 1  # not waiting for the two that come 0.3 s later
    assert server.groups == [1]
    first.join(10)
    wait_ready(server, 2)
    assert server.serve_pending() == 2
    for t in threads:
        t.join(10)
    assert server.groups == [1, 2] and len(replies) == 3


def test_after_a_group_the_next_one_waits_for_the_rest_of_the_burst(server):
    replies: List[bytes] = []
    firsts = [threading.Thread(target=send, args=(server.path, i, replies)) for i in range(2)]
    for t in firsts:
        t.start()
    wait_ready(server, 2)
    assert server.serve_pending() == 2  # a group of two: a burst is on
    assert server.groups == [2]
    one = threading.Thread(target=send, args=(server.path, 2, replies))
    one.start()
    wait_ready(server, 1)
    threads = late(server.path, 3, 3, replies)
    # The one waiting request is not served alone: the three that arrive
    # within LINGER_QUIET of each other join it.
    assert server.serve_pending() == 4
    assert server.groups == [2, 4]
    for t in [*firsts, one, *threads]:
        t.join(10)
    assert len(replies) == 6 and all(b"recorded" in r for r in replies)
