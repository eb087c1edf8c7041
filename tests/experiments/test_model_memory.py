"""The per-device memory measurements of full-size text-to-image models
(experiments/model_memory.py): the refusal that the text-to-image notebook applies, against the
committed results, and (slow) one ahead-of-time compilation on abstract full-size FLUX shapes."""

import json

import pytest

from experiments import model_memory


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
  with pytest.raises(ValueError, match='no measurement of flux on 2 devices'):
    model_memory.check_fits('flux', 2, 2, 80.0, source)


def test_the_committed_measurements_cover_the_documented_meshes():
  with open(model_memory.MEASURED) as f:
    rows = json.load(f)
  for model in model_memory.MODELS:
    for particles in model_memory.PARTICLES:
      for mesh in model_memory.MESHES:
        assert any(r['model'] == model and r['particles'] == particles and
                   r['mesh'] == list(mesh) for r in rows), (model, particles, mesh)


@pytest.mark.slow  # 30 s: compiles FLUX.1-schnell's full-size step for the CPU
def test_a_full_size_flux_step_compiles_on_abstract_shapes():
  row = model_memory.measure('flux_schnell_1024', 2, (1, 1))
  assert 22.0 < row['backbone_weights_gib'] < 22.5   # 11.9B bfloat16 parameters
  assert row['arguments_gib'] > row['backbone_weights_gib']
