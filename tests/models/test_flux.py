"""FLUX.1 in Flax against diffusers' PyTorch FLUX (0.39.0), on tiny random folders that
diffusers' own `FluxPipeline.save_pretrained` wrote (tests/models/data/flux, made by
tests/models/flux_reference.py, which also recorded the reference outputs; torch is not needed
here).

Tolerances are relative to the largest reference value, all in float32. Measured (2 CPU cores,
jax 0.10.2): double/single blocks <= 1.3e-6, whole transformer <= 2.6e-5 (dev at 12x8
latents), 4 Euler steps <= 1.6e-5, decoded images 7e-6 absolute; with the project's own CLIP,
T5 and VAE ports (the larger of jax 0.12.1 on Python 3.12 and 0.10.2 on 3.11): text encoders
4.9e-7, VAE decoder 7.3e-7. The tests allow 1e-4 (2e-4 for the trajectory, which compounds four
calls).
"""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from models import flux
from models.flux import text_encoders
from models.flux import vae as flux_vae
from models.flux import transformer as ft
from models.loading import torch_weights
from samplers import interpolants
from samplers import sampler as sampler_lib
from samplers.interpolants import linear
from tests.models import parity

DATA = os.path.join(parity.DATA, 'flux')
VARIANTS = ('schnell', 'dev')
TEXT_LENGTH = 16

# Numerics, not speed: XLA's optimisation passes would only cost compile time on these shapes.
pytestmark = pytest.mark.usefixtures('fast_compilation')


def _cfg(variant='schnell', **overrides):
  cfg = ml_collections.ConfigDict(dict(
      name='flux', path=os.path.join(DATA, variant), revision='', dtype='float32', image_size=16,
      guidance=3.5 if variant == 'dev' else 0.0, max_sequence_length=TEXT_LENGTH,
      keep_text_encoders=False))
  cfg.update(overrides)
  return cfg


_close = parity.close


@pytest.mark.parametrize('variant', VARIANTS)
def test_prompt_embeddings_match_flux_pipeline(variant):
  ref = parity.reference('flux')
  cond = text_encoders.encode_prompts(_cfg(variant), ['a red cat'])
  assert cond['text'].shape == (1, TEXT_LENGTH, 32) and cond['pooled'].shape == (1, 24)
  _close(cond['text'][0], ref[f'{variant}_prompt_embeds'])
  _close(cond['pooled'][0], ref[f'{variant}_pooled'])


@pytest.mark.parametrize('variant', VARIANTS)
def test_every_block_fed_the_references_inputs(variant):
  ref = parity.reference('flux')
  config, params = ft.load(os.path.join(DATA, variant), 'float32')
  heads, head_dim = config.num_attention_heads, config.attention_head_dim
  inputs = lambda block: [ref[f'{variant}_{block}_in_{k}'] for k in
                          ('hidden', 'encoder', 'temb', 'cos', 'sin')]
  # The rotary tables diffusers built are ours too.
  ids = np.concatenate([np.zeros((TEXT_LENGTH, 3)), ft.image_ids(8, 8)])
  cos, sin = ft.rope_tables(ids, config.axes_dims_rope)
  _close(cos, ref[f'{variant}_double_in_cos'], 1e-6)
  _close(sin, ref[f'{variant}_double_in_sin'], 1e-6)
  # The references hold the first block of each kind, captured inside the full forward pass.
  hidden, encoder, temb, cos, sin = inputs('double')
  img, txt = ft.DoubleBlock(heads, head_dim).apply(
      {'params': params['transformer_blocks_0']}, hidden, encoder, temb, cos, sin)
  _close(img, ref[f'{variant}_double_out_hidden'])
  _close(txt, ref[f'{variant}_double_out_encoder'])
  hidden, encoder, temb, cos, sin = inputs('single')
  out = ft.SingleBlock(heads, head_dim).apply(
      {'params': params['single_transformer_blocks_0']},
      np.concatenate([encoder, hidden], 1), temb, cos, sin)
  _close(out[:, TEXT_LENGTH:], ref[f'{variant}_single_out_hidden'])
  _close(out[:, :TEXT_LENGTH], ref[f'{variant}_single_out_encoder'])


@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('size', [(8, 8), (12, 8)])
def test_whole_transformer_at_two_sizes(variant, size):
  ref = parity.reference('flux')
  config, params = ft.load(os.path.join(DATA, variant), 'float32')
  h, w = size
  ids = np.concatenate([np.zeros((TEXT_LENGTH, 3)), ft.image_ids(h, w)])
  cos, sin = ft.rope_tables(ids, config.axes_dims_rope)
  guidance = jnp.full((1,), 3.5) if config.guidance_embeds else None
  out = ft.FluxTransformer(config).apply(
      {'params': params}, ref[f'{variant}_tokens_{h}x{w}'][None],
      ref[f'{variant}_prompt_embeds'][None], ref[f'{variant}_pooled'][None],
      jnp.full((1,), 0.7), guidance, cos, sin)
  _close(out[0], ref[f'{variant}_out_{h}x{w}'])


def test_vae_decoder_matches_autoencoder_kl():
  ref = parity.reference('flux')
  decoder = flux_vae.decoder(os.path.join(DATA, 'schnell'), 'float32', (8, 6))
  z = np.transpose(ref['vae_latents'], (0, 2, 3, 1))
  images = jax.jit(lambda d, x: d(x))(decoder, z)
  expected = np.clip(np.transpose(ref['vae_images'], (0, 2, 3, 1)) / 2 + 0.5, 0, 1)
  assert images.shape == (2, 16, 12, 3) and decoder.output_shape == (16, 12, 3)
  _close(images, expected)
  # The unclipped decoder output, before [-1, 1] -> [0, 1]: FLUX's VAE without quant convs.
  vae, params, config = flux_vae.load(os.path.join(DATA, 'schnell'), 'float32')
  assert config.use_quant_conv is False and config.use_post_quant_conv is False
  raw_images = vae.apply({'params': params}, z / config.scaling_factor + config.shift_factor,
                         method=vae.decode)
  _close(raw_images, np.transpose(ref['vae_images'], (0, 2, 3, 1)))


@pytest.mark.parametrize('variant', VARIANTS)
def test_four_euler_steps_match_flux_pipeline(variant):
  """Linear-ODE sampling on a uniform 4-step grid (shifted by the scheduler's resolution shift
  for dev) is FluxPipeline's trajectory, step by step, and its decoded image."""
  ref = parity.reference('flux')
  backbone = flux.make_backbone(_cfg(variant))
  assert isinstance(backbone.interpolant, linear.Linear) and backbone.prediction == 'velocity'
  assert backbone.data_shape == (8, 8, 16)
  if variant == 'dev':  # exp(mu), mu from 16 image tokens: diffusers' calculate_shift
    mu = 16 * (1.15 - 0.5) / (4096 - 256) + 0.5 - 256 * (1.15 - 0.5) / (4096 - 256)
    np.testing.assert_allclose(backbone.time_shift, np.exp(mu), rtol=1e-12)
  else:
    assert backbone.time_shift == 1.0
  smp = sampler_lib.make_sampler(backbone, interpolants.get_interpolant('linear'), 4, False)
  cond = {'text': ref[f'{variant}_prompt_embeds'], 'pooled': ref[f'{variant}_pooled']}
  x = ft.unpack(jnp.asarray(ref[f'{variant}_init'])[None], 8, 8)

  @jax.jit
  def trajectory(smp, x):
    def body(x, k):
      x = smp.step(x, smp.denoise(x, k, cond), k, jnp.zeros_like(x))
      return x, ft.pack(x)[0]
    return jax.lax.scan(body, x, jnp.arange(4))

  final, steps = trajectory(smp, x)
  _close(steps, ref[f'{variant}_steps'], 2e-4)
  _close(ft.pack(final)[0], ref[f'{variant}_final'], 2e-4)
  image = jax.jit(lambda d, z: d(z))(backbone.decoder, final)
  np.testing.assert_allclose(np.asarray(image[0]), ref[f'{variant}_image'], atol=1e-4)


def test_packing_round_trips_in_diffusers_order():
  x = np.arange(2 * 4 * 6 * 3, dtype=np.float32).reshape(2, 4, 6, 3)
  tokens = ft.pack(jnp.asarray(x))
  assert tokens.shape == (2, 6, 12)
  # Token (row 0, column 1) holds channel-major 2x2 patches: x[0, 0:2, 2:4, c].
  np.testing.assert_array_equal(np.asarray(tokens[0, 1]),
                                np.transpose(x[0, 0:2, 2:4], (2, 0, 1)).reshape(-1))
  np.testing.assert_array_equal(np.asarray(ft.unpack(tokens, 4, 6)), x)


@pytest.mark.parametrize('target', ['linear', 'vp'])
def test_vp_conversion_on_flux_is_the_linear_model(target):
  """At SNR-matched states, the sampler's Tweedie estimate on any target interpolant is the
  linear FLUX model's own, and the converted velocity is alpha_dot x0 + sigma_dot eps of it."""
  backbone = flux.make_backbone(_cfg('schnell'))
  cond = {k: jnp.asarray(v[0]) for k, v in text_encoders.encode_prompts(_cfg(), ['a red cat']).items()}
  rng = np.random.default_rng(0)
  x0 = rng.standard_normal((3, 8, 8, 16)).astype(np.float32)
  eps = rng.standard_normal((3, 8, 8, 16)).astype(np.float32)
  t = np.array([0.2, 0.5, 0.85], np.float32)
  tt = t[:, None, None, None]
  x_linear = (1 - tt) * x0 + tt * eps
  u = np.asarray(backbone(jnp.asarray(x_linear), jnp.asarray(t), cond))
  expected_x0 = x_linear - tt * u          # x0 = x - sigma (eps - x0) on the linear path
  expected_eps = x_linear + (1 - tt) * u
  interp = interpolants.get_interpolant(target)
  s = np.asarray(interp.inverse_snr(jnp.asarray((1 - t) / t)))
  c = (np.asarray(interp.alpha(s)) + np.asarray(interp.sigma(s)))[:, None, None, None]
  d = jax.jit(lambda b, x, s: sampler_lib.denoise_at(b, interp, x, s, cond))(
      backbone, jnp.asarray(c * x_linear), jnp.asarray(s))
  _close(d.x0, expected_x0)
  sv = s[:, None, None, None]
  expected_u = (np.asarray(interp.alpha_dot(sv)) * expected_x0 +
                np.asarray(interp.sigma_dot(sv)) * expected_eps)
  _close(d.velocity, expected_u)


# ----------------------------------------------------------------------------- bad input


def _copy(tmp_path, variant='schnell'):
  folder = tmp_path / variant
  shutil.copytree(os.path.join(DATA, variant), folder)
  return folder


def test_a_folder_missing_a_component_is_named(tmp_path):
  folder = _copy(tmp_path)
  shutil.rmtree(folder / 'text_encoder_2')
  with pytest.raises(ValueError, match='lacks text_encoder_2'):
    flux.make_backbone(_cfg(path=str(folder)))
  with pytest.raises(ValueError, match='no model_index.json'):
    flux.make_backbone(_cfg(path=str(tmp_path)))


def test_a_t5_of_the_wrong_width_is_refused(tmp_path):
  folder = _copy(tmp_path)
  with open(folder / 'text_encoder_2' / 'config.json') as f:
    t5 = json.load(f)
  t5['d_model'] = 48
  with open(folder / 'text_encoder_2' / 'config.json', 'w') as f:
    json.dump(t5, f)
  with pytest.raises(ValueError, match=r"joint_attention_dim is 32, but text_encoder_2 \(T5\) "
                                       'gives 48-dim'):
    flux.make_backbone(_cfg(path=str(folder)))


@pytest.mark.parametrize('size', [18, 10, -4])
def test_an_image_size_packing_and_vae_cannot_take(size):
  with pytest.raises(ValueError, match='must be a positive multiple of 4'):
    flux.make_backbone(_cfg(image_size=size))


def test_dev_knobs_on_schnell_and_their_absence_on_dev():
  with pytest.raises(ValueError, match='FLUX.1-dev knob.*no guidance embedding'):
    flux.make_backbone(_cfg('schnell', guidance=3.5))
  with pytest.raises(ValueError, match='guidance-distilled.*model.guidance > 0'):
    flux.make_backbone(_cfg('dev', guidance=0.0))
  with pytest.raises(ValueError, match='dtype'):
    flux.make_backbone(_cfg(dtype='float16'))


def test_every_checkpoint_tensor_goes_to_exactly_one_parameter(tmp_path):
  from safetensors.numpy import load_file, save_file  # pylint: disable=g-import-not-at-top
  config = ft.FluxConfig.from_folder(os.path.join(DATA, 'schnell', 'transformer'))
  shapes = ft.shapes(config)
  tensors = load_file(os.path.join(DATA, 'schnell', 'transformer',
                                   'diffusion_pytorch_model.safetensors'))
  params = torch_weights.assign(shapes, tensors, 'FLUX transformer', np.float32)
  assert sum(np.size(p) for p in jax.tree.leaves(params)) == sum(v.size for v in tensors.values())
  extra = dict(tensors, **{'transformer_blocks.0.attn.to_z.weight': np.zeros((32, 32))})
  with pytest.raises(ValueError, match="tensor 'transformer_blocks.0.attn.to_z.weight', which "
                                       'no parameter takes'):
    torch_weights.assign(shapes, extra, 'FLUX transformer', np.float32)
  fewer = {k: v for k, v in tensors.items() if k != 'norm_out.linear.bias'}
  with pytest.raises(ValueError, match='no tensor for parameter norm_out/linear/bias'):
    torch_weights.assign(shapes, fewer, 'FLUX transformer', np.float32)
  wrong = dict(tensors, **{'x_embedder.weight': np.zeros((32, 60), np.float32)})
  with pytest.raises(ValueError, match=r"'x_embedder.weight' has shape \(32, 60\); the "
                                       r"model's x_embedder/kernel needs \(64, 32\)"):
    torch_weights.assign(shapes, wrong, 'FLUX transformer', np.float32)
  # A shard named by the index but absent is named too.
  folder = _copy(tmp_path, 'dev')
  shard = sorted(p for p in os.listdir(folder / 'transformer') if p.endswith('.safetensors'))[0]
  os.remove(folder / 'transformer' / shard)
  with pytest.raises(ValueError, match=f'lacks shard {shard}'):
    torch_weights.read_tensors(str(folder / 'transformer'), 'FLUX transformer')
  (tmp_path / 'two').mkdir()
  save_file({'a': np.zeros(2, np.float32)}, str(tmp_path / 'two' / 'a.safetensors'))
  save_file({'b': np.zeros(2, np.float32)}, str(tmp_path / 'two' / 'b.safetensors'))
  with pytest.raises(ValueError, match='has 2 .safetensors files and no'):
    torch_weights.read_tensors(str(tmp_path / 'two'), 'FLUX transformer')


def test_bfloat16_by_default_and_prompts_encoded_once(monkeypatch):
  parity.check_bfloat16_and_prompt_cache(flux.make_backbone, text_encoders, _cfg(dtype='bfloat16'), monkeypatch)


def test_config_variants():
  from configs import flux as flux_config  # pylint: disable=g-import-not-at-top
  import search  # pylint: disable=g-import-not-at-top
  paper = flux_config.get_config('rbf_paper')
  assert paper.model.path == 'black-forest-labs/FLUX.1-schnell' and paper.model.guidance == 0
  assert (paper.sampler.interpolant, paper.sampler.sde, paper.sampler.num_steps,
          paper.sampler.diffusion, paper.sampler.diffusion_norm, paper.sampler.time_grid) == (
              'vp', True, 10, 'square', 3.0, 'adaptive')
  assert paper.search.method == 'rbf' and paper.search.budget == 500
  assert flux_config.get_config('sample').experiment == 'sample'
  assert flux_config.get_config('dev').model.guidance == 3.5
  for method in search.METHODS:
    assert flux_config.get_config(f'tiny,{method}').search.method == method
  with pytest.raises(ValueError, match='Unknown config variant'):
    flux_config.get_config('schnel')


def test_linear_sde_sampling_runs_on_flux():
  """Linear-ODE is the trajectory test above and VP-SDE the end-to-end search tests; the
  third sampler of the RBF paper samples too, with the caller's seed deciding the draw."""
  backbone = flux.make_backbone(_cfg())
  smp = sampler_lib.make_sampler(backbone, interpolants.get_interpolant('linear'), 4, True)
  cond = {k: jnp.asarray(v[0]) for k, v in text_encoders.encode_prompts(_cfg(), ['a red cat']).items()}
  fn = jax.jit(lambda s, key: s.sample(key, 2, cond))
  a, b = fn(smp, jax.random.key(0)), fn(smp, jax.random.key(1))
  assert a.x0.shape == (2, 8, 8, 16) and int(a.nfe) == 8
  assert np.all(np.isfinite(np.asarray(a.x0)))
  assert not np.allclose(np.asarray(a.x0), np.asarray(b.x0))


def test_chunked_attention_is_attention():
  rng = np.random.default_rng(3)
  q, k, v = (jnp.asarray(rng.standard_normal((2, 21, 3, 8)), jnp.float32) for _ in range(3))
  whole = ft.attention(q, k, v, chunk=64)
  np.testing.assert_allclose(np.asarray(ft.attention(q, k, v, chunk=8)), np.asarray(whole),
                             rtol=1e-5, atol=1e-6)
  assert whole.shape == (2, 21, 24)
