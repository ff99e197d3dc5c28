"""OVN: networks that OVN's distributed control plane carries.

ovsfab drives OVN, it does not reimplement it: ``central`` starts (or adopts)
the northbound/southbound ovsdb-servers and ovn-northd, ``join`` points a
host's Open vSwitch at them and makes sure ovn-controller runs, and OVN
networks are logical switches written through the python-ovs IDL.

Modules: ``idl`` (sessions on OVN_Northbound / OVN_Southbound / the local
Open_vSwitch), ``daemons`` (starting ovsdb-server, ovn-northd,
ovn-controller: the only processes this room runs), ``control`` (central,
join, status), ``network`` (logical switches, ports, routers; attach/detach).
"""
