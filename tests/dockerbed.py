"""A private dockerd for tests that restart dockerd: the shared one serves every other test.

    bed = DockerBed()          # its own --data-root, --exec-root (and containerd), pidfile and socket
    image = bed.import_busybox()
    c = bed.run("--restart", "always", "--network", "none", image, "sleep", "1d")
    bed.restart()              # SIGTERM, wait, start again with the same command line
    bed.close()                # containers removed one at a time, dockerd stopped, its directory gone

dockerd 20.10 flags: ``--bridge=none --iptables=false --ip6tables=false``
(no default bridge, no rules shared with the machine's dockerd),
``--config-file`` an empty one (the machine's daemon.json is not read),
``--cgroup-parent`` its own.  Without ``--containerd`` it starts its own
containerd under ``--exec-root``.

It runs in a network namespace of its own (:attr:`netns_path`; ``nsenter
--net``, the mount namespace stays the machine's): with ``--bridge=none``
dockerd DELETES the interface ``docker0`` of its namespace at start
(libnetwork's removeDefaultBridgeInterface), which in the root namespace is
the machine dockerd's bridge.  A Docker network driver serving this dockerd
creates the veth ends Docker moves in that namespace (``ovsfab docker-driver
--docker-netns``).  It finds plugins in the same ``/run/docker/plugins`` and
``/etc/docker/plugins`` as the machine's, and is a child of this process
(PID 1 here reaps nothing).  Live restore is off: a restart stops every
container; those with a restart policy come back.

Clients reach it with ``DOCKER_HOST`` (:meth:`env`); ovsfab reads it too.
Containers get ``--stop-timeout 0`` (SIGKILL at once) unless given one: busybox ``sleep`` as
PID 1 ignores SIGTERM, and dockerd would wait 10 s for each at shutdown.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable, List, Optional

import testbed as tb

DOCKERD = "dockerd"


class BedContainer(tb.Container):
    """A container of a private dockerd (``exec``/``refresh_pid`` go to that dockerd)."""

    bed: "DockerBed" = None  # type: ignore[assignment]

    def exec(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return self.bed.docker("exec", self.name, *cmd, check=check, timeout=timeout)

    def refresh_pid(self) -> int:
        self.pid = int(self.bed.docker("inspect", "-f", "{{.State.Pid}}", self.id).stdout.strip())
        return self.pid


class DockerBed:
    """One private dockerd (and its containerd), started at construction."""

    def __init__(self, start_timeout: float = 60) -> None:
        # Short path: unix socket paths (containerd's under exec-root too) must fit 108 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="ovsfab-db-", dir="/tmp"))
        self.sock = self.dir / "docker.sock"
        self.host = f"unix://{self.sock}"
        self.pidfile = self.dir / "docker.pid"
        self.logfile = self.dir / "dockerd.log"
        (self.dir / "daemon.json").write_text("{}\n")
        self.netns = tb.make_netns(f"ovsfab-{self.dir.name}")
        self.netns_path = f"/run/netns/{self.netns.name}"
        self.proc: Optional[subprocess.Popen] = None
        self.made: List[str] = []
        self.start_timeout = start_timeout
        try:
            self.start()
        except BaseException:
            self.close()
            raise

    # -- the daemon ------------------------------------------------------
    def argv(self) -> List[str]:
        d = self.dir
        return ["nsenter", f"--net={self.netns_path}", DOCKERD, "--config-file", str(d / "daemon.json"), "--data-root", str(d / "data"),
                "--exec-root", str(d / "exec"), "--pidfile", str(self.pidfile), "-H", self.host,
                "--bridge=none", "--iptables=false", "--ip6tables=false",
                f"--cgroup-parent=/{d.name}"]  # dockerd's own --shutdown-timeout (15 s): with 5, a
        # loaded host saw "Force shutdown daemon" with 100 containers, and some --restart always
        # ones did not come back (their cleanup failed with containerd gone)

    def start(self) -> float:
        """Start dockerd; seconds until it answers."""
        t0 = time.monotonic()
        log = open(self.logfile, "ab")
        try:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True, cwd="/")
        finally:
            log.close()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"private dockerd exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            if self.answers():
                return time.monotonic() - t0
            if time.monotonic() - t0 > self.start_timeout:
                raise RuntimeError(f"private dockerd did not answer in {self.start_timeout:g} s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def answers(self) -> bool:
        try:
            return self.docker("version", "--format", "{{.Server.Version}}", check=False, timeout=10).returncode == 0
        except subprocess.TimeoutExpired:  # listening, still restoring its containers
            return False

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM and wait (its containers stop; its containerd exits with it)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)

    def restart(self, down: float = 0.0) -> float:
        """Stop, stay down ``down`` s, start; seconds from the start to dockerd answering."""
        self.stop()
        time.sleep(down)
        return self.start()

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def _kill_leftovers(self) -> None:
        """containerd shims outlive their containerd (by design): those of this dockerd that a stop
        interrupted mid-way (e.g. while it restored containers) are killed, their containers first."""
        needle = str(self.dir).encode()
        procs = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    cmdline = Path(f"/proc/{d}/cmdline").read_bytes()
                    ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                procs[int(d)] = (ppid, needle in cmdline)
        shims = [pid for pid, (_, ours) in procs.items() if ours]
        for pid in [p for p, (ppid, _) in procs.items() if ppid in shims] + shims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -- clients ---------------------------------------------------------
    def env(self, extra: Optional[dict] = None) -> dict:
        """What a client of this dockerd needs in its environment."""
        return {"DOCKER_HOST": self.host, **(extra or {})}

    def docker(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return tb.run(["docker", "-H", self.host, *args], check=check, timeout=timeout)

    def import_busybox(self, tag: str = tb.IMAGE) -> str:
        """The test image (static busybox) imported into this dockerd: there is no registry."""
        with tempfile.TemporaryDirectory(prefix="ovsfab-img-") as d:
            root = Path(d)
            (root / "bin").mkdir()
            (root / "tmp").mkdir()
            shutil.copy2(shutil.which("busybox") or "/bin/busybox", root / "bin" / "busybox")
            for a in tb.BUSYBOX_APPLETS:
                os.symlink("busybox", root / "bin" / a)
            tar = subprocess.Popen(["tar", "-C", d, "-c", "."], stdout=subprocess.PIPE)
            cp = subprocess.run(["docker", "-H", self.host, "import", "-c", "ENV PATH=/bin", "-", tag],
                                stdin=tar.stdout, capture_output=True, text=True, timeout=120)
            tar.stdout.close()
            tar.wait()
        if cp.returncode != 0:
            raise RuntimeError(f"docker import into the private dockerd failed: {cp.stderr}")
        return tag

    def run(self, *args: str, name: Optional[str] = None) -> BedContainer:
        """``docker run -d`` (args: options, image, command); the container is removed at close."""
        name = name or tb.unique("db")
        self.made.append(name)
        opts = [] if "--stop-timeout" in args else ["--stop-timeout", "0"]
        cid = self.docker("run", "-d", "--name", name, *opts, *args).stdout.strip()
        c = BedContainer(name=name, id=cid, pid=0)
        c.bed = self
        c.refresh_pid()
        return c

    def remove(self, names: Iterable[str]) -> None:
        for n in names:  # one at a time (moby#46661)
            self.docker("rm", "-f", n, check=False, timeout=60)

    def close(self) -> None:
        """Remove the containers, stop dockerd, delete its directory (after unmounting what it left)."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.remove(self.made)
        finally:
            self.stop()
            self._kill_leftovers()
            prefix = str(self.dir) + "/"
            with open("/proc/self/mounts") as f:
                mounts = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
            for m in sorted(mounts, key=len, reverse=True):
                tb.run(["umount", "-l", m], check=False)
            tb.run(["rm", "-rf", "--one-file-system", str(self.dir)], check=False, timeout=120)
            tb.delete_netns(self.netns.name)
