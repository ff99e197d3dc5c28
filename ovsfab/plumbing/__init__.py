"""Plumbing: containers, network namespaces and links (netlink via pyroute2)."""
