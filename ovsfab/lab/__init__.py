"""The lab: simulated hosts on one machine, for the demo and for newcomers.

Each lab host is a network namespace with its own private ovsdb-server and
ovs-vswitchd (the only processes ovsfab ever starts) and an ``eth1`` on a
shared wire.  Everything the lab configures goes through ovsfab's own
operations, OVSDB and netlink.
"""
