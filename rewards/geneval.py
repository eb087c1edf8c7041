"""GenEval's rules (Ghosh et al. 2023, as its released evaluate_images.py applies them), on any
object detector's output: a prompt's specification (experiments/data/prompts/
geneval_metadata.jsonl: `tag`, `include` and `exclude` clauses) against the objects found in
one image. NumPy only; the detector and the colour classifier are supplied by the caller (the
reward service's scorer, rewards/scorers.py: geneval, runs them outside this environment).

  found = keep_detections({class: [(box [x0, y0, x1, y1], score), ...]}, spec['tag'])
  correct, reasons = judge(spec, found, colours_of)

As released:
- a detection counts when its score exceeds 0.3 (0.9 for the `counting` prompts); at most 16
  per class, most confident first; overlapping boxes are all kept (its NMS threshold is 1);
- every `include` clause must hold (AND) and no `exclude` clause may (OR): a class is present
  with at least `count` objects; with `color`, at least `count` of its `count` most confident
  objects are classified as that colour; with `position` (relation, index of an earlier
  clause), each of them stands in that relation to each object that clause matched, and a
  clause whose own match failed leaves nothing to be relative to;
- relations compare box centres after shrinking the offset by 0.1 of the two boxes' summed
  sizes on each axis: "left of" / "right of" / "above" / "below" where that axis carries more
  than half of the (unshrunk) offset's direction; y grows downwards, as in image coordinates.
"""

from typing import Callable, NamedTuple, Optional

import numpy as np

THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_OBJECTS = 16
NMS_THRESHOLD = 1.0
POSITION_THRESHOLD = 0.1
COLORS = ('red', 'orange', 'yellow', 'green', 'blue', 'purple', 'pink', 'brown', 'black',
          'white')
RELATIONS = ('left of', 'right of', 'above', 'below')


class Detection(NamedTuple):
  box: tuple           # (x0, y0, x1, y1), pixels
  score: float
  mask: Optional[np.ndarray] = None   # [H, W] bool, where the detector gives one


def iou(a, b) -> float:
  """Intersection over union of two boxes, with GenEval's inclusive pixel areas (+1)."""
  area = lambda x0, y0, x1, y1: max(x1 - x0 + 1, 0) * max(y1 - y0 + 1, 0)
  inter = area(max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
  union = area(*a[:4]) + area(*b[:4]) - inter
  return inter / union if union else 0.0


def keep_detections(raw: dict, tag: str, threshold: float = THRESHOLD,
                    counting_threshold: float = COUNTING_THRESHOLD,
                    max_objects: int = MAX_OBJECTS, nms: float = NMS_THRESHOLD) -> dict:
  """{class: [Detection], most confident first} of the detections that count, from a
  detector's {class: [(box, score[, mask])]}; classes with none are left out."""
  cut = counting_threshold if tag == 'counting' else threshold
  out = {}
  for name, items in raw.items():
    items = [Detection(tuple(float(v) for v in it[0][:4]), float(it[1]),
                       it[2] if len(it) > 2 else None) for it in items]
    # Most confident first, equal scores in the order numpy's reversed argsort gives them (as
    # the reference ranks them).
    order = np.argsort(np.asarray([d.score for d in items], np.float64))[::-1]
    ranked = [items[i] for i in order if items[i].score > cut][:max_objects]
    kept = []
    while ranked:
      best = ranked.pop(0)
      kept.append(best)
      if nms < 1:
        ranked = [d for d in ranked if iou(best.box, d.box) < nms]
    if kept:
      out[name] = kept
  return out


def relations(a, b, threshold: float = POSITION_THRESHOLD) -> set:
  """Where box a stands relative to box b: a subset of RELATIONS (empty when the boxes'
  centres are closer than `threshold` of their summed sizes on both axes)."""
  a, b = np.asarray(a[:4], np.float64), np.asarray(b[:4], np.float64)
  centre = lambda box: (box[:2] + box[2:]) / 2
  size = lambda box: np.abs(box[2:] - box[:2])
  offset = centre(a) - centre(b)
  shrunk = np.maximum(np.abs(offset) - threshold * (size(a) + size(b)), 0) * np.sign(offset)
  if np.all(np.abs(shrunk) < 1e-3):
    return set()
  dx, dy = shrunk / np.linalg.norm(offset)
  found = set()
  if dx < -0.5:
    found.add('left of')
  if dx > 0.5:
    found.add('right of')
  if dy < -0.5:
    found.add('above')
  if dy > 0.5:
    found.add('below')
  return found


def judge(spec: dict, found: dict, colours_of: Callable, threshold: float = POSITION_THRESHOLD):
  """(correct, [reasons]) of one image: spec a GenEval metadata dict, found keep_detections'
  output, colours_of(class name, [Detection]) -> a colour name per detection (GenEval: CLIP
  ViT-L/14 zero-shot over COLORS on each object's masked crop)."""
  reasons, matches = [], []
  for clause in spec.get('include', []):
    name, count = clause['class'], clause['count']
    objects = found.get(name, [])[:count]
    ok = len(objects) >= count
    if not ok:
      reasons.append(f'expected {name}>={count}, found {len(objects)}')
    if ok and 'color' in clause:
      colours = list(colours_of(name, objects))
      hits = colours.count(clause['color'])
      if hits < count:
        ok = False
        reasons.append(f"expected {clause['color']} {name}>={count}, found {hits} "
                       f"{clause['color']}; and " + ', '.join(
                           f'{colours.count(c)} {c}' for c in COLORS if c in colours))
    if ok and 'position' in clause:
      relation, target = clause['position']
      targets = matches[target]
      if targets is None:
        ok = False
        reasons.append(f'no target for {name} to be {relation}')
      else:
        ok, reason = _placed(name, relation, objects, targets, threshold)
        if not ok:
          reasons.append(reason)
    matches.append(objects if ok else None)
  for clause in spec.get('exclude', []):
    present = found.get(clause['class'], [])
    if len(present) >= clause['count']:
      reasons.append(f"expected {clause['class']}<{clause['count']}, found {len(present)}")
  return not reasons, reasons


def _placed(name, relation, objects, targets, threshold):
  """Every object in `relation` to every target; else the first failure's reason."""
  for obj in objects:
    for target in targets:
      found = relations(obj.box, target.box, threshold)
      if relation not in found:
        return False, (f'expected {name} {relation} target, found '
                       f"{' and '.join(found)} target")
  return True, ''


def success_rates(results) -> dict:
  """GenEval's summary of [(tag, correct)]: the share correct per tag and their mean over the
  tags (its 'overall score')."""
  by_tag = {}
  for tag, correct in results:
    by_tag.setdefault(tag, []).append(bool(correct))
  rates = {tag: float(np.mean(v)) for tag, v in by_tag.items()}
  rates['overall'] = float(np.mean(list(rates.values()))) if rates else float('nan')
  return rates
