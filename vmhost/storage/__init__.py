"""Disk images on the host, through qemu-img."""
