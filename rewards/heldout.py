"""Held-out rewards: scored on a search's outputs after it ends, never inside it, so that every
run shows how far the searched reward was hacked (search with PickScore, judge with HPSv2 and
CLIP score).

reward.heldout is a tuple of entries 'NAME' or 'NAME,FIELD=VALUE,...': reward NAME with the
run's reward fields, FIELD overridden (typed like the field's default), e.g.
  ('hpsv2,model=runs/hpsv2.1', 'clip_score,model=openai/clip-vit-large-patch14')
"""

import ml_collections


def entries(value) -> tuple:
  """reward.heldout as a tuple of entry strings (a string is split on ';')."""
  if isinstance(value, str):
    value = value.split(';')
  return tuple(str(v).strip() for v in value if str(v).strip())


def config_of(entry: str, reward_cfg) -> ml_collections.ConfigDict:
  """The reward section of one entry: the run's reward section with NAME and the overrides."""
  import rewards  # pylint: disable=g-import-not-at-top
  name, *overrides = [t.strip() for t in entry.split(',')]
  rewards.get_kind(name)   # an unknown name lists the valid ones
  cfg = ml_collections.ConfigDict(reward_cfg.to_dict())
  cfg.heldout = ()
  cfg.name = name
  for override in overrides:
    field, sep, value = override.partition('=')
    field = field.strip()
    if not sep or field not in cfg or field in ('name', 'heldout', 'temperature'):
      raise ValueError(f'reward.heldout entry {entry!r}: {override!r} is not FIELD=VALUE of a '
                       'reward field.')
    default = cfg[field]
    try:
      cfg[field] = type(default)(value) if not isinstance(default, bool) else (
          value.strip().lower() in ('1', 'true', 'yes'))
    except (TypeError, ValueError):
      raise ValueError(f'reward.heldout entry {entry!r}: {field} takes a '
                       f'{type(default).__name__}, not {value!r}.') from None
  return cfg


def build(reward_cfg, data_shape, decoder=None, prompts=()) -> tuple:
  """((label, Reward), ...) of reward.heldout, each validated as a reward of its own."""
  import rewards  # pylint: disable=g-import-not-at-top
  out, labels = [], set()
  for entry in entries(reward_cfg.get('heldout', ())):
    cfg = config_of(entry, reward_cfg)
    if cfg.name in labels:
      raise ValueError(f'reward.heldout lists {cfg.name!r} twice.')
    labels.add(cfg.name)
    out.append((cfg.name, rewards.get_reward(cfg, data_shape, decoder, prompts)))
  return tuple(out)
