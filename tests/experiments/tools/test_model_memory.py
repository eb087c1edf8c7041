"""The per-device memory measurements of full-size text-to-image models
(experiments/tools/model_memory.py): the refusal that the text-to-image notebook applies, against the
committed results, and (slow) one ahead-of-time compilation on abstract full-size FLUX shapes."""

import json

import pytest

from experiments.tools import model_memory


def _rows(tmp_path, rows):
  path = tmp_path / 'model_memory.json'
  path.write_text(json.dumps(rows))
  return str(path)


ROWS = [dict(model='flux', particles=2, devices=4, mesh=[1, 4], peak_gib=13.5,
             platform='v5e:2x4'),
        dict(model='flux', particles=8, devices=4, mesh=[1, 4], peak_gib=30.0,
             platform='v5e:2x4'),
        dict(model='flux', particles=2, devices=1, mesh=[1, 1], platform='v5e:2x4',
             error='Ran out of memory in memory space hbm. Used 40.1G of 15.75G hbm.')]


def test_a_device_that_cannot_hold_it_is_refused_with_the_measured_figure(tmp_path):
  source = _rows(tmp_path, ROWS)
  assert model_memory.check_fits('flux', 2, 4, 16.0, source)['peak_gib'] == 13.5
  # 3 particles: judged by the next measured count up (8).
  with pytest.raises(ValueError, match=r'8 particles in flight on 4 device\(s\).*needs 30.0 '
                                       r'GiB per device .* have 15.0 GiB each'):
    model_memory.check_fits('flux', 3, 4, 15.0, source)
  with pytest.raises(ValueError, match='does not fit a v5e:2x4 chip .*Used 40.1G'):
    model_memory.check_fits('flux', 2, 1, 80.0, source)
  # 6 devices: judged by the 4-device measurement, the largest count not above it.
  assert model_memory.check_fits('flux', 2, 6, 16.0, source)['devices'] == 4
  with pytest.raises(ValueError, match=r'no measurement of flux on 0 device\(s\) or fewer'):
    model_memory.check_fits('flux', 2, 0, 80.0, source)


# FLUX.1-schnell at 2 and 8 particles on 1, 4 and 8 devices; Stable Diffusion at 2 particles
# (each of its compile-only TPU compilations took 15 min on 2 cores; docs/text_to_image.md).
MEASURED_ROWS = ([('flux_schnell_1024', p, m) for p in (2, 8) for m in model_memory.MESHES] +
                 [('sd21_base_512', 2, m) for m in model_memory.MESHES])


def test_the_committed_measurements_cover_the_documented_meshes():
  with open(model_memory.MEASURED) as f:
    rows = json.load(f)
  for model, particles, mesh in MEASURED_ROWS:
    match = [r for r in rows if r['model'] == model and r['particles'] == particles and
             r['mesh'] == list(mesh)]
    assert len(match) == 1, (model, particles, mesh)
    row = match[0]
    assert ('error' in row) != ('peak_gib' in row)
    if 'peak_gib' in row:   # what the arguments hold is at least the backbone's weight shard
      assert row['arguments_gib'] >= row['backbone_weights_gib'] and row['peak_gib'] > 0


@pytest.mark.slow  # 30 s: compiles FLUX.1-schnell's full-size step for the CPU
def test_a_full_size_flux_step_compiles_on_abstract_shapes():
  row = model_memory.measure('flux_schnell_1024', 2, (1, 1))
  assert 22.0 < row['backbone_weights_gib'] < 22.5   # 11.9B bfloat16 parameters
  assert row['arguments_gib'] > row['backbone_weights_gib']
