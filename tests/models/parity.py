"""What the parity tests share: the committed PyTorch references and the comparison they use."""

import functools
import os

import numpy as np

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
# The prompts of tests/models/sd_reference.py: punctuation, accents, numbers, one past 77 tokens.
PROMPTS = ('a red cat', 'A photo of an astronaut riding a horse on Mars, highly detailed!!',
           "it's a dog's life: café crème brûlée, 3.14 $100 " + 'word ' * 80)
SD_VARIANTS = ('sd15', 'sd2v', 'sdxl')


@functools.lru_cache(maxsize=None)
def reference(name: str) -> dict:
  """The arrays of data/NAME/reference.npz (name: 'sd' or 'flux')."""
  return dict(np.load(os.path.join(DATA, name, 'reference.npz')))


def close(actual, expected, rel=1e-4):
  """|actual - expected| <= rel x the largest |expected|, elementwise, at the same shape."""
  expected = np.asarray(expected)
  assert np.asarray(actual).shape == expected.shape
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=0,
                             atol=rel * np.abs(expected).max())


def nhwc(x):
  """PyTorch's NCHW -> NHWC."""
  return np.transpose(x, (0, 2, 3, 1))


def check_bfloat16_and_prompt_cache(make_backbone, text_encoders, cfg, monkeypatch) -> None:
  """A flow backbone's transformer loads in bfloat16 when model.dtype is unset, and its
  text_encoders module loads the encoders once for prompts seen before (FLUX, SD3)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  cfg = cfg.copy_and_resolve_references()
  del cfg['dtype']
  backbone = make_backbone(cfg)
  assert {p.dtype for p in jax.tree.leaves(backbone.params['transformer'])} == {
      jnp.dtype(jnp.bfloat16)}
  calls = []
  original = text_encoders.load
  monkeypatch.setattr(text_encoders, 'load', lambda *a: calls.append(a) or original(*a))
  text_encoders.encode_prompts(cfg, ['a new prompt', 'another'])
  text_encoders.encode_prompts(cfg, ['another', 'a new prompt', ''])
  assert len(calls) == 1   # the second call is served from the cache
