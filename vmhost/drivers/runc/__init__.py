"""The runc driver: `kind: container` specs as OCI containers (kept free of imports: the shim starts from here)."""
