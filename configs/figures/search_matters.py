"""The RBF paper's claims on a task where search matters: counting and composition on 2 x 2
grids of digits (configs/digit_grid.py), "exactly 3 sevens", one search of a given NFE budget per output image,
scored in the loop by the digit classifier and judged by a held-out one (`heldout_success`: the
fraction of outputs whose prompt is true by the held-out classifier's labels).

Base rates (plain samples, `configs/digit_grid.py:count,sample` and `:left_of,sample`) are in
docs/results.md. Variants:
  tune         the tuning sweep: each method's knobs at 500 NFE on separate seeds (100-102)
               and another prompt ("exactly 2 sevens"); the other variants use the winners
               (TUNED, below)
  interpolants methods x samplers at 500 NFE, 10 steps: Linear-ODE, Linear-SDE, VP-SDE (the
               paper's adaptive grid, last evaluated level t = 0.44) and VP-SDE on the uniform
               grid (`vp_sde_sharp`, last evaluated level t = 0.1: sharp for this undistilled
               model)
  budget       (the default) held-out success against NFE, 50 to 1000, both VP-SDE protocols;
               BoN on the paper's Linear-ODE and on the VP-SDE; RBF as released and each of
               its departures (RBF_ABLATIONS); zero-order search (Linear-ODE) and tempered SMC
               (VP-SDE), untuned
  dts_star     the DTS paper's DTS* claim on this task: best reward (and held-out success)
               against NFE, 10^3 to 10^5 per search, DTS* (tuned c_uct) against best-of-N on
               the same sampler (the sharp VP-SDE), 8 searches per seed (20 seeds to 10^4,
               5 above), and the NFE at which DTS* reaches best-of-N's value at 10^5, on the
               mean curves and paired per seed with an interval
  count_error  the paper's integer counting reward -(count - k)^2 beside the log-probability
               (a `task` axis), BoN (Linear-ODE), SMC, SVDD and RBF (VP-SDE), 100-1000 NFE
  left_of      the compositional prompt instead of the counting one
  reflow       on the 2-rectified few-step backbone (configs/digits.py:reflow), whose Tweedie
               estimates are sharp from high noise as FLUX.1-schnell's are; with interpolants
               or budget (there the VP-SDE protocols coincide, so no `_sharp` series)
  quick        tiny, for tests
5 seeds (0-4) of 24 searches each (the tuning sweep: 3 of 32).
  python main.py --config=configs/figures/search_matters.py:tune --workdir=runs/search_matters_tune
  python main.py --config=configs/figures/search_matters.py:interpolants \
      --workdir=runs/search_matters_interpolants
  python main.py --config=configs/figures/search_matters.py --workdir=runs/search_matters_budget
  python main.py --config=configs/figures/search_matters.py:dts_star \
      --workdir=runs/search_matters_dts_star
  python main.py --config=configs/figures/search_matters.py:count_error,reflow \
      --workdir=runs/search_matters_reflow_count_error
"""

from configs import common
from configs import digit_grid

# dts_star: the seeds (0..N-1) run at its largest budgets; 20 below them.
DTS_STAR_SEEDS = {30_000: 5, 100_000: 5}
SAMPLERS = dict(common.SAMPLERS, vp_sde_sharp=dict(interpolant='vp', sde=True,
                                                   time_grid='uniform'))

# Each method's settings, from the `tune` sweep (results/search_matters_tune/summary.md).
TUNED = {
    'bon': {'search': {'method': 'bon'}},
    'sop': {'search': {'method': 'sop'}},
    'smc': {'search': {'method': 'smc', 'ess_threshold': 0.25}},
    'code': {'search': {'method': 'code', 'num_particles': 1, 'block_size': 3}},
    'svdd': {'search': {'method': 'svdd', 'num_particles': 5}},
    # RBF as its authors' released code runs it (search/rbf.py), untuned: 2 chains, the best of
    # 25 initial noises each, the last level absorbing what is left of the budget.
    'rbf': {'search': {'method': 'rbf', 'num_particles': 2}},
    'dts_star': {'search': {'method': 'dts_star', 'c_uct': 3.0}},
    # Added with the methods of issue 19, untuned: their defaults (zero_order: K = 4
    # neighbours at radius 0.5 sqrt(D), as many rounds as the budget holds; tempered_smc: ESS
    # 0.5 per level).
    'zero_order': {'search': {'method': 'zero_order'}},
    'tempered_smc': {'search': {'method': 'tempered_smc'}},
    # Added with issue 35, untuned: the reference's defaults (populations of 10, 5 elites, the
    # band 4 Haar levels deep: on the 16 x 16 grid images, one coefficient, the image's mean).
    'ses': {'search': {'method': 'ses'}},
    # Added with issue 35, untuned: the references' defaults (psp: 2 N-bar -> N-bar -> N-bar / 2
    # seeds pruned at a quarter and half of the levels; nts: one chain per image, as its
    # reference, rounds of 4 candidates; psi: pCNL chains of 25 + 25 steps, two particles per
    # chain, the released weights; evo: the SD2.1 schedule 0, 0.4, 0.6, 0.8 with populations
    # 42, 26, 26, 26, 30 scaled to the budget).
    'psp': {'search': {'method': 'psp'}},
    'nts': {'search': {'method': 'nts', 'num_particles': 1}},
    'psi': {'search': {'method': 'psi'}},
    'evo': {'search': {'method': 'evo'}},
}

# RBF's departures from the released code, one at a time, and the paper's Alg. 2 read
# literally (one chain, no initial search, the quota rolled over to the last level dropped).
RBF_ABLATIONS = {
    'rbf_no_init': {'search': {'method': 'rbf', 'num_particles': 2, 'rbf_init_candidates': 0}},
    'rbf_one_chain': {'search': {'method': 'rbf', 'num_particles': 1}},
    'rbf_quota_last': {'search': {'method': 'rbf', 'num_particles': 2,
                                  'rbf_last_level': 'quota'}},
    'rbf_literal': {'search': {'method': 'rbf', 'rbf_variant': 'literal'}},
}
TUNED.update(RBF_ABLATIONS)

# The tuning grid: method presets, each the method and the knob values it tries.
TUNE = {
    'smc_ess025': {'search': {'method': 'smc', 'ess_threshold': 0.25}},
    'smc_ess05': {'search': {'method': 'smc', 'ess_threshold': 0.5}},
    'smc_ess1': {'search': {'method': 'smc', 'ess_threshold': 1.0}},
    'svdd_n1': {'search': {'method': 'svdd', 'num_particles': 1}},
    'svdd_n5': {'search': {'method': 'svdd', 'num_particles': 5}},
    'code_b3': {'search': {'method': 'code', 'num_particles': 1, 'block_size': 3}},
    'code_b5': {'search': {'method': 'code', 'num_particles': 1, 'block_size': 5}},
    'rbf_released': TUNED['rbf'],
    'rbf_literal': TUNED['rbf_literal'],
    'dts_star_c1': {'search': {'method': 'dts_star', 'c_uct': 1.0}},
    'dts_star_c3': {'search': {'method': 'dts_star', 'c_uct': 3.0}},
}

# The paper's counting accuracy against NFE (BoN on the Linear-ODE, RBF on the VP-SDE).
PAPER_BUDGET = {'paper_BoN': ((50, 0.40), (100, 0.51), (300, 0.57), (500, 0.58), (1000, 0.59)),
                'paper_RBF': ((50, 0.41), (100, 0.59), (300, 0.72), (500, 0.80), (1000, 0.88))}


def get_config(arg=None):
  tokens = common.parse_variant(arg, ('tune', 'interpolants', 'budget', 'dts_star', 'left_of',
                                      'count_error', 'reflow', 'quick'))
  prompt = 'left_of' if 'left_of' in tokens else 'count'
  if 'tune' in tokens:
    prompt = 'count2'   # tuned on another prompt than the figures' (and on other seeds)
  config = digit_grid.get_config(prompt + (',reflow' if 'reflow' in tokens else ''))
  backbone = ', 2-rectified backbone' if 'reflow' in tokens else ''
  config.experiment = 'sweep'
  config.search.update(budget=500, num_particles=1, num_runs=24, output='best')
  seeds = (0, 1, 2, 3, 4)
  metrics = ('heldout_success', 'success', 'reward_mean', 'nfe_per_search', 'nfe_evaluated')
  base_rate = BASE_RATES[prompt, 'reflow' in tokens]
  if 'tune' in tokens:
    config.search.num_runs = 32
    sweep = dict(
        title=f'Tuning at 500 NFE on separate seeds (digit grid, {prompt}, VP-SDE)',
        method=tuple(TUNE), seed=(100, 101, 102),
        presets=dict(task={}, sampler={}, method=TUNE),
        plot=dict(metrics=('heldout_success',), x='method', series='method', panel='',
                  logx=False))
  elif 'interpolants' in tokens:
    samplers = ('linear_ode', 'linear_sde', 'vp_sde')
    if 'reflow' not in tokens:
      samplers += ('vp_sde_sharp',)
    methods = ('bon', 'smc', 'code', 'svdd', 'rbf', 'rbf_literal')
    if 'reflow' in tokens:
      methods = ('bon', 'smc', 'svdd', 'rbf', 'rbf_literal')
    sweep = dict(
        title=f'Samplers x methods at 500 NFE, 10 steps (digit grid, {prompt}{backbone}; '
              'RBF as released)',
        sampler=samplers, method=methods, seed=seeds,
        presets=dict(task={}, sampler={s: {'sampler': SAMPLERS[s]} for s in samplers},
                     method={m: TUNED[m] for m in methods}),
        plot=dict(metrics=('heldout_success', 'reward_mean'), x='method', series='sampler',
                  panel='', logx=False,
                  overlays={'heldout_success': {'base rate': base_rate}}),
        # (a) the samplers against each other, per method; (b) the methods on the VP-SDE.
        paired=tuple(('sampler', a, b, 'heldout_success')
                     for a, b in (('vp_sde', 'linear_sde'), ('linear_sde', 'linear_ode'),
                                  ('vp_sde', 'linear_ode')))
        + tuple(('method', 'rbf', b, 'heldout_success')
                for b in methods if b != 'rbf'))
  elif 'count_error' in tokens:
    # The paper's integer counting reward beside the smooth log-probability (same searches,
    # same held-out judge).
    ode, vp = SAMPLERS['linear_ode'], SAMPLERS['vp_sde']
    methods = {'bon': dict(TUNED['bon'], sampler=ode)}
    methods.update({m: dict(TUNED[m], sampler=vp) for m in ('smc', 'svdd', 'rbf')})
    sweep = dict(
        title=f'The counting reward -(count - k)^2 beside log P(count = k) (digit grid, '
              f'{prompt}{backbone}; RBF as released)',
        task=('log_prob', 'count_error'), method=tuple(methods), budget=(100, 500, 1000),
        seed=seeds,
        presets=dict(task={'log_prob': {}, 'count_error': {'reward': {'count_error': True}}},
                     sampler={}, method=methods),
        plot=dict(metrics=('heldout_success',), x='budget', series='method', panel='task',
                  logx=True, overlays={'heldout_success': {'base rate': base_rate}}),
        paired=(('task', 'count_error', 'log_prob', 'heldout_success'),)
        + tuple(('method', 'rbf', b, 'heldout_success') for b in methods if b != 'rbf'))
  elif 'dts_star' in tokens:
    config.search.num_runs = 8
    methods = {m: dict(TUNED[m], sampler=SAMPLERS['vp_sde_sharp']) for m in ('bon', 'dts_star')}
    # 20 seeds to 10^4, 5 at 3*10^4 and 10^5 (DTS_STAR_SEEDS: a point there takes 2-8 min).
    skip = tuple(f'budget={b},seed={s}' for b, top in DTS_STAR_SEEDS.items()
                 for s in range(top, 20))
    sweep = dict(
        title=f'DTS* against best-of-N (digit grid, {prompt}{backbone}, sharp VP-SDE)',
        method=tuple(methods), budget=(1_000, 3_000, 10_000, 30_000, 100_000),
        seed=tuple(range(20)), skip=skip,
        presets=dict(task={}, sampler={}, method=methods),
        plot=dict(metrics=('reward_mean', 'heldout_success'), x='budget', series='method',
                  panel='', logx=True, overlays={'heldout_success': {'base rate': base_rate}}),
        reach=(('dts_star', 'bon', 'reward_mean'), ('dts_star', 'bon', 'heldout_success')),
        paired=(('method', 'dts_star', 'bon', 'heldout_success'),
                ('method', 'dts_star', 'bon', 'reward_mean')))
  else:
    ode, vp, sharp = (SAMPLERS[s] for s in ('linear_ode', 'vp_sde', 'vp_sde_sharp'))
    # BoN on the paper's protocol (the Linear-ODE) and on the VP-SDE beside it. zero_order
    # searches the Linear-ODE's initial noise (the search of tt-scale-flux, on the RBF paper's
    # flow model); it ignores a sampler's SDE flag.
    methods = {'bon': dict(TUNED['bon'], sampler=ode), 'bon_vp': dict(TUNED['bon'], sampler=vp)}
    if 'reflow' not in tokens:
      methods['zero_order'] = dict(TUNED['zero_order'], sampler=ode)
      # Spectral evolution search previews each candidate with the Linear-ODE, as zero_order;
      # at the reference's depth the 16 x 16 grid's band is one number, so also 2 levels deep
      # (a 4 x 4 band: 16 coefficients).
      methods['ses'] = dict(TUNED['ses'], sampler=ode)
      methods['ses_l2'] = {'search': {'method': 'ses', 'ses_level': 2}, 'sampler': ode}
      # Progressive seed pruning prunes BoN's seeds on the same ODE; the other three search
      # the SDE's noise (nts, evo) or weight its particles (psi) on the VP-SDE.
      methods['psp'] = dict(TUNED['psp'], sampler=ode)
      for m in ('nts', 'psi', 'evo'):
        methods[m] = dict(TUNED[m], sampler=vp)
    for m in ('smc', 'svdd', 'rbf') + (() if 'reflow' in tokens else
                                       ('tempered_smc', 'dts_star')):
      methods[m] = dict(TUNED[m], sampler=vp)
    for m in () if 'reflow' in tokens else ('svdd', 'rbf'):
      methods[m + '_sharp'] = dict(TUNED[m], sampler=sharp)
    for m in RBF_ABLATIONS:
      methods[m] = dict(TUNED[m], sampler=vp)
    sweep = dict(
        title=f'Held-out success against NFE (digit grid, {prompt}{backbone}; VP-SDE '
              + ('adaptive' if backbone else 'adaptive and sharp') + '; RBF as released)',
        method=tuple(methods), budget=(50, 100, 300, 500, 1000), seed=seeds,
        # ses needs one generation of 10 candidates of 10 steps: 100 NFE; psi one chain of 51
        # MCMC evaluations and two particles: 71; evo populations above its 5 elites: 234.
        skip=('method=ses,budget=50', 'method=ses_l2,budget=50', 'method=psi,budget=50',
              'method=evo,budget=50', 'method=evo,budget=100') if 'ses' in methods else (),
        presets=dict(task={}, sampler={}, method=methods),
        plot=dict(metrics=('heldout_success', 'reward_mean'), x='budget', series='method',
                  panel='', logx=True,
                  overlays={'heldout_success': dict(PAPER_BUDGET, **{'base rate': base_rate})},
                  # The methods; RBF's departures from the released code beside it and BoN.
                  subsets={'': tuple(m for m in methods if m not in RBF_ABLATIONS),
                           'rbf_ablations': ('bon', 'bon_vp', 'rbf') + tuple(RBF_ABLATIONS)}),
        # (b) and (c): RBF against each method at every budget; each departure's worth.
        paired=tuple(('method', 'rbf', b, 'heldout_success')
                     for b in methods if b != 'rbf')
        # The methods of issue 35 beside their baselines: psp against the best-of-N whose
        # seeds it prunes, the others against BoN and SMC on the same VP-SDE.
        + ((('method', 'psp', 'bon', 'heldout_success'),)
           + tuple(('method', m, b, 'heldout_success') for m in ('nts', 'psi', 'evo')
                   for b in ('bon_vp', 'smc')) if 'psp' in methods else ()))
  config.sweep = common.sweep_config(table_metrics=metrics, **sweep)
  if 'quick' in tokens:
    quick = digit_grid.get_config(f'{prompt},quick')
    config.model.grid, config.reward.count = quick.model.grid, quick.reward.count
    config.sampler.num_steps = 4
    config.search.update(budget=24, num_runs=2, block_size=2, branch_every=2)
    config.sweep.seed = (0, 1)
    keep = (('smc_ess05', 'rbf_released') if 'tune' in tokens else
            ('bon', 'dts_star') if 'dts_star' in tokens else ('bon', 'rbf'))
    config.sweep.method = tuple(m for m in config.sweep.method if m in keep)
    config.sweep.skip = ()   # the skip rules name methods and budgets the quick grid drops
    if config.sweep.get('budget'):
      config.sweep.budget = (24,)
    if config.sweep.get('sampler'):
      config.sweep.sampler = ('linear_ode', 'vp_sde_sharp')
  return config


# Plain samples' held-out success on the Linear-ODE, 10 steps (2,048 samples each;
# results/search_matters_base/base_rates.md, `python -m experiments.tools.grid_base_rates`): the
# floor a search starts from. (The VP-SDE on the adaptive grid is lower: 0.0010 for count.)
BASE_RATES = {('count', False): 0.0029, ('count2', False): 0.0591, ('left_of', False): 0.0186,
              ('count', True): 0.0049, ('count2', True): 0.0669, ('left_of', True): 0.0200}
