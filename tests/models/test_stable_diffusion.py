"""The Stable Diffusion backbones (SD 1.x, 2.x, SDXL) against diffusers' PyTorch pipelines on
tiny folders they saved (tests/models/data/sd, written by tests/models/sd_reference.py; torch
is not needed here): prompt conditioning, the eps/v-to-Tweedie conversion, and DDIM sampling
step by step; then loading, CFG and bad input on tiny random folders
(experiments.tools.random_weights).

Measured (2 CPU cores, float32, relative to the largest reference value; the larger of jax
0.12.1 on Python 3.12 and jax 0.10.2 on 3.11): prompt states <= 7.2e-7, Tweedie estimates and
velocities <= 2.5e-6, DDIM trajectories <= 1.6e-6, decoded images <= 4.8e-7 absolute; the tests
allow 1e-4 (2e-4 for trajectories).
"""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from models.loading import hub
from experiments.tools import random_weights
from models import stable_diffusion
from models import diffusers_folder
from samplers import interpolants
from samplers.interpolants import discrete
from samplers import sampler as sampler_lib
from tests.models import parity

DATA = os.path.join(parity.DATA, 'sd')
VARIANTS, PROMPTS = parity.SD_VARIANTS, parity.PROMPTS
_close = parity.close

pytestmark = pytest.mark.usefixtures('fast_compilation')


def _cfg(path, **overrides):
  cfg = ml_collections.ConfigDict(dict(name='stable_diffusion', path=path, revision='',
                                       dtype='float32', image_size=0, guidance_scale=1.0))
  cfg.update(overrides)
  return cfg


def _alphas_cumprod():
  """diffusers' scaled_linear schedule: betas = linspace(sqrt(0.00085), sqrt(0.012), 1000)^2."""
  betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
  return np.cumprod(1.0 - betas)


def test_loads_the_folder_with_its_schedule_and_shapes(sd_tiny):
  backbone = stable_diffusion.make_backbone(_cfg(os.path.join(sd_tiny, 'stable_diffusion')))
  assert backbone.data_shape == (8, 8, 4)
  assert backbone.decoder.output_shape == (16, 16, 3)
  assert backbone.prediction == 'epsilon'
  assert isinstance(backbone.interpolant, discrete.Discrete)
  np.testing.assert_allclose(backbone.interpolant.alphas_cumprod, _alphas_cumprod(), rtol=1e-5)
  v_backbone = stable_diffusion.make_backbone(_cfg(os.path.join(sd_tiny, 'stable_diffusion_v')))
  assert v_backbone.prediction == 'v'
  images = jax.jit(lambda d, z: d(z))(backbone.decoder, jnp.ones((2, 8, 8, 4)))
  assert images.shape == (2, 16, 16, 3)
  assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0


@pytest.mark.parametrize('v', VARIANTS)
def test_prompt_conditioning_matches_the_pipeline(v):
  """encode_prompts is the pipeline's encode_prompt (SDXL: both encoders' penultimate states
  and the pooled text), and the backbone's unconditional input its negative embeddings (the
  empty prompt's; zeros for SDXL, whose folder says force_zeros_for_empty_prompt)."""
  ref = parity.reference('sd')
  cfg = _cfg(os.path.join(DATA, v), guidance_scale=3.0)
  out = stable_diffusion.encode_prompts(cfg, PROMPTS)
  backbone = stable_diffusion.make_backbone(cfg)
  if v == 'sdxl':
    _close(out['text'], ref[f'{v}_embeds'])
    _close(out['pooled'], ref[f'{v}_pooled'])
    assert not ref[f'{v}_uncond'].any() and not ref[f'{v}_uncond_pooled'].any()
    np.testing.assert_array_equal(backbone.params['uncond']['pooled'], 0.0)
    np.testing.assert_array_equal(backbone.params['time_ids'], [16, 16, 0, 0, 16, 16])
  else:
    _close(out, ref[f'{v}_embeds'])
  _close(backbone.params['uncond']['text'], ref[f'{v}_uncond'])


def _condition(v, ref):
  text = ref[f'{v}_embeds'][0]
  return {'text': text, 'pooled': ref[f'{v}_pooled'][0]} if v == 'sdxl' else {'text': text}


@pytest.mark.parametrize('v,target', [('sd15', 'linear'), ('sd15', 'vp'), ('sd2v', 'linear'),
                                      ('sdxl', 'vp')])
def test_tweedie_at_matched_snr_is_the_unet_through_ddims_formula(v, target):
  """The U-Net's output on x_k at integer timesteps k (999 and 421), turned into
  pred_original_sample by DDIM's formula (eps: (x - sqrt(1 - abar) eps) / sqrt(abar);
  v: sqrt(abar) x - sqrt(1 - abar) v), must be our Tweedie estimate at the SNR-matched time of
  the target interpolant, on the rescaled state; the velocity must be that pair's."""
  ref = parity.reference('sd')
  backbone = stable_diffusion.make_backbone(_cfg(os.path.join(DATA, v)))
  ks = ref[f'{v}_unet_t'].astype(np.int64)
  x_k = np.transpose(ref[f'{v}_unet_x'], (0, 2, 3, 1))
  out = np.transpose(ref[f'{v}_unet_out'], (0, 2, 3, 1))
  ac = _alphas_cumprod()
  a_k = np.sqrt(ac[ks]).reshape(-1, 1, 1, 1).astype(np.float32)
  s_k = np.sqrt(1.0 - ac[ks]).reshape(-1, 1, 1, 1).astype(np.float32)
  expected_x0 = (x_k - s_k * out) / a_k if v != 'sd2v' else a_k * x_k - s_k * out
  cond = {'text': ref[f'{v}_unet_text']}
  if v == 'sdxl':   # the backbone's own micro-conditioning ids: the fixture's first row
    np.testing.assert_array_equal(ref[f'{v}_unet_added_time_ids'][0], backbone.params['time_ids'])
    cond['pooled'] = ref[f'{v}_unet_added_text_embeds']
    cond['text'], cond['pooled'] = cond['text'][:1], cond['pooled'][:1]
    x_k, expected_x0, ks, a_k, s_k = x_k[:1], expected_x0[:1], ks[:1], a_k[:1], s_k[:1]
  interp = interpolants.get_interpolant(target)
  rho = np.sqrt(ac[ks] / (1.0 - ac[ks]))
  s = np.asarray(interp.inverse_snr(jnp.asarray(rho, jnp.float32)))
  c = np.asarray(interp.sigma(s)).reshape(-1, 1, 1, 1) / s_k
  d = jax.jit(lambda b, x, s, cond: sampler_lib.denoise_at(b, interp, x, s, cond))(
      backbone, jnp.asarray(c * x_k), jnp.asarray(s), cond)
  _close(d.x0, expected_x0)
  expected_eps = (x_k - a_k * expected_x0) / s_k
  sv = s.reshape(-1, 1, 1, 1)
  expected_u = (np.asarray(interp.alpha_dot(sv)) * expected_x0 +
                np.asarray(interp.sigma_dot(sv)) * expected_eps)
  _close(d.velocity, expected_u)


@pytest.mark.parametrize('v', VARIANTS)
def test_ddim_sampling_matches_the_pipeline_step_by_step(v):
  """The pipeline's DDIM (eta 0, 4 steps, guidance 3, timesteps 751, 501, 251, 1) is the
  project's Euler sampler on the linear interpolant over the SNR-matched grid: the latents
  after each of the first three steps, the last step's pred_original_sample as our final
  Tweedie estimate, and the decoder on the pipeline's final latents its image."""
  ref = parity.reference('sd')
  backbone = stable_diffusion.make_backbone(_cfg(os.path.join(DATA, v), guidance_scale=3.0))
  ks = ref[f'{v}_timesteps']
  np.testing.assert_array_equal(ks, [751, 501, 251, 1])
  ac = _alphas_cumprod()
  linear = interpolants.get_interpolant('linear')
  grid = np.append(np.asarray(linear.inverse_snr(jnp.asarray(np.sqrt(ac[ks] / (1 - ac[ks])),
                                                             jnp.float32))), 0.0)
  smp = sampler_lib.make_sampler(backbone, linear, 4, False).replace(
      grid=jnp.asarray(grid, jnp.float32))
  scale = np.sqrt(1 - ac[ks]) / np.asarray(linear.sigma(grid[:-1]))   # native x = scale * ours
  cond = _condition(v, ref)
  x = jnp.asarray(np.transpose(ref[f'{v}_init'], (1, 2, 0))[None] / scale[0], jnp.float32)

  @jax.jit
  def trajectory(smp, x):
    def body(x, k):
      d = smp.denoise(x, k, cond)
      return smp.step(x, d, k, jnp.zeros_like(x)), (x, d.x0)
    return jax.lax.scan(body, x, jnp.arange(4))

  _, (states, x0) = trajectory(smp, x)
  for i in range(3):   # the state at level i + 1 is the pipeline's latents after step i
    _close(np.asarray(states[i + 1, 0]) * scale[i + 1],
           np.transpose(ref[f'{v}_steps'][i], (1, 2, 0)), 2e-4)
  _close(x0[3, 0], np.transpose(ref[f'{v}_x0_last'], (1, 2, 0)), 2e-4)
  final = np.transpose(ref[f'{v}_steps'][3], (1, 2, 0))[None]   # the states are its latents
  image = jax.jit(lambda d, z: d(z))(backbone.decoder, jnp.asarray(final))
  np.testing.assert_allclose(np.asarray(image[0]), ref[f'{v}_image'], atol=1e-4)


def test_guidance_scale_one_is_the_conditional_model(sd_tiny):
  path = os.path.join(sd_tiny, 'stable_diffusion')
  plain = stable_diffusion.make_backbone(_cfg(path, guidance_scale=1.0))
  guided = stable_diffusion.make_backbone(_cfg(path, guidance_scale=3.0))
  text = jnp.asarray(stable_diffusion.encode_prompts(_cfg(path), ['a dog'])[0])
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 8, 8, 4)), jnp.float32)
  t = jnp.array([0.3, 0.8])
  call = jax.jit(lambda b, c: b(x, t, c))
  cond_out = call(plain, {'text': text})
  uncond_out = call(plain, None)
  np.testing.assert_allclose(np.asarray(call(guided, {'text': text})),
                             np.asarray(uncond_out + 3.0 * (cond_out - uncond_out)),
                             rtol=1e-4, atol=1e-5)
  # The text does condition it (measured: 15% of the output's scale).
  assert float(jnp.abs(cond_out - uncond_out).max()) > 0.03 * float(jnp.abs(cond_out).max())


def test_bad_folders_and_sizes_are_named(sd_tiny, tmp_path):
  with pytest.raises(ValueError, match='no model_index.json'):
    stable_diffusion.make_backbone(_cfg(str(tmp_path)))
  with pytest.raises(FileNotFoundError, match='does not exist'):
    stable_diffusion.make_backbone(_cfg(str(tmp_path / 'nowhere')))
  partial = tmp_path / 'partial'
  shutil.copytree(os.path.join(sd_tiny, 'stable_diffusion'), partial)
  shutil.rmtree(partial / 'vae')
  with pytest.raises(ValueError, match='lacks vae'):
    stable_diffusion.make_backbone(_cfg(str(partial)))
  shutil.copytree(os.path.join(sd_tiny, 'stable_diffusion', 'vae'), partial / 'vae')
  os.remove(partial / 'unet' / 'diffusion_pytorch_model.safetensors')
  (partial / 'unet' / 'diffusion_flax_model.msgpack').write_bytes(b'')
  with pytest.raises(ValueError, match='Flax weights .*PyTorch safetensors'):
    stable_diffusion.make_backbone(_cfg(str(partial)))
  good = os.path.join(sd_tiny, 'stable_diffusion')
  with pytest.raises(ValueError, match='multiple of 4'):
    stable_diffusion.make_backbone(_cfg(good, image_size=18))
  with pytest.raises(ValueError, match='guidance_scale'):
    stable_diffusion.make_backbone(_cfg(good, guidance_scale=0.5))
  with pytest.raises(ValueError, match='dtype'):
    stable_diffusion.make_backbone(_cfg(good, dtype='float8'))
  assert stable_diffusion.make_backbone(_cfg(good, image_size=32)).data_shape == (16, 16, 4)


def test_a_text_encoder_of_the_wrong_width_is_refused(sd_tiny, tmp_path):
  folder = tmp_path / 'mismatch'
  shutil.copytree(os.path.join(sd_tiny, 'stable_diffusion'), folder)
  with open(folder / 'text_encoder' / 'config.json') as f:
    vocab = json.load(f)['vocab_size']
  random_weights.write_text_encoder(str(folder / 'text_encoder'), vocab, 48, 0)
  with pytest.raises(ValueError, match='48-dim states'):
    stable_diffusion.make_backbone(_cfg(str(folder)))


def test_sdxl_folders_are_checked(tmp_path):
  """An SDXL U-Net without the second encoder, or with one that pools to the wrong width; a
  weight variant that the folder does not have."""
  folder = tmp_path / 'xl'
  shutil.copytree(os.path.join(DATA, 'sdxl'), folder)
  shutil.rmtree(folder / 'tokenizer_2')
  with pytest.raises(ValueError, match='SDXL U-Net but lacks tokenizer_2'):
    stable_diffusion.make_backbone(_cfg(str(folder)))
  shutil.copytree(os.path.join(DATA, 'sdxl', 'tokenizer_2'), folder / 'tokenizer_2')
  config = json.loads((folder / 'unet' / 'config.json').read_text())
  config['projection_class_embeddings_input_dim'] = 72
  (folder / 'unet' / 'config.json').write_text(json.dumps(config))
  with pytest.raises(ValueError, match='pools to 16 dims'):
    stable_diffusion.make_backbone(_cfg(str(folder)))
  with pytest.raises(ValueError, match="0 fp16 .safetensors files"):
    stable_diffusion.make_backbone(_cfg(os.path.join(DATA, 'sdxl'), variant='fp16'))


def test_an_unreachable_hub_id_is_a_clear_error(monkeypatch):
  from huggingface_hub import constants  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
  with pytest.raises(FileNotFoundError, match='neither a local folder nor a hub id'):
    hub.resolve('someone/not-a-model-here', what='Stable Diffusion model')



def test_a_gated_hub_model_names_the_licence_and_the_login(monkeypatch):
  """FLUX.1-dev without an accepted licence or a token: one line saying what to do, not the
  hub client's HTTP error."""
  import huggingface_hub  # pylint: disable=g-import-not-at-top
  from huggingface_hub import errors  # pylint: disable=g-import-not-at-top

  class Refused(errors.GatedRepoError):
    def __init__(self):  # pylint: disable=super-init-not-called
      Exception.__init__(self, 'Access to model black-forest-labs/FLUX.1-dev is restricted.')

  def refuse(*args, **kwargs):
    raise Refused()

  monkeypatch.setattr(huggingface_hub, 'snapshot_download', refuse)
  with pytest.raises(PermissionError, match=r"'black-forest-labs/FLUX.1-dev' is gated on the "
                                            r'hub: accept its licence .*hf auth login'):
    hub.resolve('black-forest-labs/FLUX.1-dev', what='FLUX.1 model')


def test_prompts_from_a_file_and_missing_files(tmp_path):
  path = tmp_path / 'prompts.txt'
  path.write_text('a red cube\n\n  a blue sphere \n')
  config = ml_collections.ConfigDict(dict(prompt='x', prompt_file=str(path)))
  assert diffusers_folder.read_prompts(config) == ['a red cube', 'a blue sphere']
  config.prompt_file = str(tmp_path / 'missing.txt')
  with pytest.raises(FileNotFoundError, match='missing.txt'):
    diffusers_folder.read_prompts(config)
  (tmp_path / 'empty.txt').write_text('\n')
  config.prompt_file = str(tmp_path / 'empty.txt')
  with pytest.raises(ValueError, match='holds no prompts'):
    diffusers_folder.read_prompts(config)
