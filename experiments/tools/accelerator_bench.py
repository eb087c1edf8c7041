"""The accelerator measurement: what a search costs on the real text-to-image models beyond
their forward passes, on one GPU or TPU host, in one command and without downloading weights.

  python -m experiments.tools.accelerator_bench results/accelerator [--tiny] [--models=sd,flux]

Stable Diffusion 2.1-base (865M U-Net, 512 px, both classifier-free-guidance passes in one
batch) and FLUX.1-schnell (12B transformer, 1024 px, 256 T5 tokens) at full size, built from
their published configurations (experiments/tools/model_memory.py) with random bfloat16 weights
drawn on the device, and the CLIP ViT-L/14 score as the reward (random weights too: the cost of
a forward pass does not depend on the values). For each model:

  raw       the backbone's batched forward alone, and with the reward's work per NFE (VAE
            decode of the Tweedie estimates and CLIP), at each batch size a method below runs:
            seconds per NFE (one row of the batch at one level), compile time
  methods   best-of-N, SMC, RBF (its released code's 2 chains) and DTS at the papers' sampler
            settings (SD: the DTS paper's 50 steps, branching every 10 levels; FLUX: the RBF
            paper's VP-SDE, 10 steps on the adaptive grid), each search one jitted program:
            compile time, wall time, NFE spent, seconds per NFE and its ratio to the raw
            forward-with-reward at the method's batch (the search's own overhead), and memory
            (the compiler's per-device program size; the device's peak where it reports one)
  pytorch   where torch and diffusers import and CUDA is present: the same transformer or
            U-Net forward in PyTorch (random bfloat16 weights, the same shapes), and the ratio
            of our per-NFE time to it

Budgets are cut to fit one command into about 8 minutes on one H100 (SD 400 NFE, FLUX 80 NFE
per search); the overhead per NFE does not grow with the budget (docs/benchmarks.md). With
--tiny, the same programs run on tiny configurations in seconds on a CPU (what the suite runs).
Writes accelerator.json and accelerator.md under the output folder, with the device's name.
"""

import dataclasses
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import runtime
from experiments import search as search_exp
from experiments.evaluation import tables
from experiments.tools import model_memory
from models.flux import transformer as ft
from models.stable_diffusion import unet as unet_lib
from rewards import base as rewards_base
from samplers import sampler as sampler_lib

GIB = 2.0 ** 30
METHODS = ('bon', 'smc', 'rbf', 'dts')

# The models' settings: the papers' samplers, the methods' knobs, the budget of one search.
SETTINGS = {
    'sd': dict(sampler=dict(interpolant='vp', sde=True, num_steps=50, time_grid='uniform'),
               search=dict(num_particles=4, branch_every=10), budget=400),
    'flux': dict(sampler=dict(interpolant='vp', sde=True, num_steps=10, time_grid='adaptive'),
                 search=dict(num_particles=4, branch_every=2), budget=80),
}
TINY_BUDGET = {'sd': 32, 'flux': 16}
TINY_STEPS = {'sd': 4, 'flux': 2}

# Tiny configurations of the same architectures (the suite's CPU run).
TINY_VAE = dataclasses.replace(model_memory.FLUX_VAE, block_out_channels=(8, 16),
                               layers_per_block=1, norm_num_groups=8,
                               down_block_types=('DownEncoderBlock2D',) * 2,
                               up_block_types=('UpDecoderBlock2D',) * 2, sample_size=16)
TINY_FLUX = ft.FluxConfig(num_layers=1, num_single_layers=1, attention_head_dim=8,
                          num_attention_heads=2, joint_attention_dim=32,
                          pooled_projection_dim=24, axes_dims_rope=(2, 2, 4))
TINY_UNET = unet_lib.UNetConfig(
    sample_size=8, block_out_channels=(32, 32), layers_per_block=1,
    down_block_types=('CrossAttnDownBlock2D', 'DownBlock2D'),
    up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D'), attention_head_dim=8,
    cross_attention_dim=32, use_linear_projection=True)
_L14 = model_memory.CLIP_L14
TINY_CLIP = dataclasses.replace(
    _L14, projection_dim=16,
    text=dataclasses.replace(_L14.text, hidden_size=32, intermediate_size=64, vocab_size=64,
                             num_attention_heads=4, num_hidden_layers=1, projection_dim=16),
    vision=dataclasses.replace(_L14.vision, hidden_size=32, intermediate_size=64,
                               num_attention_heads=4, num_hidden_layers=1, image_size=32,
                               patch_size=8))


def build(model: str, tiny: bool, key):
  """(backbone, cond, reward) with random bfloat16 weights on the device."""
  if model == 'flux':
    backbone, cond = (model_memory.flux_schnell(16, 16, TINY_FLUX, TINY_VAE) if tiny else
                      model_memory.flux_schnell())
  else:
    backbone, cond = (model_memory.stable_diffusion_21(
        16, TINY_UNET, dataclasses.replace(TINY_VAE, latent_channels=4, scaling_factor=0.18215,
                                           shift_factor=0.0)) if tiny else
                      model_memory.stable_diffusion_21())
  score, clip_params = model_memory.clip_reward(TINY_CLIP if tiny else model_memory.CLIP_L14)
  projection = (TINY_CLIP if tiny else model_memory.CLIP_L14).projection_dim
  cond = dict(cond, reward_text=jax.ShapeDtypeStruct((projection,), jnp.float32))
  k1, k2, k3 = jax.random.split(key, 3)
  backbone = backbone.replace(params=random_like(backbone.params, k1),
                              decoder=backbone.decoder.replace(
                                  params=random_like(backbone.decoder.params, k2)))
  decode = backbone.decoder.apply_fn
  reward = rewards_base.Reward(
      'clip_score', lambda p, x, c: score(p['reward'], decode(p['decoder'], x), c),
      {'reward': random_like(clip_params, k3), 'decoder': backbone.decoder.params})
  cond = random_like(cond, jax.random.fold_in(key, 7))
  return backbone, cond, reward


def random_like(tree, key):
  """Every jax.ShapeDtypeStruct leaf as N(0, 0.02^2) draws of its dtype, made on the device one
  leaf at a time (the largest FLUX leaf is 0.1 GB); other leaves as they are."""
  leaves, treedef = jax.tree.flatten(tree)
  draw = jax.jit(lambda k, shape, dtype: (0.02 * jax.random.normal(k, shape, jnp.float32)
                                          ).astype(dtype), static_argnums=(1, 2))
  out = []
  for i, leaf in enumerate(leaves):
    if isinstance(leaf, jax.ShapeDtypeStruct):
      if jnp.issubdtype(leaf.dtype, jnp.floating):
        leaf = draw(jax.random.fold_in(key, i), tuple(leaf.shape), leaf.dtype)
      else:
        leaf = jnp.zeros(leaf.shape, leaf.dtype)
    out.append(leaf)
  return jax.tree.unflatten(treedef, out)


def raw_rows(sampler, reward, cond, batch: int, repeats: int) -> dict:
  """Seconds per NFE of the backbone's forward on `batch` rows at one level, alone and with
  the reward's work (decode + CLIP of the Tweedie estimates)."""
  backbone = sampler.backbone
  x = jnp.zeros((batch,) + tuple(backbone.data_shape), jnp.float32)
  t = jnp.full((batch,), 0.5, jnp.float32)
  # The reward scores an array of the latents' shape, as it scores the Tweedie estimates.
  out = {'batch': batch}
  _, compile_s, wall, _ = runtime.timed(lambda bb, x, t, c: bb(x, t, c), (backbone, x, t, cond),
                                        repeats)
  out.update(forward_s_per_nfe=wall / batch, forward_compile_s=compile_s)
  _, compile_s, wall, _ = runtime.timed(lambda bb, rw, x, t, c: rw(bb(x, t, c), c),
                                        (backbone, reward, x, t, cond), repeats)
  out.update(with_reward_s_per_nfe=wall / batch, with_reward_compile_s=compile_s)
  return out


def method_row(method: str, settings: dict, budget: int, sampler, reward, cond) -> dict:
  """One search at the papers' settings, timed as the experiments time it."""
  import search as search_lib  # pylint: disable=g-import-not-at-top
  from configs import common  # pylint: disable=g-import-not-at-top
  knobs = dict(settings['search'], num_particles=2) if method == 'rbf' else settings['search']
  cfg = common.search_config(method=method, budget=budget, output='best', **knobs)
  method_config = search_lib.make_config(cfg, 0.01, sampler.num_steps)
  program = search_exp._program(method, method_config, False)  # pylint: disable=protected-access
  memory = {}
  result, compile_s, wall_s = runtime.compile_and_run(
      program, jax.random.key(0), sampler, reward, cond, memory=memory, label=f'search {method}')
  nfe = int(result.nfe)
  row = dict(method=method, nfe=nfe, rows=int(search_lib.get_method(method).rows(method_config)),
             compile_s=compile_s, wall_s=wall_s, s_per_nfe=wall_s / max(nfe, 1))
  row.update(search_exp.memory_metrics(memory))
  return row


def torch_forward(model: str, tiny: bool, batch: int, repeats: int, device: str):
  """Seconds per NFE of diffusers' PyTorch transformer (FLUX) or U-Net (SD, both guidance
  passes) at the same shapes, random bfloat16 weights; None where torch or diffusers is
  missing."""
  try:
    import diffusers  # pylint: disable=g-import-not-at-top
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  dtype = torch.bfloat16
  with torch.no_grad():
    if model == 'flux':
      c = TINY_FLUX if tiny else ft.FluxConfig()
      net = diffusers.FluxTransformer2DModel(
          in_channels=c.in_channels, num_layers=c.num_layers,
          num_single_layers=c.num_single_layers, attention_head_dim=c.attention_head_dim,
          num_attention_heads=c.num_attention_heads, joint_attention_dim=c.joint_attention_dim,
          pooled_projection_dim=c.pooled_projection_dim, axes_dims_rope=tuple(c.axes_dims_rope))
      side, text = (8, 16) if tiny else (64, 256)   # 2x2-packed latents of 16 (1024) px
      tokens = (side // 2) ** 2
      args = dict(hidden_states=torch.randn(batch, tokens, c.in_channels),
                  encoder_hidden_states=torch.randn(batch, text, c.joint_attention_dim),
                  pooled_projections=torch.randn(batch, c.pooled_projection_dim),
                  timestep=torch.full((batch,), 0.5), img_ids=torch.zeros(tokens, 3),
                  txt_ids=torch.zeros(text, 3))
    else:
      c = TINY_UNET if tiny else model_memory.SD_UNET
      net = diffusers.UNet2DConditionModel(
          sample_size=c.sample_size, block_out_channels=tuple(c.block_out_channels),
          layers_per_block=c.layers_per_block, down_block_types=tuple(c.down_block_types),
          up_block_types=tuple(c.up_block_types), attention_head_dim=c.attention_head_dim,
          cross_attention_dim=c.cross_attention_dim,
          use_linear_projection=c.use_linear_projection)
      side = 8 if tiny else 64
      args = dict(sample=torch.randn(2 * batch, 4, side, side), timestep=torch.tensor(500),
                  encoder_hidden_states=torch.randn(2 * batch, 77, c.cross_attention_dim))
    net = net.to(device=device, dtype=dtype).eval()
    args = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
            for k, v in args.items()}
    sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)
    net(**args)
    sync()
    best = float('inf')
    for _ in range(repeats):
      start = time.perf_counter()
      net(**args)
      sync()
      best = min(best, time.perf_counter() - start)
  return best / batch


def measure(model: str, tiny: bool, repeats: int = 3, methods=METHODS) -> dict:
  """Every row of one model."""
  settings = SETTINGS[model]
  backbone, cond, reward = build(model, tiny, jax.random.key(0))
  sampler_cfg = dict(settings['sampler'])
  budget = settings['budget']
  if tiny:
    sampler_cfg['num_steps'], budget = TINY_STEPS[model], TINY_BUDGET[model]
    settings = dict(settings, search=dict(settings['search'], branch_every=1))
  from configs import common  # pylint: disable=g-import-not-at-top
  sampler = sampler_lib.from_config(common.sampler_config(**sampler_cfg), backbone)
  rows = [method_row(m, settings, budget, sampler, reward, cond) for m in methods]
  raw = {b: raw_rows(sampler, reward, cond, b, repeats) for b in sorted({r['rows'] for r in rows})}
  for row in rows:
    row['overhead'] = row['s_per_nfe'] / raw[row['rows']]['with_reward_s_per_nfe']
  out = dict(model=model, size='tiny' if tiny else 'full', budget=budget,
             num_steps=sampler.num_steps, raw=list(raw.values()), methods=rows)
  device = 'cuda' if _cuda() else ('cpu' if tiny else None)
  if device:
    for entry in out['raw']:
      torch_s = torch_forward(model, tiny, entry['batch'], repeats, device)
      if torch_s is not None:
        entry['pytorch_s_per_nfe'] = torch_s
        entry['jax_over_pytorch'] = entry['forward_s_per_nfe'] / torch_s
  return out


def _cuda() -> bool:
  try:
    import torch  # pylint: disable=g-import-not-at-top
    return bool(torch.cuda.is_available())
  except ImportError:
    return False


def device_name() -> str:
  d = jax.devices()[0]
  return f'{jax.device_count()} x {getattr(d, "device_kind", d.platform)} ({d.platform})'


def markdown(report: dict) -> str:
  lines = [f'Device: {report["device"]}; jax {report["jax"]}; {report["host"]}.', '']
  for m in report['models']:
    lines += [f'## {m["model"]} ({m["size"]}): {m["num_steps"]} steps, {m["budget"]} NFE per '
              'search', '']
    raw_cols = ['batch', 'forward (ms/NFE)', 'forward + reward (ms/NFE)', 'compile (s)']
    has_torch = any('pytorch_s_per_nfe' in r for r in m['raw'])
    if has_torch:
      raw_cols += ['PyTorch forward (ms/NFE)', 'ours / PyTorch']
    cells = []
    for r in m['raw']:
      row = [str(r['batch']), f'{1e3 * r["forward_s_per_nfe"]:.3g}',
             f'{1e3 * r["with_reward_s_per_nfe"]:.3g}',
             f'{r["forward_compile_s"] + r["with_reward_compile_s"]:.1f}']
      if has_torch:
        row += ([f'{1e3 * r["pytorch_s_per_nfe"]:.3g}', f'{r["jax_over_pytorch"]:.2f}']
                if 'pytorch_s_per_nfe' in r else ['–', '–'])
      cells.append(row)
    lines += [tables.markdown(raw_cols, cells), '']
    lines += [tables.markdown(
        ['method', 'rows in flight', 'NFE', 'compile (s)', 'wall (s)', 'ms/NFE',
         'overhead (× forward + reward)', 'program memory (GiB)', 'peak memory (GiB)'],
        [[r['method'], str(r['rows']), str(r['nfe']), f'{r["compile_s"]:.1f}',
          f'{r["wall_s"]:.2f}', f'{1e3 * r["s_per_nfe"]:.3g}', f'{r["overhead"]:.2f}',
          f'{r.get("program_memory_gib", float("nan")):.3g}',
          f'{r["peak_memory_gib"]:.3g}' if 'peak_memory_gib' in r else '–']
         for r in m['methods']]), '']
  return '\n'.join(lines)


def main(out_dir: str, tiny: bool = False, models=('sd', 'flux'), repeats: int = 3) -> dict:
  start = time.perf_counter()
  report = dict(device=device_name(), jax=jax.__version__,
                host=f'{platform.machine()}, {os.cpu_count()} CPU cores', models=[])
  for model in models:
    if model not in SETTINGS:
      raise ValueError(f'unknown model {model!r}; valid: {", ".join(SETTINGS)}.')
    report['models'].append(measure(model, tiny, repeats))
  report['total_s'] = time.perf_counter() - start
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'accelerator.json'), 'w') as f:
    json.dump(report, f, indent=1)
  text = markdown(report) + f'\nTotal time of the command: {report["total_s"]:.0f} s.\n'
  with open(os.path.join(out_dir, 'accelerator.md'), 'w') as f:
    f.write(text)
  print(text)
  return report


if __name__ == '__main__':
  args = [a for a in sys.argv[1:] if not a.startswith('--')]
  options = dict(a[2:].split('=', 1) if '=' in a else (a[2:], '1')
                 for a in sys.argv[1:] if a.startswith('--'))
  if len(args) != 1 or set(options) - {'tiny', 'models', 'repeats'}:
    raise SystemExit('usage: python -m experiments.tools.accelerator_bench OUT_DIR [--tiny] '
                     '[--models=sd,flux] [--repeats=3]')
  main(args[0], 'tiny' in options, tuple(options.get('models', 'sd,flux').split(',')),
       int(options.get('repeats', 3)))
