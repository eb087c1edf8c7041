"""DTS's static configuration: the knobs, their checks, and the sizes of a run (the tree's node
capacity, the root's children, the trace), derived from the budget on the host."""

import dataclasses
import math

import numpy as np

from search import base

SELECTIONS = ('softmax', 'uniform', 'uct')
BATCHINGS = ('continuous', 'synchronous')
BLOCK = 8          # child ids per block of a non-root node's child list
ROOT_CHUNK = 512   # the root's children are read in chunks of this many
LOW = -1e30        # stands for an invalid (-inf) value in selection

KNOBS = dict(
    tree_selection=base.Derived(str),  # softmax | uniform | uct (unset: dts softmax, dts_star uct)
    branch_every=base.Derived(int),    # branch every E levels (unset: M // 5)
    widen_c=2.0,            # progressive widening: children >= C * visits^alpha
    widen_alpha=0.8,
    c_uct=1.0,
    dts_batch=1,            # B rollouts in flight per backbone call (1: sequential)
    dts_batching='continuous',  # continuous | synchronous
)
_DEFAULT_SELECTION = {'dts': 'softmax', 'dts_star': 'uct'}


@dataclasses.dataclass(frozen=True)
class Config:
  common: base.Common
  selection: str
  widen_c: float
  widen_alpha: float
  c_uct: float
  branch_levels: tuple
  num_steps: int
  batch: int          # B
  batching: str
  capacity: int       # nodes (the root included), enough for any run within the budget
  root_capacity: int  # the root's children: at most budget // M
  max_rollouts: int   # budget // (cheapest rollout): the length of the trace
  max_selections: int

  @property
  def depth(self) -> int:  # D: the number of branch depths below the root
    return len(self.branch_levels)

  @property
  def num_slots(self):
    """The rows split over the mesh: the B slots (None for B = 1, which runs replicated)."""
    return self.batch if self.batch > 1 else None

  @property
  def num_blocks(self) -> int:
    return self.capacity + self.capacity // BLOCK + 1

  @property
  def root_chunk(self) -> int:
    return min(ROOT_CHUNK, self.root_capacity + 1)

  @property
  def root_slots(self) -> int:  # root_capacity + a scratch entry, padded to whole chunks
    return -(-(self.root_capacity + 1) // self.root_chunk) * self.root_chunk

  @property
  def root_chunks(self) -> int:
    return self.root_slots // self.root_chunk

  def rollout_cost(self, depth: int) -> int:
    """NFEs of an expansion from a node at `depth` (the root's child starts from noise)."""
    return self.num_steps if depth == 0 else self.num_steps - 1 - self.branch_levels[depth - 1]

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    common = base.Common.from_config(cfg, temperature)
    base.check_steps(method.name, num_steps)
    selection = cfg.tree_selection or _DEFAULT_SELECTION.get(method.name, 'softmax')
    if selection not in SELECTIONS:
      raise ValueError(f'Unknown search.tree_selection {selection!r}; '
                       f'valid: {", ".join(SELECTIONS)}.')
    every = max(1, num_steps // 5) if cfg.branch_every is None else int(cfg.branch_every)
    if every < 1:
      raise ValueError(f'search.branch_every must be >= 1, got {every}.')
    levels = tuple(range(0, num_steps - 1, every))
    widen_c, widen_alpha = float(cfg.widen_c), float(cfg.widen_alpha)
    if not (np.isfinite(widen_c) and widen_c > 0) or not 0 < widen_alpha <= 1:
      raise ValueError(f'progressive widening needs widen_c > 0 and 0 < widen_alpha <= 1, got '
                       f'{widen_c} and {widen_alpha}.')
    c_uct = float(cfg.c_uct)
    if not (np.isfinite(c_uct) and c_uct >= 0):
      raise ValueError(f'search.c_uct must be a finite number >= 0, got {c_uct}.')
    batch = cfg.get('dts_batch', 1)
    if not isinstance(batch, int) or batch < 1:
      raise ValueError(f'search.dts_batch must be a positive integer, got {batch!r}.')
    batching = cfg.get('dts_batching', 'continuous')
    if batching not in BATCHINGS:
      raise ValueError(f'Unknown search.dts_batching {batching!r}; '
                       f'valid: {", ".join(BATCHINGS)}.')
    if common.budget < num_steps:
      raise base.too_small(method.name, common.budget, num_steps,
                           f'one rollout of {num_steps} steps')
    partial = cls(common, selection, widen_c, widen_alpha, c_uct, levels, num_steps, batch,
                  batching, 0, 0, 0, 0)
    budget, depth = common.budget, len(levels)
    # An expansion from depth d costs rollout_cost(d) NFEs and adds D + 1 - d nodes, so no run
    # within the budget holds more than 1 + max_d floor(budget (D + 1 - d) / cost(d)) nodes.
    nodes = max(budget * (depth + 1 - d) // partial.rollout_cost(d) for d in range(depth + 1))
    rollouts = budget // partial.rollout_cost(depth)
    return dataclasses.replace(
        partial, capacity=1 + nodes, root_capacity=budget // num_steps + 1,
        max_rollouts=rollouts, max_selections=4 * rollouts + 8 + batch)


def memory_bytes(config: Config, data_shape) -> int:
  """Bytes of the preallocated tree and slots of a run (what `run` allocates beyond the
  backbone): per node one float32 state row and eight int32/float32 fields; the block lists;
  per slot a state row and its evaluation; the trace. experiments/search_memory.py refuses a
  tree that would not fit before compiling."""
  row = 4 * math.prod(data_shape)
  tree = (config.capacity + 1) * (row + 8 * 4) + (config.num_blocks + 1) * (BLOCK + 1) * 4
  tree += config.root_slots * 4 + config.root_chunks * 5 * 4
  slots = config.batch * (6 * row + 12 * 4)
  return tree + slots + 2 * 4 * (config.max_rollouts + 1)
