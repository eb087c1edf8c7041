"""Every `python` block of the README and of docs/extending.md runs as written, in order, in one
namespace (the worked examples of adding a backbone, a reward and a search method), so the
documentation cannot rot."""

import os
import re

from tests.conftest import ROOT

PAGES = ('README.md', os.path.join('docs', 'extending.md'))


def test_documented_python_blocks_run():
  blocks = []
  for page in PAGES:
    with open(os.path.join(ROOT, page)) as f:
      blocks += [(page, b) for b in re.findall(r'```python\n(.*?)```', f.read(), re.S)]
  assert len(blocks) >= 3
  namespace = {}
  for i, (page, block) in enumerate(blocks):
    exec(compile(block, f'{page} python block {i}', 'exec'), namespace)  # pylint: disable=exec-used
