"""ovsfab as a Docker network (and IPAM) driver: the libnetwork remote driver API over a unix socket.

:mod:`ovsfab.driver.handlers` maps each Docker call to an operation of
:mod:`ovsfab.ops.api`; :mod:`ovsfab.driver.server` serves them as JSON over
HTTP on a unix socket.  See docs/docker-driver.md.
"""
