"""``ovsfab-cni``: ovsfab as a CNI plugin (spec 1.0.0, and 1.1.0's STATUS and GC).

One process per request, as CNI wants it: the network configuration on
stdin, ``CNI_*`` in the environment, a result or an error object on stdout.
:mod:`.plugin` is the executable: standard library only until it has handed
the raw request to a running agent, else it runs the request itself.  The
request is the operation ``cni.request`` (ovsfab/ops/cni_request.py: the
configuration, IPAM delegation, results and errors live in
ovsfab/ops/cni_*.py, so the agent can run it), built on ``cni.add`` /
``cni.del`` / ``cni.check`` / ``cni.gc`` / ``cni.status`` (ovsfab/ops/cni.py);
see docs/cni.md.
"""
