"""Train, then sample, the 2D MLP backbones on the toy datasets.

Variant: DATASET[,epsilon|ddpm][,METHOD][,quick] with DATASET in gmm | ring | moons |
checkerboard. Default: train a velocity model by flow matching on the linear interpolant;
`epsilon` trains an eps-prediction model on the VP interpolant instead; `ddpm` trains the DTS
paper's: eps-prediction on its discrete DDPM schedule (linear beta from 0.001 to 0.07 over
T = 100 timesteps, trained at those timesteps), sampled by DDPM's ancestral kernel on them. A METHOD token (bon, smc, rbf, dts, ...)
runs that search on a trained model (set --config.model.checkpoint to the train workdir), on
the SDE when its candidates differ only through the sampler's noise (SMC, SVDD, RBF, DTS, ...:
search/base.py, Method.needs_noise), else on the ODE.
The ring uses the DTS paper's mode-weighting reward, the checkerboard -|x|^2 / 2.
  python main.py --config=configs/toy2d.py:moons --workdir=/tmp/moons
  python main.py --config=configs/toy2d.py:moons --workdir=/tmp/moons_vp \
      --config.experiment=sample --config.model.checkpoint=/tmp/moons \
      --config.sampler.interpolant=vp --config.sampler.sde=true
"""

import ml_collections

import search
from configs import common

DATASETS = ('gmm', 'ring', 'moons', 'checkerboard')
_REWARD_FOR = {'ring': 'mode_weighting', 'checkerboard': 'quadratic'}
# The DTS paper's 2D diffusion: linear betas from 0.001 to 0.07 over T = 100 timesteps.
DDPM_SCHEDULE = dict(interpolant='discrete', beta_schedule='linear', beta_start=0.001,
                     beta_end=0.07, num_train_timesteps=100)


def get_config(arg=None):
  tokens = common.parse_variant(arg or 'moons',
                                DATASETS + ('epsilon', 'ddpm', 'quick') + common.METHODS)
  datasets = tokens & set(DATASETS)
  if len(datasets) != 1:
    raise ValueError(f'toy2d needs exactly one dataset among {", ".join(DATASETS)}; got {arg!r}.')
  dataset = datasets.pop()
  epsilon = 'epsilon' in tokens
  ddpm = 'ddpm' in tokens
  if epsilon and ddpm:
    raise ValueError("toy2d takes one of the tokens 'epsilon' and 'ddpm', not both.")

  config = ml_collections.ConfigDict()
  config.experiment = 'train'
  config.seed = 0
  config.data = ml_collections.ConfigDict(dict(
      name=dataset, num_points=10_000, dim=2,
      means=((-3.0, -1.0), (0.0, 2.5), (3.0, -1.0)),   # gmm
      stds=(0.5, 0.6, 0.4), weights=(0.3, 0.3, 0.4),
      num_modes=8, radius=4.0, std=0.3,                 # ring
      noise=0.05,                                       # moons
  ))
  config.model = ml_collections.ConfigDict(dict(
      name='mlp',
      prediction='epsilon' if epsilon else 'velocity',
      interpolant='vp' if epsilon else 'linear',
      hidden=128, depth=4, embed_dim=64,
      checkpoint='',              # sampling: the workdir of a train run
  ))
  config.train = ml_collections.ConfigDict(dict(
      num_steps=20_000, batch_size=512, learning_rate=1e-3, schedule='cosine', log_every=1000,
      loop='scan'))
  config.sampler = common.sampler_config()
  if ddpm:
    config.model.update(prediction='epsilon', **DDPM_SCHEDULE)
    config.sampler.update(kernel='ddpm', sde=True, num_steps=DDPM_SCHEDULE['num_train_timesteps'],
                          time_grid='inclusive', **DDPM_SCHEDULE)
  config.reward = common.reward_config(name=_REWARD_FOR.get(dataset, 'linear'))
  config.search = common.search_config()
  config.mesh = common.mesh_config()
  config.compare = ml_collections.ConfigDict(dict(methods=common.METHODS))
  common.apply_method_variant(config, tokens)
  if config.experiment == 'search' and search.get_method(config.search.method).needs_noise:
    config.sampler.sde = True   # on the ODE, resampled particles or children are copies

  if 'quick' in tokens:
    config.data.num_points = 2000
    config.model.update(hidden=32, depth=2, embed_dim=16)
    config.train.update(num_steps=200, batch_size=128, log_every=100)
    config.sampler.update(num_steps=20, num_samples=256)
    config.search.update(budget=640, num_particles=4, block_size=3)
  return config
