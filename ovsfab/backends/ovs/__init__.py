"""The Open vSwitch backend: OVSDB through the python-ovs IDL."""
