"""The pixel ranges, in one place: backbones make pixels in [-1, 1] ("signed"); decoders, image
rewards and plots take [0, 1] ("unit"); image files hold uint8."""

import jax.numpy as jnp
import numpy as np


def signed_to_unit(x):
  """[-1, 1] -> [0, 1], clipped (jnp, traceable)."""
  return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)


def signed_to_uint8(x) -> np.ndarray:
  """[-1, 1] floats -> uint8 in [0, 255], rounded and clipped (numpy, on the host)."""
  return np.clip(np.round((np.asarray(x) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def unit_to_uint8(x) -> np.ndarray:
  """[0, 1] floats -> uint8 in [0, 255], rounded and clipped (numpy, on the host)."""
  return np.clip(np.round(np.asarray(x) * 255.0), 0, 255).astype(np.uint8)
