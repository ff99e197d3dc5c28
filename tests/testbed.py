"""Real-component test bed for ovsfab.

Everything here drives real things: network namespaces, a private
``ovsdb-server`` + ``ovs-vswitchd`` per simulated host (netdev datapath, there
is no OVS kernel module), real Docker containers and real TCP traffic.  The
product is only ever driven through its CLI, as a subprocess run inside the
simulated host's network namespace; the state it leaves behind is checked with
independent oracles (``ip -j``, ``ovs-vsctl``), never with product code.

Nothing here touches the root network namespace except for creating and
deleting namespaces: test addresses only ever live inside namespaces.

Hand-verified before the product existed (Debian 12, OVS 3.1, kernel veth):
  * two named netns, each wired by hand with ``ip link add ... type veth`` to a
    private OVS netdev bridge (``ovs-vsctl add-br br0 -- set bridge br0
    datapath_type=netdev``; ``add-port br0 vhX``):
      - default veth offloads: ``ping`` works, but ``tcp_transfer`` returns
        False after its timeout (even the SYN is dropped: TX checksum offload
        leaves partial checksums that the netdev datapath forwards as-is);
      - after ``ethtool -K eth1 tx off`` in both namespaces: ``tcp_transfer``
        moves 4 MB over IPv4 and IPv6 in ~0.3 s with matching sha256.
    ``tests/test_testbed.py`` re-checks both outcomes on every run, so the
    oracle itself is tested.
  * starting an OvsHost (netns + ovsdb-server + ovs-vswitchd + init) takes
    ~0.1 s; deleting the last netdev bridge also removes the ``ovs-netdev``
    tap, so "no residue" snapshots can compare whole link lists.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Tuple, Union

PYTHON = sys.executable
REPO = Path(__file__).resolve().parent.parent
SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
IMAGE = "ovsfab-test:busybox"
RUN_ID = f"{os.getpid()}"
_counter = itertools.count()

# Env vars that must never leak from the developer's shell into the product.
_SCRUB_ENV = ("OVSFAB_DB", "OVSFAB_INJECT_FAULT", "OVS_RUNDIR", "OVS_DBDIR")


def unique(prefix: str = "t") -> str:
    """Short unique name (fits IFNAMSIZ-ish limits for netns names too)."""
    return f"ovsfab-{prefix}{RUN_ID}-{next(_counter)}"


def run(cmd: Sequence[str], check: bool = True, timeout: float = 30,
        env: Optional[dict] = None, input: Optional[str] = None
        ) -> subprocess.CompletedProcess:
    cp = subprocess.run(list(cmd), capture_output=True, text=True,
                        timeout=timeout, env=env, input=input)
    if check and cp.returncode != 0:
        raise RuntimeError(
            f"command failed ({cp.returncode}): {' '.join(cmd)}\n"
            f"stdout: {cp.stdout}\nstderr: {cp.stderr}")
    return cp


def clean_env(extra: Optional[dict] = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB_ENV}
    if extra:
        env.update(extra)
    return env


# --------------------------------------------------------------------------
# Namespace addressing: a "ns" argument is one of
#   * a named netns (str without '/'),
#   * a path to a netns file (/proc/PID/ns/net, /run/netns/X),
#   * an object with a ``netns_path`` attribute (Container, NetnsTarget, ...).
# --------------------------------------------------------------------------
NsLike = Union[str, os.PathLike, object]


def ns_prefix(ns: NsLike) -> list:
    if hasattr(ns, "netns_path"):
        ns = ns.netns_path
    ns = os.fspath(ns)
    if "/" in ns:
        return ["nsenter", f"--net={ns}"]
    return ["ip", "netns", "exec", ns]


def ns_run(ns: NsLike, *cmd: str, check: bool = True, timeout: float = 30,
           env: Optional[dict] = None) -> subprocess.CompletedProcess:
    return run(ns_prefix(ns) + list(cmd), check=check, timeout=timeout, env=env)


def links_in(ns: NsLike) -> dict:
    """{ifname: ip -j -d link record} in a namespace."""
    out = ns_run(ns, "ip", "-j", "-d", "link", "show").stdout
    return {l["ifname"]: l for l in json.loads(out or "[]")}


def link_kind(rec: dict) -> str:
    return (rec.get("linkinfo") or {}).get("info_kind", "")


def addrs_in(ns: NsLike, include_link_local: bool = False) -> dict:
    """{ifname: ["10.1.0.10/24", "2001:db8::10/64", ...]}."""
    out = ns_run(ns, "ip", "-j", "addr", "show").stdout
    res = {}
    for l in json.loads(out or "[]"):
        lst = []
        for a in l.get("addr_info", []):
            if not include_link_local and a.get("scope") == "link":
                continue
            lst.append(f"{a['local']}/{a['prefixlen']}")
        res[l["ifname"]] = lst
    return res


def routes_in(ns: NsLike, v6: bool = False) -> list:
    fam = "-6" if v6 else "-4"
    out = ns_run(ns, "ip", "-j", fam, "route", "show").stdout
    return json.loads(out or "[]")


def default_route(ns: NsLike, v6: bool = False) -> Optional[dict]:
    for r in routes_in(ns, v6):
        if r.get("dst") == "default":
            return r
    return None


def wait_dad(ns: NsLike, timeout: float = 5.0) -> None:
    """Wait until no IPv6 address is tentative in ns (DAD done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = ns_run(ns, "ip", "-6", "addr", "show", "tentative").stdout
        if not out.strip():
            return
        time.sleep(0.1)


def ping(ns: NsLike, addr: str, count: int = 2, v6: Optional[bool] = None,
         deadline: float = 6) -> bool:
    """True if `count` echo replies arrive within `deadline` seconds.

    Uses the host's iputils ping entered into the namespace (no dependency on
    the tools inside a container image).
    """
    if v6 is None:
        v6 = ":" in addr
    cmd = ["ping", "-6" if v6 else "-4", "-n", "-c", str(count), "-i", "0.2",
           "-w", str(int(deadline)), addr]
    cp = ns_run(ns, *cmd, check=False, timeout=deadline + 10)
    return cp.returncode == 0


_TCP_SERVER = r"""
import hashlib, socket, sys
fam = socket.AF_INET6 if sys.argv[1] == '6' else socket.AF_INET
port, tmo = int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('::' if fam == socket.AF_INET6 else '0.0.0.0', port))
s.listen(1)
s.settimeout(tmo)
print('ready', flush=True)
try:
    c, _ = s.accept()
    c.settimeout(tmo)
    h, n = hashlib.sha256(), 0
    while True:
        d = c.recv(1 << 16)
        if not d:
            break
        h.update(d)
        n += len(d)
    print(n, h.hexdigest(), flush=True)
except OSError as e:
    print('error', type(e).__name__, e, flush=True)
    sys.exit(1)
"""

_TCP_CLIENT = r"""
import hashlib, os, socket, sys
addr, port, n, tmo = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
data = os.urandom(n)
try:
    c = socket.create_connection((addr, port), timeout=tmo)
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    c.recv(1)  # wait for the server to close: all data consumed
    c.close()
except OSError as e:
    print('error', type(e).__name__, e, flush=True)
    sys.exit(1)
print(n, hashlib.sha256(data).hexdigest(), flush=True)
"""


def tcp_transfer(src_ns: NsLike, dst_ns: NsLike, dst_addr: str,
                 nbytes: int = 4_000_000, timeout: float = 20,
                 port: int = 5201) -> bool:
    """Really move `nbytes` random bytes over TCP from src_ns to dst_ns.

    True iff the server received exactly nbytes with the same sha256 as the
    client sent, within `timeout` seconds.  Never raises on network failure
    (stalls, refused connections, timeouts): returns False and prints why.
    """
    v6 = ":" in dst_addr
    per_op = max(2.0, timeout / 2)
    srv = subprocess.Popen(
        ns_prefix(dst_ns) + [PYTHON, "-c", _TCP_SERVER, "6" if v6 else "4",
                             str(port), str(per_op)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    try:
        r, _, _ = select.select([srv.stdout], [], [], 10)
        line = srv.stdout.readline() if r else ""
        if line.strip() != "ready":
            print(f"tcp_transfer: server did not start: {line!r} "
                  f"{srv.stderr.read() if srv.poll() is not None else ''}",
                  file=sys.stderr)
            return False
        remaining = max(1.0, timeout - (time.monotonic() - t0))
        try:
            cli = subprocess.run(
                ns_prefix(src_ns) + [PYTHON, "-c", _TCP_CLIENT, dst_addr,
                                     str(port), str(nbytes), str(per_op)],
                capture_output=True, text=True, timeout=remaining)
        except subprocess.TimeoutExpired:
            print("tcp_transfer: client timed out", file=sys.stderr)
            return False
        if cli.returncode != 0:
            print(f"tcp_transfer: client failed: {cli.stdout.strip()!r} "
                  f"{cli.stderr.strip()!r}", file=sys.stderr)
            return False
        remaining = max(1.0, timeout - (time.monotonic() - t0))
        try:
            sout, serr = srv.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            print("tcp_transfer: server timed out", file=sys.stderr)
            return False
        ok = (cli.returncode == 0 and srv.returncode == 0
              and cli.stdout.split() == sout.split()
              and cli.stdout.split()[:1] == [str(nbytes)])
        if not ok:
            print(f"tcp_transfer failed: client rc={cli.returncode} "
                  f"{cli.stdout.strip()!r} {cli.stderr.strip()!r}; server "
                  f"rc={srv.returncode} {sout.strip()!r} {serr.strip()!r}",
                  file=sys.stderr)
        return ok
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()


# --------------------------------------------------------------------------
# OVSDB oracle helpers
# --------------------------------------------------------------------------
def _ovs_value(v):
    """Decode an OVSDB JSON datum into Python (map->dict, set->list)."""
    if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str):
        tag, val = v
        if tag == "map":
            return {k: _ovs_value(x) for k, x in val}
        if tag == "set":
            return [_ovs_value(x) for x in val]
        if tag in ("uuid", "named-uuid"):
            return val
    return v


def ovs_table(host: "OvsHost", table: str, columns: Iterable[str] = ()) -> list:
    cols = list(columns)
    args = ["--format=json", "--data=json"]
    if cols:
        args.append("--columns=" + ",".join(cols))
    out = host.vsctl(*args, "list", table).stdout
    doc = json.loads(out)
    return [dict(zip(doc["headings"], (_ovs_value(c) for c in row)))
            for row in doc["data"]]


def ovs_ports(host: "OvsHost") -> list:
    """Names of all rows in the Port table (all bridges)."""
    return sorted(r["name"] for r in ovs_table(host, "Port", ["name"]))


def ovs_interfaces(host: "OvsHost") -> list:
    return sorted(r["name"] for r in ovs_table(host, "Interface", ["name"]))


def ovs_bridges(host: "OvsHost") -> list:
    return sorted(r["name"] for r in ovs_table(host, "Bridge", ["name"]))


def ovs_row(host: "OvsHost", table: str, name: str) -> Optional[dict]:
    rows = [r for r in ovs_table(host, table) if r.get("name") == name]
    assert len(rows) <= 1, f"duplicate {table} rows named {name}: {rows}"
    return rows[0] if rows else None


def ovs_row_external_ids(host: "OvsHost", table: str, name: str) -> dict:
    row = ovs_row(host, table, name)
    assert row is not None, f"no {table} row named {name!r}"
    return row["external_ids"]


def ovs_port_for(host: "OvsHost", container_name: str = None,
                 ifname: str = "eth1", container_id: str = None) -> Optional[dict]:
    """Find the Port row that ovsfab tagged for this container/ifname."""
    hits = []
    for r in ovs_table(host, "Port"):
        e = r["external_ids"]
        if e.get("ovsfab-ifname", e.get("container_iface")) != ifname:
            continue
        if container_name is not None and e.get("ovsfab-container-name") != container_name:
            continue
        if container_id is not None and e.get("ovsfab-container-id") != container_id:
            continue
        hits.append(r)
    assert len(hits) <= 1, f"several ports for {container_name}/{ifname}: {hits}"
    return hits[0] if hits else None


def run_on_tty(cmd: Sequence[str], env: dict, timeout: float = 60) -> Tuple[int, str, str]:
    """Run ``cmd`` with stdout on a pseudo-terminal: (exit code, what it printed, stderr).

    ``env`` is used as given (callers decide about NO_COLOR); the CLI sees a
    real terminal, as when a person types the command.
    """
    import pty  # noqa: PLC0415

    master, slave = pty.openpty()
    proc = subprocess.Popen(list(cmd), stdout=slave, stderr=subprocess.PIPE, env=env, cwd=str(REPO))
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 1)
        if r:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    code = proc.wait(timeout=10)
    return code, b"".join(chunks).decode(), proc.stderr.read().decode()


# --------------------------------------------------------------------------
# Simulated host: netns + private OVS daemons
# --------------------------------------------------------------------------
class OvsHost:
    """A simulated machine: its own netns with private ovsdb-server/vswitchd."""

    def __init__(self, name: Optional[str] = None, base_dir: Optional[str] = None):
        self.name = name or unique("h")
        # unix socket paths are limited to 108 bytes: keep the rundir short
        self.rundir = Path(tempfile.mkdtemp(prefix="ovsfab-", dir=base_dir or "/tmp"))
        self.db_sock = self.rundir / "db.sock"
        self.db_url = f"unix:{self.db_sock}"
        self.netns_path = f"/run/netns/{self.name}"
        self.startup_seconds = None
        self._closed = False
        t0 = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.monotonic() - t0

    def _daemon_args(self, prog: str) -> list:
        r = self.rundir
        return [f"--pidfile={r}/{prog}.pid", f"--unixctl={r}/{prog}.ctl",
                f"--log-file={r}/{prog}.log", "--detach"]

    def _start(self) -> None:
        run(["ip", "netns", "add", self.name])
        run(["ip", "-n", self.name, "link", "set", "lo", "up"])
        r = self.rundir
        run(["ovsdb-tool", "create", f"{r}/conf.db", SCHEMA])
        run(["ip", "netns", "exec", self.name, "ovsdb-server", f"{r}/conf.db",
             f"--remote=punix:{self.db_sock}"] + self._daemon_args("ovsdb-server"))
        self.vsctl("--no-wait", "init")
        run(["ip", "netns", "exec", self.name, "ovs-vswitchd", self.db_url]
            + self._daemon_args("ovs-vswitchd"))

    # -- oracles -----------------------------------------------------------
    def vsctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(["ovs-vsctl", f"--db={self.db_url}", "--timeout=10", *args],
                   check=check, timeout=20)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(["ip", "-n", self.name, *args], check=check)

    def appctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """ovs-appctl to this host's ovs-vswitchd."""
        return run(["ovs-appctl", "-t", str(self.rundir / "ovs-vswitchd.ctl"), *args], check=check, timeout=20)

    def tnl_neighbours(self) -> dict:
        """vswitchd's tunnel neighbour cache (`ovs-appctl tnl/neigh/show`): {ip: mac}."""
        out = {}
        for line in self.appctl("tnl/neigh/show").stdout.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1].count(":") == 5:
                out[parts[0]] = parts[1].lower()
        return out

    def bfd_status(self, iface: str) -> dict:
        """The Interface's bfd_status column (`ovs-vsctl get`)."""
        return ovs_row(self, "Interface", iface).get("bfd_status", {})

    def links(self) -> dict:
        return links_in(self.name)

    # -- product -----------------------------------------------------------
    def ovsfab_cmd(self, *args: str) -> list:
        return ["ip", "netns", "exec", self.name, "env",
                f"OVS_RUNDIR={self.rundir}", PYTHON, "-m", "ovsfab", *args]

    def ovsfab(self, *args: str, check: bool = False, env: Optional[dict] = None,
               timeout: float = 60) -> subprocess.CompletedProcess:
        """Run the ovsfab CLI inside this host's netns (OVS_RUNDIR set)."""
        cmd = self.ovsfab_cmd(*map(str, args))
        cp = subprocess.run(cmd, capture_output=True, text=True,
                            timeout=timeout, env=clean_env(env), cwd=str(REPO))
        if check and cp.returncode != 0:
            raise AssertionError(
                f"ovsfab {' '.join(map(str, args))} -> {cp.returncode}\n"
                f"stdout: {cp.stdout}\nstderr: {cp.stderr}")
        return cp

    # -- teardown ----------------------------------------------------------
    def _pid(self, prog: str) -> Optional[int]:
        try:
            return int((self.rundir / f"{prog}.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for prog in ("ovs-vswitchd", "ovsdb-server"):
            pid = self._pid(prog)
            if pid is None:
                continue
            _kill_and_wait(pid)
        run(["ip", "netns", "del", self.name], check=False)
        shutil.rmtree(self.rundir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # zombie children of ours are not "alive"
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_and_wait(pid: int, grace: float = 5.0) -> None:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.02)


# --------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------
@dataclass
class NetnsTarget:
    name: str

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.name}"

    @property
    def target(self) -> str:
        return f"netns:{self.name}"


def make_netns(name: Optional[str] = None) -> NetnsTarget:
    name = name or unique("n")
    run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])
    return NetnsTarget(name)


def delete_netns(name: str) -> None:
    run(["ip", "netns", "del", name], check=False)


@dataclass
class PidTarget:
    """A `sleep` in its own fresh network namespace (unshare --net)."""
    proc: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def netns_path(self) -> str:
        return f"/proc/{self.pid}/ns/net"

    @property
    def target(self) -> str:
        return f"pid:{self.pid}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def make_pid_target() -> PidTarget:
    proc = subprocess.Popen(["unshare", "--net", "sleep", "1000000"])
    deadline = time.monotonic() + 5
    # unshare execs sleep in the same pid once the netns is set up
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{proc.pid}/exe").endswith("sleep"):
                break
        except OSError:
            pass
        time.sleep(0.01)
    t = PidTarget(proc)
    ns_run(t, "ip", "link", "set", "lo", "up")
    return t


# --------------------------------------------------------------------------
# Docker
# --------------------------------------------------------------------------
BUSYBOX_APPLETS = ("sh", "ash", "sleep", "ip", "ping", "ping6", "nc", "cat",
                   "ifconfig", "ls", "echo", "route", "head", "dd", "wc",
                   "md5sum", "sha256sum", "true", "false", "hostname", "ps",
                   "kill", "grep", "sed", "awk", "timeout", "env", "udhcpc")


def docker(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return run(["docker", *args], check=check, timeout=timeout)


def docker_available(timeout: float = 10) -> Optional[str]:
    """None if dockerd answers `docker ps`, else a reason string."""
    if shutil.which("docker") is None:
        return "docker CLI not installed"
    try:
        cp = run(["docker", "ps", "-q"], check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"dockerd did not answer `docker ps` within {timeout}s"
    if cp.returncode != 0:
        return f"dockerd unreachable (`docker ps` failed: {cp.stderr.strip()})"
    return None


def build_busybox_image(tag: str = IMAGE) -> str:
    busybox = shutil.which("busybox") or "/bin/busybox"
    with tempfile.TemporaryDirectory(prefix="ovsfab-img-") as d:
        root = Path(d)
        (root / "bin").mkdir()
        (root / "tmp").mkdir()
        shutil.copy2(busybox, root / "bin" / "busybox")
        for a in BUSYBOX_APPLETS:
            os.symlink("busybox", root / "bin" / a)
        tar = subprocess.Popen(["tar", "-C", d, "-c", "."], stdout=subprocess.PIPE)
        cp = subprocess.run(["docker", "import", "-c", "ENV PATH=/bin", "-", tag],
                            stdin=tar.stdout, capture_output=True, text=True,
                            timeout=120)
        tar.stdout.close()
        tar.wait()
        if cp.returncode != 0:
            raise RuntimeError(f"docker import failed: {cp.stderr}")
    return tag


@dataclass
class Container:
    name: str
    id: str
    pid: int

    @property
    def netns_path(self) -> str:
        return f"/proc/{self.pid}/ns/net"

    def exec(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return docker("exec", self.name, *cmd, check=check, timeout=timeout)

    def refresh_pid(self) -> int:
        self.pid = int(docker("inspect", "-f", "{{.State.Pid}}", self.id).stdout.strip())
        return self.pid


def start_container(name: Optional[str] = None, image: str = IMAGE) -> Container:
    name = name or unique("c")
    cid = docker("run", "-d", "--network", "none", "--name", name, image,
                 "sleep", "1000000").stdout.strip()
    pid = int(docker("inspect", "-f", "{{.State.Pid}}", cid).stdout.strip())
    return Container(name=name, id=cid, pid=pid)


def remove_containers(names: Iterable[str]) -> None:
    # one at a time: parallel `docker rm -f` deadlocks dockerd 20.10 (moby#46661)
    for n in names:
        try:
            docker("rm", "-f", n, check=False, timeout=60)
        except subprocess.TimeoutExpired:
            print(f"warning: docker rm -f {n} timed out", file=sys.stderr)


# --------------------------------------------------------------------------
# "No residue" snapshots
# --------------------------------------------------------------------------
def _link_summary(ns: NsLike) -> dict:
    res = {}
    for name, rec in links_in(ns).items():
        res[name] = (link_kind(rec), rec.get("mtu"), "UP" in rec.get("flags", []))
    return res


def _route_summary(ns: NsLike) -> list:
    out = []
    for v6 in (False, True):
        for r in routes_in(ns, v6):
            if v6 and str(r.get("dst", "")).startswith(("fe80", "ff00", "multicast")):
                continue
            out.append((r.get("dst"), r.get("dev"), r.get("gateway")))
    return sorted(out, key=repr)


@dataclass
class Snapshot:
    host_links: dict
    bridges: list
    ports: list  # (name, external_ids, tag)
    interfaces: list  # (name, external_ids, type)
    targets: dict = field(default_factory=dict)  # label -> (links, addrs, routes)

    def diff(self, other: "Snapshot") -> list:
        d = []
        for attr in ("host_links", "bridges", "ports", "interfaces", "targets"):
            a, b = getattr(self, attr), getattr(other, attr)
            if a != b:
                d.append(f"{attr}:\n  before={a!r}\n  after ={b!r}")
        return d


def snapshot(host: OvsHost, targets: Iterable[NsLike] = ()) -> Snapshot:
    ports = sorted(
        (r["name"], sorted(r["external_ids"].items()), repr(r["tag"]))
        for r in ovs_table(host, "Port", ["name", "external_ids", "tag"]))
    ifaces = sorted(
        (r["name"], sorted(r["external_ids"].items()), r["type"])
        for r in ovs_table(host, "Interface", ["name", "external_ids", "type"]))
    tg = {}
    for t in targets:
        label = getattr(t, "name", None) or str(t)
        tg[label] = (_link_summary(t), addrs_in(t), _route_summary(t))
    return Snapshot(_link_summary(host.name), ovs_bridges(host), ports, ifaces, tg)


def assert_no_residue(host: OvsHost, before: Snapshot, targets: Iterable[NsLike] = ()) -> None:
    after = snapshot(host, targets)
    d = before.diff(after)
    assert not d, "state changed:\n" + "\n".join(d)


no_residue = assert_no_residue


# --------------------------------------------------------------------------
# CLI output checks
# --------------------------------------------------------------------------
def assert_clean_error(cp: subprocess.CompletedProcess, codes=None) -> None:
    """Non-zero exit, exactly one stderr line starting 'ovsfab: error:'."""
    assert cp.returncode != 0, f"expected failure, got 0: {cp.stdout}"
    if codes is not None:
        assert cp.returncode in codes, (
            f"exit {cp.returncode} not in {codes}; stderr={cp.stderr!r}")
    assert "Traceback" not in cp.stderr + cp.stdout, cp.stderr
    lines = [l for l in cp.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
    assert lines[0].startswith("ovsfab: error:"), lines[0]


def assert_no_traceback(cp: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in cp.stderr and "Traceback" not in cp.stdout, cp.stderr


def disable_tx_offload(ns: NsLike, ifname: str = "eth1") -> None:
    """Test-side only: for hand-made wiring in the test-bed self-checks."""
    ns_run(ns, "ethtool", "-K", ifname, "tx", "off")


@contextlib.contextmanager
def hand_wired_pair(host: OvsHost, a: NsLike, b: NsLike, addr_a: str, addr_b: str,
                    bridge: str = "br0", tx_off: bool = True):
    """Wire two namespaces to a netdev bridge by hand (no product involved)."""
    host.vsctl("--may-exist", "add-br", bridge, "--", "set", "bridge", bridge,
               "datapath_type=netdev")
    names = []
    for i, (ns, addr) in enumerate(((a, addr_a), (b, addr_b))):
        hname = f"hw{RUN_ID[-5:]}{next(_counter)}"[:15]
        # create the pair inside the target ns, host end straight into the host ns
        ns_run(ns, "ip", "link", "add", "eth1", "type", "veth", "peer", "name",
               hname, "netns", host.name)
        ns_run(ns, "ip", "link", "set", "eth1", "up")
        ns_run(ns, "ip", "addr", "add", addr, "dev", "eth1", "nodad")
        host.ip("link", "set", hname, "up")
        host.vsctl("add-port", bridge, hname)
        if tx_off:
            disable_tx_offload(ns)
        names.append(hname)
    try:
        yield names
    finally:
        for n in names:
            host.vsctl("--if-exists", "del-port", bridge, n, check=False)
            host.ip("link", "del", n, check=False)
