"""Boot the two ovsfab test guests under qemu (TCG) and collect their results.

    python tests/vm/vmrun.py [--only attach,uplink,tunnel] [--keep-logs DIR]

Guest a (192.168.77.5) and guest b (192.168.77.6) are joined by a qemu UDP
socket netdev on loopback: each sends its eth0 frames to the other's UDP port
on 127.0.0.1, so nothing leaves the host.  ``-accel tcg`` always: KVM hangs on
the machines this was written for.

Each guest prints ``OVSFAB-RESULT <scenario> PASS|FAIL <detail>`` lines on
its serial console (a log file) and powers off; this module parses them.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

import initramfs  # noqa: E402

CACHE = Path(os.environ.get("OVSFAB_VM_CACHE") or Path.home() / ".cache" / "ovsfab-vm")
GUESTS = (("a", "192.168.77.5", "192.168.77.6"), ("b", "192.168.77.6", "192.168.77.5"))
SCENARIOS = ("attach", "vlan", "uplink", "linux-uplink", "tunnel", "tunnels", "linux-tunnel")
#: The whole two-guest run (boot included) must finish within this.
RUN_TIMEOUT = float(os.environ.get("OVSFAB_VM_TIMEOUT", "240"))
RESULT_RE = re.compile(r"^OVSFAB-RESULT (\S+) (PASS|FAIL) ?(.*)$")


class Unavailable(Exception):
    """qemu or the kernel cannot be obtained on this machine."""


@dataclass
class GuestRun:
    role: str
    log: Path
    rc: Optional[int] = None
    results: Dict[str, Tuple[str, str]] = field(default_factory=dict)
    done: bool = False

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def parse(self) -> None:
        for line in self.text().splitlines():
            line = line.strip("\r\x1b[?7l\x1bc[2J")
            i = line.find("OVSFAB-")
            if i < 0:
                continue
            line = line[i:]
            m = RESULT_RE.match(line)
            if m:
                self.results[m.group(1)] = (m.group(2), m.group(3))
            elif line.startswith("OVSFAB-DONE"):
                self.done = True


@dataclass
class Run:
    guests: List[GuestRun]
    timings: Dict[str, float]
    initramfs: Path
    kernel: Path

    def result(self, scenario: str) -> Dict[str, Tuple[str, str]]:
        return {g.role: g.results.get(scenario, ("MISSING", "no result line")) for g in self.guests}

    def logs(self) -> str:
        return "\n".join(f"===== guest {g.role} (qemu rc={g.rc}) {g.log}\n{g.text()}" for g in self.guests)


def qemu_binary() -> str:
    q = shutil.which("qemu-system-x86_64")
    if not q:
        raise Unavailable("qemu-system-x86_64 is not installed (scripts/vm-deps.sh installs it)")
    return q


def kernel_tree(fetch: bool = True) -> Path:
    """The unpacked cloud kernel (vmlinuz + lib/modules), fetched by scripts/vm-deps.sh."""
    cur = CACHE / "kernel" / "current"
    if (cur / "vmlinuz").exists():
        return cur.resolve()
    if fetch and os.geteuid() == 0:
        cp = subprocess.run([str(REPO / "scripts" / "vm-deps.sh"), "--print-kernel"],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OVSFAB_VM_CACHE": str(CACHE)})
        if cp.returncode == 0 and (cur / "vmlinuz").exists():
            return cur.resolve()
        raise Unavailable(f"scripts/vm-deps.sh could not fetch the cloud kernel: {cp.stderr.strip()[-500:]}")
    raise Unavailable(f"no cloud kernel in {CACHE}/kernel (run scripts/vm-deps.sh as root)")


def free_udp_ports(n: int) -> List[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def run(only: Optional[List[str]] = None, logdir: Optional[Path] = None, roles: Tuple[str, ...] = ("a", "b"),
        timeout: float = RUN_TIMEOUT, append: str = "", memory: int = 1024) -> Run:
    """Boot the guests named in ``roles``, wait for them (at most ``timeout`` s), parse their results.

    ``append`` goes onto the kernel command line (the bench's ``ovsfab.bench=...``)."""
    t0 = time.monotonic()
    qemu = qemu_binary()
    tree = kernel_tree()
    t_kernel = time.monotonic()
    image, built, _ = initramfs.ensure(tree, CACHE)
    t_image = time.monotonic()
    logdir = Path(logdir or tempfile.mkdtemp(prefix="ovsfab-vm-"))
    logdir.mkdir(parents=True, exist_ok=True)
    ports = free_udp_ports(2)
    procs: List[Tuple[GuestRun, subprocess.Popen]] = []
    for i, (role, ip, peer) in enumerate(GUESTS):
        if role not in roles:
            continue
        g = GuestRun(role, logdir / f"guest-{role}.log")
        cmdline = (f"console=ttyS0 quiet panic=-1 mitigations=off ovsfab.role={role} ovsfab.ip={ip} "
                   f"ovsfab.peer={peer}" + (f" ovsfab.only={','.join(only)}" if only else "")
                   + (f" {append}" if append else ""))
        mac = f"52:54:00:77:00:0{i + 5}"
        cmd = [qemu, "-accel", "tcg", "-m", str(memory), "-smp", "1", "-no-reboot",
               "-nographic", "-display", "none", "-monitor", "none", "-serial", f"file:{g.log}",
               "-kernel", str(tree / "vmlinuz"), "-initrd", str(image), "-append", cmdline,
               "-netdev", f"socket,id=n0,udp=127.0.0.1:{ports[1 - i]},localaddr=127.0.0.1:{ports[i]}",
               "-device", f"virtio-net-pci,netdev=n0,mac={mac},romfile="]
        procs.append((g, subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=open(logdir / f"qemu-{role}.err", "w"))))
    deadline = time.monotonic() + timeout
    for g, p in procs:
        try:
            g.rc = p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            g.rc = p.wait()
            with open(g.log, "a") as fh:
                fh.write(f"\n[harness] guest {g.role} killed after {timeout:.0f}s\n")
    for g, _ in procs:
        err = (logdir / f"qemu-{g.role}.err").read_text(errors="replace").strip()
        if err:
            with open(g.log, "a") as fh:
                fh.write(f"\n[harness] qemu stderr: {err}\n")
        g.parse()
    t_end = time.monotonic()
    timings = {"kernel": t_kernel - t0, "initramfs": t_image - t_kernel, "initramfs_built": float(built),
               "guests": t_end - t_image, "total": t_end - t0}
    return Run([g for g, _ in procs], timings, image, tree)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated scenarios (default: all)")
    ap.add_argument("--keep-logs", type=Path, help="directory for the guests' serial logs")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the guests' logs")
    args = ap.parse_args()
    try:
        r = run(args.only.split(",") if args.only else None, args.keep_logs)
    except Unavailable as exc:
        print(f"unavailable: {exc}", file=sys.stderr)
        return 2
    ok = True
    for sc in (args.only.split(",") if args.only else SCENARIOS):
        for role, (status, detail) in r.result(sc).items():
            ok &= status == "PASS"
            print(f"{sc:8} {role} {status} {detail}")
    print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in r.timings.items()))
    print("logs: " + ", ".join(str(g.log) for g in r.guests))
    if args.verbose or not ok:
        print(r.logs())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
