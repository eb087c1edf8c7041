"""Measured device memory of one search step on the full-size text-to-image models, compiled
ahead of time on abstract shapes: no weight is read or materialised.

The program is the project's own RBF search (experiments/search.py's program for
search/rbf.py: the RBF paper's 500 NFE, 10 VP-SDE steps, P chains, so P particles in flight):
each step of its loop is the backbone at one level on the P proposals, the Euler-Maruyama
step, the VAE decoder on the Tweedie estimates and the CLIP ViT-L/14 score of the decoded
images. It is jitted with the project's placement (experiments/mesh.py: particles split over
`particles`, backbone weights FSDP over `model`, everything else replicated), lowered on
jax.ShapeDtypeStructs, compiled, and `memory_analysis()` gives per-device bytes: arguments
(weights, states, conditions), outputs and the compiler's temporaries (activations, gathered
weights).

  python -m experiments.tools.model_memory results/memory [MODELS] [--cpu] [--particles=2,8]

It compiles for a TPU v5e (16 GiB of HBM per chip) without one: libtpu's compile-only devices
(jax.experimental.topologies, topology v5e:2x4), so it needs libtpu (jax 0.12.1's `tpu` extra
names 0.0.53; the committed rows were compiled with 0.0.52, the newest on this machine's
registry; not a project dependency) and no TPU. With --cpu it
compiles for 8 simulated CPU devices instead; XLA's CPU compiler converts bfloat16 weights to
float32 around every matmul, so its temporaries hold a float32 copy of the weights and say
little about an accelerator.

Models, bfloat16: FLUX.1-schnell (12B transformer, 16-channel VAE) at 1024x1024 with 256 T5
tokens; Stable Diffusion 2.1-base (865M U-Net, both classifier-free-guidance passes in one
batch) at 512x512; Stable Diffusion 3.5-large (8.1B MMDiT) and -medium (2.5B, dual-attention
blocks) at 1024x1024 with 77 CLIP + 256 T5 tokens, both guidance passes in one batch. Rows of
models (or chain counts) not measured in a run are kept from the existing
model_memory.json. Meshes: 1 device (1, 1); 4 devices (particles, model) = (1, 4);
8 devices (2, 4). A program that does not fit the chip is reported with the compiler's own
figure of what it needs.
"""

import dataclasses
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from experiments import mesh as mesh_lib
from experiments.evaluation import tables
from models import autoencoder_kl
from models import diffusers_folder
from models import flux
from models import sd3
from models import stable_diffusion
from models.clip import config as clip_config
from models.clip import network as clip_network
from models.flux import transformer as ft
from models.sd3 import transformer as st
from models.stable_diffusion import unet as unet_lib
from rewards import clip as clip_lib
from samplers import interpolants
from samplers import sampler as sampler_lib
from samplers.interpolants import discrete

BF16 = jnp.bfloat16
GIB = 2.0 ** 30
PARTICLES = (2, 8)
MESHES = ((1, 1), (1, 4), (2, 4))   # (particles, model)
TPU_TOPOLOGY = 'v5e:2x4'
TPU_HBM_GIB = 16.0

# Published configurations (the hub's config.json files), as the loaders read them.
FLUX_VAE = autoencoder_kl.VAEConfig(
    in_channels=3, out_channels=3, latent_channels=16, layers_per_block=2,
    block_out_channels=(128, 256, 512, 512), norm_num_groups=32, act_fn='silu',
    down_block_types=('DownEncoderBlock2D',) * 4, up_block_types=('UpDecoderBlock2D',) * 4,
    sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
    use_post_quant_conv=False)
SD3_VAE = dataclasses.replace(FLUX_VAE, scaling_factor=1.5305, shift_factor=0.0609)
SD35_LARGE = st.SD3Config(sample_size=128, num_layers=38, attention_head_dim=64,
                          num_attention_heads=38, caption_projection_dim=2432,
                          pos_embed_max_size=192, qk_norm='rms_norm')
SD35_MEDIUM = st.SD3Config(sample_size=128, num_layers=24, attention_head_dim=64,
                           num_attention_heads=24, caption_projection_dim=1536,
                           pos_embed_max_size=384, qk_norm='rms_norm',
                           dual_attention_layers=tuple(range(13)))
SD_VAE = dataclasses.replace(FLUX_VAE, latent_channels=4, sample_size=768,
                             scaling_factor=0.18215, shift_factor=0.0, use_quant_conv=True,
                             use_post_quant_conv=True)
SD_UNET = unet_lib.UNetConfig(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    down_block_types=('CrossAttnDownBlock2D',) * 3 + ('DownBlock2D',),
    up_block_types=('UpBlock2D',) + ('CrossAttnUpBlock2D',) * 3,
    block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024, use_linear_projection=True)
CLIP_L14 = clip_config.from_dict(dict(
    architectures=['CLIPModel'], projection_dim=768,
    text_config=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                     num_hidden_layers=12, vocab_size=49408, max_position_embeddings=77),
    vision_config=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                       num_hidden_layers=24, image_size=224, patch_size=14)))


def abstract(tree, dtype=BF16):
  """ShapeDtypeStructs of a tree of arrays or shapes, floats cast to dtype."""
  def one(leaf):
    kind = dtype if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf.dtype
    return jax.ShapeDtypeStruct(leaf.shape, kind)
  return jax.tree.map(one, tree)


def clip_reward(config=CLIP_L14):
  """(score fn(params, images, cond), abstract params) of CLIP ViT-L/14 (the clip_score
  reward's default), from its published configuration (or another CLIP config)."""
  model = clip_network.Clip(config, dtype=BF16, param_dtype=BF16)
  size = config.vision.image_size
  prep = {'size': size, 'crop': size, 'mean': clip_lib._CLIP_MEAN, 'std': clip_lib._CLIP_STD}  # pylint: disable=protected-access

  def score(params, images, cond):
    emb = clip_lib.image_embedding(model, params, images, prep)
    return jnp.sum(emb * cond['reward_text'].astype(emb.dtype), axis=-1)

  return score, abstract(clip_network.shapes(config))


def _vae_decoder(config, image_size: int):
  vae = autoencoder_kl.AutoencoderKL(config, ('decoder',), dtype=BF16, param_dtype=BF16)
  params = abstract(autoencoder_kl.shapes(config, ('decoder',)))
  h = image_size // config.factor
  return h, diffusers_folder.vae_decoder(vae, params, config, BF16, (h, h))


def flux_schnell(image_size: int = 1024, text_length: int = 256, config=None, vae=FLUX_VAE):
  """(Backbone with abstract params, abstract condition) of FLUX.1-schnell (or of another
  transformer and VAE config)."""
  config = config or ft.FluxConfig()   # the defaults are FLUX.1's
  h, decoder = _vae_decoder(vae, image_size)
  cond = {'text': jax.ShapeDtypeStruct((text_length, config.joint_attention_dim), jnp.float32),
          'pooled': jax.ShapeDtypeStruct((config.pooled_projection_dim,), jnp.float32)}
  backbone = flux.assemble(config, ft.shapes(config, BF16), cond, (h, h, 16),
                           1.0, 0.0, BF16, decoder)
  return backbone, cond


def sd35(image_size: int = 1024, text_length: int = 256, config=SD35_LARGE, vae=SD3_VAE,
         guidance: float = 3.5):
  """(Backbone with abstract params, abstract condition) of SD3.5-large (or another MMDiT and
  VAE config): 77 CLIP + text_length T5 tokens, both guidance passes in one batch."""
  h, decoder = _vae_decoder(vae, image_size)
  cond = {'text': jax.ShapeDtypeStruct((77 + text_length, config.joint_attention_dim),
                                       jnp.float32),
          'pooled': jax.ShapeDtypeStruct((config.pooled_projection_dim,), jnp.float32)}
  backbone = sd3.assemble(config, st.shapes(config, BF16), cond, (h, h, 16), 3.0, guidance,
                          BF16, decoder)
  return backbone, cond


def stable_diffusion_21(image_size: int = 512, unet=SD_UNET, vae=SD_VAE):
  """(Backbone with abstract params, abstract condition) of Stable Diffusion 2.1-base (or of
  another U-Net and VAE config)."""
  unet_params = abstract(unet_lib.shapes(unet))
  h, decoder = _vae_decoder(vae, image_size)
  interp = interpolants.get_interpolant('discrete', beta_schedule='scaled_linear',
                                        beta_start=0.00085, beta_end=0.012)
  assert isinstance(interp, discrete.Discrete)
  uncond = {'text': jax.ShapeDtypeStruct((77, unet.cross_attention_dim), jnp.float32)}
  backbone = stable_diffusion.assemble(unet, unet_params, uncond, interp, 'epsilon',
                                       (h, h, vae.latent_channels), 7.5, BF16, decoder)
  return backbone, dict(uncond)


MODELS = {'flux_schnell_1024': flux_schnell, 'sd21_base_512': stable_diffusion_21,
          'sd35_large_1024': sd35,
          'sd35_medium_1024': lambda: sd35(config=SD35_MEDIUM, guidance=4.5)}


def rbf_config(particles: int, budget: int = 500, num_steps: int = 10):
  """The RBF paper's search as released (one proposal at a time) with `particles` chains."""
  from configs import common  # pylint: disable=g-import-not-at-top
  import search  # pylint: disable=g-import-not-at-top
  cfg = common.search_config(method='rbf', budget=budget, num_particles=particles,
                             output='best')
  return search.make_config(cfg, 0.01, num_steps)


def measure(model: str, particles: int, mesh_shape: tuple, devices=None) -> dict:
  """Per-device bytes of the RBF paper's search program (500 NFE, 10 steps of the VP-SDE,
  `particles` chains) on `model`, over a (particles, model) mesh of `devices` (default: the
  first prod(mesh_shape) of jax.devices()), placed as experiments/mesh.py places it."""
  from experiments import search as search_exp  # pylint: disable=g-import-not-at-top
  from rewards import base as rewards_base  # pylint: disable=g-import-not-at-top
  backbone, cond = MODELS[model]()
  score, clip_params = clip_reward()
  decode = backbone.decoder.apply_fn
  reward = rewards_base.Reward(
      'clip_score', lambda p, x, c: score(p['reward'], decode(p['decoder'], x), c),
      {'reward': clip_params, 'decoder': backbone.decoder.params})
  cond = dict(cond, reward_text=jax.ShapeDtypeStruct((768,), jnp.float32))
  sampler = sampler_lib.make_sampler(backbone, interpolants.get_interpolant('vp'), 10, True,
                                     time_grid='adaptive')
  n = int(np.prod(mesh_shape))
  mesh = jax.make_mesh(mesh_shape, ('particles', 'model'), axis_types=(AxisType.Auto,) * 2,
                       devices=(devices or jax.devices())[:n])

  def placed(tree, specs=None):
    specs = jax.tree.map(lambda _: P(), tree) if specs is None else specs
    return jax.tree.map(
        lambda leaf, spec: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                                sharding=NamedSharding(mesh, spec)),
        tree, specs, is_leaf=lambda v: isinstance(v, jax.ShapeDtypeStruct))

  params = backbone.params
  as_struct = lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.asarray(a).dtype)
  sampler = sampler.replace(
      backbone=backbone.replace(params=placed(params, mesh_lib.fsdp_specs(params,
                                                                          mesh_shape[1])),
                                decoder=backbone.decoder.replace(params=None)),
      grid=placed(as_struct(sampler.grid)))
  key = placed(jax.ShapeDtypeStruct((), jax.random.key(0).dtype))
  program = search_exp._program('rbf', rbf_config(particles), False)  # pylint: disable=protected-access
  start = time.time()
  with jax.set_mesh(mesh):
    compiled = jax.jit(program).lower(key, sampler, placed(reward), placed(cond)).compile()
  stats = compiled.memory_analysis()
  weights = sum(int(np.prod(leaf.shape)) * leaf.dtype.itemsize
                for leaf in jax.tree.leaves(params)) / mesh_shape[1]
  return dict(model=model, particles=particles, devices=n, mesh=list(mesh_shape),
              arguments_gib=stats.argument_size_in_bytes / GIB,
              outputs_gib=stats.output_size_in_bytes / GIB,
              temporaries_gib=stats.temp_size_in_bytes / GIB,
              peak_gib=(stats.argument_size_in_bytes + stats.output_size_in_bytes +
                        stats.temp_size_in_bytes - stats.alias_size_in_bytes) / GIB,
              backbone_weights_gib=weights / GIB, compile_s=time.time() - start)


def table(rows) -> str:
  cells = []
  for r in rows:
    first = [r['model'], r['particles'], f"{r['devices']} ({r['mesh'][0]} × {r['mesh'][1]})",
             tables.gib(r['backbone_weights_gib'])]
    if 'error' in r:
      cells.append(first + [f"does not fit: {r['error']}", '', ''])
    else:
      cells.append(first + [tables.gib(r['arguments_gib']), tables.gib(r['temporaries_gib']),
                            f"**{tables.gib(r['peak_gib'])}**"])
  return tables.markdown(['model', 'particles', 'devices (particles × model)',
                          'backbone weights', 'arguments', 'temporaries', 'peak per device'],
                         cells) + '\n'


def _short_error(e: Exception) -> str:
  """The compiler's one-line reason (for a program that exceeds the chip's memory, the line
  that says how much it needs)."""
  lines = [l.strip() for l in str(e).splitlines() if l.strip()]
  for line in lines:
    if 'exceed' in line.lower() or 'hbm' in line.lower():
      return line[:300]
  return (lines[0] if lines else type(e).__name__)[:300]


def main(out_dir: str, models=tuple(MODELS), platform: str = 'tpu',
         particles_list=PARTICLES) -> list:
  os.makedirs(out_dir, exist_ok=True)
  if platform == 'tpu':
    from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
    devices = list(topologies.get_topology_desc(TPU_TOPOLOGY, 'tpu').devices)
  else:
    devices = jax.devices()
  rows = []
  for model in models:
    for particles in particles_list:
      for mesh_shape in MESHES:
        if int(np.prod(mesh_shape)) > len(devices):
          continue
        try:
          row = measure(model, particles, mesh_shape, devices)
        except Exception as e:  # pylint: disable=broad-except
          backbone, _ = MODELS[model]()
          weights = sum(int(np.prod(l.shape)) * l.dtype.itemsize
                        for l in jax.tree.leaves(backbone.params)) / mesh_shape[1]
          row = dict(model=model, particles=particles, devices=int(np.prod(mesh_shape)),
                     mesh=list(mesh_shape), backbone_weights_gib=weights / GIB,
                     error=_short_error(e))
        row['platform'] = TPU_TOPOLOGY if platform == 'tpu' else 'cpu'
        rows.append(row)
        print(json.dumps(row), flush=True)
  existing = os.path.join(out_dir, 'model_memory.json')
  if os.path.isfile(existing):   # the other models' rows stay
    with open(existing) as f:
      kept = [r for r in json.load(f)
              if r['model'] not in models or r['particles'] not in particles_list]
    order = lambda r: (list(MODELS).index(r['model']) if r['model'] in MODELS else len(MODELS),
                       r['particles'], r['devices'])
    rows = sorted(kept + rows, key=order)
  with open(existing, 'w') as f:
    json.dump(rows, f, indent=1)
  with open(os.path.join(out_dir, 'model_memory.md'), 'w') as f:
    f.write(table(rows))
  print(table(rows))
  return rows


if __name__ == '__main__':
  options = dict(a[2:].split('=', 1) for a in sys.argv[1:] if a.startswith('--') and '=' in a)
  args = [a for a in sys.argv[1:] if not a.startswith('--')]
  if '--cpu' in sys.argv:
    jax.config.update('jax_num_cpu_devices', 8)
  main(args[0] if args else 'results/memory',
       tuple(args[1].split(',')) if len(args) > 1 else tuple(MODELS),
       'cpu' if '--cpu' in sys.argv else 'tpu',
       tuple(int(p) for p in options.get('particles', '2,8').split(',')))
