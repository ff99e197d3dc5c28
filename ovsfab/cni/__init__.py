"""``ovsfab-cni``: ovsfab as a CNI plugin (spec 1.0.0, and 1.1.0's STATUS and GC).

One process per request, as CNI wants it: the network configuration on
stdin, ``CNI_*`` in the environment, a result or an error object on stdout.
The work is done by the operations ``cni.add`` / ``cni.del`` / ``cni.check``
/ ``cni.gc`` / ``cni.status`` (ovsfab/ops/cni.py) through
:func:`ovsfab.cni.run.run_operation`; see docs/cni.md.

Modules: :mod:`.errors` (the CNI error object and codes), :mod:`.config`
(stdin and environment into a checked request), :mod:`.delegate` (running
the IPAM plugin), :mod:`.result` (the result types and versions),
:mod:`.run` (the one place an operation runs), :mod:`.plugin` (the commands).
"""
