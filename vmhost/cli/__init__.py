"""The `vmhost` command line, in the style of SmartOS vmadm."""
