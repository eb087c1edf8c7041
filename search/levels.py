"""The one driver of the level-by-level methods, in the style of blackjax and optax: a method is a
`State` NamedTuple and two functions,

  init(...) -> (State, Report)      the particles (chains, beams, pivots) at their first scored
                                    level, and what that level scored
  step(State, x) -> (State, Report) one level (a block, an iteration, a round) further

and `drive` runs it: it scans each segment's `step` over its xs (or calls it once per element
where the shapes change from one level to the next), builds the anytime trace from the reports
(the NFEs, static, cumulated; the best reward so far, reduced over the rows once, after the
loop, so that no collective runs inside it), counts the invalid rewards, and finishes once with
base.finalize on what `finish(State)` returns. RBF and DTS keep their own loops (a while_loop
of proposals, a tree) and finish through base.finalize the same way; best-of-N is one batch of
samples, its trace one point per sample.
"""

from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from samplers.ground import progress
from search import base


class Report(NamedTuple):
  """What one level (or the first) scored."""
  rewards: jax.Array     # [n] its rewards (invalid ones -inf): the trace's best is their max
  invalid: jax.Array     # its invalid rewards: flags [n] or a count (summed after the loop)
  extra: Any = ()        # anything else a method keeps per level (tempered SMC's beta)


class Chains(NamedTuple):
  """The state of N chains that each keep one particle (CoDe, SVDD, beam, SoP)."""
  x: jax.Array   # [N, ...] their states at the current level
  d: Any         # their evaluation (a samplers.sampler.Denoised)
  r: jax.Array   # [N] rewards of their Tweedie estimates


class Output(NamedTuple):
  """What a method outputs from its final state."""
  candidates: jax.Array              # [P, ...]
  rewards: jax.Array                 # [P]
  log_weights: Optional[jax.Array] = None   # [P], for the methods that weight their outputs


def chains_output(state: Chains) -> Output:
  """The chains' Tweedie estimates and rewards, unweighted."""
  return Output(state.d.x0, state.r)


class Segment(NamedTuple):
  """A run of levels with one step function: scanned over `xs` (an array, one level per row),
  or, with `unrolled`, called once per element of `xs` (levels whose shapes differ)."""
  step: Callable
  xs: Any
  unrolled: bool = False


def drive(key, common: base.Common, state, first: Report, segments: Sequence[Segment],
          finish: Callable, costs: Sequence[int], scored: int):
  """(SearchResult, the extras of every level after the first, stacked per segment).

  costs: the NFEs of the first level and of each level after it (static), so that nfe =
  sum(costs) and the trace's NFEs are their running sum; scored: the rewards scored in all."""
  bests, invalid, extras = [jnp.max(first.rewards)[None]], [jnp.sum(first.invalid)], []
  spent, total = np.cumsum(costs)[1:], int(sum(costs))   # NFEs spent after each later level
  for segment in segments:
    ends, spent = spent[:len(segment.xs)], spent[len(segment.xs):]
    if segment.unrolled:   # one call per level: the rows may change from level to level
      reports = []
      for x, end in zip(segment.xs, ends):
        state, report = segment.step(state, x)
        progress.tick(int(end), total)
        reports.append(report)
      bests.append(jnp.stack([jnp.max(r.rewards) for r in reports]))
      invalid += [jnp.sum(r.invalid) for r in reports]
      extras.append([r.extra for r in reports])
    else:
      def ticked(state, x_end, step=segment.step):
        state, report = step(state, x_end[0])
        progress.tick(x_end[1], total)
        return state, report
      state, stacked = jax.lax.scan(ticked, state, (segment.xs, jnp.asarray(ends, jnp.int32)))
      bests.append(jnp.max(stacked.rewards.reshape(stacked.rewards.shape[0], -1), axis=1))
      invalid.append(jnp.sum(stacked.invalid))
      extras.append(stacked.extra)
  best = jnp.concatenate(bests)
  invalid = sum(invalid)
  out = finish(state)
  nfe = int(sum(costs))
  result = base.finalize(key, common, candidates=out.candidates, rewards=out.rewards,
                         log_weights=out.log_weights, nfe=nfe, nfe_evaluated=nfe,
                         trace_nfe=jnp.asarray(np.cumsum(costs)),
                         trace_best=jax.lax.cummax(best), num_invalid=invalid,
                         num_scored=scored)
  return result, extras
