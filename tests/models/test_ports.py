"""The project's Flax ports against the PyTorch references, block by block: CLIP's text tower
(transformers' CLIPTextModel and CLIPTextModelWithProjection), the SD U-Net (diffusers'
UNet2DConditionModel in its SD 1.x, SD 2.x and SDXL configurations), AutoencoderKL, and the
tokenizers token for token. The folders and outputs were written once by diffusers' and
transformers' PyTorch code (tests/models/sd_reference.py, tests/models/data/sd); torch is not
needed here. The T5 encoder, FLUX's VAE and CLIP-L are checked in tests/models/test_flux.py.

Tolerances are relative to the largest reference value, in float32: 1e-4 for every block and
whole model. Measured (2 CPU cores, the larger of jax 0.12.1 on Python 3.12 and jax 0.10.2 on
3.11): text layers <= 5.8e-7, U-Net blocks <= 1.4e-6 and outputs <= 9.2e-7, VAE posterior
<= 1.1e-6, decoder <= 1.6e-6.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import autoencoder_kl
from models import clip
from models import tokenizers
from models.stable_diffusion import unet as unet_lib
from models.loading import torch_weights
from tests.models import parity

DATA = os.path.join(parity.DATA, 'sd')
FLUX = os.path.join(parity.DATA, 'flux', 'schnell')
VARIANTS, PROMPTS = parity.SD_VARIANTS, parity.PROMPTS
_close, _nhwc = parity.close, parity.nhwc

pytestmark = pytest.mark.usefixtures('fast_compilation')


def _encoders(v):
  return [''] + (['_2'] if v == 'sdxl' else [])


@pytest.mark.parametrize('v', VARIANTS)
def test_clip_tokenizers_token_for_token(v):
  """CLIP's real BPE (its first 1,500 merges), with SD 2.x's "!" padding, against
  transformers' CLIPTokenizer: lower-casing, punctuation, accents, truncation to 77."""
  ref = parity.reference('sd')
  for suffix in _encoders(v):
    tok = tokenizers.clip(os.path.join(DATA, v, f'tokenizer{suffix}'))
    np.testing.assert_array_equal(tok(PROMPTS), ref[f'{v}_ids{suffix}'])
    assert tok.max_length == 77


def test_t5_tokenizer_token_for_token():
  np.testing.assert_array_equal(tokenizers.t5(os.path.join(FLUX, 'tokenizer_2'), 16)(PROMPTS),
                                parity.reference('sd')['t5_ids'])


@pytest.mark.parametrize('v', VARIANTS)
def test_clip_text_towers_layer_by_layer(v):
  ref = parity.reference('sd')
  for suffix in _encoders(v):
    module, params = clip.load(os.path.join(DATA, v, f'text_encoder{suffix}'))
    out = jax.jit(lambda p, i, m=module: m.apply({'params': p}, i, method=m.encode_text))(
        params, ref[f'{v}_ids{suffix}'])
    layers = ref[f'{v}_text_layers{suffix}']
    assert len(out['hidden_states']) == len(layers)
    for ours, expected in zip(out['hidden_states'], layers):
      _close(ours[0], expected)
    if v != 'sdxl':   # SD's conditioning: the final-normed last layer
      _close(out['last_hidden_state'], ref[f'{v}_embeds'])
    elif suffix == '_2':   # SDXL pools the second encoder's projected end token
      _close(out['text_embeds'], ref[f'{v}_pooled'])


def _unet(v):
  folder = os.path.join(DATA, v, 'unet')
  config = unet_lib.read_config(folder, 'U-Net')
  params = torch_weights.assign(unet_lib.shapes(config), torch_weights.read_tensors(folder, 'U'),
                                'U-Net', jnp.float32)
  return unet_lib.UNet2DCondition(config), params


@pytest.mark.parametrize('v', VARIANTS)
def test_unet_block_by_block(v):
  """Each down block, the mid block, each up block and the output, on non-square latents at
  timesteps 999 and 421 (SDXL: with pooled text and two sets of size/crop ids)."""
  ref = parity.reference('sd')
  module, params = _unet(v)
  added = None
  if v == 'sdxl':
    added = {'text_embeds': ref[f'{v}_unet_added_text_embeds'],
             'time_ids': ref[f'{v}_unet_added_time_ids']}
  out, state = jax.jit(lambda p, *a: module.apply(
      {'params': p}, *a, capture_intermediates=True, mutable=['intermediates']))(
          params, _nhwc(ref[f'{v}_unet_x']), ref[f'{v}_unet_t'], ref[f'{v}_unet_text'], added)
  _close(out, _nhwc(ref[f'{v}_unet_out']))
  inter = state['intermediates']
  blocks = [k for k in ref if k.startswith(f'{v}_unet_down_') or k.startswith(f'{v}_unet_up_')]
  for key in blocks + [f'{v}_unet_mid']:
    name = key[len(f'{v}_unet_'):]
    path = 'mid_block' if name == 'mid' else name.replace('down_', 'down_blocks_').replace(
        'up_', 'up_blocks_')
    _close(inter[path]['__call__'][0][0], _nhwc(ref[key]))


@pytest.mark.parametrize('v', VARIANTS)
def test_autoencoder_kl_block_by_block(v):
  ref = parity.reference('sd')
  module, params, config = autoencoder_kl.load(os.path.join(DATA, v, 'vae'))
  (mean, logvar), state = jax.jit(lambda p, x: module.apply(
      {'params': p}, x, method=module.encode, capture_intermediates=True,
      mutable=['intermediates']))(params, _nhwc(ref[f'{v}_vae_images']))
  _close(mean, _nhwc(ref[f'{v}_vae_mean']))
  _close(logvar, _nhwc(ref[f'{v}_vae_logvar']))
  for i in range(len(config.block_out_channels)):
    _close(state['intermediates']['encoder'][f'down_blocks_{i}']['__call__'][0],
           _nhwc(ref[f'{v}_vae_enc_{i}']))
  decoded, state = jax.jit(lambda p, z: module.apply(
      {'params': p}, z, method=module.decode, capture_intermediates=True,
      mutable=['intermediates']))(params, _nhwc(ref[f'{v}_vae_z']))
  _close(decoded, _nhwc(ref[f'{v}_vae_decoded']))
  for i in range(len(config.block_out_channels)):
    _close(state['intermediates']['decoder'][f'up_blocks_{i}']['__call__'][0],
           _nhwc(ref[f'{v}_vae_dec_{i}']))


def test_legacy_attention_names_and_strict_loading(tmp_path):
  """Exports before diffusers 0.14 named the VAE's mid-block attention query/key/value/
  proj_attn (some as 1x1 convs): read as to_q/to_k/to_v/to_out.0. A stray, a missing or a
  mis-shaped tensor is one line naming it."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  src = os.path.join(DATA, 'sd15', 'vae')
  tensors = torch_weights.read_tensors(src, 'VAE')
  legacy = {}
  for key, value in tensors.items():
    for new, old in (('to_q', 'query'), ('to_k', 'key'), ('to_v', 'value'),
                     ('to_out.0', 'proj_attn')):
      if f'attentions.0.{new}.' in key:
        key = key.replace(f'.{new}.', f'.{old}.')
        value = value[:, :, None, None] if value.ndim == 2 else value
    legacy[key] = value
  folder = tmp_path / 'legacy'
  shutil.copytree(src, folder)
  save_file(legacy, str(folder / 'diffusion_pytorch_model.safetensors'))
  _, params, _ = autoencoder_kl.load(str(folder))
  _, expected, _ = autoencoder_kl.load(src)
  jax.tree.map(np.testing.assert_array_equal, params, expected)

  def broken(name, edit):
    path = tmp_path / name
    shutil.copytree(src, path)
    changed = dict(tensors)
    edit(changed)
    save_file(changed, str(path / 'diffusion_pytorch_model.safetensors'))
    return str(path)
  with pytest.raises(ValueError, match="tensor 'decoder.extra.weight', which no parameter"):
    autoencoder_kl.load(broken('extra', lambda t: t.update(
        {'decoder.extra.weight': np.zeros((2, 2), np.float32)})))
  with pytest.raises(ValueError, match='no tensor for parameter decoder/conv_out/bias'):
    autoencoder_kl.load(broken('missing', lambda t: t.pop('decoder.conv_out.bias')))
  with pytest.raises(ValueError, match="'decoder.conv_in.bias' has shape \\(3,\\)"):
    autoencoder_kl.load(broken('shape', lambda t: t.update(
        {'decoder.conv_in.bias': np.zeros((3,), np.float32)})))


def test_tokenizer_folders_are_checked(tmp_path):
  """Missing files, a special token outside the vocabulary, a broken merges line, a SentencePiece
  model without tokenizer.json: each one line naming the problem."""
  import json  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  src = os.path.join(DATA, 'sd2v', 'tokenizer')

  def copy(name):
    folder = tmp_path / name
    shutil.copytree(src, folder)
    return folder
  no_merges = copy('no_merges')
  os.remove(no_merges / 'merges.txt')
  with pytest.raises(ValueError, match='has no merges.txt'):
    tokenizers.clip(str(no_merges))
  bad_pad = copy('bad_pad')
  special = json.loads((bad_pad / 'special_tokens_map.json').read_text())
  special['pad_token'] = '<nope>'
  (bad_pad / 'special_tokens_map.json').write_text(json.dumps(special))
  with pytest.raises(ValueError, match="pad token '<nope>' is not in its vocab.json"):
    tokenizers.clip(str(bad_pad))
  bad_line = copy('bad_line')
  with open(bad_line / 'merges.txt', 'a') as f:
    f.write('a b c\n')
  with pytest.raises(ValueError, match="the line 'a b c', not a pair"):
    tokenizers.clip(str(bad_line))
  with pytest.raises(ValueError, match='no usable model_max_length'):
    _no_length(tmp_path, src)
  spiece = tmp_path / 't5'
  spiece.mkdir()
  (spiece / 'spiece.model').write_bytes(b'')
  with pytest.raises(ValueError, match='only a SentencePiece spiece.model'):
    tokenizers.t5(str(spiece), 16)
  assert tokenizers.clip(src)(['a red cat']).dtype == np.int32
  with pytest.raises(ValueError, match='a list of prompts'):
    tokenizers.clip(src)('a red cat')


def _no_length(tmp_path, src):
  import json  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  folder = tmp_path / 'no_length'
  shutil.copytree(src, folder)
  config = json.loads((folder / 'tokenizer_config.json').read_text())
  config.pop('model_max_length')
  (folder / 'tokenizer_config.json').write_text(json.dumps(config))
  return tokenizers.clip(str(folder))


def test_chunked_attention_with_a_bias_is_attention():
  """The query-chunked path with an additive bias (T5's position bias, CLIP's causal mask) is
  the unchunked one: each chunk gets its own rows of the bias."""
  from models import layers  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.standard_normal((2, 19, 3, 4)), jnp.float32) for _ in range(3))
  bias = jnp.asarray(rng.standard_normal((1, 3, 19, 19)), jnp.float32)
  whole = layers.attention(q, k, v, chunk=64, bias=bias)
  np.testing.assert_allclose(np.asarray(layers.attention(q, k, v, chunk=8, bias=bias)),
                             np.asarray(whole), rtol=1e-6, atol=1e-6)
  assert float(jnp.abs(whole - layers.attention(q, k, v, chunk=64)).max()) > 1e-2
