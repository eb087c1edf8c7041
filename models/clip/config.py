"""CLIP's architecture, read from transformers' config.json (CLIPModel, CLIPTextModel,
CLIPTextModelWithProjection): the fields that define the network, transformers' defaults for
the ones a file leaves out."""

import dataclasses
from typing import Optional

ARCHITECTURES = ('CLIPModel', 'CLIPTextModel', 'CLIPTextModelWithProjection')


@dataclasses.dataclass(frozen=True)
class TextConfig:
  vocab_size: int = 49408
  hidden_size: int = 512
  intermediate_size: int = 2048
  num_hidden_layers: int = 12
  num_attention_heads: int = 8
  max_position_embeddings: int = 77
  hidden_act: str = 'quick_gelu'
  layer_norm_eps: float = 1e-5
  projection_dim: int = 512
  eos_token_id: int = 49407
  # OpenCLIP pools at the largest token id (CLIP's end token is its vocabulary's last).
  pool_at_largest_id: bool = False


@dataclasses.dataclass(frozen=True)
class VisionConfig:
  hidden_size: int = 768
  intermediate_size: int = 3072
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  num_channels: int = 3
  image_size: int = 224
  patch_size: int = 32
  hidden_act: str = 'quick_gelu'
  layer_norm_eps: float = 1e-5


@dataclasses.dataclass(frozen=True)
class ClipConfig:
  """architecture: CLIPModel (both towers, both projections and logit_scale), CLIPTextModel
  (the text tower) or CLIPTextModelWithProjection (the text tower and text_projection)."""
  architecture: str
  text: TextConfig
  vision: Optional[VisionConfig] = None
  projection_dim: int = 512

  @property
  def text_projection(self) -> bool:
    return self.architecture != 'CLIPTextModel'


def _fields(cls, raw: dict, what: str):
  names = {f.name for f in dataclasses.fields(cls)}
  config = cls(**{k: v for k, v in raw.items() if k in names})
  for f in dataclasses.fields(cls):
    value = getattr(config, f.name)
    if f.type in (int, 'int') and (isinstance(value, bool) or not isinstance(value, int)
                                   or (value < 1 and f.name != 'eos_token_id')):
      raise ValueError(f'the {what} config has {f.name} = {value!r}; it must be a positive '
                       'integer.')
  if config.hidden_size % config.num_attention_heads:
    raise ValueError(f'the {what} config has hidden_size = {config.hidden_size}, not a multiple '
                     f'of num_attention_heads = {config.num_attention_heads}.')
  return config


def from_dict(raw: dict, what: str = 'CLIP') -> ClipConfig:
  """The ClipConfig of a transformers config.json dict (a one-line ValueError for what it cannot
  be)."""
  arch = (raw.get('architectures') or [None])[0]
  if arch is None:
    arch = {'clip': 'CLIPModel', 'clip_text_model': 'CLIPTextModel'}.get(raw.get('model_type'))
  if arch not in ARCHITECTURES:
    raise ValueError(f'the {what} config names architecture {arch!r}; supported: '
                     f'{", ".join(ARCHITECTURES)}.')
  if arch == 'CLIPModel':
    projection = int(raw.get('projection_dim', 512))
    text = _fields(TextConfig, dict(raw.get('text_config') or {}, projection_dim=projection),
                   f'{what} text')
    vision = _fields(VisionConfig, dict(raw.get('vision_config') or {}), f'{what} vision')
    if vision.image_size % vision.patch_size:
      raise ValueError(f'the {what} vision config has image_size = {vision.image_size}, not a '
                       f'multiple of patch_size = {vision.patch_size}.')
    return ClipConfig(arch, text, vision, projection)
  text = _fields(TextConfig, raw, what)
  return ClipConfig(arch, text, None, text.projection_dim)
