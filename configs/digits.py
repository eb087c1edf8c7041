"""8x8 digits (scikit-learn): trained U-Net backbones, a classifier reward, search to a class.

Variants (comma-separated):
  flow        train a class-conditional U-Net by flow matching (velocity, linear interpolant)
  eps         train it as an eps-prediction diffusion model (VP interpolant)
  reflow      the 2-rectified flow (experiments/data/reflow.py): the flow's own Linear-ODE couplings,
              trained from the flow's weights; a few-step backbone, as FLUX.1-schnell is one
  classifier  train the digit classifier (the reward and the image metrics)
  sample      sample the trained backbone (flow by default; with `eps`, the eps one)
  METHOD      search towards reward.target_class (bon, sop, smc, svdd, code, rbf, dts, dts_star)
  compare     bon, smc, svdd, rbf and dts side by side at one budget
  quick       tiny sizes for tests
Backbones and the classifier are written to runs/digits/{flow,eps,classifier}, where the
sampling and search variants look for them (model.checkpoint, reward.checkpoint).

  python main.py --config=configs/digits.py:flow --workdir=runs/digits/flow
  python main.py --config=configs/digits.py:classifier --workdir=runs/digits/classifier
  python main.py --config=configs/digits.py:smc --workdir=runs/digits_smc
"""

import ml_collections

from configs import common

STAGES = ('flow', 'eps', 'reflow', 'classifier', 'sample', 'compare', 'quick')


def get_config(arg=None):
  tokens = common.parse_variant(arg or 'flow', STAGES + common.METHODS)
  kind = 'eps' if 'eps' in tokens else 'flow'
  config = ml_collections.ConfigDict()
  config.experiment = 'train'
  if 'classifier' in tokens:
    config.experiment = 'train_classifier'
  elif 'sample' in tokens:
    config.experiment = 'sample'
  elif 'compare' in tokens:
    config.experiment = 'compare'
  config.seed = 0
  config.condition = -1           # a class for the class-conditional backbone; -1: none
  config.data = ml_collections.ConfigDict(dict(name='digits', dim=64))
  config.model = ml_collections.ConfigDict(dict(
      name='unet',
      prediction='epsilon' if kind == 'eps' else 'velocity',
      interpolant='vp' if kind == 'eps' else 'linear',
      channels=(16, 32, 32), embed_dim=64,
      num_classes=10, label_dropout=0.1,   # class conditioning, for classifier-free guidance
      guidance_weight=0.0,                 # CFG weight w at sampling time (0: as trained)
      checkpoint=f'runs/digits/{kind}',
  ))
  if 'reflow' in tokens:
    # Unconditional couplings: the label is always the "no class" token.
    config.data = ml_collections.ConfigDict(dict(
        name='reflow', teacher='runs/digits/flow', num_pairs=16384, teacher_steps=50))
    config.model.update(checkpoint='runs/digits/reflow', label_dropout=0.0)
  # loop='python': on XLA:CPU this U-Net's gradient runs ~10x slower inside a lax.scan body
  # (measured 330 ms vs 28 ms per step); one jitted step per call gives the same parameters.
  config.train = ml_collections.ConfigDict(dict(
      num_steps=4000, batch_size=64, learning_rate=2e-3, schedule='cosine', log_every=500,
      loop='python'))
  if 'reflow' in tokens:
    config.train.update(num_steps=3000, learning_rate=5e-4, init_from='runs/digits/flow')
  config.classifier = ml_collections.ConfigDict(dict(
      num_classes=10, features=128, num_steps=3000, batch_size=128, learning_rate=2e-3,
      augment_noise=0.1))
  # VP-SDE with g = 3 s^2 on the uniform grid. (The RBF paper's adaptive grid ends its last
  # evaluated level at t = 0.2 for 50 steps, whose Tweedie estimates are visibly blurred here:
  # Frechet 93 against 57 on the uniform grid; --config.sampler.time_grid=adaptive for it.)
  config.sampler = common.sampler_config(interpolant='vp', sde=True, num_steps=50,
                                         num_samples=256)
  # lambda = 1: p(x) p(c | x) is p(x | c), so the tilted target is the class-conditional
  # distribution (the DTS paper's class-conditional task) and the Frechet distance to held-out
  # digits of the class measures how well a method samples it.
  config.reward = common.reward_config(name='classifier', checkpoint='runs/digits/classifier',
                                       target_class=3, temperature=1.0)
  config.search = common.search_config(budget=50 * 256, num_particles=64, block_size=5,
                                       branch_every=10)
  config.mesh = common.mesh_config()
  config.compare = ml_collections.ConfigDict(dict(methods=('bon', 'smc', 'svdd', 'rbf', 'dts')))
  common.apply_method_variant(config, tokens)

  if 'quick' in tokens:
    apply_quick(config)
  return config


def apply_quick(config) -> None:
  """Tiny sizes for tests (the paper-figure configs build on this config and shrink with it)."""
  config.model.update(channels=(8, 16, 16), embed_dim=16)
  config.train.update(num_steps=40, batch_size=16, log_every=20)
  if config.data.name == 'reflow':
    config.data.update(num_pairs=64, teacher_steps=4)
  config.classifier.update(num_steps=60, batch_size=32, features=32)
  config.sampler.update(num_steps=6, num_samples=16)
  config.search.update(budget=6 * 16, num_particles=4, block_size=2, branch_every=2)
