"""The HTTP agent: native REST API (/v1), ZStack command dialect, console websocket, metrics."""
