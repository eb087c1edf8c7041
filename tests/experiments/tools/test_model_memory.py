"""The per-device memory measurements of full-size text-to-image models
(experiments/tools/model_memory.py): the refusal that the text-to-image notebook applies, against the
committed results (from the device's own memory, whatever its kind), and (slow) one ahead-of-time compilation on abstract full-size FLUX shapes."""

import json
import os

import pytest

from experiments import search_memory
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
             backbone_weights_gib=22.15,
             error='RESOURCE_EXHAUSTED: the total memory required for HLO temporaries (37.29G) '
                   'exceeds available HBM (15.75G).')]


def test_a_device_that_cannot_hold_it_is_refused_with_the_measured_figure(tmp_path):
  source = _rows(tmp_path, ROWS)
  check = lambda *a: search_memory.check_fits(*a, source=source)
  assert check('flux', 2, 4, 16.0)['peak_gib'] == 13.5
  # 3 particles: judged by the next measured count up (8).
  with pytest.raises(ValueError, match=r'8 particles in flight on 4 device\(s\).*needs 30.0 '
                                       r'GiB per device .* has 15.0 GiB'):
    check('flux', 3, 4, 15.0)
  # A compile that ran out of a 16 GiB chip still gives what it needs: 22.15 GiB of weights
  # plus the 37.29 GiB of temporaries the compiler asked for. An 80 GiB GPU holds it (the
  # check used to refuse FLUX on every single device whatever its memory); 32 GiB does not.
  assert check('flux', 2, 1, 80.0)['devices'] == 1
  with pytest.raises(ValueError, match=r'needs at least 59.4 GiB per device .* has 32.0 GiB'):
    check('flux', 2, 1, 32.0)
  # 6 devices: judged by the 4-device measurement, the largest count not above it.
  assert check('flux', 2, 6, 16.0)['devices'] == 4
  with pytest.raises(ValueError, match=r'no measurement of flux on 0 device\(s\) or fewer'):
    check('flux', 2, 0, 80.0)


def test_a_measured_configuration_is_checked_against_the_device_before_its_weights_are_read(
    monkeypatch):
  """search and sample call check_measured before building the problem: FLUX.1 at 1024 from
  the hub is the measured row, judged against the first device's own memory (here: a GPU of
  80 GiB and one of 24 GiB, as memory_stats reports them); a tiny local folder is not."""
  from configs import flux as flux_config  # pylint: disable=g-import-not-at-top
  config = flux_config.get_config('rbf')
  monkeypatch.setattr(search_memory, 'device_memory', lambda: (80 * 2**30, 'H100 memory'))
  assert search_memory.check_measured(config.model, 2, 1)['model'] == 'flux_schnell_1024'
  monkeypatch.setattr(search_memory, 'device_memory', lambda: (24 * 2**30, 'L4 memory'))
  with pytest.raises(ValueError, match=r'flux_schnell_1024 .* needs at least 59.4 GiB per '
                                       r'device .* has 24.0 GiB'):
    search_memory.check_measured(config.model, 2, 1)
  assert search_memory.check_measured(flux_config.get_config('tiny,rbf').model, 2, 1) is None
  from configs import sd as sd_config  # pylint: disable=g-import-not-at-top
  assert search_memory.check_measured(sd_config.get_config('rbf').model, 2, 1)['peak_gib'] < 5
  from configs import sd3 as sd3_config  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=r'sd35_large_1024 .* needs at least 40.9 GiB per '
                                       r'device .* has 24.0 GiB'):
    search_memory.check_measured(sd3_config.get_config('rbf').model, 2, 1)
  assert search_memory.check_measured(sd3_config.get_config('medium').model, 2, 1)[
      'peak_gib'] == pytest.approx(13.80, abs=0.01)


# FLUX.1-schnell and SD3.5 at 2 and 8 particles on 1, 4 and 8 devices; Stable Diffusion at 2 particles
# (each of its compile-only TPU compilations took 15 min on 2 cores; docs/text_to_image.md).
MEASURED_ROWS = ([(model, p, m) for model in ('flux_schnell_1024', 'sd35_large_1024',
                                               'sd35_medium_1024')
                  for p in (2, 8) for m in model_memory.MESHES] +
                 [('sd21_base_512', 2, m) for m in model_memory.MESHES])


def test_the_committed_measurements_cover_the_documented_meshes():
  with open(search_memory.MEASURED) as f:
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


def test_the_committed_flops_are_what_the_lowered_programs_count():
  """results/memory/model_flops.json (docs/real_models.md's times) for Stable Diffusion
  2.1-base, recomputed from abstract shapes: parameters exactly, FLOPs within 0.1%."""
  from experiments.tools import model_flops  # pylint: disable=g-import-not-at-top
  with open(os.path.join(os.path.dirname(search_memory.MEASURED), 'model_flops.json')) as f:
    committed = {r['model']: r for r in json.load(f)}['sd21_base_512']
  row = model_flops.model_rows('sd21_base_512')
  for key, value in committed.items():
    if key.endswith('params'):
      assert row[key] == value, key
    elif key.endswith('tflops'):
      assert row[key] == pytest.approx(value, rel=1e-3), key
  minutes = model_flops.times(row)['A100 (80 GB)'][2]
  assert minutes == pytest.approx(500 * row['nfe_tflops'] / 312.0 / 0.4 / 60)
