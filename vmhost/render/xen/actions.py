"""What Xen does when the guest powers off, reboots or crashes: the spec's actions carry xl's own names."""

from vmhost.render.xen.values import Settings, XlString
from vmhost.spec import VMSpec


def action_settings(spec: VMSpec) -> Settings:
    lifecycle = spec.lifecycle
    return {
        "on_poweroff": XlString(lifecycle.on_poweroff),
        "on_reboot": XlString(lifecycle.on_reboot),
        "on_crash": XlString(lifecycle.on_crash),
    }
