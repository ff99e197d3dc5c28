"""The Vagrantfile and the shell scripts are checked, and the provisioning script runs for real."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "scripts", "*.sh"))) + [os.path.join(ROOT, ".ci", "run")]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (scripts/setup.sh installs it)")
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return path


def test_vagrantfile_syntax():
    cp = subprocess.run([tool("ruby"), "-c", os.path.join(ROOT, "Vagrantfile")],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0 and "Syntax OK" in cp.stdout, cp.stderr


def test_vagrantfile_has_the_walkthrough_hosts():
    with open(os.path.join(ROOT, "Vagrantfile"), encoding="utf-8") as fh:
        text = fh.read()
    for expected in ('"docker-test1" => "192.168.77.5"', '"docker-test2" => "192.168.77.6"',
                     "--nicpromisc2", "scripts/provision-vagrant.sh"):
        assert expected in text


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_shell_scripts_pass_bash_n_and_shellcheck(script):
    assert subprocess.run(["bash", "-n", script], capture_output=True, timeout=30).returncode == 0
    cp = subprocess.run([tool("shellcheck"), "-S", "warning", script], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stdout


def test_provisioning_script_installs_ovsfab(tmp_path):
    """Runs for real on this machine: packages (already there), a venv in a temporary
    prefix, ovsfab from this checkout; no services started, no NIC renamed."""
    env = dict(os.environ, OVSFAB_SRC=ROOT, OVSFAB_PREFIX=str(tmp_path / "opt"), OVSFAB_NO_SERVICES="1")
    env.pop("OVSFAB_UNDERLAY_IP", None)
    link = "/usr/local/bin/ovsfab"
    before = os.readlink(link) if os.path.islink(link) else None
    try:
        cp = subprocess.run(["bash", os.path.join(ROOT, "scripts", "provision-vagrant.sh")], env=env,
                            capture_output=True, text=True, timeout=600)
        assert cp.returncode == 0, cp.stderr[-2000:]
        out = subprocess.run([str(tmp_path / "opt" / "bin" / "ovsfab"), "--version"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stdout.startswith("ovsfab "), out.stderr
    finally:
        if before is None:
            if os.path.islink(link):
                os.unlink(link)
        else:
            os.symlink(before, link + ".tmp")
            os.replace(link + ".tmp", link)
