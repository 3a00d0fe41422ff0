"""Drivers: each talks to one hypervisor, behind the Driver protocol."""
