"""experiments/tools/migrate_records.py: recorded sweeps re-keyed to run identities, each record
verified by the old whole-config hash first."""

import hashlib
import json

from configs.figures import dts_2d
from experiments import sweep
from experiments.tools import migrate_records


def test_records_are_verified_then_rekeyed(tmp_path):
  config = dts_2d.get_config('quick')
  points = sweep.grid(config)[:3]
  (tmp_path / 'points').mkdir()
  (tmp_path / 'sweep.json').write_text(json.dumps(
      {'command': f'python main.py --config=configs/figures/dts_2d.py:quick --workdir={tmp_path}'}))
  old_config = json.loads(config.to_json_best_effort())
  del old_config['reward']['heldout']     # recorded before reward.heldout existed
  (tmp_path / 'config.json').write_text(json.dumps(old_config))
  good, older, bad = points
  whole = lambda cfg: hashlib.sha256(cfg.to_json(sort_keys=True).encode()).hexdigest()
  before_heldout = older.config.copy_and_resolve_references()   # every listed field came later
  for section, field in migrate_records.ADDED_FIELDS:
    del before_heldout[section][field]
  records = {good.name: whole(good.config), older.name: whole(before_heldout),
             bad.name: '0' * 64}
  for name, digest in records.items():
    (tmp_path / 'points' / f'{name}.json').write_text(json.dumps(
        {'point': name, 'config_sha256': digest, 'metrics': {'nfe': 1}}))

  counts = migrate_records.migrate(str(tmp_path))
  assert counts == {'migrated': 2, 'already': 0, 'failed': 1, 'config_json': 'rewritten'}
  for point in (good, older):
    record = sweep._read_record(str(tmp_path / 'points'), point)   # pylint: disable=protected-access
    assert record['identity_sha256'] == point.digest and 'config_sha256' not in record
    assert record['metrics'] == {'nfe': 1}
  left = json.loads((tmp_path / 'points' / f'{bad.name}.json').read_text())
  assert left['config_sha256'] == '0' * 64          # not verified: left as it was
  assert json.loads((tmp_path / 'config.json').read_text()) == json.loads(
      config.to_json_best_effort())
  assert migrate_records.migrate(str(tmp_path))['already'] == 2   # a second run changes nothing
