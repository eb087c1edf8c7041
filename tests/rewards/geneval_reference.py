"""A line-by-line transliteration of GenEval's released rules (djghosh13/geneval,
evaluation/evaluate_images.py at af4902f: compute_iou, relative_position, evaluate and the
detection filtering of evaluate_image), with the detector and the CLIP colour classifier
replaced by arguments. Kept apart from rewards/geneval.py so that the tests compare the
project's rules with the reference's control flow."""

import numpy as np

COLORS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"]
THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_OBJECTS = 16
NMS_THRESHOLD = 1.0
POSITION_THRESHOLD = 0.1


def compute_iou(box_a, box_b):
  area_fn = lambda box: max(box[2] - box[0] + 1, 0) * max(box[3] - box[1] + 1, 0)
  i_area = area_fn([
      max(box_a[0], box_b[0]), max(box_a[1], box_b[1]),
      min(box_a[2], box_b[2]), min(box_a[3], box_b[3])
  ])
  u_area = area_fn(box_a) + area_fn(box_b) - i_area
  return i_area / u_area if u_area else 0


def relative_position(obj_a, obj_b):
  boxes = np.array([obj_a[0], obj_b[0]])[:, :4].reshape(2, 2, 2)
  center_a, center_b = boxes.mean(axis=-2)
  dim_a, dim_b = np.abs(np.diff(boxes, axis=-2))[..., 0, :]
  offset = center_a - center_b
  revised_offset = np.maximum(np.abs(offset) - POSITION_THRESHOLD * (dim_a + dim_b), 0) * np.sign(offset)
  if np.all(np.abs(revised_offset) < 1e-3):
    return set()
  dx, dy = revised_offset / np.linalg.norm(offset)
  relations = set()
  if dx < -0.5: relations.add("left of")
  if dx > 0.5: relations.add("right of")
  if dy < -0.5: relations.add("above")
  if dy > 0.5: relations.add("below")
  return relations


def evaluate(objects, metadata, color_classification):
  correct = True
  reason = []
  matched_groups = []
  for req in metadata.get('include', []):
    classname = req['class']
    matched = True
    found_objects = objects.get(classname, [])[:req['count']]
    if len(found_objects) < req['count']:
      correct = matched = False
      reason.append(f"expected {classname}>={req['count']}, found {len(found_objects)}")
    else:
      if 'color' in req:
        colors = color_classification(found_objects, classname)
        if colors.count(req['color']) < req['count']:
          correct = matched = False
          reason.append(
              f"expected {req['color']} {classname}>={req['count']}, found " +
              f"{colors.count(req['color'])} {req['color']}; and " +
              ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors)
          )
      if 'position' in req and matched:
        expected_rel, target_group = req['position']
        if matched_groups[target_group] is None:
          correct = matched = False
          reason.append(f"no target for {classname} to be {expected_rel}")
        else:
          for obj in found_objects:
            for target_obj in matched_groups[target_group]:
              true_rels = relative_position(obj, target_obj)
              if expected_rel not in true_rels:
                correct = matched = False
                reason.append(
                    f"expected {classname} {expected_rel} target, found " +
                    f"{' and '.join(true_rels)} target"
                )
                break
            if not matched:
              break
    if matched:
      matched_groups.append(found_objects)
    else:
      matched_groups.append(None)
  for req in metadata.get('exclude', []):
    classname = req['class']
    if len(objects.get(classname, [])) >= req['count']:
      correct = False
      reason.append(f"expected {classname}<{req['count']}, found {len(objects[classname])}")
  return correct, "\n".join(reason)


def detected_objects(bbox, classnames, tag):
  """evaluate_image's filtering: bbox[index] is [n, 5] (x0, y0, x1, y1, score) per class."""
  detected = {}
  confidence_threshold = THRESHOLD if tag != "counting" else COUNTING_THRESHOLD
  for index, classname in enumerate(classnames):
    ordering = np.argsort(bbox[index][:, 4])[::-1]
    ordering = ordering[bbox[index][ordering, 4] > confidence_threshold]
    ordering = ordering[:MAX_OBJECTS].tolist()
    detected[classname] = []
    while ordering:
      max_obj = ordering.pop(0)
      detected[classname].append((bbox[index][max_obj], None))
      ordering = [
          obj for obj in ordering
          if NMS_THRESHOLD == 1 or compute_iou(bbox[index][max_obj], bbox[index][obj]) < NMS_THRESHOLD
      ]
    if not detected[classname]:
      del detected[classname]
  return detected
