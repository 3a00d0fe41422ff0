"""The ZStack dialect: ZStack's commands (StartVmCmd, AttachDataVolumeCmd, ...) as vmhost spec documents.

Conversion only, no host access and no HTTP: the routes, handlers and async tasks that serve ZStack's management
node live in vmhost/api/zstack/ and call these functions.
"""

from vmhost.dialects.zstack.convert import boot_devices, reboot_boot_order, start_vm_spec
from vmhost.dialects.zstack.devices import data_volume_disk, source_identity, volume_source
from vmhost.dialects.zstack.values import (
    LOOPBACK,
    NAME_LABEL,
    Unmappable,
    fallback_name,
    is_set,
    json_list,
    json_object,
    vm_uuid,
    zstack_uuid,
)

__all__ = [
    "LOOPBACK",
    "NAME_LABEL",
    "Unmappable",
    "boot_devices",
    "data_volume_disk",
    "fallback_name",
    "is_set",
    "json_list",
    "json_object",
    "reboot_boot_order",
    "source_identity",
    "start_vm_spec",
    "vm_uuid",
    "volume_source",
    "zstack_uuid",
]
