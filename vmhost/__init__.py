"""vmhost: one declarative VM spec, one lifecycle engine, several hypervisor drivers."""

__version__ = "0.1.0"
