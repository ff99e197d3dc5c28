"""plumbing/dockerapi.py: the one Engine API GET without the SDK, against a real dockerd and a scripted peer."""
from __future__ import annotations

import json
import socket
import threading

import pytest

import testbed as tb

from ovsfab.plumbing import dockerapi


def serve_once(path: str, answer: bytes) -> threading.Thread:
    """A unix-socket peer that reads one request and sends ``answer`` (then closes)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def run() -> None:
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(answer)
        conn.close()
        srv.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.unprivileged
def test_chunked_and_plain_answers_and_errors(tmp_path):
    body = json.dumps({"Id": "abc", "State": {"Pid": 42}}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:7], body[7:])) + b"0\r\n\r\n"
    cases = [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked, (200, {"Id": "abc", "State": {"Pid": 42}})),
        (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body, (200, {"Id": "abc", "State": {"Pid": 42}})),
        (b'HTTP/1.1 404 Not Found\r\n\r\n{"message": "No such container: x"}', (404, {"message": "No such container: x"})),
    ]
    for i, (answer, want) in enumerate(cases):
        path = str(tmp_path / f"d{i}.sock")
        t = serve_once(path, answer)
        assert dockerapi.get_json(f"unix://{path}", "/containers/x/json") == want
        t.join(5)
    for i, answer in enumerate((b"garbage", b"HTTP/1.1 200 OK\r\n\r\nnot json")):
        path = str(tmp_path / f"bad{i}.sock")
        serve_once(path, answer)
        with pytest.raises(dockerapi.ApiError):
            dockerapi.get_json(f"unix://{path}", "/containers/x/json")
    with pytest.raises(OSError):
        dockerapi.get_json(f"unix://{tmp_path}/none.sock", "/containers/x/json")
    with pytest.raises(dockerapi.ApiError):
        dockerapi.get_json("tcp://127.0.0.1:2375", "/containers/x/json")


@pytest.mark.docker
def test_the_same_answer_as_the_sdk(docker_image):
    """Against the real dockerd: what an attach reads (Id, Name, State.Pid/Running) equals the SDK's."""
    import docker

    name = tb.unique("api")
    tb.docker("run", "-d", "--name", name, "--network", "none", docker_image, "sleep", "1000000")
    try:
        status, raw = dockerapi.get_json("unix:///var/run/docker.sock", f"/containers/{name}/json")
        sdk = docker.APIClient(base_url="unix:///var/run/docker.sock").inspect_container(name)
        assert status == 200
        assert (raw["Id"], raw["Name"], raw["State"]["Pid"], raw["State"]["Running"]) == \
            (sdk["Id"], sdk["Name"], sdk["State"]["Pid"], sdk["State"]["Running"])
        assert dockerapi.get_json("unix:///var/run/docker.sock", f"/containers/{name}-no/json")[0] == 404
    finally:
        tb.docker("rm", "-f", name, check=False)


@pytest.mark.unprivileged
def test_an_unreachable_dockerd_is_said_in_words(tmp_path):
    """No socket, nobody listening, SDK or not: the one line says which, not an exception's class name."""
    from ovsfab.errors import Unavailable
    from ovsfab.plumbing import containers

    missing = f"unix://{tmp_path}/nope.sock"
    with pytest.raises(Unavailable) as exc:
        containers._inspect_docker("web", missing)
    assert exc.value.message == f"cannot reach dockerd to look up 'web': no socket at {tmp_path}/nope.sock"

    dead = tmp_path / "dead.sock"  # a socket file nobody listens on any more
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(dead))
    s.close()
    with pytest.raises(Unavailable) as exc:
        containers._inspect_docker("web", f"unix://{dead}")
    assert exc.value.message.endswith(f"nothing listens at {dead}"), exc.value.message

    port = socket.socket()  # a TCP port that refuses: the SDK's path, its errors wrapped by requests
    port.bind(("127.0.0.1", 0))
    url = f"tcp://127.0.0.1:{port.getsockname()[1]}"
    port.close()
    with pytest.raises(Unavailable) as exc:
        containers._inspect_docker("web", url)
    assert exc.value.message.endswith(f"nothing listens at {url}"), exc.value.message
