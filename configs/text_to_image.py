"""What the text-to-image configs share (configs/sd.py, configs/flux.py, and the next backbone's):
the prompts, a CLIP-based reward, RBF to the best sample by default, the RBF paper's settings
(`rbf_paper`) and the tiny random folders of the tests (`tiny`). A backbone's config gives its
`model` section and what differs in its sampler, search and mesh."""

import ml_collections

from configs import common

VARIANTS = ('rbf_paper', 'sample', 'tiny')


def base(tokens, model: dict, sampler: dict, search: dict, mesh: dict,
         default_method: str = 'rbf') -> ml_collections.ConfigDict:
  """A text-to-image config: `experiment` (search, or sample with `sample`), the prompt fields,
  `model`, and the sampler, reward, search and mesh sections with the backbone's overrides."""
  config = ml_collections.ConfigDict()
  config.experiment = 'sample' if 'sample' in tokens else 'search'
  config.seed = 0
  config.prompt = 'a photograph of an astronaut riding a horse'
  config.prompt_file = ''         # one prompt per line; overrides `prompt`
  config.prompt_rows = ''         # 'A-B': prompts A..B-1 of the list only ('' all of them)
  config.model = ml_collections.ConfigDict(model)
  config.sampler = common.sampler_config(**dict(dict(interpolant='vp', sde=True, num_samples=4),
                                                **sampler))
  config.reward = common.reward_config(name='clip_score', model='openai/clip-vit-large-patch14',
                                       temperature=0.01)
  config.search = common.search_config(**dict(dict(method='rbf', budget=500, num_particles=4,
                                                   output='best'), **search))
  config.mesh = common.mesh_config(**mesh)
  common.apply_method_variant(config, tokens)
  if not any(t in common.METHODS for t in tokens) and 'sample' not in tokens:
    config.search.method = default_method
  if 'rbf_paper' in tokens:   # VP-SDE, g = 3 s^2 on the adaptive grid, 10 steps, 500 NFE
    config.sampler.update(interpolant='vp', sde=True, num_steps=10, diffusion='square',
                          diffusion_norm=3.0, time_grid='adaptive')
    config.search.update(budget=500, num_particles=2)   # the released RBF: 2 chains
  return config


def tiny(config, **model) -> None:
  """The tests' sizes: the tiny random model folder (model overrides), the tiny CLIP reward of
  `python -m experiments.tools.random_weights runs/sd_tiny`, 4 steps, 16 NFE."""
  config.prompt = 'a red cat'
  config.model.update(revision='', dtype='float32', **model)
  config.reward.update(model='runs/sd_tiny/clip', head='runs/sd_tiny/aesthetic.safetensors',
                       temperature=0.1)
  config.sampler.update(num_steps=4, num_samples=4)
  config.search.update(budget=16, num_particles=2, block_size=2, branch_every=2,
                       sop_start=2, sop_renoise=1, sop_denoise=2, ses_popsize=2, ses_elites=2,
                       nts_candidates=2, psi_chains=2, psi_burn_in=1, psi_mcmc_steps=1,
                       evo_schedule=(0.0,), evo_populations=(2, 2), evo_elites=1)
