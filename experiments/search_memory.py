"""Refuses, before compiling, a search whose own arrays would not fit (docs/reliability.md).

What a search allocates beyond the backbone and the reward's weights scales with the rows it
holds or evaluates at once, as its declaration says (search/base.py: Method.rows, or the
module's own memory_bytes for DTS's tree): per row, COPIES float32 copies of one sample (the
state, its evaluation's x0, eps and velocity, the noise, a proposal and its candidates), plus
the reward's own workspace per scored row (rewards/base.py: RewardKind.row_bytes, e.g. the
mode_weighting reward's [rows, modes] densities). Searches batched over prompts, classes or
runs multiply it (not for a method that runs them one at a time, search/base.py:
Method.sequential_searches). The rows split over the mesh's `particles` axis, so each device holds its
share; the outputs come back to the host.

A run is refused when its estimate is more than half of a device's memory (the accelerator's
limit, or this host's RAM on a CPU), or its outputs more than half of the host's RAM: the
backbone's own activations and XLA's temporaries need the rest. The estimate is a floor, not
the compiler's figure (experiments/tools/model_memory.py measures whole programs of the big
backbones); it stops the sizes that cannot fit from reaching the compiler.
"""

import json
import math
import os
import re

import jax

import models
import rewards
import search as search_lib
from samplers.ground import checks

COPIES = 8
FLOAT = 4
GIB = 2 ** 30


def device_memory():
  """(bytes, name) of the first device: the accelerator's limit, or this host's RAM on a CPU."""
  device = jax.devices()[0]
  stats = device.memory_stats() if device.platform != 'cpu' else None
  if stats and stats.get('bytes_limit'):
    return int(stats['bytes_limit']), f'{device.device_kind} memory'
  return host_memory(), 'host RAM'


def host_memory() -> int:
  return checks.host_memory_bytes()


def search_bytes(method: str, method_config, data_shape, reward_cfg, batch: int = 0) -> int:
  """The estimate of a search's own arrays, all devices together."""
  decl = search_lib.get_method(method)
  row = FLOAT * math.prod(data_shape)
  own = getattr(decl.module, 'memory_bytes', None)
  rows = decl.rows(method_config)
  total = own(method_config, data_shape) if own is not None else COPIES * row * rows
  kind = rewards.get_kind(reward_cfg.name)
  if kind.row_bytes is not None:
    total += rows * int(kind.row_bytes(reward_cfg))
  return total * (1 if decl.sequential_searches else max(batch, 1))


def output_bytes(method_config, data_shape, batch: int = 0) -> int:
  """The outputs that come back to the host: num_particles samples per search."""
  n = method_config.common.num_particles
  return FLOAT * math.prod(data_shape) * max(n, 1) * max(batch, 1)


def check(method: str, method_config, data_shape, reward_cfg, batch: int = 0,
          particle_devices: int = 1, search_devices: int = 1) -> None:
  """ValueError naming the bytes needed and the memory there is, before anything compiles;
  the batch's searches split over search_devices (the mesh's `searches` axis)."""
  decl = search_lib.get_method(method)
  need = search_bytes(method, method_config, data_shape, reward_cfg, batch)
  if not decl.sequential_searches:   # one search at a time holds its arrays on its devices
    need //= search_devices
  per_device = need // max(particle_devices, 1) if decl.particle_field else need
  have, where = device_memory()
  rows = decl.rows(method_config) * max(batch, 1)
  if per_device > have // 2:
    what = (f'its tree ({decl.module.__name__}.memory_bytes)'
            if hasattr(decl.module, 'memory_bytes') else
            f'{rows} rows of {tuple(data_shape)} at once{_on(particle_devices)}')
    raise ValueError(
        f'{method} at search.budget={method_config.common.budget} needs about '
        f'{per_device / GIB:.2f} GiB per device for its own arrays ({what}), more than half '
        f'of the {have / GIB:.1f} GiB of {where}; lower search.budget or search.num_particles'
        + (', or raise search.branch_every' if hasattr(decl.module, 'memory_bytes') else
           ', or shard the particles over more devices') + '.')
  out = output_bytes(method_config, data_shape, batch)
  host = host_memory()
  if out > host // 2:
    raise ValueError(
        f'{method} returns {out / GIB:.2f} GiB of samples to the host, more than half of its '
        f'{host / GIB:.1f} GiB of RAM; lower search.num_particles or the number of prompts, '
        'classes or runs.')


# The per-device peaks of the full-size text-to-image models, compiled ahead of time
# (experiments/tools/model_memory.py; the rows are described in results/memory/model_memory.md).
MEASURED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'results',
                        'memory', 'model_memory.json')
_TEMPORARIES = re.compile(r'required for HLO temporaries \(([0-9.]+)G\)')


def measured_need(row):
  """(GiB per device, exact) of a measured row: its peak, or, for a compile that ran out of
  the chip's memory, its weights plus the temporaries the compiler asked for (a lower bound:
  the other arguments are not counted). (None, False) when the row holds no figure."""
  if 'peak_gib' in row:
    return float(row['peak_gib']), True
  match = _TEMPORARIES.search(row.get('error', ''))
  if match is None:
    return None, False
  return float(row.get('backbone_weights_gib', 0.0)) + float(match.group(1)), False


def check_fits(model: str, particles: int, devices: int, device_gib: float,
               device_name: str = 'this device', source: str = MEASURED) -> dict:
  """Refuses (ValueError, with the measured figure) a run of `model` with `particles` rows in
  flight on `devices` devices of device_gib each, by the committed measurements: those on the
  largest measured device count <= `devices` (fewer devices hold more each, so this errs on the
  safe side), the row with the fewest particles >= `particles` (else the most), compared with
  the device's own memory whatever its kind. Returns the row."""
  with open(source) as f:
    rows = [r for r in json.load(f) if r['model'] == model]
  counts = sorted({r['devices'] for r in rows if r['devices'] <= devices})
  if not counts:
    raise ValueError(f'no measurement of {model} on {devices} device(s) or fewer in {source}; '
                     'run python -m experiments.tools.model_memory for this mesh.')
  rows = [r for r in rows if r['devices'] == counts[-1]]
  above = [r for r in rows if r['particles'] >= particles]
  row = (min(above, key=lambda r: r['particles']) if above else
         max(rows, key=lambda r: r['particles']))
  where = (f"{model} with {row['particles']} particles in flight on {row['devices']} "
           f"device(s), mesh (particles, model) = {tuple(row['mesh'])}")
  need, exact = measured_need(row)
  if need is None:
    raise ValueError(f"{where}: the measurement holds no figure ({row.get('error', '')}); "
                     'rerun python -m experiments.tools.model_memory for it.')
  if need > device_gib:
    raise ValueError(
        f"{where} needs {'' if exact else 'at least '}{need:.1f} GiB per device (compiled for "
        f"{row['platform']}, results/memory/model_memory.md), but {device_name} has "
        f"{device_gib:.1f} GiB: use more devices (mesh.shape with a model axis) or fewer "
        'particles.')
  return row


def check_measured(model_cfg, rows: int, devices: int):
  """check_fits for a configuration its backbone declares measured (BackboneKind.
  measured_memory), against the first device's own memory; before any weight is read. Returns
  the row, or None where the configuration is not a measured one."""
  measured = models.get_kind(model_cfg.name).measured_memory
  key = measured(model_cfg) if measured is not None else None
  if key is None:
    return None
  have, where = device_memory()
  return check_fits(key, rows, devices, have / GIB, f'{jax.devices()[0].device_kind} ({where})')


def _on(devices: int) -> str:
  return f', split over {devices} devices' if devices > 1 else ''
