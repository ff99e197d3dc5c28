"""Importing ovsfab patches no library: every private-interface swap is an explicit call.

Pure logic: runs without root.  Every module of the package is imported in a
fresh interpreter, which then checks python-ovs's parser and pyroute2's
package are the libraries' own.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import importlib, pkgutil, sys
import ovsfab
failed = []
for mod in pkgutil.walk_packages(ovsfab.__path__, "ovsfab."):
    if mod.name.endswith("__main__"):
        continue
    try:
        importlib.import_module(mod.name)
    except ImportError as exc:  # an optional dependency; the rest is still checked
        failed.append(f"{mod.name}: {exc}")
import ovs.json
assert ovs.json.Parser.__module__ == "ovs.json", f"ovs.json.Parser is {ovs.json.Parser!r} after imports"
pkg = sys.modules.get("pyroute2")
assert pkg is None or "__getattr__" not in vars(pkg), "pyroute2's package was deferred by an import"
print(len(sys.modules), failed)
"""


@pytest.mark.unprivileged
def test_importing_every_module_patches_nothing():
    cp = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr[-2000:]
    count, failed = cp.stdout.split(" ", 1)
    assert int(count) > 100 and failed.strip() == "[]", cp.stdout
