"""Diffusion tree sampling, DTS and DTS* (Jain et al. 2025), with the tree in flat arrays.

Depths: the root (depth 0) is a dummy; depth i = 1..D holds states at branch level
branch_levels[i-1] (0, E, 2E, ... < M - 1); depth D + 1 holds terminal states at level M - 1,
whose Tweedie estimate is the sample x0 and whose value is r(x0). An edge is a run of base-SDE
steps between two branch levels; every state a rollout passes at a branch level becomes a node.

One iteration: (1) select from the root while the node is fully widened (children >=
C * visits^alpha) by softmax(v / lambda) (`softmax`, DTS), uniformly (`uniform`, the unbiased
build) or by v + c_uct sqrt(log N(parent) / N(child)) (`uct`, DTS*); (2) expand the node with a
new child from the base kernel and roll out to the terminal level, adding each branch-level
state as a node; (3) back up: every node on the path takes the log-mean-exp (temperature
lambda) of its children's values, and its visit count grows by one. New nodes are created with
visits 0, so after their first backup they count 1; the root starts at 1. An iteration that
selects a terminal node spends no NFE and only updates visit counts.

Samples cost no NFE: one categorical draw over the terminal nodes with logits
r(leaf) / lambda - sum over ancestors of log |children|, which equals descending from the root
by softmax(v / lambda). `best` returns the terminal node with the highest reward. The tree is
replicated whole (it lives on one device per prompt); iterations are sequential by design.
"""

import dataclasses
from typing import NamedTuple

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

from samplers.sampler import Denoised
from search import base

SELECTIONS = ('softmax', 'uniform', 'uct')

_KNOBS = dict(
    tree_selection=base.Derived(str),  # softmax | uniform | uct (unset: dts softmax, dts_star uct)
    branch_every=base.Derived(int),    # branch every E levels (unset: M // 5)
    widen_c=2.0,            # progressive widening: children >= C * visits^alpha
    widen_alpha=0.8,
    c_uct=1.0,
)
# DTS samples the tilted target; DTS* (UCT selection) searches for the best sample.
METHODS = (
    base.Method(name='dts', knobs=_KNOBS, order=6),
    base.Method(name='dts_star', knobs=_KNOBS, output='best', order=7),
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
  capacity: int
  max_iterations: int

  @property
  def depth(self) -> int:  # D: the number of branch depths below the root
    return len(self.branch_levels)

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
    min_cost = num_steps - 1 - levels[-1]
    if common.budget < num_steps:
      raise base.too_small(method.name, common.budget, num_steps,
                           f'one rollout of {num_steps} steps')
    expansions = common.budget // min_cost
    capacity = 1 + expansions * (len(levels) + 1)
    return cls(common, selection, widen_c, widen_alpha, c_uct, levels, capacity,
               2 * expansions + 8)


@struct.dataclass
class Tree:
  """The search tree in flat arrays of `capacity` nodes; node 0 is the root, nodes >= size are
  unused. Per node: the state x and its evaluation (x0, eps, vel) [capacity, *data_shape],
  parent (-1 at the root), depth, value (soft value; r(x0) at terminal nodes), visits and the
  number of children."""
  x: jax.Array
  x0: jax.Array
  eps: jax.Array
  vel: jax.Array
  parent: jax.Array
  depth: jax.Array
  value: jax.Array
  visits: jax.Array
  children: jax.Array
  size: jax.Array

  @classmethod
  def empty(cls, capacity: int, shape) -> 'Tree':
    zeros = lambda: jnp.zeros((capacity,) + tuple(shape), jnp.float32)
    return cls(x=zeros(), x0=zeros(), eps=zeros(), vel=zeros(),
               parent=jnp.full(capacity, -1, jnp.int32), depth=jnp.zeros(capacity, jnp.int32),
               value=jnp.zeros(capacity), visits=jnp.zeros(capacity, jnp.int32).at[0].set(1),
               children=jnp.zeros(capacity, jnp.int32), size=jnp.int32(1))

  def children_mask(self, node):
    return (self.parent == node) & (jnp.arange(self.parent.shape[0]) < self.size)

  def widened(self, node, config: Config):
    """Progressive widening: fully widened once children >= C * visits^alpha."""
    limit = config.widen_c * self.visits[node].astype(jnp.float32) ** config.widen_alpha
    return self.children[node] >= limit

  def add(self, parent, x, d: Denoised):
    """(tree, new node): a child of `parent` holding x [1, ...] and its evaluation d."""
    i = self.size
    tree = self.replace(
        x=self.x.at[i].set(x[0]), x0=self.x0.at[i].set(d.x0[0]),
        eps=self.eps.at[i].set(d.eps[0]), vel=self.vel.at[i].set(d.velocity[0]),
        parent=self.parent.at[i].set(parent), depth=self.depth.at[i].set(self.depth[parent] + 1),
        children=self.children.at[parent].add(1), size=i + 1)
    return tree, i


class Loop(NamedTuple):
  """The state of the tree-search while-loop."""
  tree: Tree
  nfe: jax.Array         # NFEs spent
  iteration: jax.Array
  best: jax.Array        # the best reward scored so far
  num_invalid: jax.Array
  num_scored: jax.Array
  trace_nfe: jax.Array   # [max_iterations]
  trace_best: jax.Array  # [max_iterations]
  halted: jax.Array      # the next expansion would overrun the budget or the tree


def pick_child(tree: Tree, node, key, config: Config):
  """One child of `node` by the configured selection rule."""
  lam = config.common.temperature
  mask = tree.children_mask(node)
  value = jnp.where(jnp.isfinite(tree.value), tree.value, -1e30)
  if config.selection == 'uct':
    explore = jnp.sqrt(jnp.log(tree.visits[node].astype(jnp.float32))
                       / jnp.maximum(tree.visits, 1))
    return jnp.argmax(jnp.where(mask, value + config.c_uct * explore, -jnp.inf))
  # softmax(value / lambda) or uniform over the children, by one uniform and the inverse CDF.
  if config.selection == 'softmax':
    logits = jnp.where(mask, value / lam, -jnp.inf)
    weights = jnp.exp(logits - jnp.max(logits))
  else:
    weights = mask.astype(jnp.float32)
  cdf = jnp.cumsum(weights)
  u = jax.random.uniform(key) * cdf[-1]
  return jnp.minimum(jnp.searchsorted(cdf, u, side='right'),
                     config.capacity - 1).astype(jnp.int32)


def select(tree: Tree, key, config: Config):
  """Descends from the root while the node is non-terminal and fully widened."""
  terminal = config.depth + 1

  def cond(state):
    node, _ = state
    return (tree.depth[node] < terminal) & tree.widened(node, config)

  def body(state):
    node, i = state
    return pick_child(tree, node, jax.random.fold_in(key, i), config), i + 1
  return jax.lax.while_loop(cond, body, (jnp.int32(0), jnp.int32(0)))[0]


def backup(tree: Tree, leaf, leaf_value, lam: float) -> Tree:
  """Sets the leaf's value; every ancestor takes the log-mean-exp of its children's values,
  and every node on the path gains a visit."""
  tree = tree.replace(value=tree.value.at[leaf].set(leaf_value),
                      visits=tree.visits.at[leaf].add(1))

  def body(state):
    tree, node = state
    parent = tree.parent[node]
    mask = tree.children_mask(parent)
    soft = lam * (jax.nn.logsumexp(tree.value / lam, where=mask)
                  - jnp.log(tree.children[parent].astype(jnp.float32)))
    tree = tree.replace(value=tree.value.at[parent].set(soft),
                        visits=tree.visits.at[parent].add(1))
    return tree, parent
  return jax.lax.while_loop(lambda s: s[1] != 0, body, (tree, leaf))[0]


def draw_weights(tree: Tree, config: Config, lam: float):
  """(leaves mask, log-weights) of the sample draw: r(leaf) / lambda - sum over the leaf's
  ancestors of log |children|, which equals descending from the root by softmax(v / lambda)."""
  terminal = config.depth + 1
  leaves = (tree.depth == terminal) & (jnp.arange(config.capacity) < tree.size)
  log_children = jnp.log(jnp.maximum(tree.children, 1).astype(jnp.float32))
  acc, anc = jnp.zeros(config.capacity), tree.parent
  for _ in range(terminal):
    acc = acc + jnp.where(anc >= 0, log_children[jnp.maximum(anc, 0)], 0.0)
    anc = jnp.where(anc >= 0, tree.parent[jnp.maximum(anc, 0)], -1)
  log_w = jnp.where(leaves & jnp.isfinite(tree.value), tree.value / lam - acc, -jnp.inf)
  return leaves, log_w


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  m, cap, terminal = sampler.num_steps, config.capacity, config.depth + 1
  lam = config.common.temperature
  levels_np = np.asarray(config.branch_levels)
  # Node level by depth: depth 0 (root) -> -1, 1..D -> branch levels, D + 1 -> M - 1.
  level_of_depth = jnp.asarray(np.concatenate([[-1], levels_np, [m - 1]]), jnp.int32)
  is_node_level = np.zeros(m, bool)
  is_node_level[levels_np] = True
  is_node_level[m - 1] = True
  is_node_level = jnp.asarray(is_node_level)
  tree_key, draw_key = jax.random.split(key)

  def expand(tree: Tree, node, k):
    """New child of `node`, rolled out to the terminal level; returns (tree, leaf, nfe)."""
    k_init, k_roll = jax.random.split(k)

    def from_root(tree):  # the root's child is a fresh noise, evaluated at level 0 (1 NFE)
      x = sampler.init_noise(k_init, 1)
      d = sampler.denoise(x, 0, cond)
      tree, first = tree.add(node, x, d)
      return tree, first, x, d, jnp.int32(0)

    def from_node(tree):  # any other node steps on from its stored state and evaluation
      d = Denoised(tree.x0[node][None], tree.eps[node][None], tree.vel[node][None])
      return tree, node, tree.x[node][None], d, level_of_depth[tree.depth[node]]

    tree, first, x, d, start = jax.lax.cond(node == 0, from_root, from_node, tree)

    def body(level, state):
      tree, cur, x, d = state
      noise = jax.random.normal(jax.random.fold_in(k_roll, level), x.shape, x.dtype)
      x = sampler.step(x, d, level - 1, noise)
      d = sampler.denoise(x, level, cond)
      tree, cur = jax.lax.cond(is_node_level[level],
                               lambda t: t.add(cur, x, d), lambda t: (t, cur), tree)
      return tree, cur, x, d

    tree, leaf, _, _ = jax.lax.fori_loop(start + 1, m, body, (tree, first, x, d))
    return tree, leaf, jnp.where(node == 0, m, m - 1 - start).astype(jnp.int32)

  def iteration(s: Loop) -> Loop:
    tree = s.tree
    k = jax.random.fold_in(tree_key, s.iteration)
    node = select(tree, k, config)
    at_terminal = tree.depth[node] == terminal
    cost = jnp.where(node == 0, m, m - 1 - level_of_depth[tree.depth[node]])
    fits = (s.nfe + cost <= config.common.budget) & (tree.size + terminal <= cap)

    def revisit(tree):  # a terminal node: no NFE, visit counts only
      return (backup(tree, node, tree.value[node], lam), jnp.int32(0),
              jnp.float32(-jnp.inf), jnp.int32(0))

    def grow(tree):
      tree, leaf, spent = expand(tree, node, k)
      r, bad = base.score(reward, tree.x0[leaf][None], cond)
      return backup(tree, leaf, r[0], lam), spent, r[0], bad

    def halt(tree):  # the next expansion would overrun the budget or the preallocated tree
      return tree, jnp.int32(0), jnp.float32(-jnp.inf), jnp.int32(0)

    branch = jnp.where(at_terminal, 0, jnp.where(fits, 1, 2))
    tree, spent, r, bad = jax.lax.switch(branch, (revisit, grow, halt), tree)
    nfe = s.nfe + spent
    best = jnp.maximum(s.best, r)
    return Loop(tree=tree, nfe=nfe, iteration=s.iteration + 1, best=best,
                num_invalid=s.num_invalid + bad,
                num_scored=s.num_scored + (branch == 1).astype(jnp.int32),
                trace_nfe=s.trace_nfe.at[s.iteration].set(nfe),
                trace_best=s.trace_best.at[s.iteration].set(best), halted=branch == 2)

  trace_len = config.max_iterations
  init = Loop(tree=Tree.empty(cap, sampler.data_shape), nfe=jnp.int32(0),
              iteration=jnp.int32(0), best=jnp.float32(-jnp.inf), num_invalid=jnp.int32(0),
              num_scored=jnp.int32(0), trace_nfe=jnp.zeros(trace_len, jnp.int32),
              trace_best=jnp.full(trace_len, -jnp.inf), halted=jnp.bool_(False))
  s = jax.lax.while_loop(lambda s: (s.iteration < config.max_iterations) & ~s.halted,
                         iteration, init)
  tree = s.tree
  leaves, log_w = draw_weights(tree, config, lam)
  rewards = jnp.where(leaves, tree.value, -jnp.inf)
  last = jnp.maximum(s.iteration - 1, 0)
  valid_trace = jnp.arange(trace_len) < s.iteration
  trace_nfe = jnp.where(valid_trace, s.trace_nfe, s.trace_nfe[last])
  trace_best = jnp.where(valid_trace, s.trace_best, s.trace_best[last])
  return base.finalize(draw_key, config.common, candidates=tree.x0, rewards=rewards,
                       log_weights=log_w, nfe=s.nfe, nfe_evaluated=s.nfe, trace_nfe=trace_nfe,
                       trace_best=trace_best, num_invalid=s.num_invalid,
                       num_scored=s.num_scored, eligible=leaves)
