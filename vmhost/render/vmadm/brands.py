"""The HVM brands vmhost renders for."""

from typing import Literal

Brand = Literal["bhyve", "kvm"]
BRANDS: tuple[Brand, ...] = ("bhyve", "kvm")
