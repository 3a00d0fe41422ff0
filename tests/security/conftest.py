"""Security regression tests: one module per door that was open. They reuse the real-daemon fixtures of the
integration suite (a real libvirtd, real agents on loopback), so a test here attacks the agent as it runs."""

from tests.integration.conftest import (  # noqa: F401  (fixtures)
    _no_leftovers,
    agent,
    cli,
    config,
    config_file,
    data_dir,
    engine,
    guest,
    guest_spec,
    http,
    libvirt_conn,
    vm_name,
)
