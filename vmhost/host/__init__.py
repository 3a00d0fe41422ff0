"""Host facilities every layer may use (files, permissions); nothing here imports from the rest of vmhost."""
