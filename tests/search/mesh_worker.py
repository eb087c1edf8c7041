"""Runs every search method on meshes of 1, 2, 4 and 8 simulated CPU devices (or, with
--num_processes, one process of a jax.distributed run) and saves the outputs for comparison.

  python -m tests.search.mesh_worker OUT_DIR [--process_id I --num_processes P --port N]

Used by tests/search/test_sharding.py through subprocesses, because the number of CPU devices
is fixed when jax starts.
"""

import argparse
import json
import os
import sys

DEVICES = 8
MESH_SIZES = (1, 2, 4, 8)
# Integers that equal exactly on every mesh. Not nfe_evaluated: rbf's per-device proposal loops
# stop when that device's chains are done, so the masked rows evaluated depend on the split.
COUNTS = ('nfe', 'num_invalid', 'num_scored')


# The linear particle schedules of smc and svdd run as variants of their methods.
SCHEDULED = ('smc_linear', 'svdd_linear')


def config_for(name: str):
  """The mesh tests' config of a method, or of a SCHEDULED variant."""
  from configs import gmm2d  # pylint: disable=g-import-not-at-top
  method = name.replace('_linear', '')
  config = gmm2d.get_config(f'quick,{method}')
  # 8 steps; 16 particles or chains; budgets that give bon, smc and tempered_smc 16 samples
  # too, zero_order and random_search one round of 4 candidates per chain, nts one round of
  # 4 at each level, and psp stages of 96, 48 and 24 seeds.
  config.sampler.num_steps = 8
  budget = {'bon': 16 * 8, 'smc': 16 * 8, 'tempered_smc': 16 * 8, 'zero_order': 16 * 8 * 5,
            'random_search': 16 * 8 * 5, 'nts': 16 * 8 * 4}.get(method, 16 * 8 * 3)
  config.search.update(num_particles=16, budget=budget, block_size=3, ess_threshold=0.9)
  if method.startswith('dts'):  # 8 rollouts in flight: one row per device
    config.search.dts_batch = 8
  if method == 'ses':   # 16 candidates per generation, 3 generations
    config.search.ses_popsize = 16
  if method == 'evo':   # populations of 16 and 8 (pools of 16, 24, 32 and 40), unscaled
    from search import evo  # pylint: disable=g-import-not-at-top
    config.search.update(evo_populations=(16, 8, 8, 8, 8),
                         budget=evo.cost((16, 8, 8, 8, 8),
                                         evo.schedule_levels((0, 0.4, 0.6, 0.8), 8), 8))
  if method == 'psi':   # 16 chains of 2 + 2 steps, then 32 SMC particles
    config.search.update(psi_chains=16, psi_burn_in=2, psi_mcmc_steps=2)
  if name in SCHEDULED:   # counts that divide over 8 devices: 120, 104, ..., 8 (smc) and
    config.search.update(particle_schedule='linear',       # 16 x (15, 13, ..., 1) (svdd)
                         budget=512 if method == 'smc' else 1024)
  return config


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('out_dir')
  parser.add_argument('--process_id', type=int, default=0)
  parser.add_argument('--num_processes', type=int, default=1)
  parser.add_argument('--port', type=int, default=0)
  parser.add_argument('--methods', default='')
  parser.add_argument('--sizes', default='1,2,4,8', help='mesh sizes to run')
  parser.add_argument('--collectives', action='store_true',
                      help='write the collectives of every method (smc also with island '
                      'resampling) compiled on 8 devices')
  parser.add_argument('--fsdp', default='',
                      help='a folder of experiments.tools.random_weights.write_all: text-to-image search '
                      'with the U-Net split over a model axis, against a particles-only mesh')
  parser.add_argument('--fsdp_backbone', default='stable_diffusion',
                      help='stable_diffusion (its tiny folder under --fsdp), flux or sd3 (the tiny '
                      'FLUX.1-schnell and SD3.5-large folders of tests/models/data)')
  parser.add_argument('--searches', default='',
                      help='methods (comma-separated) to run as 4 batched searches on one device '
                      'and on a (2 searches, 4 particles) mesh: searches.npz')
  args = parser.parse_args()

  import jax  # pylint: disable=g-import-not-at-top
  per_process = DEVICES // args.num_processes
  jax.config.update('jax_num_cpu_devices', per_process)
  if args.num_processes > 1:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(coordinator_address=f'localhost:{args.port}',
                               num_processes=args.num_processes, process_id=args.process_id,
                               local_device_ids=list(range(per_process)))
  assert jax.device_count() == DEVICES, jax.devices()

  import numpy as np  # pylint: disable=g-import-not-at-top
  import search  # pylint: disable=g-import-not-at-top
  from experiments import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  from experiments import search as search_exp  # pylint: disable=g-import-not-at-top
  from jax.sharding import AxisType  # pylint: disable=g-import-not-at-top

  if args.collectives:
    write_collectives(args.out_dir)
    return
  if args.fsdp:
    write_fsdp(args.out_dir, args.fsdp, args.fsdp_backbone)
    return
  if args.searches:
    write_searches(args.out_dir, args.searches.split(','))
    return
  methods = args.methods.split(',') if args.methods else search.METHODS + SCHEDULED
  sizes = (DEVICES,) if args.num_processes > 1 else tuple(int(v) for v in args.sizes.split(','))
  outputs = {}
  for method in methods:
    config = config_for(method)
    problem, method_config, _ = search_exp.prepare(config)
    name, method = method, config.search.method
    for size in sizes:
      mesh = jax.make_mesh((size,), ('particles',), axis_types=(AxisType.Auto,),
                           devices=jax.devices()[:size])
      mesh_lib.check_particles(method, method_config, mesh)
      workdir = os.path.join(args.out_dir, f'{name}_{size}')
      search_exp.execute(config, workdir, problem, method_config, mesh)
      if args.process_id == 0:
        data = np.load(os.path.join(workdir, 'samples.npz'))
        for key in ('x0', 'reward', 'trace_best', 'trace_nfe'):
          outputs[f'{name}/{size}/{key}'] = data[key]
        with open(os.path.join(workdir, 'metrics.json')) as f:
          metrics = json.load(f)
        for key in COUNTS:
          outputs[f'{name}/{size}/{key}'] = np.asarray(metrics[key])
  if args.num_processes == 1 and not args.methods:
    # Plain sampling on the full 8-device mesh (config.mesh.shape = (-1,)).
    from configs import gmm2d  # pylint: disable=g-import-not-at-top
    from experiments import sample as sample_exp  # pylint: disable=g-import-not-at-top
    sample_exp.run(gmm2d.get_config('sample,quick'), os.path.join(args.out_dir, 'sample'))
    outputs['sample/8/x0'] = np.load(os.path.join(args.out_dir, 'sample', 'samples.npz'))['x0']
  if args.process_id == 0:
    np.savez(os.path.join(args.out_dir, 'outputs.npz'), **outputs)
  print('done', file=sys.stderr)


def write_collectives(out_dir):
  """collectives.json: per method, the collectives of the whole program and of its loops."""
  import json  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import search  # pylint: disable=g-import-not-at-top
  from experiments import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  from experiments import search as search_exp  # pylint: disable=g-import-not-at-top
  from jax.sharding import AxisType  # pylint: disable=g-import-not-at-top
  from tests.search import hlo_collectives  # pylint: disable=g-import-not-at-top
  mesh = jax.make_mesh((DEVICES,), ('particles',), axis_types=(AxisType.Auto,))
  found = {}
  for name in ('bon', 'psp', 'sop', 'svdd', 'code', 'nts', 'rbf', 'smc', 'smc_island', 'dts',
               'dts_star', 'tempered_smc', 'beam', 'zero_order', 'random_search'):
    config = config_for('smc' if name == 'smc_island' else name)
    method = config.search.method
    if name == 'smc_island':
      config.search.resampling_scope = 'island'
    problem, method_config, _ = search_exp.prepare(config)
    run_fn = search.get_method(method).run
    with jax.set_mesh(mesh):
      args = (mesh_lib.place(jax.random.key(0), mesh),
              mesh_lib.place_sampler(problem.sampler, mesh), mesh_lib.place(problem.reward, mesh))
      hlo = jax.jit(lambda k, s, r, run_fn=run_fn, c=method_config: run_fn(k, s, r, c)).lower(
          *args).compile().as_text()
    found[name] = {'all': hlo_collectives.collectives(hlo),
                   'loops': hlo_collectives.collectives(hlo, in_loops_only=True),
                   'particles': (method_config.num_particles if method.endswith('smc') else
                                 method_config.batch if method.startswith('dts') else
                                 method_config.num_chains * method_config.num_candidates
                                 if method == 'beam' else None)}
  with open(os.path.join(out_dir, 'collectives.json'), 'w') as f:
    json.dump(found, f)


def write_fsdp(out_dir, sd_root, backbone='stable_diffusion'):
  """fsdp.npz: bon's samples on a (8,) particles mesh and on a (2 particles, 4 model) mesh, and
  the fraction of U-Net (or FLUX transformer) parameters, by size, that the model axis
  splits."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import flux  # pylint: disable=g-import-not-at-top
  from configs import sd  # pylint: disable=g-import-not-at-top
  from configs import sd3  # pylint: disable=g-import-not-at-top
  from experiments import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  from experiments import search as search_exp  # pylint: disable=g-import-not-at-top
  data = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'models', 'data')
  if backbone in ('flux', 'sd3'):
    config, params_key = (flux if backbone == 'flux' else sd3).get_config('tiny,bon'), 'transformer'
    config.model.path = os.path.join(data, *(('flux', 'schnell') if backbone == 'flux' else
                                             ('sd3', 'large')))
  else:
    config, params_key = sd.get_config('tiny,bon'), 'unet'
    config.model.path = os.path.join(sd_root, 'stable_diffusion')
  config.reward.model = os.path.join(sd_root, 'clip')
  config.search.update(budget=8 * config.sampler.num_steps, output='samples')
  out = {}
  for name, axes, shape in (('particles', ('particles',), (-1,)),
                            ('fsdp', ('particles', 'model'), (2, 4))):
    config.mesh.update(axes=axes, shape=shape)
    problem, method_config, mesh = search_exp.prepare(config)
    metrics = search_exp.execute(config, os.path.join(out_dir, name), problem, method_config,
                                 mesh)[0]
    data = np.load(os.path.join(out_dir, name, 'samples.npz'))
    out[f'{name}/x0'], out[f'{name}/reward'] = data['x0'], data['reward']
    out[f'{name}/nfe'] = metrics['nfe']
    if name == 'fsdp':
      params = mesh_lib.place_sampler(problem.sampler, mesh).backbone.params[params_key]
      sizes = [(p.size, 'model' in str(p.sharding.spec)) for p in jax.tree.leaves(params)]
      out['split_fraction'] = sum(n for n, split in sizes if split) / sum(n for n, _ in sizes)
  np.savez(os.path.join(out_dir, 'fsdp.npz'), **out)


def write_searches(out_dir, methods):
  """searches.npz: each method's 4 independent searches (search.num_runs = 4, batched) on one
  device and on a (2 searches, 4 particles) mesh: x0, reward and nfe of each."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from experiments import search as search_exp  # pylint: disable=g-import-not-at-top
  from jax.sharding import AxisType  # pylint: disable=g-import-not-at-top
  out = {}
  for method in methods:
    config = config_for(method)
    config.search.num_runs = 4
    problem, method_config, _ = search_exp.prepare(config)
    for name, shape, axes in (('one', (1,), ('particles',)),
                              ('split', (2, 4), ('searches', 'particles'))):
      mesh = jax.make_mesh(shape, axes, axis_types=(AxisType.Auto,) * len(axes),
                           devices=jax.devices()[:int(np.prod(shape))])
      metrics, _ = search_exp.execute(config, os.path.join(out_dir, f'{method}_{name}'), problem,
                                      method_config, mesh)
      data = np.load(os.path.join(out_dir, f'{method}_{name}', 'samples.npz'))
      out[f'{method}/{name}/x0'], out[f'{method}/{name}/reward'] = data['x0'], data['reward']
      out[f'{method}/{name}/nfe'] = np.asarray(metrics['nfe_all_searches'])
  np.savez(os.path.join(out_dir, 'searches.npz'), **out)


if __name__ == '__main__':
  main()
