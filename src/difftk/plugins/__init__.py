"""Built-in components. Each module is a plugin registered through the same hooks as a
third-party package (see difftk.registry.BUILTIN_MODULES)."""
