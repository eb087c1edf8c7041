"""Weights are checked wherever they are read (docs/reliability.md, "Weights"): NaN or inf in
a PyTorch safetensors folder, an OpenCLIP folder or a Flax CLIP; shard indexes that point out
of their folder; OpenCLIP configs that lack a size or give zero; tokenizer folders that name
code of their own, which is never run."""

import json
import os
import shutil
import sys

import numpy as np
import pytest

from models.flux import text_encoders
from models.flux import transformer as ft
from models.loading import torch_weights
from models.clip import open_clip

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
CLIP_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'rewards',
                         'data', 'clip')


def _copy(tmp_path, variant='schnell'):
  folder = tmp_path / variant
  shutil.copytree(os.path.join(DATA, 'flux', variant), folder)
  return folder


def _poison(path, key=None):
  """Sets one element of one float tensor of a safetensors file to NaN; returns its key."""
  from safetensors.numpy import load_file, save_file  # pylint: disable=g-import-not-at-top
  tensors = load_file(str(path))
  key = key or sorted(k for k, v in tensors.items() if v.dtype.kind == 'f')[0]
  value = np.array(tensors[key], copy=True)
  value.reshape(-1)[value.size // 2] = np.nan
  tensors[key] = value
  save_file(tensors, str(path))
  return key


def test_nan_in_a_safetensors_folder_is_refused_naming_the_tensor(tmp_path):
  folder = _copy(tmp_path)
  key = _poison(folder / 'transformer' / 'diffusion_pytorch_model.safetensors')
  with pytest.raises(ValueError, match=f"FLUX transformer tensor '{key}' in .* holds NaN or inf"):
    torch_weights.read_tensors(str(folder / 'transformer'), 'FLUX transformer')
  # And through the backbone's loader, before anything compiles.
  with pytest.raises(ValueError, match='holds NaN or inf'):
    ft.load(str(folder), 'float32')


def test_a_shard_index_cannot_point_out_of_its_folder(tmp_path):
  folder = _copy(tmp_path, 'dev') / 'transformer'
  index = [n for n in os.listdir(folder) if n.endswith(torch_weights.INDEX_SUFFIX)][0]
  original = json.loads((folder / index).read_text())
  outside = tmp_path / 'outside.safetensors'
  shutil.copy(folder / sorted(set(original['weight_map'].values()))[0], outside)
  for target in ('../../outside.safetensors', str(outside), 'sub/x.safetensors', '..',
                 'notes.txt'):
    bad = dict(original, weight_map=dict(original['weight_map'],
                                         **{next(iter(original['weight_map'])): target}))
    (folder / index).write_text(json.dumps(bad))
    with pytest.raises(ValueError, match='not a .safetensors file name in its folder'):
      torch_weights.read_tensors(str(folder), 'FLUX transformer')
  (folder / index).write_text(json.dumps({'metadata': {}}))
  with pytest.raises(ValueError, match='has no "weight_map"'):
    torch_weights.read_tensors(str(folder), 'FLUX transformer')


@pytest.mark.parametrize('edit,message', [
    (lambda c: c.pop('embed_dim'), r'model_cfg.embed_dim is missing; it must be a positive'),
    (lambda c: c.update(embed_dim=0), r'model_cfg.embed_dim is 0'),
    (lambda c: c['vision_cfg'].update(width=0), r'vision_cfg.width is 0'),
    (lambda c: c['vision_cfg'].update(head_width=0), r'vision_cfg.head_width is 0'),
    (lambda c: c['vision_cfg'].update(width=30, head_width=8), r'not a multiple of its head_width'),
    (lambda c: c['text_cfg'].update(heads=0), r'text_cfg.heads is 0'),
    (lambda c: c['text_cfg'].update(layers='twelve'), r"text_cfg.layers is 'twelve'"),
    (lambda c: c['vision_cfg'].update(patch_size=0), r'vision_cfg.patch_size is 0'),
])
def test_an_openclip_config_missing_or_zeroing_a_size_is_one_line(tmp_path, edit, message):
  folder = tmp_path / 'hps'
  shutil.copytree(os.path.join(CLIP_DATA, 'hpsv2'), folder)
  config = json.loads((folder / open_clip.CONFIG).read_text())
  edit(config['model_cfg'])
  (folder / open_clip.CONFIG).write_text(json.dumps(config))
  with pytest.raises(ValueError, match=message):
    open_clip.load(str(folder))


def test_nan_in_openclip_weights_is_refused(tmp_path):
  folder = tmp_path / 'hps'
  shutil.copytree(os.path.join(CLIP_DATA, 'hpsv2'), folder)
  key = _poison(folder / open_clip.WEIGHTS)
  with pytest.raises(ValueError, match=f"OpenCLIP tensor '{key}' .* holds NaN or inf"):
    open_clip.load(str(folder))


def test_a_tokenizer_folder_naming_its_own_code_never_runs_it(tmp_path, monkeypatch):
  """A tokenizer_config.json with an auto_map (code shipped in the folder) is read with the
  tokenizer's own class: the folder's module is never imported, and nothing asks to."""
  folder = _copy(tmp_path)
  marker = tmp_path / 'ran'
  for sub in ('tokenizer', 'tokenizer_2'):
    (folder / sub / 'tokenization_evil.py').write_text(
        f'open({str(marker)!r}, "w").write("ran")\nclass EvilTokenizer: pass\n')
    cfg = json.loads((folder / sub / 'tokenizer_config.json').read_text())
    cfg['auto_map'] = {'AutoTokenizer': ['tokenization_evil.EvilTokenizer', None]}
    cfg.pop('tokenizer_class', None)   # nothing else to go by
    (folder / sub / 'tokenizer_config.json').write_text(json.dumps(cfg))
  monkeypatch.setattr('builtins.input', lambda *a: pytest.fail('asked to run folder code'))
  encoders = text_encoders.load(str(folder), 'float32', 16)
  assert encoders[0](['a red cat']).shape == (1, 77) and encoders[3](['a red cat']).shape == (1, 16)
  assert not marker.exists()
  assert 'tokenization_evil' not in sys.modules
