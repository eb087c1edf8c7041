"""Parameters and FLOPs of the full-size text-to-image models, from abstract shapes (no weight is
read or materialised), and the time per NFE they imply on common accelerators.

For each model it lowers, with jax.jit on jax.ShapeDtypeStructs, the pieces one search NFE runs
(the backbone on one particle, both classifier-free-guidance passes for Stable Diffusion and
SD3.5; the
VAE decoder on its Tweedie estimate; the CLIP ViT-L/14 image tower that scores it) and reads
XLA's cost analysis of each lowered program (`flops`). Parameter counts are those of the
project's own ports at the published configurations, with the text encoders that a download
brings. Times are estimates: FLOPs over a chip's peak dense bfloat16 rate, at 100% (a floor no
run reaches) and at an assumed 40% utilisation.

  python -m experiments.tools.model_flops results/memory
"""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from experiments.evaluation import tables
from experiments.tools import model_memory as mm
from models import t5
from models.clip import config as clip_config
from models.clip import network as clip_network

BF16 = jnp.bfloat16
# Peak dense bfloat16 (float16 for the T4) matrix throughput per chip, TFLOP/s, from the
# vendors' data sheets: name -> (TFLOP/s, memory GiB as a runtime reports it).
CHIPS = {
    'H100 SXM (80 GB)': (989.0, 79.6),
    'A100 (80 GB)': (312.0, 79.2),
    'A100 (40 GB)': (312.0, 39.6),
    'L4 (24 GB)': (121.0, 22.5),
    'T4 (16 GB, float16)': (65.0, 15.0),
    'TPU v5e (one chip)': (197.0, 15.75),
    'TPU v6e (one chip)': (918.0, 31.25),
}
UTILISATION = 0.4

# The text encoders a download brings (the hub's published configurations).
T5_XXL = t5.T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                     num_heads=64, relative_attention_num_buckets=32,
                     relative_attention_max_distance=128, feed_forward_proj='gated-gelu',
                     layer_norm_epsilon=1e-6)
CLIP_L_TEXT = clip_config.from_dict(dict(
    architectures=['CLIPTextModel'], hidden_size=768, intermediate_size=3072,
    num_attention_heads=12, num_hidden_layers=12, vocab_size=49408, max_position_embeddings=77))
CLIP_L_PROJECTED = clip_config.from_dict(dict(
    architectures=['CLIPTextModelWithProjection'], hidden_size=768, intermediate_size=3072,
    num_attention_heads=12, num_hidden_layers=12, vocab_size=49408, max_position_embeddings=77,
    projection_dim=768))
OPENCLIP_BIGG_TEXT = clip_config.from_dict(dict(
    architectures=['CLIPTextModelWithProjection'], hidden_size=1280, intermediate_size=5120,
    num_attention_heads=20, num_hidden_layers=32, vocab_size=49408, max_position_embeddings=77,
    projection_dim=1280, hidden_act='gelu'))
OPENCLIP_H_TEXT = clip_config.from_dict(dict(
    architectures=['CLIPTextModel'], hidden_size=1024, intermediate_size=4096,
    num_attention_heads=16, num_hidden_layers=23, vocab_size=49408, max_position_embeddings=77,
    hidden_act='gelu'))


def count(tree) -> int:
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


def flops(fn, *args) -> float:
  cost = jax.jit(fn).lower(*args).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops'])


def _batched(tree, n: int):
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct((n,) + s.shape, s.dtype), tree)


def model_rows(name: str) -> dict:
  backbone, cond = mm.MODELS[name]()
  x = jax.ShapeDtypeStruct((1,) + tuple(backbone.data_shape), BF16)
  t = jax.ShapeDtypeStruct((1,), jnp.float32)
  out = {'model': name}
  out['backbone_params'] = count(backbone.params)
  out['backbone_tflops'] = flops(lambda p, x, t, c: backbone.apply_fn(p, x, t, c),
                                 backbone.params, x, t, _batched(cond, 1)) / 1e12
  decoder = backbone.decoder
  out['vae_decoder_params'] = count(decoder.params)
  out['vae_decoder_tflops'] = flops(lambda p, z: decoder.apply_fn(p, z), decoder.params,
                                    x) / 1e12
  score, clip_params = mm.clip_reward()
  size = 512 if name.startswith('sd21') else 1024
  images = jax.ShapeDtypeStruct((1, size, size, 3), BF16)
  text = {'reward_text': jax.ShapeDtypeStruct((1, 768), jnp.float32)}
  out['clip_reward_params'] = count(clip_params)
  out['clip_reward_tflops'] = flops(lambda p, im, c: score(p, im, c), clip_params, images,
                                    text) / 1e12
  if name.startswith('flux'):
    out['text_encoders_params'] = (count(t5.shapes(T5_XXL)) +
                                   count(clip_network.shapes(CLIP_L_TEXT)))
  elif name.startswith('sd35'):   # CLIP-L and OpenCLIP bigG with projections, T5-XXL
    out['text_encoders_params'] = (count(t5.shapes(T5_XXL)) +
                                   count(clip_network.shapes(CLIP_L_PROJECTED)) +
                                   count(clip_network.shapes(OPENCLIP_BIGG_TEXT)))
  else:
    out['text_encoders_params'] = count(clip_network.shapes(OPENCLIP_H_TEXT))
  out['nfe_tflops'] = (out['backbone_tflops'] + out['vae_decoder_tflops'] +
                       out['clip_reward_tflops'])
  return out


def times(row: dict) -> dict:
  """{chip: (seconds per NFE at peak, at UTILISATION, minutes for 500 NFE at UTILISATION)}."""
  out = {}
  for chip, (tflops, _) in CHIPS.items():
    peak = row['nfe_tflops'] / tflops
    out[chip] = (peak, peak / UTILISATION, 500 * peak / UTILISATION / 60)
  return out


def markdown(rows) -> str:
  lines = [tables.markdown(
      ['model', 'backbone params', 'text encoders params', 'VAE decoder params',
       'backbone TFLOPs / NFE', 'VAE decode TFLOPs', 'CLIP score TFLOPs', 'TFLOPs per search NFE'],
      [[r['model'], f"{r['backbone_params'] / 1e9:.3f} B", f"{r['text_encoders_params'] / 1e9:.3f} B",
        f"{r['vae_decoder_params'] / 1e6:.0f} M", f"{r['backbone_tflops']:.2f}",
        f"{r['vae_decoder_tflops']:.2f}", f"{r['clip_reward_tflops']:.3f}",
        f"{r['nfe_tflops']:.2f}"] for r in rows])]
  for r in rows:
    lines += ['', f"{r['model']}: seconds per search NFE at the chip's peak / at "
                  f"{100 * UTILISATION:.0f}% of it, and minutes for a 500-NFE search at "
                  f"{100 * UTILISATION:.0f}% (estimates)", '',
              tables.markdown(['chip', 'peak TFLOP/s', 's / NFE at peak',
                               f's / NFE at {100 * UTILISATION:.0f}%', 'min / 500 NFE'],
                              [[chip, f'{CHIPS[chip][0]:.0f}', f'{a:.3f}', f'{b:.3f}', f'{c:.1f}']
                               for chip, (a, b, c) in times(r).items()])]
  return '\n'.join(lines) + '\n'


def main(out_dir: str) -> list:
  os.makedirs(out_dir, exist_ok=True)
  rows = [model_rows(name) for name in mm.MODELS]
  with open(os.path.join(out_dir, 'model_flops.json'), 'w') as f:
    json.dump(rows, f, indent=1)
  text = markdown(rows)
  with open(os.path.join(out_dir, 'model_flops.md'), 'w') as f:
    f.write(text)
  print(text)
  return rows


if __name__ == '__main__':
  main(sys.argv[1] if len(sys.argv) > 1 else 'results/memory')
