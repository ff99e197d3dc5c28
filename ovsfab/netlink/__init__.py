"""The one rtnetlink socket layer (``rtnl.py``), below both backends and plumbing.

The Linux backend, links, inspect and the backend choice all talk to the
kernel through :class:`ovsfab.netlink.rtnl.Rtnl`: receive deadlines and
ENOBUFS handling live in one place.  Standard library and pyroute2's message
classes only; nothing of ovsfab above ``errors``.
"""
