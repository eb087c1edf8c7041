"""The Stable Diffusion adapter on tiny random diffusers folders: loading, the schedule, the
eps/v-to-Tweedie conversion against diffusers' own formulas, CFG, and bad input."""

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


def _cfg(path, **overrides):
  cfg = ml_collections.ConfigDict(dict(name='stable_diffusion', path=path, revision='',
                                       from_pt=False, dtype='float32', image_size=0,
                                       guidance_scale=1.0))
  cfg.update(overrides)
  return cfg


def _diffusers_alphas_cumprod():
  hub.silence_flax_deprecation()
  from diffusers import FlaxDDIMScheduler  # pylint: disable=g-import-not-at-top
  scheduler = FlaxDDIMScheduler(beta_start=0.00085, beta_end=0.012,
                                beta_schedule='scaled_linear', num_train_timesteps=1000)
  return np.asarray(scheduler.create_state().common.alphas_cumprod)


def test_loads_the_folder_with_its_schedule_and_shapes(sd_tiny):
  backbone = stable_diffusion.make_backbone(_cfg(os.path.join(sd_tiny, 'stable_diffusion')))
  assert backbone.data_shape == (8, 8, 4)
  assert backbone.decoder.output_shape == (16, 16, 3)
  assert backbone.prediction == 'epsilon'
  assert isinstance(backbone.interpolant, discrete.Discrete)
  np.testing.assert_allclose(backbone.interpolant.alphas_cumprod, _diffusers_alphas_cumprod(),
                             rtol=1e-5)
  v_backbone = stable_diffusion.make_backbone(_cfg(os.path.join(sd_tiny, 'stable_diffusion_v')))
  assert v_backbone.prediction == 'v'
  images = jax.jit(lambda d, z: d(z))(backbone.decoder, jnp.ones((2, 8, 8, 4)))
  assert images.shape == (2, 16, 16, 3)
  assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0


@pytest.mark.parametrize('folder,target', [('stable_diffusion', 'linear'),
                                           ('stable_diffusion', 'vp'),
                                           ('stable_diffusion_v', 'linear')])
def test_tweedie_at_matched_snr_equals_the_diffusers_formula(sd_tiny, folder, target):
  """x_k = sqrt(abar_k) x0 + sqrt(1 - abar_k) eps at integer timesteps k; diffusers' DDIM
  pred_original_sample from the U-Net's guided output must equal our Tweedie estimate at the
  SNR-matched time of the target interpolant, on the rescaled state."""
  path = os.path.join(sd_tiny, folder)
  scale = 2.0
  backbone = stable_diffusion.make_backbone(_cfg(path, guidance_scale=scale))
  hub.silence_flax_deprecation()
  from diffusers import FlaxUNet2DConditionModel  # pylint: disable=g-import-not-at-top
  unet, unet_params = FlaxUNet2DConditionModel.from_pretrained(path, subfolder='unet')
  text = stable_diffusion.encode_prompts(_cfg(path), ['a red cat'])[0]
  uncond = stable_diffusion.encode_prompts(_cfg(path), [''])[0]

  ac = _diffusers_alphas_cumprod()
  ks = np.array([20, 250, 600, 950])
  rng = np.random.default_rng(0)
  x0 = rng.standard_normal((4, 8, 8, 4)).astype(np.float32)
  noise = rng.standard_normal((4, 8, 8, 4)).astype(np.float32)
  a_k = np.sqrt(ac[ks]).reshape(-1, 1, 1, 1).astype(np.float32)
  s_k = np.sqrt(1.0 - ac[ks]).reshape(-1, 1, 1, 1).astype(np.float32)
  x_k = a_k * x0 + s_k * noise

  # diffusers' side: U-Net on NCHW at integer timesteps, guidance, pred_original_sample.
  apply = jax.jit(lambda p, x, k, states: unet.apply({'params': p}, x, k, states).sample)

  def unet_out(txt):
    sample = jnp.transpose(x_k, (0, 3, 1, 2))
    states = jnp.broadcast_to(txt, (4,) + txt.shape)
    return np.transpose(np.asarray(apply(unet_params, sample, jnp.asarray(ks), states)),
                        (0, 2, 3, 1))
  without = unet_out(uncond)
  out = without + scale * (unet_out(text) - without)
  if backbone.prediction == 'epsilon':
    expected_x0 = (x_k - s_k * out) / a_k
  else:
    expected_x0 = a_k * x_k - s_k * out

  interp = interpolants.get_interpolant(target)
  rho = np.sqrt(ac[ks] / (1.0 - ac[ks]))
  s = np.asarray(interp.inverse_snr(jnp.asarray(rho, jnp.float32)))
  c = np.asarray(interp.sigma(s)).reshape(-1, 1, 1, 1) / s_k
  d = sampler_lib.denoise_at(backbone, interp, jnp.asarray(c * x_k), jnp.asarray(s),
                             {'text': jnp.asarray(text)})
  np.testing.assert_allclose(np.asarray(d.x0), expected_x0, rtol=2e-3, atol=2e-3 * np.abs(
      expected_x0).max())
  # The velocity on the target interpolant is alpha_dot x0 + sigma_dot eps of the same pair.
  expected_eps = (x_k - a_k * expected_x0) / s_k
  sv = s.reshape(-1, 1, 1, 1)
  expected_u = (np.asarray(interp.alpha_dot(sv)) * expected_x0 +
                np.asarray(interp.sigma_dot(sv)) * expected_eps)
  np.testing.assert_allclose(np.asarray(d.velocity), expected_u, rtol=2e-3,
                             atol=2e-3 * np.abs(expected_u).max())


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
  os.remove(partial / 'unet' / 'diffusion_flax_model.msgpack')
  with pytest.raises(ValueError, match='from_pt=True'):
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
  from transformers import FlaxCLIPTextModel  # pylint: disable=g-import-not-at-top
  folder = tmp_path / 'mismatch'
  shutil.copytree(os.path.join(sd_tiny, 'stable_diffusion'), folder)
  with open(folder / 'text_encoder' / 'config.json') as f:
    vocab = json.load(f)['vocab_size']
  wide = FlaxCLIPTextModel(random_weights._text_config(vocab, 48), _do_init=False)  # pylint: disable=protected-access
  wide.save_pretrained(folder / 'text_encoder', params=random_weights._random_like(  # pylint: disable=protected-access
      wide.params_shape_tree, 0))
  with pytest.raises(ValueError, match='48-dim states'):
    stable_diffusion.make_backbone(_cfg(str(folder)))


def test_an_unreachable_hub_id_is_a_clear_error(monkeypatch):
  import huggingface_hub  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
  with pytest.raises(FileNotFoundError, match='neither a local folder nor a hub id'):
    hub.resolve('someone/not-a-model-here', what='Stable Diffusion model')


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
