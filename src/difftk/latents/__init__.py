"""Representations diffusion is learned in: pixels, an engineered invertible transform, or
the latents of an autoencoder (seed 001 §5.3). Contracts and mathematics; no loop, no CLI."""
