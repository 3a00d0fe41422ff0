"""The ZStack KVM-agent command dialect: ZStack's paths, async protocol and StartVmCmd on top of vmhost."""

from vmhost.api.zstack.routes import router

__all__ = ["router"]
