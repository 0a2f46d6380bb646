"""Data sets and the in-memory batch stream."""
