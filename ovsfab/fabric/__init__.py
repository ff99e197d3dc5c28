"""``ovsfab apply``: one file describes the fabric; each host applies its own part.

Pure code (no I/O beyond reading the file, no heavy imports):

* :mod:`ovsfab.fabric.spec`     the file -> validated :class:`~ovsfab.fabric.spec.Fabric`,
                                every error reported as ``FILE:LINE: ...``
* :mod:`ovsfab.fabric.ipam`     deterministic addresses for attachments without one
* :mod:`ovsfab.fabric.desired`  this host's part: bridges, uplinks, tunnels, attachments

What exists on the host, the plan (create / change / delete) and its
execution live in :mod:`ovsfab.ops.apply`.
"""
