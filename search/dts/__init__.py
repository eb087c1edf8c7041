"""Diffusion tree sampling, DTS and DTS* (Jain et al. 2025): an indexed tree and batched rollouts.

Depths: the root (depth 0) is a dummy; depth i = 1..D holds states at branch level
branch_levels[i-1] (0, E, 2E, ... < M - 1); depth D + 1 holds terminal states at level M - 1,
whose Tweedie estimate is the sample x0 and whose value is r(x0). An edge is a run of base-SDE
steps between two branch levels; every state a rollout passes at a branch level becomes a node.

One iteration: (1) select from the root while the node is fully widened (children >=
C * visits^alpha) by softmax(v / lambda) (`softmax`, DTS), uniformly (`uniform`, the unbiased
build) or by v + c_uct sqrt(log N(parent) / N(child)) (`uct`, DTS*); (2) expand the node with a
new child from the base kernel and roll out to the terminal level, adding each branch-level
state as a node; (3) back up: every node on the path takes the log-mean-exp (temperature
lambda) of its children's values, and its visit count grows by one. New nodes count one visit;
the root starts at 1. A selection that reaches a terminal node spends no NFE and only adds
visits.

Batched rollouts (docs/methods.md, "DTS at scale"): `dts_batch` = B slots each carry one
rollout; every step is one backbone call on the B slots' rows, each at its own level.
`continuous` batching refills a slot by a new selection as soon as its rollout is backed up;
`synchronous` refills all B together once all have finished (the paper's batched version; rows
of finished slots are evaluated and not counted, see nfe_evaluated). Concurrent selections see
each other through virtual visits and pending children: a selection adds its visits along the
path at once, and a node being expanded counts its in-flight child in the widening test, so
the next selection widens elsewhere or picks another child instead of piling on. With B = 1
this is exactly the sequential algorithm.

The index: the root's children are one array; every other node keeps its children in a linked
list of blocks of BLOCK ids. Selection, widening and backup read only the children of the nodes
on the path: O(depth x children) per iteration, never a pass over the whole tree. What is
stored per node is only what later steps read: a branch node keeps the deterministic part of
the Euler step leaving it (its children start from it plus fresh noise), a terminal node keeps
its sample x0. Under a mesh the B rows split over the `particles` axis and the tree is
replicated; per step the B new rows' states cross devices, nothing else of size.

Samples cost no NFE: one categorical draw over the terminal nodes with logits
r(leaf) / lambda - sum over ancestors of log |children|, which equals descending from the root
by softmax(v / lambda). `best` returns the terminal node with the highest reward.

The package: config (knobs, checks, sizes), tree (the indexed tree and its updates), selection
(the selection rules), rollouts (the batched rollouts and the search program).
"""

from search import base
from search.dts.config import Config
from search.dts.config import KNOBS
from search.dts.config import memory_bytes
from search.dts.rollouts import run
from search.dts.selection import pick_child
from search.dts.tree import Tree
from search.dts.tree import refresh_root_chunks

__all__ = ['Config', 'METHODS', 'Tree', 'memory_bytes', 'pick_child', 'refresh_root_chunks',
           'run']

# DTS samples the tilted target; DTS* (UCT selection) searches for the best sample. The B
# rollout rows split over the mesh (B = 1 runs replicated). Batched searches (classes,
# prompts, runs) run one after another: vmapped, every step would copy every tree.
METHODS = (
    base.Method(name='dts', knobs=KNOBS, particle_field='num_slots',
                particle_source='search.dts_batch', order=6, needs_noise=True,
                sequential_searches=True),
    base.Method(name='dts_star', knobs=KNOBS, particle_field='num_slots',
                particle_source='search.dts_batch', output='best', order=7,
                needs_noise=True, sequential_searches=True),
)
