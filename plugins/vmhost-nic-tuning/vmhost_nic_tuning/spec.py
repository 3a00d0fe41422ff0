"""The plugin's settings and its per-VM spec block `extensions: {"nic-tuning": {...}}`."""

from typing import Annotated

from pydantic import Field

from vmhost.spec.base import SpecModel

PLUGIN = "nic-tuning"
"""The plugin's name: the key of its spec block and of its config table, its URL prefix."""

DEFAULT_FEATURES = ("gso", "gro")
"""The host-stack offloads that stay off. TSO and checksumming on a tap are QEMU's to set: it turns them off
when it opens the tap and on again when the guest's virtio driver asks for them, whatever ethtool said."""

Feature = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9_-]{0,63}$",
        description="An `ethtool -K` feature: a short name (gso, gro, tso, tx, sg, ...) or a long one "
        "(tx-tcp-segmentation).",
    ),
]
Features = Annotated[list[Feature], Field(min_length=1)]


class NicTuningSettings(SpecModel):
    """The config file's [plugins.nic-tuning] table."""

    features: Features = Field(default_factory=lambda: list(DEFAULT_FEATURES), description="Turned off on every tap.")
    ethtool: str = Field("ethtool", pattern=r"^[A-Za-z0-9_./-]+$", description="The ethtool command.")


class NicTuningBlock(SpecModel):
    """One VM's own choice, over the host's settings."""

    enabled: bool = Field(True, description="False leaves this VM's taps as QEMU made them.")
    features: Features | None = Field(None, description="Turned off on this VM's taps instead of the settings'.")
