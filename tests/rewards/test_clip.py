"""CLIP score, PickScore, HPSv2 and aesthetic rewards: against the PyTorch references
(tests/rewards/data/clip, written by tests/rewards/clip_reference.py and
tests/models/sd_reference.py; torch is not needed here), and on tiny random CLIP weights in
the transformers format (experiments.tools.random_weights)."""

import json
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
  return jax.jit(lambda p, x: model.apply({'params': p}, x, method=model.image_features))(
      params, pixels)


# The PyTorch references (tests/rewards/clip_reference.py and tests/models/sd_reference.py).
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'clip')
REF_PROMPTS = ['a red cat', 'two blue dogs on a sofa']


def _reference_scores(name: str, path: str):
  """(reference arrays, text embeddings [2, D], scores [3 images, 2 prompts]) of reward `name`
  with model `path` on the reference's uint8 images, in the pixel-backbone convention."""
  ref = np.load(os.path.join(DATA, 'reference.npz'))
  cfg = ml_collections.ConfigDict(dict(name=name, model=path, head='', function='',
                                       temperature=1.0))
  reward = rewards.get_reward(cfg, (20, 28, 3))
  text = reward.encode_text(REF_PROMPTS)
  images = jnp.asarray(ref['images'], jnp.float32) / 127.5 - 1.0
  scores = np.stack([np.asarray(_call(reward, images, {'reward_text': jnp.asarray(t)}))
                     for t in text], axis=1)
  return ref, text, scores


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
  with transformers' CLIPImageProcessor (PIL; its pixel values recorded in processor.npz) up to
  resampling differences."""
  ref = np.load(os.path.join(DATA, 'processor.npz'))
  images = ref[f'images_{size}'].astype(np.float32) / 255.0
  expected = ref[f'pixels_{size}']
  _, _, _, prep = clip.load(os.path.join(sd_tiny, 'clip'))
  ours = np.asarray(clip.preprocess(jnp.asarray(images), prep))
  assert ours.shape == expected.shape == (2, 3, 32, 32)
  assert np.abs(ours - expected).mean() < 0.01   # measured 0.003
  assert np.abs(ours - expected).max() < 0.1     # an unnormalised channel would be off by ~2


def test_clip_score_is_the_cosine_of_the_pytorch_embeddings():
  """clip_score on PickScore's tiny CLIPModel is transformers' logits_per_image divided by
  exp(logit_scale): the cosine of its image and text embeddings."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  path = os.path.join(DATA, 'pickscore')
  ref, _, scores = _reference_scores('clip_score', path)
  logit_scale = float(load_file(os.path.join(path, 'model.safetensors'))['logit_scale'])
  expected = ref['pick_logits'] / np.exp(logit_scale)
  assert np.abs(scores - expected).max() / np.abs(expected).max() < 5e-3   # measured 2.0e-3


def test_clip_score_has_gradients(sd_tiny):
  reward = rewards.get_reward(_reward_cfg(sd_tiny), (16, 16, 3))
  images = jnp.asarray(_smooth_images(16), jnp.float32)
  text = reward.encode_text(['a red cat', 'a blue dog'])
  assert _call(reward, images, {'reward_text': jnp.asarray(text[1])}).shape == (2,)
  grad = jax.jit(jax.grad(lambda x: reward(x, {'reward_text': jnp.asarray(text[0])}).sum()))(
      images)
  assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).max()) > 0


def test_pickscore_is_the_logit_scale_times_the_cosine(sd_tiny):
  pick = rewards.get_reward(_reward_cfg(sd_tiny, name='pickscore'), (16, 16, 3))
  cosine = rewards.get_reward(_reward_cfg(sd_tiny), (16, 16, 3))
  images = jnp.asarray(_smooth_images(16), jnp.float32) * 2.0 - 1.0
  text = jnp.asarray(pick.encode_text(['a red cat'])[0])
  _, params, _, _ = clip.load(os.path.join(sd_tiny, 'clip'))
  np.testing.assert_allclose(np.asarray(_call(pick, images, {'reward_text': text})),
                             np.exp(float(params['logit_scale'])) *
                             np.asarray(_call(cosine, images, {'reward_text': text})), rtol=1e-5)
  assert float(np.exp(params['logit_scale'])) != 1.0   # the scale is really applied
  with pytest.raises(ValueError, match='needs a prompt'):
    _call(pick, images, None)


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
  from experiments.tools import random_weights  # pylint: disable=g-import-not-at-top
  head = random_weights.write_aesthetic_head(str(tmp_path / 'wide.safetensors'), input_dim=768)
  with pytest.raises(ValueError, match='768-dim embeddings.*16-dim'):
    rewards.get_reward(_reward_cfg(sd_tiny, name='aesthetic', head=head), (16, 16, 3))
  folder = tmp_path / 'clip_big_tokenizer'
  shutil.copytree(os.path.join(sd_tiny, 'clip'), folder)
  vocab = json.loads((folder / 'vocab.json').read_text())
  vocab.update({f'<extra{i}>': len(vocab) + i for i in range(8)})
  (folder / 'vocab.json').write_text(json.dumps(vocab))
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


@pytest.mark.parametrize('name,folder,key', [('pickscore', 'pickscore', 'pick_logits'),
                                             ('hpsv2', 'hpsv2', 'hps_scores')])
def test_pickscore_and_hpsv2_match_their_pytorch_references(name, folder, key):
  """PickScore: transformers' PyTorch CLIPModel (model.safetensors) and CLIPProcessor; HPSv2:
  OpenCLIP's CLIP converted from a torch.save'd pickle, with HPSv2's pad-to-square
  preprocessing. Float32, on non-square uint8 images [3, 20, 28, 3] and two prompts (one
  truncated)."""
  path = os.path.join(DATA, folder)
  ref, text, scores = _reference_scores(name, path)
  expected = ref[key]
  scale = np.abs(expected).max()
  assert np.abs(scores - expected).max() / scale < 5e-3   # measured 2.0e-3 and 1.3e-3
  # The model alone, on the reference's own pixel values: measured 6.7e-7 and 6.8e-7.
  model, params, _, prep = clip.load(path)
  pixels = ref[key.split('_')[0] + '_pixels']
  emb = np.asarray(clip._normalise(_image_features(model, params, jnp.asarray(pixels))))  # pylint: disable=protected-access
  model_only = emb @ text.T * (np.exp(params['logit_scale']) if name == 'pickscore' else 1.0)
  assert np.abs(model_only - expected).max() / scale < 1e-5
  # The preprocessing alone (PIL's bicubic on uint8 against JAX's on floats): measured 0.015.
  ours = np.asarray(clip.preprocess(jnp.asarray(ref['images'], jnp.float32) / 255.0,
                                    dict(prep, mode='pad')
                                    if name == 'hpsv2' else prep))
  assert np.abs(ours - pixels).max() < 0.03 and np.abs(ours - pixels).mean() < 0.006


def test_open_clip_folders_are_read_strictly(tmp_path):
  from safetensors.numpy import load_file, save_file  # pylint: disable=g-import-not-at-top
  from models.clip import open_clip  # pylint: disable=g-import-not-at-top
  src = os.path.join(DATA, 'hpsv2')

  def variant(name, edit_config=None, edit_tensors=None):
    folder = tmp_path / name
    shutil.copytree(src, folder)
    if edit_config:
      config = json.loads((folder / open_clip.CONFIG).read_text())
      edit_config(config)
      (folder / open_clip.CONFIG).write_text(json.dumps(config))
    if edit_tensors:
      tensors = load_file(str(folder / open_clip.WEIGHTS))
      edit_tensors(tensors)
      save_file(tensors, str(folder / open_clip.WEIGHTS))
    return str(folder)

  layer_scale = variant('ls', lambda c: c['model_cfg']['vision_cfg'].update(ls_init_value=0.1))
  with pytest.raises(ValueError, match='vision_cfg.ls_init_value = 0.1 is not supported'):
    open_clip.load(layer_scale)
  extra = variant('extra', edit_tensors=lambda t: t.update(
      {'visual.attn_pool.query': np.zeros((2, 2), np.float32)}))
  with pytest.raises(ValueError, match="'visual.attn_pool.query' has no place"):
    open_clip.load(extra)
  missing = variant('missing', edit_tensors=lambda t: t.pop('ln_final.weight'))
  with pytest.raises(ValueError, match='no tensor for parameter text_model/final_layer_norm/scale'):
    open_clip.load(missing)
  narrow = variant('narrow', lambda c: c['model_cfg'].update(embed_dim=8))
  with pytest.raises(ValueError, match="'text_projection.weight' has shape"):
    open_clip.load(narrow)
  no_weights = variant('no_weights')
  os.remove(os.path.join(no_weights, open_clip.WEIGHTS))
  with pytest.raises(FileNotFoundError, match='convert_open_clip'):
    open_clip.load(no_weights)
