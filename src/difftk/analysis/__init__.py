"""The seeds' diagnostics and figures."""
