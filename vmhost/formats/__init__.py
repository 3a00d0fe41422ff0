"""Names in the hypervisors' own documents that vmhost both writes (vmhost/render) and reads back (vmhost/dialects,
vmhost/drivers): defined once, below both, so the renderer and the dialect cannot drift apart."""
