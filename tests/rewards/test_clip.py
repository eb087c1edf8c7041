"""CLIP score and aesthetic rewards on tiny random CLIP weights in the transformers format."""

import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import rewards
from models.backbone import Decoder
from rewards import clip


def _image_features(model, params, pixels):
  return jax.jit(lambda p, x: model.get_image_features(x, params=p))(params, pixels)


def _call(reward, x, cond=None):
  return jax.jit(lambda rw, x, c: rw(x, c))(reward, x, cond)


def _reward_cfg(sd_tiny, **overrides):
  cfg = ml_collections.ConfigDict(dict(name='clip_score', model=os.path.join(sd_tiny, 'clip'),
                                       head=os.path.join(sd_tiny, 'aesthetic.safetensors'),
                                       function='', temperature=1.0))
  cfg.update(overrides)
  return cfg


def _smooth_images(size):
  x = np.linspace(0.0, 1.0, size)
  img = np.stack([np.add.outer(x, x) / 2, np.outer(x, x), np.full((size, size), 0.3)], -1)
  return np.round(np.stack([img, img[::-1]]) * 255.0) / 255.0


@pytest.mark.parametrize('size', [16, 64])
def test_jax_preprocessing_matches_the_clip_image_processor(sd_tiny, size):
  """Up- (16 -> 32) and downsampling (64 -> 32): our JAX resize, crop and normalisation agree
  with transformers' CLIPImageProcessor (PIL) up to resampling differences."""
  from transformers import CLIPImageProcessor  # pylint: disable=g-import-not-at-top
  folder = os.path.join(sd_tiny, 'clip')
  images = _smooth_images(size).astype(np.float32)
  expected = CLIPImageProcessor.from_pretrained(folder)(
      images=[np.round(i * 255).astype(np.uint8) for i in images], return_tensors='np'
  ).pixel_values
  _, _, _, prep = clip.load(folder)
  ours = np.asarray(clip.preprocess(jnp.asarray(images), prep))
  assert ours.shape == expected.shape == (2, 3, 32, 32)
  assert np.abs(ours - expected).mean() < 0.01   # measured 0.003
  assert np.abs(ours - expected).max() < 0.1     # an unnormalised channel would be off by ~2


def test_clip_score_is_the_cosine_of_transformers_embeddings(sd_tiny):
  folder = os.path.join(sd_tiny, 'clip')
  reward = rewards.get_reward(_reward_cfg(sd_tiny), (16, 16, 3))
  images = jnp.asarray(_smooth_images(16), jnp.float32)
  text = reward.encode_text(['a red cat', 'a blue dog'])
  score = _call(reward, images, {'reward_text': jnp.asarray(text[1])})
  model, params, tokenizer, prep = clip.load(folder)
  img = np.asarray(_image_features(model, params, clip.preprocess(images, prep)))
  ids = tokenizer(['a blue dog'], padding='max_length', max_length=tokenizer.model_max_length,
                  return_tensors='np').input_ids
  txt = np.asarray(jax.jit(lambda p, i: model.get_text_features(i, params=p))(params, ids))[0]
  # Pixel backbone convention: the reward maps [-1, 1] to [0, 1] before CLIP, so feed 2 x - 1.
  expected = img @ txt / (np.linalg.norm(img, axis=1) * np.linalg.norm(txt))
  score_pixels = _call(reward, images * 2.0 - 1.0, {'reward_text': jnp.asarray(text[1])})
  np.testing.assert_allclose(np.asarray(score_pixels), expected, rtol=1e-4, atol=1e-5)
  assert score.shape == (2,)
  grad = jax.jit(jax.grad(lambda x: reward(x, {'reward_text': jnp.asarray(text[0])}).sum()))(
      images)
  assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).max()) > 0


def test_pickscore_is_transformers_logits_per_image(sd_tiny):
  """PickScore = CLIPModel's logits_per_image: exp(logit_scale) x the image-text cosine, from
  transformers' own forward pass on the same pixels (float32)."""
  folder = os.path.join(sd_tiny, 'clip')
  reward = rewards.get_reward(_reward_cfg(sd_tiny, name='pickscore'), (16, 16, 3))
  images = jnp.asarray(_smooth_images(16), jnp.float32)
  prompts = ['a red cat', 'a blue dog']
  text = reward.encode_text(prompts)
  model, params, tokenizer, prep = clip.load(folder)
  ids = tokenizer(prompts, padding='max_length', max_length=tokenizer.model_max_length,
                  return_tensors='np').input_ids
  logits = np.asarray(jax.jit(lambda p, i, x: model(input_ids=i, pixel_values=x, params=p)
                              .logits_per_image)(params, ids, clip.preprocess(images, prep)))
  for j in range(2):   # the reward maps pixels in [-1, 1] to [0, 1] first
    score = _call(reward, images * 2.0 - 1.0, {'reward_text': jnp.asarray(text[j])})
    np.testing.assert_allclose(np.asarray(score), logits[:, j], rtol=1e-4, atol=1e-4)
  assert float(np.exp(params['logit_scale'])) != 1.0   # the scale is really applied
  with pytest.raises(ValueError, match='needs a prompt'):
    _call(reward, images, None)


def test_aesthetic_head_on_the_normalised_embedding(sd_tiny):
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  cfg = _reward_cfg(sd_tiny, name='aesthetic')
  reward = rewards.get_reward(cfg, (16, 16, 3))
  images = jnp.asarray(_smooth_images(16), jnp.float32)
  model, params, _, prep = clip.load(cfg.model)
  emb = np.asarray(_image_features(model, params, clip.preprocess(images, prep)))
  h = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  tensors = load_file(cfg.head)
  for i in (0, 2, 4, 6, 7):
    h = h @ tensors[f'layers.{i}.weight'].T + tensors[f'layers.{i}.bias']
  np.testing.assert_allclose(np.asarray(_call(reward, images * 2.0 - 1.0)), h[:, 0], rtol=1e-4,
                             atol=1e-5)


def test_image_rewards_compose_with_a_latent_decoder(sd_tiny):
  decoder = Decoder(params={'w': jnp.ones((4, 3)) / 4.0},
                    apply_fn=lambda p, z: jax.nn.sigmoid(jax.image.resize(
                        z @ p['w'], (z.shape[0], 16, 16, 3), 'nearest')),
                    output_shape=(16, 16, 3))
  reward = rewards.get_reward(_reward_cfg(sd_tiny, name='aesthetic'), (8, 8, 4), decoder)
  latents = jnp.asarray(np.random.default_rng(0).standard_normal((3, 8, 8, 4)), jnp.float32)
  direct = rewards.get_reward(_reward_cfg(sd_tiny, name='aesthetic'), (16, 16, 3))
  np.testing.assert_allclose(np.asarray(_call(reward, latents)),
                             np.asarray(_call(direct, decoder(latents) * 2.0 - 1.0)), rtol=1e-5)


def test_mismatched_components_are_refused(sd_tiny, tmp_path):
  from transformers import CLIPTokenizer  # pylint: disable=g-import-not-at-top
  from models import random_weights  # pylint: disable=g-import-not-at-top
  head = random_weights.write_aesthetic_head(str(tmp_path / 'wide.safetensors'), input_dim=768)
  with pytest.raises(ValueError, match='768-dim embeddings.*16-dim'):
    rewards.get_reward(_reward_cfg(sd_tiny, name='aesthetic', head=head), (16, 16, 3))
  folder = tmp_path / 'clip_big_tokenizer'
  shutil.copytree(os.path.join(sd_tiny, 'clip'), folder)
  tokenizer = CLIPTokenizer.from_pretrained(folder)
  tokenizer.add_tokens([f'<extra{i}>' for i in range(8)])
  tokenizer.save_pretrained(folder)
  with pytest.raises(ValueError, match='do not belong together'):
    rewards.get_reward(_reward_cfg(sd_tiny, model=str(folder)), (16, 16, 3))
  with pytest.raises(ValueError, match='no config.json'):
    rewards.get_reward(_reward_cfg(sd_tiny, model=str(tmp_path)), (16, 16, 3))
  with pytest.raises(FileNotFoundError, match='reward.head'):
    rewards.get_reward(_reward_cfg(sd_tiny, name='aesthetic', head=str(tmp_path / 'x.safetensors')),
                       (16, 16, 3))
  with pytest.raises(ValueError, match='scores images'):
    rewards.get_reward(_reward_cfg(sd_tiny), (2,))
  with pytest.raises(ValueError, match='module:function'):
    rewards.get_reward(_reward_cfg(sd_tiny, name='host_image', function='no_such_module:f'),
                       (16, 16, 3))
