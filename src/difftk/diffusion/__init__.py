"""The mathematics of diffusion, with no I/O: processes, targets, weights, samplers."""
