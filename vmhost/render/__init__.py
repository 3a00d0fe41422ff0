"""Renderers: pure functions from a VMSpec to what one hypervisor reads."""
