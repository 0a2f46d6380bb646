"""Network building blocks shared by the architectures."""
