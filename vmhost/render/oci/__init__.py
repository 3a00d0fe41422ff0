"""OCI runtime config (config.json) for `kind: container` specs: a pure function of the spec and the image."""

from vmhost.render.oci.config import CPU_PERIOD_US, ImageConfig, process_args, render_config

__all__ = ["CPU_PERIOD_US", "ImageConfig", "process_args", "render_config"]
