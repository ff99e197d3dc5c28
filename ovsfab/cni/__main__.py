"""``python -m ovsfab.cni``: the same as the ``ovsfab-cni`` executable."""

from ovsfab.cni.plugin import main

raise SystemExit(main())
