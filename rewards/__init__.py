"""Rewards: batched functions r(x0 [N, ...], cond) -> [N], chosen by `reward.name`, discovered
from this package.

Every module here that declares `REWARD = base.RewardKind(...)` (or a tuple `REWARDS` of named
ones) is a reward; its name is the module's unless it gives one (samplers/ground/registry.py, the
project's one registration style). Its fields and their defaults are in its declaration, and
configs/common.py builds the `reward` config section from them.

The temperature lambda of the tilted target p(x0) exp(r(x0) / lambda) is `reward.temperature`
and belongs to the search methods; a reward itself is a plain function of the clean sample.

Image rewards (`images=True`: clip_score, aesthetic, host_image) score images in [0, 1]. On a
latent backbone (Stable Diffusion) they are composed with its decoder, so they still take the
Tweedie latent; on a pixel backbone (digits, values in [-1, 1]) the pixels are mapped to [0, 1].
"""

from samplers.ground import pixels
from rewards import base
from samplers.ground import registry

Reward = base.Reward
stateless = base.stateless
check_differentiable = base.check_differentiable
REGISTRY = registry.Registry(__name__, 'REWARD', 'reward.name')


def names() -> tuple:
  return REGISTRY.names()


def get_kind(name: str) -> base.RewardKind:
  """The declaration of reward `name` (its module is `.module`)."""
  return REGISTRY.get(name)


def evaluation(config) -> str:
  """Which metrics judge a run (rewards/base.py: RewardKind.evaluation): the reward's
  declaration, else its backbone's (models/backbone.py: BackboneKind.evaluation); '' for
  none beyond the reward."""
  declared = get_kind(config.reward.name).evaluation
  if declared:
    return declared
  import models  # pylint: disable=g-import-not-at-top  (models' rewards import this package)
  model = config.get('model', {}).get('name', '')
  return models.get_kind(model).evaluation if model in models.names() else ''


def fields() -> dict:
  """Every reward's fields with their defaults (the `reward` config section beyond the common
  fields); a field shared by two rewards must have one default."""
  return dict(REGISTRY.merged('fields'))


def get_reward(cfg, data_shape, decoder=None, prompts=()) -> Reward:
  """Builds the reward named by cfg.name, validating its fields against the data shape.

  decoder: the backbone's latent decoder (models.backbone.Decoder) or None; prompts: the run's
  prompts, for rewards that read them.
  """
  kind = get_kind(cfg.name)
  data_shape = (data_shape,) if isinstance(data_shape, int) else tuple(data_shape)
  if not kind.images:
    return kind.build(cfg, data_shape, prompts)
  image_shape = tuple(decoder.output_shape) if decoder is not None else data_shape
  if not base.is_image_shape(image_shape):
    raise ValueError(f'reward {cfg.name} scores images [H, W, 1 or 3]; this backbone makes '
                     f'{data_shape}' + (f' decoded to {image_shape}.' if decoder else '.'))
  on_images = kind.build(cfg, image_shape, prompts)
  if decoder is None:
    to_images = lambda _, x: pixels.signed_to_unit(x)
  else:
    to_images = decoder.apply_fn
  return Reward(cfg.name,
                lambda p, x, cond: on_images.fn(p['reward'], to_images(p['decoder'], x), cond),
                {'reward': on_images.params,
                 'decoder': None if decoder is None else decoder.params},
                on_images.encode_text, on_images.probe)
