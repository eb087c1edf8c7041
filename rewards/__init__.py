"""Reward registry: batched functions r(x0 [N, ...], cond) -> [N], chosen by `reward.name`.

The temperature lambda of the tilted target p(x0) exp(r(x0) / lambda) is `reward.temperature`
and belongs to the search methods; a reward itself is a plain function of the clean sample.

A `Reward` is a pytree: its `params` (network weights, or None) are leaves, so a jitted search
takes them as arguments instead of baking them into the program as constants.

Image rewards (clip_score, aesthetic, host_image) score images in [0, 1]. On a latent backbone
(Stable Diffusion) they are composed with its decoder, so they still take the Tweedie latent;
on a pixel backbone (digits, values in [-1, 1]) the pixels are mapped to [0, 1].
"""

from typing import Any, Callable, Optional

from flax import struct
import jax.numpy as jnp
import numpy as np

from rewards import analytic
from rewards import classifier
from rewards import host

REWARDS = ('linear', 'gaussian', 'quadratic', 'mode_weighting', 'classifier',
           'classifier_logodds', 'classifier_set', 'compressibility', 'clip_score', 'aesthetic',
           'host_image')
IMAGE_REWARDS = ('clip_score', 'aesthetic', 'host_image')


@struct.dataclass
class Reward:
  name: str = struct.field(pytree_node=False)
  fn: Callable = struct.field(pytree_node=False)  # (params, x0 [N, ...], cond) -> [N]
  params: Any = None
  # Host-side: prompts -> cond['reward_text'] [P, D], for rewards that compare with a prompt.
  encode_text: Optional[Callable] = struct.field(pytree_node=False, default=None)
  # Host-side: () -> None, raising ValueError; for host-callback rewards, whose output shape
  # only the host function itself can tell (called on a tiny batch before compiling).
  probe: Optional[Callable] = struct.field(pytree_node=False, default=None)

  def __call__(self, x0, cond=None):
    return self.fn(self.params, x0, cond)


def stateless(name: str, fn: Callable) -> Reward:
  """A reward without parameters from fn(x0, cond) -> [N]."""
  return Reward(name, lambda _, x0, cond: fn(x0, cond))


def get_reward(cfg, data_shape, decoder=None, prompts=()) -> Reward:
  """Builds the reward named by cfg.name, validating its fields against the data shape.

  decoder: the backbone's latent decoder (models.backbone.Decoder) or None; prompts: the run's
  prompts, for host rewards that read them.
  """
  name = cfg.name
  data_shape = (data_shape,) if isinstance(data_shape, int) else tuple(data_shape)
  if name in IMAGE_REWARDS:
    return _image_reward(cfg, data_shape, decoder, prompts)
  data_dim = int(np.prod(data_shape))
  if name in ('classifier', 'classifier_logodds', 'classifier_set'):
    if not cfg.get('checkpoint'):
      raise ValueError(f'reward {name} needs reward.checkpoint (a train_classifier workdir).')
    module, params, shape = classifier.load(cfg.checkpoint)
    if shape != data_shape:
      raise ValueError(f'the classifier in {cfg.checkpoint!r} takes images of shape {shape}, '
                       f'the backbone makes {data_shape}.')
    if name != 'classifier_set':
      target = int(cfg.target_class)
      if not 0 <= target < module.num_classes:
        raise ValueError(f'reward.target_class must lie in 0..{module.num_classes - 1}, '
                         f'got {target}.')
      return Reward(name, classifier.target_class_reward(module, target,
                                                         logodds=name == 'classifier_logodds'),
                    params)
    classes = tuple(int(c) for c in cfg.classes)
    if not classes or any(not 0 <= c < module.num_classes for c in classes):
      raise ValueError(f'reward.classes must be a non-empty subset of 0..'
                       f'{module.num_classes - 1}, got {classes}.')
    return Reward(name, classifier.class_set_reward(module, classes), params)
  if name == 'compressibility':
    if len(data_shape) != 3 or data_shape[-1] not in (1, 3):
      raise ValueError(f'reward compressibility encodes images [H, W, 1 or 3]; this backbone '
                       f'makes {data_shape}.')
    scores = host.compressibility_scores(cfg.get('format', 'png'))
    return Reward(name, lambda _, x0, cond: host.host_reward(scores)(x0, cond),
                  probe=host.probe(scores, data_shape))
  if name == 'linear':
    weights = tuple(cfg.weights)
    _check_dim('reward.weights', weights, data_dim)
    return stateless(name, analytic.linear(weights, float(cfg.get('bias', 0.0))))
  if name == 'gaussian':
    center = tuple(cfg.center)
    _check_dim('reward.center', center, data_dim)
    width = float(cfg.get('width', 1.0))
    if not (np.isfinite(width) and width > 0):
      raise ValueError(f'reward.width must be a positive finite number, got {width}.')
    return stateless(name, analytic.gaussian(center, width))
  if name == 'quadratic':  # the checkerboard task's r(x) = -|x|^2 / 2
    return stateless(name, analytic.gaussian((0.0,) * data_dim, 1.0))
  if name == 'mode_weighting':
    if data_dim != 2:
      raise ValueError(f'reward mode_weighting is defined in 2D, the data has dimension '
                       f'{data_dim}.')
    num_modes, mode_std = int(cfg.get('num_modes', 8)), float(cfg.get('mode_std', 0.3))
    if num_modes < 1:
      raise ValueError(f'reward.num_modes must be >= 1, got {num_modes}.')
    if not (np.isfinite(mode_std) and mode_std > 0):
      raise ValueError(f'reward.mode_std must be a positive finite number, got {mode_std}.')
    return stateless(name, analytic.mode_weighting(
        num_modes, float(cfg.get('radius', 4.0)), mode_std, float(cfg.get('mode_scale', 1.5))))
  raise ValueError(f'Unknown reward {name!r}; valid: {", ".join(REWARDS)}.')


def _image_reward(cfg, data_shape, decoder, prompts) -> Reward:
  from rewards import clip  # pylint: disable=g-import-not-at-top
  name = cfg.name
  image_shape = decoder.output_shape if decoder is not None else data_shape
  if len(image_shape) != 3 or image_shape[-1] not in (1, 3):
    raise ValueError(f'reward {name} scores images [H, W, 1 or 3]; this backbone makes '
                     f'{data_shape}' + (f' decoded to {image_shape}.' if decoder else '.'))
  encode_text, probe = None, None
  if name == 'host_image':
    np_fn = _host_image_function(cfg)
    fn, params = host.host_image_reward(np_fn, list(prompts) or ['']), None
    probe = host.probe_image_reward(np_fn, list(prompts) or [''], image_shape)
  elif name == 'clip_score':
    fn, params = clip.clip_score(_required(cfg, 'model', name))
    encode_text = lambda texts: clip.text_embedding(cfg.model, texts)
  else:
    fn, params = clip.aesthetic(_required(cfg, 'model', name), _required(cfg, 'head', name))
  if decoder is None:
    to_images = lambda _, x: jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)
  else:
    to_images = decoder.apply_fn
  return Reward(name, lambda p, x, cond: fn(p['reward'], to_images(p['decoder'], x), cond),
                {'reward': params, 'decoder': None if decoder is None else decoder.params},
                encode_text, probe)


def _host_image_function(cfg):
  """reward.function = 'package.module:function', called as function(images uint8
  [N, H, W, 3], prompts: list of N str) -> [N] on the host (ImageReward, PickScore, ...)."""
  import importlib  # pylint: disable=g-import-not-at-top
  spec = _required(cfg, 'function', 'host_image')
  module_name, _, attr = spec.partition(':')
  try:
    return getattr(importlib.import_module(module_name), attr)
  except (ImportError, AttributeError, ValueError):
    raise ValueError(f'reward.function {spec!r} is not an importable "module:function".') from None


def _required(cfg, field, name):
  value = cfg.get(field, '')
  if not value:
    raise ValueError(f'reward {name} needs reward.{field}.')
  return value


def _check_dim(field, value, data_dim):
  if len(value) != data_dim:
    raise ValueError(f'{field} has {len(value)} entries but the data has dimension {data_dim}.')
