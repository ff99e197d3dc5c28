"""Build the guests' initramfs (cpio newc; gzip only with OVSFAB_VM_GZIP=1) from what this host has.

Contents, all taken from the host at the paths it has them:

* static busybox (``/bin/busybox`` + applet links in /bin and /sbin);
* the OVS binaries, ``ip``, ``ping`` and ``ethtool``, and every shared
  library ``ldd`` lists for them (and for python and its extension modules);
* the python interpreter of this venv's base installation with a lean
  stdlib (no test suite, tkinter, idlelib, ensurepip, ...), plus the venv's
  distributions that ovsfab needs on ``netns:`` targets -- ovs, pyroute2,
  typer and their requirements, not the docker SDK -- and the ovsfab source
  from this repo, all installed into the base interpreter's site-packages;
* the kernel modules openvswitch (and its vports, conntrack netlink, veth,
  virtio-net) needs, in ``modprobe --show-depends`` order (/modules/order);
* ``/init`` and ``/scenarios.py`` from tests/vm/guest/.

The image is cached under the cache directory, keyed by a hash of every
input (paths, sizes, mtimes), so an unchanged tree is not rebuilt.

Usage: python tests/vm/initramfs.py KERNEL_TREE [CACHE_DIR]   (prints the image's path)
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.metadata as md
import io
import os
import re
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
GUEST = HERE / "guest"

#: gzip the image?  Under TCG the kernel inflates slowly; an uncompressed
#: cpio boots faster (measured, see docs/kernel-datapath.md).
COMPRESS = os.environ.get("OVSFAB_VM_GZIP") == "1"

#: Modules the guests load; their dependencies come from modprobe.
MODULES = ("virtio_pci", "virtio_net", "veth", "nfnetlink", "nf_conntrack_netlink",
           "openvswitch", "vport-vxlan", "vport-geneve", "vport-gre",
           # the Linux backend: bridge (vlan_filtering); gretap, vxlan, geneve come with the vports;
           # ip6gretap (GRE over an IPv6 underlay) is ip6_gre's
           "bridge", "ip6_gre")

#: Host binaries the guests run (besides python): found on PATH.
BINARIES = ("ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovsdb-tool", "ovs-dpctl", "ovs-appctl",
            "ovs-ofctl", "ip", "bridge", "ping", "ethtool")
DATA_FILES = ("/usr/share/openvswitch/vswitch.ovsschema",)
#: Libraries loaded with dlopen (ldd does not list them): glibc's pthread_exit
#: needs libgcc_s when a python process ends with threads (the bench's cold runs).
DLOPEN_LIBS = ("/usr/lib/x86_64-linux-gnu/libgcc_s.so.1",)

#: Busybox applets not linked because a real tool is shipped instead.
REAL_TOOLS = {"ip", "bridge", "ping", "ping6", "ethtool"}

#: Top-level stdlib entries not shipped (size; nothing on the guest imports them).
STDLIB_SKIP = {"test", "site-packages", "tkinter", "idlelib", "ensurepip", "lib2to3", "turtledemo",
               "pydoc_data", "distutils", "turtle.py", "__phello__",
               "curses", "dbm", "xmlrpc", "wsgiref", "msilib", "venv"}
DYNLOAD_SKIP = re.compile(r"^(_test|_tkinter|_ctypes_test|xxlimited|_xxtestfuzz|_curses|_dbm|"
                          r"_gdbm|readline|_testcapi|_testinternalcapi|_testbuffer|_testimportmultiple|"
                          r"_testmultiphase|_testclinic|xxsubtype)")

#: Distributions the guest needs: ovsfab's requirements minus the docker SDK
#: (``netns:`` targets never import it), recursively.
ROOT_DISTS = ("ovs", "pyroute2", "typer")
SKIP_DISTS = {"docker", "requests", "urllib3", "idna", "certifi", "charset-normalizer", "pip",
              "setuptools"}


class Cpio:
    """A minimal cpio "newc" writer (what the kernel unpacks)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1
        self.seen: Set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", mtime: int = 0) -> None:
        name = name.lstrip("/")
        if name in self.seen:
            return
        self.seen.add(name)
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            self.ino, mode, 0, 0, 1, mtime, len(data), 0, 0, 0, 0, len(nb), 0))
        self.ino += 1
        self.buf.write(hdr.encode() + nb)
        self.buf.write(b"\0" * (-(110 + len(nb)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dirs(self, path: str) -> None:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in self.seen:
                self._entry(d, stat.S_IFDIR | 0o755)

    def file(self, path: str, data: bytes, mode: int = 0o644, mtime: int = 0) -> None:
        self.dirs(os.path.dirname(path))
        self._entry(path, stat.S_IFREG | mode, data, mtime)

    def copy(self, src: str, dst: Optional[str] = None, mode: Optional[int] = None) -> None:
        st = os.stat(src)
        data = Path(src).read_bytes()
        if data[:4] == b"\x7fELF" and data[16] in (2, 3):  # executables and shared objects, not .ko
            data = strip(data)
        self.file(dst or src, data, mode if mode is not None else stat.S_IMODE(st.st_mode), int(st.st_mtime))

    def symlink(self, path: str, target: str) -> None:
        self.dirs(os.path.dirname(path))
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def strip(data: bytes) -> bytes:
    """ELF without debug symbols (libpython and its extension modules carry ~25 MB)."""
    with tempfile.NamedTemporaryFile(suffix=".elf") as tmp:
        tmp.write(data)
        tmp.flush()
        cp = subprocess.run(["strip", "--strip-unneeded", "-o", tmp.name + ".s", tmp.name],
                            capture_output=True)
        if cp.returncode != 0:
            return data
        try:
            return Path(tmp.name + ".s").read_bytes()
        finally:
            os.unlink(tmp.name + ".s")


# ------------------------------------------------------------------ inputs
def which(name: str) -> str:
    for d in ("/usr/bin", "/usr/sbin", "/bin", "/sbin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    raise FileNotFoundError(f"{name} is not installed (run scripts/setup.sh)")


def ldd(paths: Iterable[str]) -> Set[str]:
    """Shared libraries (as ldd names them) of ELF files, the loader included."""
    out: Set[str] = set()
    paths = list(paths)
    for i in range(0, len(paths), 200):
        cp = subprocess.run(["ldd", *paths[i:i + 200]], capture_output=True, text=True)
        for line in cp.stdout.splitlines():
            m = re.search(r"=>\s+(/\S+)", line) or re.match(r"\s+(/\S+)\s+\(", line)
            if m:
                out.add(m.group(1))
    return out


def guest_path(p: str) -> str:
    """Where a host file goes in the guest: its directory resolved (merged /usr)."""
    return os.path.join(os.path.realpath(os.path.dirname(p)), os.path.basename(p))


def module_order(tree: Path) -> List[Path]:
    version = (tree / "lib" / "modules").iterdir().__next__().name
    order: List[Path] = []
    for mod in MODULES:
        cp = subprocess.run(["modprobe", "-d", str(tree), "-S", version, "--show-depends", mod],
                            capture_output=True, text=True, check=True)
        for line in cp.stdout.splitlines():
            parts = line.split()
            if parts and parts[0] == "insmod":
                p = Path(parts[1])
                if p not in order:
                    order.append(p)
    return order


def guest_dists() -> List[md.Distribution]:
    want, todo = {}, list(ROOT_DISTS)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in want or key in SKIP_DISTS:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        want[key] = dist
        for req in dist.requires or []:
            if "extra ==" in req:
                continue
            todo.append(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0])
    return list(want.values())


def stdlib_files() -> List[Tuple[str, str]]:
    """(host path, guest path) of the lean stdlib (same paths on the guest)."""
    lib = Path(sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["stdlib"])
    files = []
    for root, dnames, fnames in os.walk(lib):
        rel = os.path.relpath(root, lib)
        if rel == ".":
            dnames[:] = [d for d in dnames if d not in STDLIB_SKIP and not d.startswith("config-")]
            fnames = [f for f in fnames if f not in STDLIB_SKIP]
        if rel == "lib-dynload":
            fnames = [f for f in fnames if not DYNLOAD_SKIP.match(f)]
        for f in fnames:
            if f.endswith((".opt-1.pyc", ".opt-2.pyc", ".exe", ".a")):
                continue
            p = os.path.join(root, f)
            files.append((p, p))
    return files


def site_files() -> List[Tuple[str, str]]:
    """(host path, guest path) of the guest's packages, into the base site-packages."""
    base_site = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["purelib"]
    files = []
    for dist in guest_dists():
        for f in dist.files or []:
            src = Path(dist.locate_file(f)).resolve()
            if not src.is_file() or str(f).startswith(".."):
                continue
            files.append((str(src), os.path.join(base_site, str(f))))
    for root, dnames, fnames in os.walk(REPO / "ovsfab"):
        for f in fnames:
            if f.endswith((".py", ".pyc")) or f == "py.typed":
                p = os.path.join(root, f)
                files.append((p, os.path.join(base_site, os.path.relpath(p, REPO))))
    return files


def python_files() -> List[Tuple[str, str]]:
    exe = os.path.realpath(os.path.join(sys.base_prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}"))
    files = [(exe, exe)]
    libdir = sysconfig.get_config_var("LIBDIR") or os.path.join(sys.base_prefix, "lib")
    ldlib = sysconfig.get_config_var("INSTSONAME")
    if ldlib and os.path.exists(os.path.join(libdir, ldlib)):
        files.append((os.path.join(libdir, ldlib), os.path.join(libdir, ldlib)))
    return files + stdlib_files() + site_files()


def inputs(tree: Path) -> Dict[str, object]:
    py = python_files()
    bins = [which(b) for b in BINARIES]
    mods = module_order(tree)
    guest = sorted(str(p) for p in GUEST.iterdir() if p.is_file())
    return {"python": py, "bins": bins, "mods": mods, "guest": guest, "tree": tree}


def digest(inp: Dict[str, object]) -> str:
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    paths = [s for s, _ in inp["python"]] + list(inp["bins"]) + [str(m) for m in inp["mods"]] \
        + list(inp["guest"]) + ["/usr/bin/busybox", str(inp["tree"] / "vmlinuz"), *DATA_FILES]
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def build(tree: Path, out: Path, inp: Dict[str, object]) -> None:
    c = Cpio()
    for d in ("proc", "sys", "dev", "run", "tmp", "etc/openvswitch", "var/log/openvswitch", "root",
              "usr/lib/x86_64-linux-gnu", "usr/lib64", "usr/bin", "usr/sbin", "bin", "sbin"):
        c.dirs(d)
    c.symlink("lib", "usr/lib")
    c.symlink("lib64", "usr/lib64")
    c.symlink("var/run", "../run")
    # busybox and its applets (not where a real tool is shipped)
    c.copy("/usr/bin/busybox", "/bin/busybox")
    applets = subprocess.run(["busybox", "--list-full"], capture_output=True, text=True, check=True).stdout
    for a in applets.split():
        if os.path.basename(a) in REAL_TOOLS or a in ("bin/busybox",):
            continue
        d = os.path.dirname(a)
        if d.startswith("usr/"):
            d = d[4:]  # /bin and /sbin only: /usr/bin and /usr/sbin hold the real tools
        c.symlink(os.path.join(d, os.path.basename(a)), "/bin/busybox")
    # binaries, python, and the shared libraries they need
    elves: List[str] = []
    for b in inp["bins"]:
        c.copy(os.path.realpath(b), guest_path(b))
        elves.append(b)
    for src, dst in inp["python"]:
        c.copy(src, dst)
        if src.endswith(".so") or ".so." in os.path.basename(src):
            elves.append(src)
    exe = inp["python"][0][0]
    elves.append(exe)
    c.symlink("usr/bin/python3", exe)
    for lib in sorted(ldd(elves) | {p for p in DLOPEN_LIBS if os.path.exists(p)}):
        c.copy(os.path.realpath(lib), guest_path(lib))
    for f in DATA_FILES:
        c.copy(f)
    # kernel modules in load order
    order = []
    for i, m in enumerate(inp["mods"]):
        name = f"{i:02d}-{m.name}"
        c.copy(str(m), f"/modules/{name}")
        order.append(name)
    c.file("/modules/order", ("\n".join(order) + "\n").encode())
    c.file("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    c.file("/etc/group", b"root:x:0:\n")
    c.file("/etc/hosts", b"127.0.0.1 localhost\n")
    c.file("/etc/nsswitch.conf", b"hosts: files\n")
    c.file("/etc/resolv.conf", b"")
    for g in inp["guest"]:
        name = os.path.basename(g)
        c.copy(g, "/init" if name == "init" else f"/{name}", mode=0o755)
    data = c.finish()
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(gzip.compress(data, compresslevel=6, mtime=0) if COMPRESS else data)
    os.replace(tmp, out)


def ensure(tree: Path, cache: Path) -> Tuple[Path, bool, float]:
    """The initramfs for this kernel tree and this repo: (path, built now?, seconds)."""
    t0 = time.monotonic()
    inp = inputs(tree)
    out = cache / f"initramfs-{tree.name}-{digest(inp)}.cpio{'.gz' if COMPRESS else ''}"
    if out.exists():
        return out, False, time.monotonic() - t0
    cache.mkdir(parents=True, exist_ok=True)
    # older images go, unless another run may be about to boot one (qemu
    # reads the image when it starts, so minutes of grace are plenty)
    for old in cache.glob(f"initramfs-{tree.name}-*.cpio*"):
        try:
            if time.time() - old.stat().st_mtime > 600:
                old.unlink()
        except OSError:
            pass
    build(tree, out, inp)
    return out, True, time.monotonic() - t0


if __name__ == "__main__":
    tree = Path(sys.argv[1]).resolve()
    cache = Path(sys.argv[2]) if len(sys.argv) > 2 else tree.parent.parent
    path, built, secs = ensure(tree, cache)
    print(path)
    print(f"initramfs: {'built' if built else 'cached'} in {secs:.1f}s, {path.stat().st_size / 1e6:.1f} MB",
          file=sys.stderr)
