"""Backends: one small interface (base.Backend), one implementation per switch kind.

Chosen by :func:`ovsfab.backends.factory.get_backend`, which imports the
implementation lazily, so the Linux backend never pays for python-ovs and the
OVS backend never for the bridge code it does not use.
"""
