"""GenEval's rules (rewards/geneval.py) on synthetic detections: the released rules'
transliteration (tests/rewards/geneval_reference.py) gives the same verdicts and reasons on
every prompt's specification with random detections, and hand-made cases pin each rule."""

import numpy as np
import pytest

from experiments.data import prompt_suites
from rewards import geneval
from tests.rewards import geneval_reference as reference

SPECS = [p.spec for p in prompt_suites.suite('geneval')]


def _colour(box) -> str:
  """A stand-in for CLIP's colour classifier: a colour fixed by the box."""
  return geneval.COLORS[int(box[0] + 3 * box[1]) % len(geneval.COLORS)]


def _random_detections(rng, spec):
  """{class: [n, 5] (x0, y0, x1, y1, score)} over the spec's classes and one other; boxes on
  a small grid so that colours and relations vary and sometimes tie."""
  classes = [c['class'] for c in spec.get('include', []) + spec.get('exclude', [])] + ['person']
  out = {}
  for name in dict.fromkeys(classes):
    n = int(rng.integers(0, 6))
    x0, y0 = rng.integers(0, 40, (2, n)) * 8.0
    w, h = rng.integers(1, 20, (2, n)) * 8.0
    score = rng.choice([0.2, 0.35, 0.6, 0.85, 0.95, 0.99], n)
    out[name] = np.stack([x0, y0, x0 + w, y0 + h, score], axis=1) if n else np.zeros((0, 5))
  return out


def test_every_specification_agrees_with_the_released_rules():
  rng = np.random.default_rng(0)
  outcomes = []
  for spec in SPECS:
    for _ in range(6):
      raw = _random_detections(rng, spec)
      names = list(raw)
      ref_found = reference.detected_objects([raw[n] for n in names], names, spec['tag'])
      ref = reference.evaluate(ref_found, spec,
                               lambda objs, _: [_colour(o[0]) for o in objs])
      found = geneval.keep_detections(
          {n: [(row[:4], row[4]) for row in raw[n]] for n in names}, spec['tag'])
      ours = geneval.judge(spec, found, lambda _, objs: [_colour(o.box) for o in objs])
      assert {n: [tuple(o[0][:4]) for o in v] for n, v in ref_found.items()} == {
          n: [o.box for o in v] for n, v in found.items()}
      assert (ours[0], '\n'.join(ours[1])) == ref, (spec, raw)
      outcomes.append(ours[0])
  # The random detections exercise both verdicts on a real share of the 3,318 cases.
  assert 0.02 < np.mean(outcomes) < 0.9


def _spec(prompt):
  return next(s for s in SPECS if s['prompt'] == prompt)


def test_counting_needs_confident_objects_and_no_extra_one():
  spec = _spec('a photo of three buses')   # include 3 buses, exclude 4
  box = lambda i: ((10.0 * i, 0.0, 10.0 * i + 8, 8.0), 0.95)
  found = geneval.keep_detections({'bus': [box(i) for i in range(3)]}, 'counting')
  assert geneval.judge(spec, found, None) == (True, [])
  found = geneval.keep_detections({'bus': [box(i) for i in range(4)]}, 'counting')
  assert geneval.judge(spec, found, None) == (False, ['expected bus<4, found 4'])
  # 0.85 counts for the other tags, not for counting (0.9).
  found = geneval.keep_detections({'bus': [(b, 0.85) for b, _ in map(box, range(3))]},
                                  'counting')
  assert geneval.judge(spec, found, None) == (False, ['expected bus>=3, found 0'])


def test_position_and_colour():
  spec = _spec('a photo of a bird left of a couch')
  couch, left, above = (100, 100, 200, 160), (0, 110, 60, 150), (120, 0, 180, 40)
  found = geneval.keep_detections({'couch': [(couch, 0.9)], 'bird': [(left, 0.9)]}, 'position')
  assert geneval.judge(spec, found, None)[0]
  found = geneval.keep_detections({'couch': [(couch, 0.9)], 'bird': [(above, 0.9)]},
                                  'position')
  assert geneval.judge(spec, found, None) == (
      False, ['expected bird left of target, found above target'])
  assert geneval.relations((98, 0, 118, 10), (100, 0, 120, 10)) == set()   # too close
  assert geneval.relations((90, 0, 110, 10), (100, 0, 120, 10)) == {'left of'}
  spec = _spec('a photo of a purple potted plant')
  found = geneval.keep_detections({'potted plant': [((0, 0, 9, 9), 0.5)]}, 'colors')
  assert geneval.judge(spec, found, lambda name, objs: ['purple'])[0]
  assert geneval.judge(spec, found, lambda name, objs: ['green']) == (
      False, ['expected purple potted plant>=1, found 0 purple; and 1 green'])


def test_success_rates_average_over_tags():
  rates = geneval.success_rates([('counting', True), ('counting', False), ('colors', True)])
  assert rates == {'counting': 0.5, 'colors': 1.0, 'overall': 0.75}


def test_prompt_suites_are_the_published_ones():
  assert len(SPECS) == 553 and len({s['prompt'] for s in SPECS}) == 553
  assert [len(prompt_suites.suite('geneval', [t])) for t in (
      'single_object', 'two_object', 'counting', 'colors', 'position', 'color_attr')] == [
          80, 99, 80, 94, 100, 100]
  parti = prompt_suites.suite('parti')
  assert len(parti) == 1632 and len({p.group for p in parti}) == 12
  assert len(prompt_suites.suite('parti', ['Animals'], limit=5)) == 5
  with pytest.raises(ValueError, match="no group"):
    prompt_suites.suite('geneval', ['colour'])
  with pytest.raises(ValueError, match='unknown prompt suite'):
    prompt_suites.suite('drawbench')


def test_a_suite_becomes_a_prompt_file_a_run_reads(tmp_path):
  import ml_collections  # pylint: disable=g-import-not-at-top
  from models import diffusers_folder  # pylint: disable=g-import-not-at-top
  prompts = prompt_suites.suite('geneval', ['position'], limit=4)
  path = prompt_suites.write_prompt_file(str(tmp_path / 'p.txt'), prompts)
  config = ml_collections.ConfigDict(dict(prompt='', prompt_file=path))
  assert diffusers_folder.read_prompts(config) == [p.text for p in prompts]
