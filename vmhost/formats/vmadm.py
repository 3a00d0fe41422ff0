"""vmadm payload names vmhost relies on: the keys of its record in internal_metadata, and imgadm image zvols."""

import re

SPEC_KEY = "vmhost:spec"
OWNER_KEY = "vmhost:owner"
UUID_PATTERN = r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}"
IMAGE_ZVOL = re.compile(rf"^/dev/zvol/r?dsk/(?P<zpool>[A-Za-z0-9_.-]+)/(?P<uuid>{UUID_PATTERN})$")
"""The device an imgadm image lives on, as a disk's path names it (raw or block device)."""


def image_zvol(zpool: str, image_uuid: str) -> str:
    """The device an imgadm image lives on; the inverse of IMAGE_ZVOL."""
    return f"/dev/zvol/rdsk/{zpool}/{image_uuid}"
