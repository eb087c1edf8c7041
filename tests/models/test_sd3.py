"""Stable Diffusion 3 / 3.5 in Flax against diffusers' PyTorch SD3 (0.39.0), on tiny random
folders that diffusers' own `StableDiffusion3Pipeline.save_pretrained` wrote
(tests/models/data/sd3: SD3.5-large-, SD3.5-medium- and SD3.0-style; made by
tests/models/sd3_reference.py, which also recorded the reference outputs; torch is not needed
here).

Tolerances are relative to the largest reference value, all in float32. Measured (the larger of
jax 0.10.2 on Python 3.11 and 0.12.1 on 3.12): first and last blocks <= 6.6e-7, whole
transformer <= 7.7e-6 (two sizes, three variants), prompt embeddings (three encoders, prompt
and empty negative) <= 5.5e-7, VAE decoder 6.6e-7, 4 guided steps on the pipeline's grid
<= 1.1e-5 and decoded images 1.1e-5 absolute. The tests allow 1e-4 (2e-4 for the trajectory,
which compounds eight transformer calls).
"""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from models import autoencoder_kl
from models import sd3
from models.loading import torch_weights
from models.sd3 import text_encoders
from models.sd3 import transformer as st
from samplers import interpolants
from samplers import sampler as sampler_lib
from samplers import schedules
from samplers.interpolants import linear
from tests.models import parity

DATA = os.path.join(parity.DATA, 'sd3')
VARIANTS = ('large', 'medium', 'sd30')
TEXT_LENGTH = 16
GUIDANCE = 4.5

# Numerics, not speed: XLA's optimisation passes would only cost compile time on these shapes.
pytestmark = pytest.mark.usefixtures('fast_compilation')
_close = parity.close


def _cfg(variant='large', **overrides):
  cfg = ml_collections.ConfigDict(dict(
      name='sd3', path=os.path.join(DATA, variant), revision='', dtype='float32', image_size=16,
      guidance_scale=GUIDANCE, max_sequence_length=TEXT_LENGTH, keep_text_encoders=False))
  cfg.update(overrides)
  return cfg


def _nhwc(x):
  return np.moveaxis(np.asarray(x), -3, -1)


# The three folders' encoders share one architecture: medium's and sd30's run with -m slow.
@pytest.mark.parametrize('variant', [
    v if v == 'large' else pytest.param(v, marks=pytest.mark.slow) for v in VARIANTS])
def test_prompt_and_negative_embeddings_match_the_pipeline(variant):
  ref = parity.reference('sd3')
  cond = text_encoders.encode_prompts(_cfg(variant), ['a red cat', ''])
  assert cond['text'].shape == (2, 77 + TEXT_LENGTH, 64) and cond['pooled'].shape == (2, 40)
  _close(cond['text'][0], ref[f'{variant}_prompt_embeds'])
  _close(cond['pooled'][0], ref[f'{variant}_pooled'])
  _close(cond['text'][1], ref[f'{variant}_negative_embeds'])
  _close(cond['pooled'][1], ref[f'{variant}_negative_pooled'])
  # CLIP-L's 24 and bigG's 32 features are zero-padded to T5's 64, as the pipeline pads.
  assert not np.any(cond['text'][:, :77, 56:]) and np.any(cond['text'][:, 77:, 56:])


@pytest.mark.parametrize('variant', VARIANTS)
def test_first_and_last_blocks_and_the_whole_transformer(variant):
  """The first block (SD3.5-medium's dual attention there) and the last, context_pre_only one,
  each fed the inputs captured inside diffusers' forward pass; then the whole transformer on
  two latent sizes (the positional table's centre crop follows the size)."""
  ref = parity.reference('sd3')
  config, params = st.load(os.path.join(DATA, variant), 'float32')
  assert (config.qk_norm is None) == (variant == 'sd30')
  assert config.dual_attention_layers == ((0,) if variant == 'medium' else ())
  for name, index in (('first', 0), ('last', config.num_layers - 1)):
    block = st.JointBlock(config.num_attention_heads, config.attention_head_dim,
                          config.qk_norm is not None, context_pre_only=name == 'last',
                          dual=index in config.dual_attention_layers)
    img, txt = block.apply({'params': params[f'transformer_blocks_{index}']},
                           *(ref[f'{variant}_{name}_in_{k}'] for k in ('hidden', 'encoder', 'temb')))
    _close(img, ref[f'{variant}_{name}_out_hidden'])
    if name == 'first':
      _close(txt, ref[f'{variant}_first_out_encoder'])
    else:
      assert txt is None
  model = st.SD3Transformer(config)
  for h, w in ((8, 8), (12, 8)):
    out = model.apply({'params': params}, _nhwc(ref[f'{variant}_latents_{h}x{w}'][None]),
                      ref[f'{variant}_prompt_embeds'][None], ref[f'{variant}_pooled'][None],
                      jnp.full((1,), 0.7))
    _close(out[0], _nhwc(ref[f'{variant}_out_{h}x{w}']))


def test_vae_decoder_matches_autoencoder_kl():
  ref = parity.reference('sd3')
  backbone_decoder = sd3.vae_decoder(
      os.path.join(DATA, 'large'), 'float32',
      autoencoder_kl.read_config(os.path.join(DATA, 'large', 'vae'), 'SD3 VAE'), (8, 6))
  images = jax.jit(lambda d, x: d(x))(backbone_decoder, _nhwc(ref['vae_latents']))
  assert images.shape == (2, 16, 12, 3)
  _close(images, np.clip(_nhwc(ref['vae_images']) / 2 + 0.5, 0, 1))


@pytest.mark.parametrize('variant', VARIANTS)
def test_four_guided_steps_match_the_pipeline(variant):
  """The linear ODE on time_grid 'flow_match' with the backbone's shift is the pipeline's
  sigmas exactly, and its Euler steps with classifier-free guidance 4.5 (the empty negative
  prompt) are StableDiffusion3Pipeline's trajectory, step by step, and its decoded image."""
  ref = parity.reference('sd3')
  backbone = sd3.make_backbone(_cfg(variant))
  assert isinstance(backbone.interpolant, linear.Linear) and backbone.prediction == 'velocity'
  assert backbone.data_shape == (8, 8, 16) and backbone.time_shift == 3.0
  np.testing.assert_allclose(backbone.grid_end, 3e-3 / 1.002, rtol=1e-12)  # shift(1/1000)
  smp = sampler_lib.make_sampler(backbone, interpolants.get_interpolant('linear'), 4, False,
                                 time_grid='flow_match')
  np.testing.assert_allclose(np.asarray(smp.grid), ref[f'{variant}_sigmas'], rtol=1e-6)
  cond = {k: jnp.asarray(v[0]) for k, v in
          text_encoders.encode_prompts(_cfg(variant), ['a red cat']).items()}

  @jax.jit
  def trajectory(smp, x):
    def body(x, k):
      x = smp.step(x, smp.denoise(x, k, cond), k, jnp.zeros_like(x))
      return x, x[0]
    return jax.lax.scan(body, x, jnp.arange(4))

  final, steps = trajectory(smp, jnp.asarray(_nhwc(ref[f'{variant}_init'][None])))
  _close(steps, _nhwc(ref[f'{variant}_steps']), 2e-4)
  image = jax.jit(lambda d, z: d(z))(backbone.decoder, final)
  np.testing.assert_allclose(np.asarray(image[0]), ref[f'{variant}_image'], atol=1e-4)


def test_the_flow_match_grid_is_diffusers_default_grid():
  """linspace(1, end, M), then 0; the shift on top is the scheduler's (checked against the
  pipeline's sigmas above); FLUX's dynamic-shift scheduler ends at 1/1000 unshifted."""
  np.testing.assert_allclose(schedules.time_grid('flow_match', 3, 0.1), [1, 0.55, 0.1, 0],
                             rtol=1e-6)
  np.testing.assert_array_equal(schedules.time_grid('flow_match', 1, 0.1), [1, 0])
  from models import diffusers_folder  # pylint: disable=g-import-not-at-top
  assert diffusers_folder.flow_grid_end({'use_dynamic_shifting': True, 'shift': 3.0}) == 1e-3
  with pytest.raises(ValueError, match="'flow_match' ends at the scheduler's sigma_min"):
    schedules.time_grid('flow_match', 4, 0.0)


def test_guidance_is_the_pipelines_and_one_nfe():
  """v = v(none) + s (v(text) - v(none)) from one batched call; s = 1 or no prompt is a
  single conditional (or unconditional) pass."""
  backbone = sd3.make_backbone(_cfg())
  cond = {k: jnp.asarray(v[0]) for k, v in
          text_encoders.encode_prompts(_cfg(), ['a red cat']).items()}
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 8, 16)), jnp.float32)
  t = jnp.asarray([0.3, 0.8])
  config, params = st.load(os.path.join(DATA, 'large'), 'float32')
  uncond = {'text': backbone.params['uncond_text'], 'pooled': backbone.params['uncond_pooled']}
  plain = sd3.assemble(config, params, uncond, backbone.data_shape, 3.0, 1.0, jnp.float32,
                       backbone.decoder)
  call = jax.jit(lambda b, x, t, c: b(x, t, c))
  with_text, without = call(plain, x, t, cond), call(plain, x, t, None)
  _close(call(backbone, x, t, cond), without + GUIDANCE * (with_text - without))
  _close(call(backbone, x, t, None), without)


def test_vp_conversion_on_sd3_is_the_linear_model():
  """At SNR-matched states, the sampler's Tweedie estimate on any target interpolant is the
  linear SD3 model's own (RBF's VP-SDE by conversion runs on SD3.5 as on FLUX)."""
  backbone = sd3.make_backbone(_cfg('medium'))
  cond = {k: jnp.asarray(v[0]) for k, v in
          text_encoders.encode_prompts(_cfg('medium'), ['a red cat']).items()}
  rng = np.random.default_rng(0)
  x0, eps = (rng.standard_normal((3, 8, 8, 16)).astype(np.float32) for _ in range(2))
  t = np.array([0.2, 0.5, 0.85], np.float32)
  x_linear = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * eps
  u = np.asarray(jax.jit(lambda b, x, t: b(x, t, cond))(backbone, x_linear, t))
  interp = interpolants.get_interpolant('vp')
  s = np.asarray(interp.inverse_snr(jnp.asarray((1 - t) / t)))
  c = (np.asarray(interp.alpha(s)) + np.asarray(interp.sigma(s)))[:, None, None, None]
  d = jax.jit(lambda b, x, s: sampler_lib.denoise_at(b, interp, x, s, cond))(
      backbone, jnp.asarray(c * x_linear), jnp.asarray(s))
  _close(d.x0, x_linear - t[:, None, None, None] * u)


# ----------------------------------------------------------------------------- bad input


def _copy(tmp_path, variant='large'):
  folder = tmp_path / variant
  shutil.copytree(os.path.join(DATA, variant), folder)
  return folder


def _edit(path, **changes):
  with open(path) as f:
    raw = json.load(f)
  raw.update(changes)
  with open(path, 'w') as f:
    json.dump(raw, f)


def test_a_folder_missing_a_component_is_named(tmp_path):
  folder = _copy(tmp_path)
  shutil.rmtree(folder / 'text_encoder_3')
  with pytest.raises(ValueError, match='not a SD3 folder: it lacks text_encoder_3'):
    sd3.make_backbone(_cfg(path=str(folder)))


def test_encoders_and_transformer_that_do_not_belong_together(tmp_path):
  folder = _copy(tmp_path)
  _edit(folder / 'transformer' / 'config.json', pooled_projection_dim=48)
  with pytest.raises(ValueError, match=r"pooled_projection_dim is 48, but the text encoders "
                                       'give 40-dim pooled'):
    sd3.make_backbone(_cfg(path=str(folder)))
  # FLUX's tiny folders share the tokenizers' vocabularies: their T5 is 32 wide, their CLIP
  # a CLIPTextModel without a projection.
  flux = os.path.join(parity.DATA, 'flux', 'schnell')
  folder = _copy(tmp_path / 'b')
  shutil.rmtree(folder / 'text_encoder_3')
  shutil.copytree(os.path.join(flux, 'text_encoder_2'), folder / 'text_encoder_3')
  with pytest.raises(ValueError, match=r'give 56-dim states together, wider than '
                                       r"text_encoder_3's \(T5\) 32"):
    sd3.make_backbone(_cfg(path=str(folder)))
  folder = _copy(tmp_path / 'c')
  shutil.rmtree(folder / 'text_encoder')
  shutil.copytree(os.path.join(flux, 'text_encoder'), folder / 'text_encoder')
  with pytest.raises(ValueError, match='text_encoder of .* is a CLIPTextModel; SD3 pools'):
    sd3.make_backbone(_cfg(path=str(folder)))


@pytest.mark.parametrize('changes, message', [
    (dict(qk_norm='layer_norm'), "qk_norm='layer_norm': supported are None, 'rms_norm'"),
    (dict(dual_attention_layers=[5]), 'dual_attention_layers name block 5, but it has 2'),
    (dict(caption_projection_dim=48), 'caption_projection_dim=48 differs'),
])
def test_a_transformer_config_the_port_cannot_build(tmp_path, changes, message):
  folder = _copy(tmp_path)
  _edit(folder / 'transformer' / 'config.json', **changes)
  with pytest.raises(ValueError, match=message):
    st.SD3Config.from_folder(str(folder / 'transformer'))


def test_sizes_guidance_and_dtype_are_checked():
  with pytest.raises(ValueError, match='must be a positive multiple of 4'):
    sd3.make_backbone(_cfg(image_size=18))
  with pytest.raises(ValueError, match='guidance_scale must be >= 1'):
    sd3.make_backbone(_cfg(guidance_scale=0.5))
  with pytest.raises(ValueError, match='dtype'):
    sd3.make_backbone(_cfg(dtype='float16'))
  config, params = st.load(os.path.join(DATA, 'large'), 'float32')
  with pytest.raises(ValueError, match=r'latents of 36 x 8 make a 18 x 4 patch grid, larger '
                                       r"than the transformer's positional table \(16 x 16\)"):
    st.SD3Transformer(config).apply({'params': params}, jnp.zeros((1, 36, 8, 16)),
                                    jnp.zeros((1, 4, 64)), jnp.zeros((1, 40)), jnp.zeros((1,)))


def test_every_checkpoint_tensor_goes_to_exactly_one_parameter():
  """The medium folder's transformer is sharded: all shards read, each tensor placed once."""
  sub = os.path.join(DATA, 'medium', 'transformer')
  config = st.SD3Config.from_folder(sub)
  tensors = torch_weights.read_tensors(sub, 'SD3 transformer')
  assert len(torch_weights.weight_files(sub, 'SD3 transformer')) > 1
  params = torch_weights.assign(st.shapes(config), tensors, 'SD3 transformer', np.float32)
  assert sum(np.size(p) for p in jax.tree.leaves(params)) == sum(v.size for v in tensors.values())
  extra = dict(tensors, **{'transformer_blocks.1.attn.to_add_out.weight': np.zeros((32, 32))})
  with pytest.raises(ValueError, match="'transformer_blocks.1.attn.to_add_out.weight', which no "
                                       'parameter takes'):   # the last block has none
    torch_weights.assign(st.shapes(config), extra, 'SD3 transformer', np.float32)


def test_bfloat16_by_default_and_prompts_encoded_once(monkeypatch):
  parity.check_bfloat16_and_prompt_cache(sd3.make_backbone, text_encoders, _cfg(), monkeypatch)


def test_config_variants():
  from configs import sd3 as sd3_config  # pylint: disable=g-import-not-at-top
  import search  # pylint: disable=g-import-not-at-top
  large = sd3_config.get_config('')
  assert (large.model.path, large.model.guidance_scale, large.sampler.num_steps,
          large.sampler.time_grid, large.search.method) == (
              'stabilityai/stable-diffusion-3.5-large', 3.5, 28, 'flow_match', 'rbf')
  medium = sd3_config.get_config('medium,sample')
  assert (medium.model.path, medium.model.guidance_scale, medium.sampler.num_steps,
          medium.sampler.interpolant, medium.sampler.sde, medium.experiment) == (
              'stabilityai/stable-diffusion-3.5-medium', 4.5, 40, 'linear', False, 'sample')
  paper = sd3_config.get_config('rbf_paper')
  assert (paper.sampler.interpolant, paper.sampler.sde, paper.sampler.num_steps,
          paper.sampler.time_grid, paper.search.budget) == ('vp', True, 10, 'adaptive', 500)
  for method in search.METHODS:
    assert sd3_config.get_config(f'tiny,{method}').search.method == method
  assert sd3_config.get_config('tiny,medium').model.path == 'tests/models/data/sd3/medium'
  with pytest.raises(ValueError, match='one of the variants large and medium'):
    sd3_config.get_config('large,medium')
  with pytest.raises(ValueError, match='Unknown config variant'):
    sd3_config.get_config('sd35')
  assert sd3.measured_memory(large.model) == 'sd35_large_1024'
  assert sd3.measured_memory(medium.model) == 'sd35_medium_1024'
  assert sd3.measured_memory(sd3_config.get_config('tiny').model) is None
  from configs import harness  # pylint: disable=g-import-not-at-top
  quick = harness.get_config('sd3,quick')
  assert (quick.model.name, quick.model.path, quick.experiment) == (
      'sd3', 'tests/models/data/sd3/large', 'sweep')


def test_a_hub_download_fetches_the_diffusers_components_only():
  """The hub's SD3.5 repositories also hold single-file checkpoints and ComfyUI's copies of
  the encoders (text_encoders/, about 15 GB): the download patterns leave them out."""
  import fnmatch  # pylint: disable=g-import-not-at-top
  from models.sd3 import folder  # pylint: disable=g-import-not-at-top
  fetched = lambda name: any(fnmatch.fnmatch(name, p) for p in folder._HUB_FILES)  # pylint: disable=protected-access
  for name in ('model_index.json', 'transformer/diffusion_pytorch_model-00001-of-00002.safetensors',
               'text_encoder_3/model.safetensors.index.json', 'tokenizer_3/spiece.model',
               'tokenizer/merges.txt', 'scheduler/scheduler_config.json'):
    assert fetched(name), name
  for name in ('sd3.5_large.safetensors', 'text_encoders/t5xxl_fp16.safetensors',
               'text_encoders/clip_g.safetensors'):
    assert not fetched(name), name
