"""ovsfab: connect containers across hosts over Open vSwitch."""

__version__ = "0.1.0"
