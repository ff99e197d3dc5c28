"""Thin pytest fixtures over tests/testbed.py (see that module for details)."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import testbed as tb  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "docker: needs a running dockerd")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "unprivileged: pure logic, runs as an ordinary user")


def pytest_runtest_setup(item):
    """Real-component tests need root (netns, OVS daemons, docker); pure-logic ones do not.

    As an ordinary user the pure-logic tests (marked ``unprivileged``) run
    and every other test is skipped with the reason.
    """
    if os.geteuid() != 0 and item.get_closest_marker("unprivileged") is None:
        pytest.skip("needs root: the ovsfab test bed makes netns, OVS daemons and Docker containers")


# ---------------------------------------------------------------- OVS hosts
@pytest.fixture
def ovs_hosts():
    """Factory: ovs_hosts(n) -> list of n fresh OvsHost (closed at teardown)."""
    made = []

    def make(n: int = 1):
        hosts = []
        for _ in range(n):
            h = tb.OvsHost()
            made.append(h)
            hosts.append(h)
        return hosts

    yield make
    for h in reversed(made):
        h.close()


@pytest.fixture
def ovs_host(ovs_hosts):
    """One fresh simulated host (netns + private ovsdb-server/vswitchd)."""
    return ovs_hosts(1)[0]


@pytest.fixture(scope="module")
def shared_host():
    """A simulated host reused by a whole module (for tests that only read or
    that fail before changing anything)."""
    h = tb.OvsHost()
    yield h
    h.close()


# ---------------------------------------------------------------- targets
@pytest.fixture
def netns_targets():
    """Factory: netns_targets(name=None) -> NetnsTarget (deleted at teardown)."""
    made = []

    def make(name=None):
        t = tb.make_netns(name)
        made.append(t)
        return t

    yield make
    for t in made:
        tb.delete_netns(t.name)


@pytest.fixture
def pid_targets():
    """Factory: pid_targets() -> PidTarget (an `unshare --net sleep`)."""
    made = []

    def make():
        t = tb.make_pid_target()
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


# ---------------------------------------------------------------- docker
@pytest.fixture(scope="session")
def docker_image():
    reason = tb.docker_available()
    if reason is not None:
        msg = f"dockerd not usable: {reason}"
        if os.environ.get("OVSFAB_REQUIRE_DOCKER") == "1":
            pytest.fail(msg + " (OVSFAB_REQUIRE_DOCKER=1)", pytrace=False)
        pytest.skip(msg)
    return tb.build_busybox_image()


def _containers(docker_image):
    """A container factory and, after the yield, removal of what it made."""
    made = []

    def make(name=None):
        c = tb.start_container(name, image=docker_image)
        made.append(c)
        return c

    yield make
    tb.remove_containers(c.name for c in made)


@pytest.fixture
def containers(docker_image):
    """Factory: containers(name=None) -> Container (`--network none`)."""
    yield from _containers(docker_image)


@pytest.fixture(scope="module")
def module_containers(docker_image):
    """Module-scoped container factory (for tests that reuse containers)."""
    yield from _containers(docker_image)


@pytest.fixture(scope="module")
def bed():
    """A private dockerd (tests/dockerbed.py) with the test image, one per test module: a test may
    restart it without touching the machine's dockerd."""
    from dockerbed import DockerBed  # noqa: PLC0415

    b = DockerBed()
    try:
        b.import_busybox()
        yield b
    finally:
        b.close()
