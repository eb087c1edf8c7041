"""r(x) = -(size of the image encoded as PNG or JPEG, in kB), the DDPO/SVDD compressibility
reward (reward.format): a host callback (rewards/host.py), so it has no gradient."""

from rewards import base
from rewards import host


def build(cfg, shape, prompts=()) -> base.Reward:
  del prompts
  base.check_images(cfg.name, shape)
  scores = host.compressibility_scores(cfg.get('format', 'png'))
  return base.Reward(cfg.name, lambda _, x0, cond: host.host_reward(scores)(x0, cond),
                     probe=host.probe(scores, shape))


REWARD = base.RewardKind(build, fields=dict(format='png'), order=20)
