"""podman with the CNI backend, private to one test or bench run.

A test-private containers.conf (``CONTAINERS_CONF``) sets the CNI backend,
a private CNI configuration directory, the CNI plugin directory and the
rlimits runc accepts here; nothing machine-wide is changed except podman's
image store (the imported busybox image stays, like the Docker one).
Containers only ever join the named networks written here (never podman's
default network, which would make a bridge in the root namespace).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import List, Optional

import testbed as tb

IMAGE = "localhost/ovsfab-cni-test:busybox"
CNI_BIN = "/usr/lib/cni"


class Podman:
    """A private podman configuration: conflists are added with :meth:`network`."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ovsfab-podman-"))
        self.netdir = self.dir / "net.d"
        self.netdir.mkdir()
        conf = self.dir / "containers.conf"
        conf.write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n'
            "[network]\n"
            'network_backend = "cni"\n'
            f'network_config_dir = "{self.netdir}"\n'
            f'cni_plugin_dirs = ["{CNI_BIN}"]\n')
        self.env = tb.clean_env({"CONTAINERS_CONF": str(conf)})
        self.names: List[str] = []

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cp = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and cp.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} -> {cp.returncode}: {cp.stderr.strip()}")
        return cp

    def image(self) -> str:
        """The busybox image, made with `podman import` of busybox-static (once per machine)."""
        if self.run("image", "exists", IMAGE, check=False).returncode == 0:
            return IMAGE
        with tempfile.TemporaryDirectory(prefix="ovsfab-pimg-") as d:
            (Path(d) / "bin").mkdir()
            shutil.copy2(shutil.which("busybox") or "/bin/busybox", Path(d) / "bin" / "busybox")
            for applet in ("sh", "sleep", "ip", "ping"):
                os.symlink("busybox", Path(d) / "bin" / applet)
            tar = subprocess.Popen(["tar", "-C", d, "-c", "."], stdout=subprocess.PIPE)
            cp = subprocess.run(["podman", "import", "-c", "ENV PATH=/bin", "-", IMAGE], stdin=tar.stdout,
                                capture_output=True, text=True, timeout=120, env=self.env)
            tar.stdout.close()
            tar.wait()
        if cp.returncode != 0:
            raise RuntimeError(f"podman import failed: {cp.stderr}")
        return IMAGE

    def network(self, name: str, plugin: dict, subnet: str, version: str = "1.0.0") -> None:
        """A conflist ``name`` whose one plugin is ``plugin`` plus host-local IPAM on ``subnet``."""
        plugin = dict(plugin)
        plugin["ipam"] = {"type": "host-local", "dataDir": str(self.dir / "ipam"),
                          "ranges": [[{"subnet": subnet, "rangeStart": subnet.rsplit(".", 1)[0] + ".10",
                                       "rangeEnd": subnet.rsplit(".", 1)[0] + ".199"}]]}
        doc = {"cniVersion": version, "name": name, "plugins": [plugin]}
        (self.netdir / f"{name}.conflist").write_text(json.dumps(doc, indent=1))

    def start(self, network: str, name: Optional[str] = None) -> str:
        """A detached `sleep` container on ``network``; its name."""
        name = name or tb.unique("p")
        self.names.append(name)
        self.run("run", "-d", "--name", name, "--network", network, IMAGE, "sleep", "1000000")
        return name

    def netns(self, name: str) -> str:
        """The container's network namespace file (podman: /run/netns/cni-...)."""
        return self.run("inspect", "-f", "{{.NetworkSettings.SandboxKey}}", name).stdout.strip()

    def address(self, name: str, network: str) -> str:
        out = json.loads(self.run("inspect", "-f", "{{json .NetworkSettings.Networks}}", name).stdout)
        return out[network]["IPAddress"]

    def remove(self, name: str) -> None:
        self.run("rm", "-f", "-t", "0", name, check=False)
        if name in self.names:
            self.names.remove(name)

    def close(self) -> None:
        for name in list(self.names):
            self.remove(name)
        shutil.rmtree(self.dir, ignore_errors=True)


def podman_available() -> Optional[str]:
    """None when podman and the CNI plugins are installed, else why not."""
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/setup.sh)"
    for plugin in ("ovsfab", "host-local", "bridge"):
        if not os.access(os.path.join(CNI_BIN, plugin), os.X_OK):
            return f"{CNI_BIN}/{plugin} is missing (scripts/setup.sh)"
    return None
