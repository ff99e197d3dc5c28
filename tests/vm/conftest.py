"""tests/vm: ovsfab on OVS's kernel datapath, inside qemu guests (see docs/kernel-datapath.md)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "vm: boots qemu guests with the OVS kernel module (run alone: pytest -m vm tests/vm)")
