"""Every `python` block of the README runs as written, in order, in one namespace (the worked
examples of adding a backbone, a reward and a search method), so the documentation cannot rot."""

import os
import re

from tests.conftest import ROOT


def test_readme_python_blocks_run():
  with open(os.path.join(ROOT, 'README.md')) as f:
    blocks = re.findall(r'```python\n(.*?)```', f.read(), re.S)
  assert len(blocks) >= 3
  namespace = {}
  for i, block in enumerate(blocks):
    exec(compile(block, f'README.md python block {i}', 'exec'), namespace)  # pylint: disable=exec-used
