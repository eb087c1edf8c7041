"""Re-keys recorded sweeps to run identities (experiments/identity.py), once per sweep.

Before identities, a sweep point's record held `config_sha256`, the sha256 of its whole resolved
config, and configs/common.py kept a hand list of the fields added since (ADDED_FIELDS, frozen
below) so that older records still matched. This tool verifies every record by that old rule
first: its hash must be the hash of the point as the sweep's own command builds it today, or of
that config without some of the listed fields, at their defaults. Only a verified record is
rewritten, with the point's identity and its sha256 in place of the old hash; any other is
reported and left as it is (the sweep then refuses it). The sweep's config.json is rewritten
with today's config when it is the same run by the old rule. Records that already hold an
identity are left alone, so running the tool again changes nothing.

  python -m experiments.tools.migrate_records results/dts_2d results/rbf_budget ...
"""

import copy
import hashlib
import json
import os
import sys

from absl import flags
import ml_collections
from ml_collections import config_flags

from experiments import files
from experiments import sweep

# configs/common.py's list when identities replaced it (section, field), oldest first.
ADDED_FIELDS = (('reward', 'heldout'), ('reward', 'address'), ('reward', 'timeout'),
                ('search', 'particle_schedule'), ('search', 'tempering_ess'),
                ('search', 'zo_keep_pivot'), ('search', 'zo_neighborhood'),
                ('search', 'zo_neighbors'), ('search', 'zo_radius'))


def sweep_config(workdir: str):
  """The config that the sweep's recorded command (sweep.json) builds today."""
  with open(os.path.join(workdir, 'sweep.json')) as f:
    command = json.load(f)['command']
  # sweep.py's command_line() joins argv with spaces, unquoted: split it the same way.
  args = [a for a in command.split()[2:] if a.startswith('--config')]
  argv = ['migrate_records'] + args
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, flag_values=values, lock_config=False,
                                  sys_argv=argv)
  values(argv)
  return values.config


def recorded_config(workdir: str):
  """The sweep's config as its config.json recorded it (for a sweep whose config file has
  moved on since: the points are verified against the grid it ran)."""
  with open(os.path.join(workdir, 'config.json')) as f:
    return ml_collections.ConfigDict(json.load(f))


def _old_digest(cfg) -> str:
  return hashlib.sha256(cfg.to_json(sort_keys=True).encode()).hexdigest()


def old_digests(cfg, defaults) -> set:
  """The point's hashes by the old rule: whole, and without each newest run of added fields
  that hold their defaults."""
  present = [(sec, f) for sec, f in ADDED_FIELDS
             if sec in cfg and f in cfg[sec] and files.same_json(cfg[sec][f], defaults[sec][f])]
  out, trimmed = {_old_digest(cfg)}, copy.deepcopy(cfg)
  for sec, f in reversed(present):
    del trimmed[sec][f]
    out.add(_old_digest(trimmed))
  return out


def old_same_run(old: dict, new: dict, defaults) -> bool:
  """The old workdir rule: equal but for the sweep and compare sections and the added fields
  that the older config lacks and that hold their defaults now."""
  old = {k: v for k, v in old.items() if k not in ('sweep', 'compare')}
  new = copy.deepcopy({k: v for k, v in new.items() if k not in ('sweep', 'compare')})
  for sec, f in ADDED_FIELDS:
    if (f not in old.get(sec, {}) and f in new.get(sec, {})
        and files.same_json(new[sec][f], defaults[sec][f])):
      del new[sec][f]
  return files.same_json(old, new)


def _verified(record, candidates, defaults):
  """The first candidate point whose old-rule hashes include the record's, or None."""
  for point in candidates:
    if point is not None and record.get('config_sha256') in old_digests(point.config, defaults):
      return point
  return None


def section_defaults() -> dict:
  """The shared config sections at their defaults, as the old rule compared added fields."""
  from configs import common  # pylint: disable=g-import-not-at-top
  return {'sampler': common.sampler_config().to_dict(), 'reward': common.reward_config().to_dict(),
          'search': json.loads(common.search_config().to_json_best_effort()),
          'mesh': common.mesh_config().to_dict()}


def migrate(workdir: str) -> dict:
  """Verifies and re-keys one sweep's records; returns counts."""
  defaults = section_defaults()
  config = sweep_config(workdir)
  points = {p.name: p for p in sweep.grid(config)}
  try:
    recorded = {p.name: p for p in sweep.grid(recorded_config(workdir))}
  except ValueError:
    recorded = {}
  counts = dict(migrated=0, already=0, failed=0)
  records = os.path.join(workdir, 'points')
  for name in sorted(os.listdir(records)):
    if not name.endswith('.json'):
      continue
    path = os.path.join(records, name)
    with open(path) as f:
      record = json.load(f)
    point = _verified(record, [g.get(name[:-len('.json')]) for g in (points, recorded)],
                      defaults)
    if 'identity' in record:
      counts['already'] += 1
    elif point is not None:
      record.pop('config_sha256')
      record.update(identity=point.identity, identity_sha256=point.digest)
      files.write_json(path, record)
      counts['migrated'] += 1
    else:
      counts['failed'] += 1
      print(f'{path}: its config_sha256 is not the point\'s by the old rule, as the sweep\'s '
            'command or its config.json builds it; left as it is', file=sys.stderr)
  path = os.path.join(workdir, 'config.json')
  with open(path) as f:
    old = json.load(f)
  new = json.loads(config.to_json_best_effort())
  if old != new and old_same_run(old, new, defaults):
    files.write_json(path, new)
    counts['config_json'] = 'rewritten'
  return counts


def main(argv) -> int:
  status = 0
  for workdir in argv:
    counts = migrate(workdir.rstrip('/'))
    print(f'{workdir}: {counts}')
    status |= bool(counts['failed'])
  return status


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
