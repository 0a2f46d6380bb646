"""Built-in architectures, one module each."""
