"""The text-to-image benchmark harness, as the field reports results: every method on one
backbone over a prompt suite at a fixed compute multiplier, one search per prompt, several
seeds, the searched reward and held-out judges, wall time, compile time and memory, and the
table papers print (docs/text_to_image.md: "The benchmark harness").

A sweep (experiments/sweep.py): methods x seeds x chunks of the suite's prompts
(sweep.prompts_per_point). Each chunk is a point, resumable, whose prompts run as independent
searches of one program (vmapped, split over the mesh's `searches` axis when it has one, each
search's particles over `particles`). Every search gets search.budget = multiplier x the NFE
of one plain sample (sampler.num_steps): PSP's N-bar = 4 by default. The summary pools the
(prompt, seed) values: mean ± 95% interval per method and metric, and paired differences
against best-of-N on the same prompts and seeds; grids/prompt_K.png shows each prompt's best
output per method and seed.

Variants (comma-separated):
  sd | flux | sd3  the backbone (configs/sd.py: SD 2.1-base, 50 steps; configs/flux.py:
                   FLUX.1-schnell, 10 steps; configs/sd3.py: SD3.5-large, 28 steps); one of
                   them is required
  geneval | parti  the prompt suite (experiments/data/prompt_suites.py); default geneval
  quick            the tests' tiny random models, 4 prompts in chunks of 2, 2 seeds, BoN,
                   SMC and RBF, the tiny CLIP score searched and the tiny aesthetic held out

Real weights: the searched reward is ImageReward through the reward service (PSP's), and the
held-out judges are HPSv2.1 and the CLIP score in the graph, plus GenEval through a second
service on the geneval suite (it appears as `heldout_service`); start the services first
(docs/rewards.md):

  python -m rewards.serve --scorer=rewards.scorers:image_reward --address=127.0.0.1:5555 &
  python -m rewards.serve --scorer=rewards.scorers:geneval --address=127.0.0.1:5556 &
  python main.py --config=configs/harness.py:sd,geneval --workdir=runs/harness_sd_geneval
  python main.py --config=configs/harness.py:sd,quick --workdir=runs/harness_quick

--config.prompt_rows='0-64' runs the first 64 prompts of the suite only;
--config.sweep.multiplier changes N-bar, --config.search.budget=N fixes the NFE per search
instead, --config.sweep.method chooses the methods.
"""

from configs import common
from configs import flux as flux_config
from configs import sd as sd_config
from configs import sd3 as sd3_config
from experiments.data import prompt_suites

BACKBONES = {'sd': sd_config, 'flux': flux_config, 'sd3': sd3_config}
VARIANTS = tuple(BACKBONES) + prompt_suites.SUITES + ('quick',)
METHODS = ('bon', 'smc', 'svdd', 'code', 'rbf', 'dts_star')
QUICK_METHODS = ('bon', 'smc', 'rbf')
MULTIPLIER = 4        # PSP's N-bar: each search spends 4 x the NFE of one plain sample
HELDOUT = ('hpsv2,model=runs/hpsv2.1', 'clip_score,model=openai/clip-vit-large-patch14')
GENEVAL = 'service,address=127.0.0.1:5556'
TABLE = ('reward_mean', 'heldout_aesthetic_mean', 'heldout_hpsv2_mean',
         'heldout_clip_score_mean', 'heldout_service_mean', 'nfe', 'wall_s_per_prompt')


def get_config(arg=None):
  tokens = common.parse_variant(arg, VARIANTS)
  backbones = [t for t in tokens if t in BACKBONES]
  suites = [t for t in tokens if t in prompt_suites.SUITES]
  if len(backbones) != 1 or len(suites) > 1:
    raise ValueError(f'the harness needs one backbone among {", ".join(BACKBONES)} and at most '
                     f'one suite among {", ".join(prompt_suites.SUITES)}; got {arg!r}.')
  quick = 'quick' in tokens
  suite = suites[0] if suites else 'geneval'
  config = BACKBONES[backbones[0]].get_config('tiny' if quick else None)
  config.experiment = 'sweep'
  del config['prompt']   # a tuple of the suite's prompts in place of the one prompt string
  config.prompt = tuple(p.text for p in prompt_suites.suite(suite, limit=4 if quick else 0))
  config.search.output = 'best'
  config.sampler.num_samples = 1
  if quick:
    config.reward.heldout = ('aesthetic',)
  else:
    config.reward.update(name='service', address='127.0.0.1:5555')
    config.reward.heldout = HELDOUT + ((GENEVAL,) if suite == 'geneval' else ())
  config.sweep = common.sweep_config(
      title=f'{backbones[0]} on {suite}: every method at {MULTIPLIER} x the NFE of one plain '
            'sample',
      method=QUICK_METHODS if quick else METHODS, seed=(0, 1) if quick else (0, 1, 2),
      prompts_per_point=2 if quick else 8, multiplier=MULTIPLIER,
      table_metrics=TABLE, paired=tuple(('method', m, 'bon', metric)
                                        for m in (QUICK_METHODS if quick else METHODS)[1:]
                                        for metric in ('reward_mean', 'heldout_' + (
                                            'aesthetic' if quick else 'hpsv2') + '_mean')),
      plot=dict(metrics=(), x='method', series='method', panel='', logx=False, logy=False))
  # RBF as its authors' released code runs it: 2 chains (configs/text_to_image.py: rbf_paper).
  config.sweep.presets.method = {'rbf': {'search': {'method': 'rbf', 'num_particles': 2}}}
  # The budget follows sampler.num_steps and sweep.multiplier as overridden on the command line.
  config.search.budget = (config.sampler.get_ref('num_steps')
                          * config.sweep.get_ref('multiplier'))
  return config
