"""Evaluation: sample figures and distribution distances."""
