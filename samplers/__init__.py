"""Interpolants, prediction and interpolant conversions, SDE/ODE steps and the plain sampler."""
