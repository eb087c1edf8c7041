"""Checks the GenEval judge (rewards/scorers.py: geneval) end to end through a real reward
service, on tiny random models: torchvision's COCO Mask R-CNN with random weights, and a tiny
random CLIP folder in the transformers format (`python -m experiments.tools.random_weights DIR`
writes one as DIR/clip).

Not part of the test suite: it needs PyTorch, torchvision and transformers, which the project's
environment does not install (the rules themselves are tested by default, on synthetic
detections, in tests/rewards/test_geneval.py). The environment it ran in: Python 3.11 with
torch 2.13, torchvision 0.29.1, transformers 4.57.6 and the project's requirements:

  python tests/rewards/geneval_scorer_check.py CLIP_FOLDER

It
  1. serves `rewards.scorers:geneval` with the random detector (its weights from seed 0) and
     asks it, through the project's service client, about three GenEval prompts: a random
     detector finds nothing that satisfies them, so every verdict is 0;
  2. serves it again with a stand-in detector (this file's `standin`: fixed boxes, masks and
     scores of 0.95 for a potted plant, a couch, a bird left of it and a dining table), which
     exercises the masks, the colour classifier and the relations: a bird left of a couch and
     a couch are correct (1), a purple potted plant is whatever colour the random CLIP picks;
  3. checks that a prompt that is not GenEval's is refused in one line;
and exits 1 if a verdict is not as expected.
"""

import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMPTS = ['a photo of a bird left of a couch', 'a photo of a couch',
           'a photo of a purple potted plant']


def seeded(**kwargs):
  """rewards.scorers.geneval with the random detector's weights drawn from a fixed seed."""
  import torch  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, ROOT)
  from rewards import scorers  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  return scorers.geneval(**kwargs)


def standin(**kwargs):
  """rewards.scorers.geneval with torchvision's detector replaced by fixed detections."""
  import torch  # pylint: disable=g-import-not-at-top
  import torchvision  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, ROOT)
  from rewards import scorers  # pylint: disable=g-import-not-at-top
  weights = torchvision.models.detection.MaskRCNN_ResNet50_FPN_V2_Weights
  names = weights.COCO_V1.meta['categories']

  class Fixed(torch.nn.Module):
    def forward(self, images):
      h, w = images[0].shape[1:]
      masks = torch.zeros(4, 1, h, w)
      masks[:, :, 8:30, 8:30] = 1.0
      return [dict(boxes=torch.tensor([[4., 4., 40., 40.], [100., 110., 160., 150.],
                                       [0., 115., 50., 145.], [60., 100., 200., 160.]]),
                   labels=torch.tensor([names.index(n) for n in
                                        ('potted plant', 'couch', 'bird', 'dining table')]),
                   scores=torch.full((4,), 0.95), masks=masks)]

  def builder(**_):
    return Fixed()
  builder.__name__ = 'maskrcnn_resnet50_fpn_v2'
  torchvision.models.detection.maskrcnn_resnet50_fpn_v2 = builder
  torchvision.models.get_model_weights = lambda _: weights
  return scorers.geneval(**kwargs)


def main(clip_folder: str) -> int:
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (3, 160, 208, 3), dtype=np.uint8)
  kwargs = {'detector_weights': '', 'clip_model': clip_folder, 'device': 'cpu'}
  sys.path.insert(0, ROOT)
  from tests.rewards.served import serve_and_score  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    random = serve_and_score('tests.rewards.geneval_scorer_check:seeded', kwargs, images,
                             PROMPTS, tmp)
    print(f'random detector: {random.tolist()}')
    fixed = serve_and_score('tests.rewards.geneval_scorer_check:standin', kwargs, images,
                            PROMPTS, tmp)
    print(f'stand-in detector: {fixed.tolist()}')
  sys.path.insert(0, ROOT)
  from rewards import scorers  # pylint: disable=g-import-not-at-top
  try:
    scorers.geneval(**kwargs)(images[:1], ['a red cat'])
    refused = ''
  except ValueError as e:
    refused = str(e)
  print(f'not a GenEval prompt: {refused}')
  ok = (random.tolist() == [0.0, 0.0, 0.0] and fixed[:2].tolist() == [1.0, 1.0]
        and fixed[2] in (0.0, 1.0) and 'GenEval' in refused)
  print('ok' if ok else 'FAILED')
  return 0 if ok else 1


if __name__ == '__main__':
  sys.exit(main(sys.argv[1]))
