"""One rule for "the same run": a run is the config fields it reads (docs/contract.md).

identity(config) is the resolved config as plain JSON values, less what the run cannot read:
  - the `sweep` section (a sweep's grid may grow; each of its points has its own identity),
    and the `compare` and `benchmark` sections outside those experiments;
  - in `search`, all but the fields every method reads (search/base.py: COMMON_FIELDS) and the
    knobs of the methods the run runs; in `reward`, all but the common fields
    (rewards/base.py: COMMON_FIELDS), the fields of the rewards it builds (the searched one
    and the held-out ones) and those its evaluation reads (rewards/base.py:
    EVALUATION_FIELDS). The declarations in search/ and rewards/ say whose each knob and
    field is, so a knob that no method declares any more drops out too.
So a knob added for one method, or a default changed for one method, leaves every other
method's runs as they were.

differences(old, new) names the fields where an older identity (a workdir's config.json, a
sweep point's record) and the present one differ. A `search` or `reward` field that the older
identity lacks is its declared default (search/base.py and rewards/base.py: COMMON_FIELDS, the
methods' knobs, the rewards' fields), and so is a `sampler` field added since
(samplers/sampler.py: ADDED_FIELDS): a knob added to a method since the run, at its default,
changes nothing. Any other field that one side lacks is a difference.
"""

import hashlib
import json

import ml_collections

import rewards
import search
from samplers import sampler as sampler_lib

# What each experiment runs, read from its config: the methods whose knobs it reads.
_METHODS_RUN = {
    'search': lambda c: (c['search']['method'],),
    'compare': lambda c: tuple(c.get('compare', {}).get('methods', ())),
    'benchmark': lambda c: tuple(c.get('benchmark', {}).get('methods', ())),
}
# Sections only their own experiment reads; `sweep` is never part of an identity.
_OWN_SECTIONS = ('compare', 'benchmark')


def _plain(config) -> dict:
  if isinstance(config, dict):
    return json.loads(json.dumps(config, default=str))
  return json.loads(config.to_json_best_effort())


def methods_run(config) -> tuple:
  """The methods whose knobs a run reads (none for sweeps: each point reads its own)."""
  config = _plain(config)
  return tuple(str(m) for m in _METHODS_RUN.get(config.get('experiment'), lambda c: ())(config))


def rewards_built(reward_section: dict) -> tuple:
  """The rewards a run builds: reward.name and each held-out entry's name."""
  from rewards import heldout  # pylint: disable=g-import-not-at-top
  names = [reward_section.get('name')]
  names += [e.split(',')[0].strip() for e in heldout.entries(reward_section.get('heldout', ()))]
  return tuple(n for n in names if n)


def identity(config) -> dict:
  """The fields of `config` (a ConfigDict or its JSON dict) that the run reads."""
  out = _plain(config)
  out = {k: v for k, v in out.items()
         if k != 'sweep' and (k not in _OWN_SECTIONS or k == out.get('experiment'))}
  if out.get('prompt_rows') == '':   # every prompt: as runs recorded before the field existed
    del out['prompt_rows']
  if isinstance(out.get('search'), dict):
    keep = set(search.base.COMMON_FIELDS)
    for name in methods_run(out):
      if name in search.METHODS:
        keep |= set(search.get_method(name).knobs)
    out['search'] = {k: v for k, v in out['search'].items() if k in keep}
  if isinstance(out.get('reward'), dict):
    keep = set(rewards.base.COMMON_FIELDS)
    for name in rewards_built(out['reward']):
      if name in rewards.names():
        keep |= set(rewards.get_kind(name).fields)
    if out['reward'].get('name') in rewards.names():   # what the run's evaluation reads
      keep |= set(rewards.base.EVALUATION_FIELDS.get(
          rewards.evaluation(ml_collections.ConfigDict(out)), ()))
    out['reward'] = {k: v for k, v in out['reward'].items() if k in keep}
  return out


def digest(ident: dict) -> str:
  """sha256 of an identity: equal digests, the same run."""
  return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _declared_defaults() -> dict:
  """{section: {field: default}} of the `search` and `reward` sections as the declarations give
  them (common fields, method knobs, reward fields), and the `sampler` fields added since runs
  were recorded, as JSON values."""
  knobs = {k: (None if isinstance(v, search.base.Derived) else v)
           for k, v in search.knobs().items()}
  return _plain({'search': dict(search.base.COMMON_FIELDS, **knobs),
                 'reward': dict(rewards.base.COMMON_FIELDS, **rewards.fields()),
                 'sampler': dict(sampler_lib.ADDED_FIELDS)})


def differences(old: dict, new: dict, where: str = 'recorded') -> list:
  """'field: A (recorded) -> B (now)' for each field where two identities differ; a `search`,
  `reward` or added `sampler` field absent from `old` and at its declared default in `new` is
  no difference.
  `where` names the older side in the messages."""
  return _diff(old, new, '', _declared_defaults(), where)


def _diff(old, new, prefix, defaults, where) -> list:
  if isinstance(old, dict) and isinstance(new, dict):
    defaults = defaults if isinstance(defaults, dict) else {}
    out = []
    for key in sorted(set(old) | set(new), key=str):
      path = f'{prefix}{key}'
      if key not in new:
        out.append(f'{path}: {old[key]!r} ({where}) -> absent (now)')
      elif key not in old:
        declared = key in defaults and not isinstance(defaults[key], dict)
        if not (declared and _same(defaults[key], new[key])):
          out.append(f'{path}: absent ({where}) -> {new[key]!r} (now)')
      else:
        out.extend(_diff(old[key], new[key], path + '.', defaults.get(key), where))
    return out
  if _same(old, new):
    return []
  return [f'{prefix.rstrip(".")}: {old!r} ({where}) -> {new!r} (now)']


def _same(a, b) -> bool:
  """Equal as JSON (tuples and lists alike)."""
  return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def summary(diffs: list, limit: int = 6) -> str:
  """The first `limit` differences on one line."""
  return '; '.join(diffs[:limit]) + (f'; and {len(diffs) - limit} more' if len(diffs) > limit
                                     else '')
