"""The kernel-datapath scenarios, run inside a guest by /init (python3, stdlib only).

    scenarios.py ROLE MY_IP PEER_IP [ONLY]     ROLE is a (192.168.77.5) or b (.6)

ovsfab is driven only through its CLI: every command runs in a fresh process
forked from this (warm) interpreter, calling ``ovsfab.cli.main.main()`` with
the command's argv -- what ``python3 -m ovsfab`` runs, minus ~10 s of imports
under TCG (see :func:`ovsfab`).  Oracles are ``/usr/bin/ip``, ``ovs-vsctl``,
``ovs-dpctl`` (the kernel's own view of the datapath) and ping.
Each scenario prints ``OVSFAB-RESULT <name> PASS|FAIL <detail>``.  The two
guests meet at barriers: a TCP exchange over eth0 (a listens, b connects),
each bounded by a timeout, so a dead peer costs time, not a hang.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

IP = "/usr/bin/ip"
PY = sys.executable
BARRIER_PORT = 7777
BARRIER_TIMEOUT = 90.0
TCP_BYTES = 1_000_000
#: The newer scenarios move less: TCP working is what they prove, the 1 MB
#: transfers of attach/uplink/tunnel already cover volume (and TCG is slow).
SMALL_TCP = 256_000


class Fail(Exception):
    pass


def log(msg: str) -> None:
    print(f"OVSFAB-LOG {ROLE} {uptime():.1f} {msg}", flush=True)


def uptime() -> float:
    with open("/proc/uptime") as fh:
        return float(fh.read().split()[0])


def run(*cmd: str, check: bool = True, timeout: float = 60, quiet: bool = False) -> subprocess.CompletedProcess:
    t0 = time.monotonic()
    try:
        cp = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"$ {' '.join(cmd)} -> TIMEOUT after {timeout}s")
        raise Fail(f"timed out: {' '.join(cmd)}") from None
    _report(cp, time.monotonic() - t0, quiet)
    if check and cp.returncode != 0:
        raise Fail(f"{' '.join(cmd)} exited {cp.returncode}: {cp.stderr.strip()[:300]}")
    return cp


def _report(cp: subprocess.CompletedProcess, secs: float, quiet: bool) -> None:
    if quiet and cp.returncode == 0:
        return
    out = (cp.stdout.strip() + ("\n" + cp.stderr.strip() if cp.stderr.strip() else "")).strip()
    if len(out) > 1500:
        out = out[:1500] + " ..."
    log(f"$ {' '.join(cp.args)} -> rc={cp.returncode} ({secs:.1f}s)" + (f"\n{out}" if out else ""))


def ovsfab(*args: str, check: bool = True, env: dict = None, setup=None) -> subprocess.CompletedProcess:
    """``ovsfab ARGS`` in a fresh process forked from this warm interpreter.

    The child runs exactly what ``python3 -m ovsfab ARGS`` runs
    (``ovsfab.cli.main.main()`` with that argv); only the imports were done
    once, before the fork.  Under TCG a cold ``python3 -m ovsfab`` costs
    ~10 s of imports (measured: a cold attach 15-23 s, a forked one 3-5 s).
    """
    t0 = time.monotonic()
    out_f, err_f = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.dup2(out_f.fileno(), 1)
            os.dup2(err_f.fileno(), 2)
            sys.argv = ["ovsfab", *args]
            os.environ.update(env or {})
            if setup is not None:  # the bench's timing probes (never used by the suite)
                setup()
            try:
                from ovsfab.cli.main import main as cli_main
                cli_main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    deadline = time.monotonic() + 120
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise Fail(f"timed out: ovsfab {' '.join(args)}")
        time.sleep(0.05)
    rc = os.waitstatus_to_exitcode(status)
    out_f.seek(0)
    err_f.seek(0)
    label = [f"{k}={v}" for k, v in (env or {}).items()] + ["ovsfab", *args]
    cp = subprocess.CompletedProcess(label, rc, out_f.read().decode(), err_f.read().decode())
    _report(cp, time.monotonic() - t0, False)
    if check and rc != 0:
        raise Fail(f"ovsfab {' '.join(args)} exited {rc}: {cp.stderr.strip()[:300]}")
    return cp


def fault(step: str, *args: str) -> None:
    """``ovsfab ARGS`` with a fault injected after ``step``: exit 6 naming the step."""
    cp = ovsfab(*args, check=False, env={"OVSFAB_INJECT_FAULT": step})
    expect(cp.returncode == 6 and step in cp.stderr,
           f"fault after {step}: rc={cp.returncode} {cp.stderr.strip()[:200]}")


def same(before: dict, after: dict, what: str) -> None:
    diffs = {k: (before[k], after.get(k)) for k in before if before[k] != after.get(k)}
    expect(not diffs, f"{what} changed the host: {diffs}")


def warm_up() -> None:
    """Import what every ovsfab command imports (forked children inherit it)."""
    t0 = time.monotonic()
    import importlib  # noqa: PLC0415
    for name in ("ovsfab.cli.main", "ovs.db.idl", "pyroute2", "pyroute2.ethtool.ioctl",
                 "ovsfab.backends.factory", "ovsfab.ops.attach", "ovsfab.ops.detach", "ovsfab.ops.tunnel",
                 "ovsfab.ops.uplink", "ovsfab.plumbing.links", "ovsfab.ops.inspect", "ovsfab.cli.inspect_cmd",
                 # show reads Linux bridges' records through it; the Linux backend's netlink
                 "ovsfab.backends.linux", "ovsfab.netlink.rtnl"):
        try:
            importlib.import_module(name)
        except ImportError as exc:  # a module moved: the forked command imports what it needs itself
            log(f"warm-up: {name}: {exc}")
    log(f"warm-up imports: {time.monotonic() - t0:.1f}s")


def ovsfab_json(*args: str) -> dict:
    return json.loads(ovsfab(*args, "--json").stdout)


def vsctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("ovs-vsctl", "--timeout=10", *args, check=check, quiet=True)


def nsrun(ns: str, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return run(IP, "netns", "exec", ns, *cmd, check=check, timeout=timeout)


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise Fail(what)


# ------------------------------------------------------------------ oracles
def links(ns: str = "") -> dict:
    pre = [IP, "netns", "exec", ns] if ns else []
    cp = run(*pre, IP, "-j", "-d", "link", "show", quiet=True)
    return {l["ifname"]: l for l in json.loads(cp.stdout or "[]")}


def ovs_ports() -> dict:
    """{bridge: sorted ports} from ovs-vsctl."""
    out = {}
    for br in vsctl("list-br").stdout.split():
        out[br] = sorted(vsctl("list-ports", br).stdout.split())
    return out


def owned_ports() -> list:
    cp = vsctl("--format=json", "--columns=name,external_ids", "list", "Port")
    rows = json.loads(cp.stdout)["data"]
    return [r[0] for r in rows if ["ovsfab-owner", "ovsfab"] in r[1][1]]


def dp_ports() -> list:
    """Ports of the kernel datapath (ovs-dpctl show: the kernel's view)."""
    cp = run("ovs-dpctl", "show", quiet=True)
    ports = []
    for line in cp.stdout.splitlines():
        line = line.strip()
        if line.startswith("port "):
            ports.append(line.split(":", 1)[1].split()[0])
    return ports


def l3_state(dev: str) -> dict:
    """`ip -j` addresses of one link and every IPv4/IPv6 route (raw; link-local multicast left out)."""
    addrs = json.loads(run(IP, "-j", "addr", "show", "dev", dev, quiet=True).stdout or "[]")
    for a in addrs:  # counters that move on their own
        a.pop("stats64", None)
    r4 = json.loads(run(IP, "-j", "-4", "route", "show", "table", "all", quiet=True).stdout or "[]")
    r6 = [r for r in json.loads(run(IP, "-j", "-6", "route", "show", "table", "all", quiet=True).stdout or "[]")
          if not str(r.get("dst", "")).startswith(("fe80", "ff00", "multicast"))]
    return {"addr": addrs, "route4": r4, "route6": r6}


def snapshot() -> dict:
    return {"links": sorted((n, (l.get("linkinfo") or {}).get("info_kind", "")) for n, l in links().items()),
            "ports": ovs_ports(), "owned": owned_ports(), "dp": sorted(dp_ports()),
            "netns": sorted(os.listdir("/run/netns"))}


def ping(ns: str, addr: str, count: int = 3) -> bool:
    return nsrun(ns, "ping", "-n", "-c", str(count), "-i", "0.3", "-W", "3", addr,
                 check=False, timeout=30).returncode == 0


def ping_df(ns: str, addr: str, size: int) -> subprocess.CompletedProcess:
    return nsrun(ns, "ping", "-4", "-n", "-M", "do", "-s", str(size), "-c", "2", "-i", "0.3", "-W", "3",
                 addr, check=False, timeout=30)


def pings(checks: list, count: int = 2) -> dict:
    """Several pings at once (TCG is slow; a ping that must fail costs its whole -W):
    {(ns, addr): succeeded?} for each (ns, addr)."""
    procs = {}
    t0 = time.monotonic()
    for ns, addr in checks:
        procs[(ns, addr)] = subprocess.Popen(
            [IP, "netns", "exec", ns, "ping", "-n", "-c", str(count), "-i", "0.3", "-W", "2", addr],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = {}
    for key, p in procs.items():
        try:
            text, _ = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            text, _ = p.communicate()
        out[key] = p.returncode == 0
        last = [ln for ln in text.splitlines() if "transmitted" in ln]
        log(f"ping {key[0]} -> {key[1]}: {'ok' if out[key] else 'no reply'} ({last[0] if last else text[-120:]})")
    log(f"{len(checks)} pings in {time.monotonic() - t0:.1f}s")
    return out


def linux_owned() -> dict:
    """{name: kind} of links carrying an ovsfab record in their alias (the Linux backend's ownership)."""
    return {n: (l.get("linkinfo") or {}).get("info_kind", "") for n, l in links().items()
            if str(l.get("ifalias", "")).startswith("ovsfab:")}


def link_state(dev: str) -> dict:
    """`ip -j -d link show DEV` without the counters that move by themselves."""
    ln = json.loads(run(IP, "-j", "-d", "link", "show", "dev", dev, quiet=True).stdout)[0]
    for k in ("stats", "stats64"):
        ln.pop(k, None)
    return ln


def nic_sysctls(dev: str) -> dict:
    """Every readable net.ipv4.conf.DEV.* and net.ipv6.conf.DEV.* value (what an ARP/ND fix would set)."""
    out = {}
    for fam in ("ipv4", "ipv6"):
        d = f"/proc/sys/net/{fam}/conf/{dev}"
        for name in sorted(os.listdir(d)):
            try:
                with open(os.path.join(d, name)) as fh:
                    out[f"{fam}.{name}"] = fh.read().strip()
            except OSError:  # stable_secret and the like
                pass
    return out


def wait_same(get, want, what: str, timeout: float = 5.0) -> None:
    """``get()`` must equal ``want`` within ``timeout`` (link flags settle a moment after a change)."""
    deadline = time.monotonic() + timeout
    while True:
        now = get()
        if now == want:
            return
        if time.monotonic() > deadline:
            diffs = {k: (want.get(k), now.get(k)) for k in set(want) | set(now) if want.get(k) != now.get(k)}
            raise Fail(f"{what}: {diffs}")
        time.sleep(0.3)


def new_netns(name: str) -> str:
    run(IP, "netns", "add", name)
    nsrun(name, IP, "link", "set", "lo", "up")
    return name


_libc = None
CLONE_NEWNET = 0x40000000


class in_netns:
    """Switch this (single) thread into a named netns; sockets made inside stay there."""

    def __init__(self, ns: str) -> None:
        self.ns = ns

    def __enter__(self) -> None:
        global _libc
        if _libc is None:
            import ctypes  # noqa: PLC0415
            _libc = ctypes.CDLL(None, use_errno=True)
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        fd = os.open(f"/run/netns/{self.ns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise Fail(f"setns {self.ns} failed")
        finally:
            os.close(fd)

    def __exit__(self, *exc: object) -> None:
        try:
            if _libc.setns(self.home, CLONE_NEWNET) != 0:
                raise SystemExit("cannot return to the host netns")
        finally:
            os.close(self.home)


def payload(n: int) -> bytes:
    block = hashlib.sha256(b"ovsfab").digest() * 2048  # 64 KiB
    return (block * (n // len(block) + 1))[:n]


class TcpSink:
    """A one-shot TCP sink listening inside ``ns``: counts and hashes what it receives."""

    def __init__(self, ns: str, addr: str, port: int) -> None:
        with in_netns(ns):
            self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind((addr, port))
        self.srv.listen(1)
        self.srv.settimeout(90)
        self.result = "nothing received"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.srv.accept()
            conn.settimeout(30)
            h, n = hashlib.sha256(), 0
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                h.update(data)
                n += len(data)
            self.result = f"{n} {h.hexdigest()}"
            conn.sendall(self.result.encode())
            conn.close()
        except OSError as exc:
            self.result = f"error {exc}"
        finally:
            self.srv.close()

    def wait(self, timeout: float = 60) -> str:
        self.thread.join(timeout)
        log(f"tcp sink: {self.result}")
        return self.result


def tcp_send(ns: str, addr: str, port: int, nbytes: int = TCP_BYTES) -> None:
    """Send ``nbytes`` from inside ``ns``; the sink must echo the count and sha256."""
    data = payload(nbytes)
    with in_netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t0 = time.monotonic()
    try:
        s.settimeout(30)
        s.connect((addr, port))
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    except OSError as exc:
        raise Fail(f"TCP to {addr}:{port} from {ns}: {exc}") from None
    finally:
        s.close()
    want = f"{nbytes} {hashlib.sha256(data).hexdigest()}"
    log(f"tcp {ns} -> {addr}:{port}: {reply.decode()!r} in {time.monotonic() - t0:.2f}s")
    expect(reply.decode() == want, f"TCP transfer {ns} -> {addr}: sink saw {reply.decode()!r}, want {want!r}")


# ------------------------------------------------------------------ barriers
def barrier(tag: str, data: object = None, timeout: float = BARRIER_TIMEOUT) -> object:
    """Meet the other guest; exchange a small JSON value.  Raises Fail on timeout."""
    mine = json.dumps({"tag": tag, "data": data}).encode()
    deadline = time.monotonic() + timeout
    t0 = time.monotonic()
    if ROLE == "a":
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", BARRIER_PORT))
        srv.listen(4)
        try:
            while True:
                srv.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    conn, _ = srv.accept()
                except socket.timeout:
                    raise Fail(f"barrier {tag}: peer did not come within {timeout:.0f}s") from None
                with conn:
                    conn.settimeout(10)
                    theirs = json.loads(_recv_all(conn))
                    if theirs["tag"] != tag:
                        conn.sendall(json.dumps({"tag": "mismatch", "data": tag}).encode())
                        raise Fail(f"barrier {tag}: peer is at {theirs['tag']}")
                    conn.sendall(mine)
                    break
        finally:
            srv.close()
    else:
        while True:
            try:
                with socket.create_connection((PEER, BARRIER_PORT), timeout=3) as conn:
                    conn.settimeout(10)
                    conn.sendall(mine)
                    conn.shutdown(socket.SHUT_WR)
                    theirs = json.loads(_recv_all(conn))
                    if theirs["tag"] != tag:
                        raise Fail(f"barrier {tag}: peer is at {theirs['data']}")
                    break
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    raise Fail(f"barrier {tag}: peer unreachable for {timeout:.0f}s") from None
                time.sleep(0.3)
    log(f"barrier {tag} passed ({time.monotonic() - t0:.1f}s)")
    return theirs["data"]


def _recv_all(conn: socket.socket) -> bytes:
    buf = b""
    while True:
        chunk = conn.recv(4096)
        if not chunk:
            return buf
        buf += chunk
        try:
            json.loads(buf)
            return buf
        except ValueError:
            continue


# ------------------------------------------------------------------ scenarios
def scenario_attach() -> str:
    """One host: two netns on br0 (kernel datapath) -> ping, TCP; detach leaves nothing."""
    before = snapshot()
    n1, n2 = new_netns("s1a"), new_netns("s1b")
    # a fresh netns has lo plus the fallback devices of loaded tunnel modules (gre0, ...)
    ns_before = {n: sorted(links(n)) for n in (n1, n2)}
    r1 = ovsfab_json("attach", "br0", f"netns:{n1}", "10.1.0.1/24", "2001:db8:1::1/64")
    r2 = ovsfab_json("attach", "br0", f"netns:{n2}", "10.1.0.2/24", "2001:db8:1::2/64")
    expect(r1["datapath"] == "system" and r2["datapath"] == "system",
           f"datapath auto chose {r1['datapath']!r}, not system")
    dpt = vsctl("get", "Bridge", "br0", "datapath_type").stdout.strip()
    expect(dpt in ('""', "system"), f"br0 datapath_type is {dpt} (want system)")
    kports = dp_ports()
    expect(r1["port"] in kports and r2["port"] in kports, f"ports not in the kernel datapath: {kports}")
    expect(ping(n1, "10.1.0.2"), "ping 10.1.0.1 -> 10.1.0.2 failed")
    expect(ping(n2, "2001:db8:1::1"), "ping 2001:db8:1::2 -> 2001:db8:1::1 failed")
    flows = run("ovs-dpctl", "dump-flows", quiet=True).stdout
    expect("in_port" in flows or "recirc" in flows or "actions" in flows,
           "no flow in the kernel datapath after ping")
    sink = TcpSink(n2, "10.1.0.2", 5001)
    tcp_send(n1, "10.1.0.2", 5001)
    sink.wait()
    # offloads are left on for system (on netdev ovsfab turns TX checksum off)
    feats = run(IP, "netns", "exec", n1, "ethtool", "-k", "eth1", quiet=True)
    expect("tx-checksum-ip-generic: on" in feats.stdout, "TX checksum offload was turned off on system")
    ovsfab("detach", "br0", f"netns:{n1}")
    ovsfab("detach", "br0", f"netns:{n2}")
    after = snapshot()
    left = [n for n, _ in after["links"] if n.startswith("ovf")]
    expect(not left, f"veths left behind: {left}")
    expect(not after["owned"], f"ovsfab Port rows left: {after['owned']}")
    expect(not [p for p in after["dp"] if p.startswith("ovf")], f"kernel datapath ports left: {after['dp']}")
    expect(all(p == [] for p in after["ports"].values()), f"ports left: {after['ports']}")
    for n in (n1, n2):
        expect(sorted(links(n)) == ns_before[n], f"{n} has {sorted(links(n))}, had {ns_before[n]}")
    # br0 stays (detach removes ports, not bridges): nothing else changed
    new_links = sorted(set(after["links"]) - set(before["links"]))
    expect(set(new_links) <= {("br0", "openvswitch"), ("ovs-system", "openvswitch")},
           f"links left behind: {new_links}")
    # faults after a step of attach on a new bridge: the undo must clear the
    # kernel datapath too (bridge, its ports, the datapath itself)
    # (one step per guest: every ovsfab command costs seconds under TCG)
    steps = ("verify",) if ROLE == "a" else ("plug",)
    snap = snapshot()
    snap["netns_links"] = sorted(links(n1))
    for step in steps:
        fault(step, "attach", "brf", f"netns:{n1}", "10.1.0.1/24")
        after = snapshot()
        after["netns_links"] = sorted(links(n1))
        same(snap, after, f"attach with a fault after {step}")
    # leave a fresh host: uplink add must create br0 (and uplink del remove it)
    vsctl("del-br", "br0")
    return (f"ping v4/v6 + TCP {TCP_BYTES}B on the kernel datapath, ports {r1['port']},{r2['port']}; "
            f"detach clean; faults after {'/'.join(steps)} undone")


def scenario_uplink() -> str:
    """Two hosts, eth0 as uplink of br0: netns talk across; uplink del restores eth0 exactly."""
    me, peer = (".10", ".20") if ROLE == "a" else (".20", ".10")
    barrier("uplink-start")
    before = l3_state("eth0")
    link_before, sys_before = link_state("eth0"), nic_sysctls("eth0")
    snap = snapshot()
    step = "internal_port" if ROLE == "a" else "move"
    fault(step, "uplink", "add", "br0", "eth0")
    same(before, l3_state("eth0"), f"uplink add with a fault after {step} (eth0)")
    same(snap, snapshot(), f"uplink add with a fault after {step}")
    r = ovsfab_json("uplink", "add", "br0", "eth0")
    expect(r["datapath"] == "system", f"uplink datapath {r['datapath']}")
    expect("eth0" in dp_ports(), f"eth0 not in the kernel datapath: {dp_ports()}")
    addrs = json.loads(run(IP, "-j", "addr", "show", "dev", "br0").stdout)[0]["addr_info"]
    expect(any(a["local"] == MY_IP for a in addrs), f"{MY_IP} not moved to br0: {addrs}")
    # the uplink ARP fix (one answerer) is for netdev, where eth0 stays a kernel
    # interface; on system eth0 is a datapath port and its sysctls stay as they were
    same(sys_before, nic_sysctls("eth0"), "uplink add on the system datapath (eth0's sysctls)")
    ns = new_netns("s2")
    ovsfab_json("attach", "br0", f"netns:{ns}", f"192.168.77{me}/24")
    sink = TcpSink(ns, f"192.168.77{me}", 5002)
    barrier("uplink-ready")
    expect(ping(ns, f"192.168.77{peer}"), f"netns ping to peer's netns 192.168.77{peer} failed")
    expect(ping(ns, PEER), f"netns ping to the peer host {PEER} failed")
    tcp_send(ns, f"192.168.77{peer}", 5002)
    got = sink.wait()
    expect(got.startswith(f"{TCP_BYTES} "), f"own TCP sink got {got!r}")
    barrier("uplink-traffic-done")
    ovsfab("detach", "br0", f"netns:{ns}")
    ovsfab("uplink", "del", "br0", "eth0")
    time.sleep(0.5)
    after = l3_state("eth0")
    for k in ("addr", "route4", "route6"):
        expect(after[k] == before[k], f"uplink del did not restore {k}:\nbefore {before[k]}\nafter  {after[k]}")
    wait_same(lambda: link_state("eth0"), link_before, "uplink del did not restore eth0's link")
    same(sys_before, nic_sysctls("eth0"), "uplink add + del (eth0's sysctls)")
    snap2 = snapshot()
    snap2["netns"] = snap["netns"]  # s2 is the test's own
    same(snap, snap2, "uplink add + del (it created br0, so br0 must be gone)")
    barrier("uplink-end")
    return (f"fault after {step} undone; ping+TCP across hosts through the eth0 uplink on the kernel "
            "datapath, eth0's sysctls untouched; uplink del restored eth0 (addr/route/link) exactly and removed br0")


def scenario_tunnel() -> str:
    """Two hosts, VXLAN routed by the kernel via eth0: auto MTU 1450, DF 1422 ok / 1423 too long, TCP."""
    me, peer = ("10.10.0.10", "10.10.0.20") if ROLE == "a" else ("10.10.0.20", "10.10.0.10")
    barrier("tunnel-start")
    t = ovsfab_json("tunnel", "add", "br1", PEER, "--key", "5001")
    expect(t["datapath"] == "system", f"tunnel datapath {t['datapath']}")
    expect(not t.get("notes"), f"unexpected notes: {t.get('notes')}")
    kports = dp_ports()
    expect(any(p.startswith("vxlan_sys") for p in kports), f"no vxlan vport in the kernel datapath: {kports}")
    ns = new_netns("s3")
    a = ovsfab_json("attach", "br1", f"netns:{ns}", f"{me}/24")
    expect(a["mtu"] == 1450, f"auto MTU {a['mtu']}, want 1450")
    mtu = links(ns)["eth1"]["mtu"]
    expect(mtu == 1450, f"eth1 MTU in the netns is {mtu}")
    # what show/inspect see on the kernel datapath (vxlan_sys_4789, ovs-system, no OVS-named tunnel link)
    shown = ovsfab_json("show", "br1")["bridges"]
    expect(len(shown) == 1 and shown[0]["datapath"] == "system", f"show br1: {shown}")
    classes = {p["name"]: p["class"] for p in shown[0]["ports"]}
    expect(classes == {"br1": "internal", a["port"]: "attachment", t["name"]: "tunnel"},
           f"show br1 classes: {classes}")
    stale = {p["name"]: p["stale_reasons"] for p in shown[0]["ports"] if p["stale"]}
    expect(not stale, f"show br1 calls ports stale: {stale}")
    seen = ovsfab_json("inspect", f"netns:{ns}")
    # (the fallback devices gre0, gretap0, erspan0 of ip_gre are listed too)
    hp = next((i["peer"] for i in seen["interfaces"] if i["name"] == "eth1"), None)
    expect(hp is not None and hp["name"] == a["port"] and (hp["bridge"] or {}).get("name") == "br1",
           f"inspect netns:{ns}: peer {hp}")
    expect([x["name"] for x in hp["bridge"]["tunnels"]] == [t["name"]]
           and hp["bridge"]["port"]["class"] == "attachment", f"inspect netns:{ns}: bridge {hp['bridge']}")
    sink = TcpSink(ns, me, 5003)
    barrier("tunnel-ready")
    expect(ping(ns, peer), f"ping {me} -> {peer} over VXLAN failed")
    ok = ping_df(ns, peer, 1422)
    expect(ok.returncode == 0, "DF ping with 1422 bytes (fills MTU 1450) failed")
    big = ping_df(ns, peer, 1423)
    expect(big.returncode != 0 and "message too long" in (big.stdout + big.stderr).lower(),
           f"DF ping with 1423 bytes: rc={big.returncode} {big.stdout[-200:]} {big.stderr[-200:]}")
    tcp_send(ns, peer, 5003)
    got = sink.wait()
    expect(got.startswith(f"{TCP_BYTES} "), f"own TCP sink got {got!r}")
    barrier("tunnel-traffic-done")
    ovsfab("detach", "br1", f"netns:{ns}")
    ovsfab("tunnel", "del", "br1", PEER, "--key", "5001")
    snap2 = snapshot()
    expect(snap2["owned"] == [], f"ovsfab ports left: {snap2['owned']}")
    expect(not [p for p in snap2["dp"] if p.startswith(("vxlan", "ovf"))], f"kernel vports left: {snap2['dp']}")
    expect(not [n for n, _ in snap2["links"] if n.startswith("ovf")], "veth left")
    barrier("tunnel-end")
    return ("VXLAN key 5001 via kernel-routed eth0: MTU 1450, DF 1422 ok, 1423 'message too long', TCP ok; "
            "show/inspect classify it")


def tunnel_overhead(tun_type: str, key: int, v6: bool = False) -> int:
    """ovsfab's own overhead rule (ovsfab/model.py via ovsfab/ops/tunnel.py), no checksum."""
    from ovsfab.ops.tunnel import overhead  # noqa: PLC0415 - imported by warm_up already
    return overhead(tun_type, v6, key, False)


def df_boundary(ns: str, peer: str, mtu: int, what: str) -> None:
    """A DF ping that fills ``mtu`` crosses; one byte more is refused with "message too long"."""
    fill = mtu - 28  # IPv4 20 + ICMP 8
    ok = ping_df(ns, peer, fill)
    expect(ok.returncode == 0, f"{what}: DF ping with {fill} bytes (fills MTU {mtu}) failed")
    big = ping_df(ns, peer, fill + 1)
    expect(big.returncode != 0 and "message too long" in (big.stdout + big.stderr).lower(),
           f"{what}: DF ping with {fill + 1} bytes: rc={big.returncode} {big.stdout[-200:]} {big.stderr[-200:]}")


def scenario_vlan() -> str:
    """One host, --vlan: same VLAN pings; another VLAN and an untagged port do not.

    Guest a runs it on OVS (system datapath), guest b on a Linux bridge with
    vlan_filtering (this machine's kernel has none), at the same time."""
    backend = "ovs" if ROLE == "a" else "linux"
    pre = ("--backend", backend)
    br = "brv"
    snap = snapshot()
    plan = {"v10a": (10, "10.5.0.1"), "v10b": (10, "10.5.0.2"), "v20a": (20, "10.5.0.3"),
            "v20b": (20, "10.5.0.4"), "vun": (None, "10.5.0.5")}
    ports = {}
    for ns, (tag, addr) in plan.items():
        new_netns(ns)
        r = ovsfab_json(*pre, "attach", br, f"netns:{ns}", f"{addr}/24", *(["--vlan", str(tag)] if tag else []))
        expect(r["datapath"] == ("system" if backend == "ovs" else "linux"), f"{ns}: datapath {r['datapath']}")
        ports[ns] = r["port"]
    # the switch's own view of the tags
    if backend == "ovs":
        for ns, (tag, _) in plan.items():
            got = vsctl("get", "Port", ports[ns], "tag").stdout.strip()
            expect(got == (str(tag) if tag else "[]"), f"OVS tag of {ns}'s port {ports[ns]} is {got}")
        kports = dp_ports()
        expect(all(p in kports for p in ports.values()), f"ports not in the kernel datapath: {kports}")
    else:
        info = (links()[br].get("linkinfo") or {}).get("info_data") or {}
        expect(info.get("vlan_filtering") == 1, f"Linux bridge {br} vlan_filtering: {info.get('vlan_filtering')}")
        vl = {e["ifname"]: e["vlans"] for e in json.loads(run("/usr/sbin/bridge", "-j", "vlan", "show").stdout)}
        for ns, (tag, _) in plan.items():
            want = [{"vlan": tag or 1, "flags": ["PVID", "Egress Untagged"]}]
            expect(vl.get(ports[ns]) == want, f"bridge vlan of {ns}'s port {ports[ns]}: {vl.get(ports[ns])}, want {want}")
    # the bridge's own interface, untagged, answers the untagged port only
    run(IP, "addr", "add", "10.5.0.254/24", "dev", br)
    run(IP, "link", "set", br, "up")
    want = {("v10a", "10.5.0.2"): True, ("v20a", "10.5.0.4"): True, ("vun", "10.5.0.254"): True,
            ("v10a", "10.5.0.3"): False, ("v10a", "10.5.0.5"): False, ("v20b", "10.5.0.1"): False,
            ("vun", "10.5.0.2"): False, ("v10b", "10.5.0.254"): False}
    got = pings(list(want))
    wrong = {f"{ns}->{addr}": ("reached" if got[(ns, addr)] else "not reached")
             for (ns, addr), ok in want.items() if got[(ns, addr)] != ok}
    expect(not wrong, f"VLAN isolation on {backend}: {wrong}")
    run(IP, "addr", "del", "10.5.0.254/24", "dev", br)
    for ns in plan:
        ovsfab(*pre, "detach", br, f"netns:{ns}")
        run(IP, "netns", "del", ns)
    left = [n for n in links() if n in ports.values()]
    expect(not left, f"detach left {left}")
    if backend == "ovs":
        expect(owned_ports() == [], f"ovsfab Port rows left: {owned_ports()}")
        vsctl("del-br", br)
    else:
        rec = linux_owned()
        expect(set(rec) <= {br}, f"ovsfab-owned links left besides the bridge: {rec}")
        run(IP, "link", "del", br, check=False)
    same(snap, snapshot(), "vlan scenario (after detach and removing the bridge)")
    return (f"{backend}{' (system datapath)' if backend == 'ovs' else ' bridge, vlan_filtering'}: VLAN 10 and "
            "VLAN 20 pairs ping, across VLANs and untagged<->tagged nothing passes; untagged reaches the bridge")


def scenario_linux_uplink() -> str:
    """Two hosts, eth0 as uplink of a Linux bridge: netns talk across; uplink del restores eth0 exactly."""
    me, peer = (".11", ".21") if ROLE == "a" else (".21", ".11")
    pre = ("--backend", "linux")
    barrier("luplink-start")
    before, link_before, snap = l3_state("eth0"), link_state("eth0"), snapshot()
    r = ovsfab_json(*pre, "uplink", "add", "brl", "eth0")
    expect(r["datapath"] == "linux", f"uplink datapath {r['datapath']}")
    expect(link_state("eth0").get("master") == "brl", "eth0 is not enslaved to the Linux bridge brl")
    addrs = json.loads(run(IP, "-j", "addr", "show", "dev", "brl").stdout)[0]["addr_info"]
    expect(any(a["local"] == MY_IP for a in addrs), f"{MY_IP} not moved to brl: {addrs}")
    ns = new_netns("s6")
    ovsfab_json(*pre, "attach", "brl", f"netns:{ns}", f"192.168.77{me}/24")
    barrier("luplink-ready")
    got = pings([(ns, f"192.168.77{peer}"), (ns, PEER)], count=3)
    expect(all(got.values()), f"through the Linux-bridge uplink: {got}")
    barrier("luplink-traffic-done")
    ovsfab(*pre, "detach", "brl", f"netns:{ns}")
    ovsfab(*pre, "uplink", "del", "brl", "eth0")
    after = l3_state("eth0")
    for k in ("addr", "route4", "route6"):
        expect(after[k] == before[k], f"uplink del did not restore {k}:\nbefore {before[k]}\nafter  {after[k]}")
    wait_same(lambda: link_state("eth0"), link_before, "uplink del did not restore eth0's link")
    run(IP, "netns", "del", ns)
    same(snap, snapshot(), "Linux uplink add + del (it created brl, so brl must be gone)")
    barrier("luplink-end")
    return "Linux bridge brl with eth0: ping across; uplink del restored eth0's addr/route/link exactly, brl gone"


def scenario_tunnels() -> str:
    """Two hosts, OVS Geneve and GRE routed by the kernel: auto MTU, DF boundary, TCP (and BFD)."""
    me = "10" if ROLE == "a" else "20"
    them = "20" if ROLE == "a" else "10"
    barrier("tunnels-start")
    kinds = (("geneve", "br2", 5002, "12", 5004, "genev_sys"), ("gre", "br3", 5003, "13", 5005, "gre_sys"))
    tun, att, sinks = {}, {}, {}
    for tt, br, key, net, _port, _v in kinds:
        tun[tt] = ovsfab_json("tunnel", "add", br, PEER, "--type", tt, "--key", str(key))
        expect(tun[tt]["datapath"] == "system" and tun[tt]["type"] == tt, f"{tt} tunnel: {tun[tt]}")
    kports = dp_ports()
    for tt, *_r, vport in kinds:
        expect(any(p.startswith(vport) for p in kports), f"no {vport} vport in the kernel datapath: {kports}")
    for tt, br, key, net, port, _v in kinds:
        ns = new_netns(f"s{tt[:2]}")
        att[tt] = ovsfab_json("attach", br, f"netns:{ns}", f"10.{net}.0.{me}/24")
        want = 1500 - tunnel_overhead(tt, key)
        expect(att[tt]["mtu"] == want and links(ns)["eth1"]["mtu"] == want,
               f"{tt}: auto MTU {att[tt]['mtu']} (eth1 {links(ns)['eth1']['mtu']}), want 1500 - {1500 - want}")
        sinks[tt] = TcpSink(ns, f"10.{net}.0.{me}", port)
    barrier("tunnels-ready")
    # BFD is on by default for the tunnels ovsfab makes: both ends run it, so
    # vswitchd must report state=up (default timers: ~1-3 s after both exist)
    deadline, bfd = time.monotonic() + 30, {}
    while True:
        bfd = {tt: vsctl("get", "Interface", tun[tt]["name"], "bfd_status").stdout.strip() for tt in tun}
        if all("state=up" in v for v in bfd.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    log(f"bfd_status: {bfd}")
    expect(all("state=up" in v for v in bfd.values()), f"BFD not up within 30 s: {bfd}")
    listed = {t["name"]: t.get("bfd") or {} for t in ovsfab_json("tunnel", "list")["tunnels"]}
    for tt in tun:
        b = listed.get(tun[tt]["name"], {})
        expect(b.get("enabled") is True and b.get("state") == "up",
               f"tunnel list --json: {tt} tunnel {tun[tt]['name']} bfd {b}")
    for tt, br, key, net, port, _v in kinds:
        ns, peer = f"s{tt[:2]}", f"10.{net}.0.{them}"
        expect(ping(ns, peer), f"ping over {tt} failed")
        df_boundary(ns, peer, att[tt]["mtu"], tt)
        tcp_send(ns, peer, port, SMALL_TCP)
    for tt, s in sinks.items():
        got = s.wait()
        expect(got.startswith(f"{SMALL_TCP} "), f"{tt}: own TCP sink got {got!r}")
    barrier("tunnels-traffic-done")
    for tt, br, key, *_r in kinds:
        ovsfab("detach", br, f"netns:s{tt[:2]}")
        ovsfab("tunnel", "del", br, PEER, "--key", str(key), "--type", tt)
        run(IP, "netns", "del", f"s{tt[:2]}")
    after = snapshot()
    expect(after["owned"] == [], f"ovsfab ports left: {after['owned']}")
    expect(not [p for p in after["dp"] if p.startswith(("genev", "gre", "ovf"))], f"kernel vports left: {after['dp']}")
    expect(not [n for n, _ in after["links"] if n.startswith("ovf")], "veth left")
    barrier("tunnels-end")
    return ("Geneve key 5002 MTU {} and GRE key 5003 MTU {} on the system datapath: BFD up (ovs-vsctl and "
            "tunnel list), DF fill ok / +1 'message too long', ping, TCP {}B each").format(att["geneve"]["mtu"], att["gre"]["mtu"], SMALL_TCP)


def ip6_of(ip4: str) -> str:
    """The guest's IPv6 underlay address (eth0): fd77::5 for 192.168.77.5."""
    return "fd77::" + ip4.rsplit(".", 1)[1]


def scenario_linux_tunnel() -> str:
    """Two hosts, Linux backend: a kernel VXLAN, gretap with a key, then ip6gretap and Geneve over IPv6.

    The VXLAN goes on a bridge made beforehand without vlan_filtering (ovsfab
    uses an existing bridge as it is; its attach goes without --backend: the
    ``auto`` default must pick the Linux bridge); the others on a bridge
    ovsfab creates, with vlan_filtering, where each tunnel port is a trunk of
    VLANs 2-4094.  Each phase checks the device (kind, remote, key), the auto
    MTU against the DF boundary and ping; the GRE and IPv6 ones move TCP.
    One phase after the other: every trunk VLAN adds a local FDB entry, and
    the backend reads the whole FDB to find a VXLAN device's remotes (slow
    under TCG; see docs/kernel-datapath.md)."""
    me = "10" if ROLE == "a" else "20"
    them = "20" if ROLE == "a" else "10"
    pre = ("--backend", "linux")
    barrier("ltunnel-start")
    snap = snapshot()
    eth0_before = l3_state("eth0")
    # an IPv6 underlay beside the IPv4 one (nodad: usable at once)
    run(IP, "-6", "addr", "add", f"{ip6_of(MY_IP)}/64", "dev", "eth0", "nodad")
    run(IP, "link", "add", "brx", "type", "bridge", "vlan_filtering", "0")
    run(IP, "link", "set", "brx", "up")
    mtus = {}
    phases = (("vxlan", "vxlan", "brx", 7002, "30", "vxlan", PEER),
              ("gre", "gre", "brg", 7001, "20", "gretap", PEER),
              ("gre6", "gre", "brg", 7003, "40", "ip6gretap", ip6_of(PEER)),
              ("geneve6", "geneve", "brg", 7004, "50", "geneve", ip6_of(PEER)),
              ("vxlan6", "vxlan", "brx", 7005, "60", "vxlan", ip6_of(PEER)))
    for label, tt, br, key, net, kind, remote in phases:
        v6 = ":" in remote
        # Geneve over IPv6 with zero UDP checksums: both ends must send and accept them
        opts = ("--no-csum",) if label == "geneve6" else ()
        tun = ovsfab_json(*pre, "tunnel", "add", br, remote, "--type", tt, "--key", str(key), *opts)
        expect(tun["datapath"] == "linux", f"{label}: datapath {tun['datapath']}")
        dev = links()[tun["name"]]
        li = dev.get("linkinfo") or {}
        data = li.get("info_data") or {}
        expect(li.get("info_kind") == kind and dev.get("master") == br,
               f"{label}: device {tun['name']} is {li.get('info_kind')} on {dev.get('master')}")
        if tt == "gre":
            dotted = socket.inet_ntoa(key.to_bytes(4, "big"))
            expect(data.get("remote") == remote and data.get("ikey") == dotted and data.get("okey") == dotted,
                   f"{kind} {tun['name']}: {data}")
            binfo = (links()[br].get("linkinfo") or {}).get("info_data") or {}
            expect(binfo.get("vlan_filtering") == 1, f"{br} (created by ovsfab) has no vlan_filtering: {binfo}")
        elif tt == "geneve":
            expect(data.get("id") == key and data.get("remote6" if v6 else "remote") == remote
                   and data.get("udp_zero_csum6_tx") is True and data.get("udp_zero_csum6_rx") is True,
                   f"geneve {tun['name']} (--no-csum over IPv6): {data}")
        else:
            fdb = json.loads(run("/usr/sbin/bridge", "-j", "fdb", "show", "dev", tun["name"], quiet=True).stdout)
            expect(data.get("id") == key and any(e.get("mac") == "00:00:00:00:00:00" and e.get("dst") == remote
                                                 for e in fdb), f"vxlan {tun['name']}: {data} fdb {fdb}")
            if not v6:  # no BFD on kernel devices: tunnel list reports the carrier and the FDB instead
                b = {t["name"]: t.get("bfd") or {} for t in ovsfab_json(*pre, "tunnel", "list")["tunnels"]}
                b = b.get(tun["name"], {})
                expect(b.get("available") is False and b.get("carrier") is True
                       and f"00:00:00:00:00:00 dst {remote}" in (b.get("fdb") or []),
                       f"tunnel list --json (linux): {b}")
        ns = new_netns(f"l{label}")
        if label == "vxlan":
            # the auto default (no --backend): brx is a Linux bridge, so the Linux backend serves it
            att = ovsfab_json("attach", br, f"netns:{ns}", f"10.{net}.0.{me}/24")
            expect(att.get("datapath") == "linux", f"auto attach to the Linux bridge {br}: datapath "
                                                   f"{att.get('datapath')!r}, want linux")
            expect(br not in ovs_ports(), f"auto made an OVS bridge {br} beside the Linux one")
        else:
            att = ovsfab_json(*pre, "attach", br, f"netns:{ns}", f"10.{net}.0.{me}/24")
        want = 1500 - tunnel_overhead(tt, key, v6)
        expect(att["mtu"] == want and links(ns)["eth1"]["mtu"] == want,
               f"{label}: auto MTU {att['mtu']} (eth1 {links(ns)['eth1']['mtu']}), want {want}")
        mtus[label] = want
        sink = TcpSink(ns, f"10.{net}.0.{me}", 5006) if label != "vxlan" else None
        barrier(f"ltunnel-{label}-ready")
        peer = f"10.{net}.0.{them}"
        expect(ping(ns, peer), f"ping over the Linux {label} tunnel failed")
        df_boundary(ns, peer, want, f"Linux {kind}" + (" over IPv6" if v6 else ""))
        if sink is not None:
            tcp_send(ns, peer, 5006, SMALL_TCP)
            got = sink.wait()
            expect(got.startswith(f"{SMALL_TCP} "), f"own TCP sink got {got!r}")
        barrier(f"ltunnel-{label}-done")
        if not v6:  # (detach is proven here; the IPv6 phases save the command: TCG, the 4-minute budget)
            ovsfab(*pre, "detach", br, f"netns:{ns}")
        ovsfab(*pre, "tunnel", "del", br, remote, "--key", str(key), "--type", tt)
        expect(tun["name"] not in links(), f"tunnel del left {tun['name']}")
        run(IP, "netns", "del", ns)
        if v6:  # the container end goes with its netns, and with it the pair (asynchronously)
            wait_same(lambda: {"veth left": att["port"] in links()}, {"veth left": False},
                      f"{label}: veth {att['port']} outlived its netns", timeout=10)
    rec = linux_owned()
    expect(rec == {"brg": "bridge"}, f"ovsfab-owned links left besides its bridge brg: {rec}")
    run(IP, "link", "del", "brg")  # tunnel del removes the tunnel, not the bridge (as detach)
    run(IP, "link", "del", "brx")
    run(IP, "-6", "addr", "del", f"{ip6_of(MY_IP)}/64", "dev", "eth0")
    same(snap, snapshot(), "Linux tunnels (after del and removing their bridges)")
    same(eth0_before, l3_state("eth0"), "Linux tunnels (eth0 after its IPv6 underlay address went)")
    barrier("ltunnel-end")
    return ("Linux backend: kernel VXLAN 7002 MTU {vxlan} (auto attach; DF fill ok, +1 too long), gretap key 7001 "
            "MTU {gre}, ip6gretap key 7003 MTU {gre6}, Geneve/IPv6 --no-csum 7004 MTU {geneve6}, VXLAN/IPv6 7005 "
            "MTU {vxlan6} (each DF fill ok, +1 too long, TCP {tcp}B) across the guests; tunnel del removed every device"
            ).format(tcp=SMALL_TCP, **mtus)


SCENARIOS = [("attach", scenario_attach), ("vlan", scenario_vlan), ("uplink", scenario_uplink),
             ("linux-uplink", scenario_linux_uplink), ("tunnel", scenario_tunnel), ("tunnels", scenario_tunnels),
             ("linux-tunnel", scenario_linux_tunnel)]

# ------------------------------------------------------------------ bench (never run by the suite)
def _probe(path: str):
    """A child setup for :func:`ovsfab`: time OVSDB connect+sync and the wait for ovs-vswitchd.

    Wraps ``IdlSession.__init__`` and ``IdlSession.wait_applied`` in the forked
    child only and writes their seconds to ``path`` at exit (the product is not
    changed; if those names moved, the breakdown is just missing)."""
    def setup() -> None:
        import atexit  # noqa: PLC0415
        try:
            from ovsfab.backends.ovs.idl import IdlSession  # noqa: PLC0415
        except ImportError:
            return
        spent = {"connect": 0.0, "wait_vswitchd": 0.0}

        def wrap(name: str, key: str) -> None:
            orig = getattr(IdlSession, name, None)
            if orig is None:
                return

            def timed(*a, **kw):
                t = time.perf_counter()
                try:
                    return orig(*a, **kw)
                finally:
                    spent[key] += time.perf_counter() - t
            setattr(IdlSession, name, timed)
        wrap("__init__", "connect")
        wrap("wait_applied", "wait_vswitchd")

        def dump() -> None:
            with open(path, "w") as fh:
                json.dump(spent, fh)
        atexit.register(dump)
        # os._exit skips atexit: the child ends through it, so write on SystemExit too
        import ovsfab.cli.main as m  # noqa: PLC0415
        orig_main = m.main

        def main_then_dump() -> None:
            try:
                orig_main()
            finally:
                dump()
        m.main = main_then_dump
    return setup


def _filler(start: int, stop: int) -> None:
    """Veth ports start..stop-1 on br0, recorded like ovsfab attachments (one transaction per 50)."""
    with tempfile.NamedTemporaryFile("w", suffix=".batch", delete=False) as fh:
        for i in range(start, stop):
            fh.write(f"link add f{i} type veth peer name g{i}\nlink set f{i} up\n")
    run(IP, "-batch", fh.name, timeout=600, quiet=True)
    os.unlink(fh.name)
    for lo in range(start, stop, 50):
        cmd = ["ovs-vsctl", "--timeout=600"]
        for i in range(lo, min(stop, lo + 50)):
            cmd += ["--", "add-port", "br0", f"f{i}",
                    "--", "set", "Port", f"f{i}", "external_ids:ovsfab-owner=ovsfab",
                    f"external_ids:ovsfab-container-id=netns:fill{i}", "external_ids:ovsfab-ifname=eth1",
                    f"external_ids:ovsfab-target=netns:fill{i}", f"external_ids:ovsfab-addresses=10.99.{i // 250}.{i % 250 + 1}/16",
                    "--", "set", "Interface", f"f{i}", f"external_ids:container_id=netns:fill{i}",
                    "external_ids:container_iface=eth1"]
        run(*cmd, timeout=660, quiet=True)


def _ovs_docker_add(ns: str, port: str, addr: str) -> float:
    """What ``ovs-docker add-port br0 eth1 CONTAINER --ipaddress=ADDR`` runs, for a named netns."""
    t0 = time.perf_counter()
    found = run("ovs-vsctl", "--data=bare", "--no-heading", "--columns=name", "find", "interface",
                f"external_ids:container_id={ns}", "external_ids:container_iface=eth1", quiet=True)
    expect(not found.stdout.strip(), f"{ns} already attached")
    run(IP, "link", "add", f"{port}_l", "type", "veth", "peer", "name", f"{port}_c", quiet=True)
    run("ovs-vsctl", "--may-exist", "add-port", "br0", f"{port}_l", "--", "set", "interface", f"{port}_l",
        f"external_ids:container_id={ns}", "external_ids:container_iface=eth1", quiet=True)
    run(IP, "link", "set", f"{port}_l", "up", quiet=True)
    run(IP, "link", "set", f"{port}_c", "netns", ns, quiet=True)
    run(IP, "netns", "exec", ns, IP, "link", "set", "dev", f"{port}_c", "name", "eth1", quiet=True)
    run(IP, "netns", "exec", ns, IP, "link", "set", "eth1", "up", quiet=True)
    run(IP, "netns", "exec", ns, IP, "addr", "add", addr, "dev", "eth1", quiet=True)
    return time.perf_counter() - t0


def bench_attach() -> str:
    """Attach #1 against attach #N+1 on the system datapath, ovsfab and ovs-docker's commands alike.

    OVSFAB_BENCH="SIZES/K" (e.g. "0,250,500,1000/5"): at each size (ports
    already on br0, as veth ports recorded like ovsfab attachments), K ovsfab
    attaches (forked CLI, with the OVSDB-sync and wait-for-vswitchd parts
    timed), K ovs-docker-style attaches, one cold ``python3 -m ovsfab attach``,
    and 3 empty reconfigurations (``ovs-vsctl set``, which waits for vswitchd).
    Prints one ``OVSFAB-BENCH {json}`` line per measurement."""
    spec = os.environ.get("OVSFAB_BENCH", "0,100/3")
    sizes_s, _, k_s = spec.partition("/")
    sizes, k = [int(x) for x in sizes_s.split(",")], int(k_s or 3)
    vsctl("add-br", "br0")
    made, seq = 0, 0
    t_start = time.monotonic()
    for n in sizes:
        if n > made:
            t0 = time.monotonic()
            _filler(made, n)
            made = n
            log(f"bench: {made} filler ports in {time.monotonic() - t0:.1f}s")
        for j in range(k):
            ports = len(vsctl("list-ports", "br0").stdout.split())
            seq += 1
            ns = new_netns(f"b{seq}")
            probe = f"/tmp/probe{seq}"
            t0 = time.perf_counter()
            ovsfab("attach", "br0", f"netns:{ns}", f"10.60.{seq // 250}.{seq % 250 + 1}/16", setup=_probe(probe))
            dt = time.perf_counter() - t0
            parts = json.load(open(probe)) if os.path.exists(probe) else {}
            print("OVSFAB-BENCH " + json.dumps({"tool": "ovsfab", "size": n, "ports": ports, "s": dt, **parts}),
                  flush=True)
            ns2 = new_netns(f"d{seq}")
            dt = _ovs_docker_add(ns2, f"od{seq}", f"10.61.{seq // 250}.{seq % 250 + 1}/16")
            print("OVSFAB-BENCH " + json.dumps({"tool": "ovs-docker", "size": n, "ports": ports + 1, "s": dt}),
                  flush=True)
        seq += 1
        ns = new_netns(f"b{seq}")
        ports = len(vsctl("list-ports", "br0").stdout.split())
        t0 = time.perf_counter()
        run(PY, "-m", "ovsfab", "attach", "br0", f"netns:{ns}", f"10.60.{seq // 250}.{seq % 250 + 1}/16",
            timeout=300, quiet=True)
        print("OVSFAB-BENCH " + json.dumps({"tool": "ovsfab-cold", "size": n, "ports": ports,
                                            "s": time.perf_counter() - t0}), flush=True)
        for r in range(3):
            t0 = time.perf_counter()
            run("ovs-vsctl", "--timeout=300", "set", "Open_vSwitch", ".", f"external_ids:bench={n}-{r}", quiet=True)
            print("OVSFAB-BENCH " + json.dumps({"tool": "reconfigure", "size": n, "ports": ports + 1,
                                                "s": time.perf_counter() - t0}), flush=True)
    kp = len(dp_ports())
    return f"sizes {sizes}, {k} each; {kp} ports in the kernel datapath at the end ({time.monotonic() - t_start:.0f}s)"


#: Run only when named in ovsfab.only (bench/bench_vm_attach.py), never by default.
EXTRA = [("bench", bench_attach)]


def main() -> int:
    only = set(filter(None, ONLY.split(","))) or {n for n, _ in SCENARIOS}
    try:
        warm_up()
        # /init starts OVS while this process imports; it writes the flag when vswitchd answers
        deadline = time.monotonic() + 120
        while not os.path.exists("/run/ovs-ready"):
            if os.path.exists("/run/ovs-failed") or time.monotonic() > deadline:
                raise Fail("OVS did not start (see the log above)")
            time.sleep(0.2)
    except Exception as exc:  # noqa: BLE001
        log(traceback.format_exc())
        for name, _ in SCENARIOS + EXTRA:
            if name in only:
                print(f"OVSFAB-RESULT {name} FAIL not run: {exc}", flush=True)
        return 1
    failed = 0
    peer_lost = False
    for name, fn in SCENARIOS + EXTRA:
        if name not in only:
            continue
        if peer_lost and name != "attach":
            print(f"OVSFAB-RESULT {name} FAIL not run: the other guest was lost earlier", flush=True)
            failed += 1
            continue
        t0 = time.monotonic()
        try:
            detail = fn()
            print(f"OVSFAB-RESULT {name} PASS {detail} ({time.monotonic() - t0:.1f}s)", flush=True)
        except Exception as exc:  # noqa: BLE001 - report and go on
            failed += 1
            log(traceback.format_exc())
            msg = str(exc).replace("\n", " | ")
            print(f"OVSFAB-RESULT {name} FAIL {msg} ({time.monotonic() - t0:.1f}s)", flush=True)
            if "barrier" in msg:
                peer_lost = True
            _cleanup()
    return 1 if failed else 0


def _cleanup() -> None:
    """After a failure: make the next scenario start from a clean host."""
    for br in vsctl("list-br", check=False).stdout.split():
        vsctl("--if-exists", "del-br", br, check=False)
    for n in os.listdir("/run/netns"):
        run(IP, "netns", "del", n, check=False, quiet=True)
    for name in links():
        if name.startswith("ovf"):
            run(IP, "link", "del", name, check=False, quiet=True)
    run(IP, "link", "set", "eth0", "nomaster", check=False, quiet=True)
    for name in linux_owned():  # the Linux backend's bridges and tunnel devices
        run(IP, "link", "del", name, check=False, quiet=True)
    for name in ("brx", "brg"):  # linux-tunnel's bridges (brx made by the scenario itself)
        run(IP, "link", "del", name, check=False, quiet=True)
    run(IP, "-6", "addr", "del", f"{ip6_of(MY_IP)}/64", "dev", "eth0", check=False, quiet=True)
    st = json.loads(run(IP, "-j", "addr", "show", "dev", "eth0", quiet=True).stdout)[0]
    if not any(a.get("local") == MY_IP for a in st.get("addr_info", [])):
        run(IP, "addr", "add", f"{MY_IP}/24", "dev", "eth0", check=False)


if __name__ == "__main__":
    ROLE, MY_IP, PEER = sys.argv[1], sys.argv[2], sys.argv[3]
    ONLY = sys.argv[4] if len(sys.argv) > 4 else ""
    sys.exit(main())
