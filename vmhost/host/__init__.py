"""Host facilities every layer may use: durable private files, the one host command runner, the agent's token files.

Nothing here imports from the rest of vmhost but vmhost.errors (the import contract in pyproject.toml says so).
"""
