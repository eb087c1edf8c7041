"""Text-to-image prompt suites shipped with the project (experiments/data/prompts/, with their
sources and licences in SOURCES.md): GenEval's 553 prompts with their object specifications,
and PartiPrompts' 1,632 prompts with their categories.

  suite('geneval')                       -> [Prompt], every prompt
  suite('geneval', tags=('counting',))   -> the counting prompts
  suite('parti', categories=('Animals',), limit=10)

A Prompt is (text, group, spec): GenEval's `tag` and its metadata dict (the `include` /
`exclude` clauses its judge checks, rewards/geneval.py), or Parti's `Category` with its
`Challenge` and `Note`. `write_prompt_file` writes one suite's texts for `config.prompt_file`:

  python -m experiments.data.prompt_suites geneval runs/counting.txt --groups=counting --limit=8
"""

import csv
import json
import os
import sys
from typing import NamedTuple, Optional, Sequence

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'prompts')
SUITES = ('geneval', 'parti')


class Prompt(NamedTuple):
  text: str
  group: str          # GenEval's tag, Parti's category
  spec: dict          # GenEval's metadata line; Parti's {'challenge', 'note'}


def _geneval() -> list:
  out = []
  with open(os.path.join(FOLDER, 'geneval_metadata.jsonl')) as f:
    for line in f:
      if line.strip():
        spec = json.loads(line)
        out.append(Prompt(spec['prompt'], spec['tag'], spec))
  return out


def _parti() -> list:
  with open(os.path.join(FOLDER, 'parti_prompts.tsv'), newline='') as f:
    return [Prompt(row['Prompt'], row['Category'],
                   {'challenge': row['Challenge'], 'note': row['Note']})
            for row in csv.DictReader(f, delimiter='\t')]


def suite(name: str, groups: Optional[Sequence[str]] = None, limit: int = 0) -> list:
  """The prompts of suite `name`, in the published order; `groups` keeps those of some tags
  (GenEval) or categories (Parti); `limit` > 0 keeps the first ones."""
  loaders = {'geneval': _geneval, 'parti': _parti}
  if name not in loaders:
    raise ValueError(f'unknown prompt suite {name!r}; valid: {", ".join(SUITES)}.')
  prompts = loaders[name]()
  if groups:
    known = sorted({p.group for p in prompts})
    unknown = sorted(set(groups) - set(known))
    if unknown:
      raise ValueError(f'prompt suite {name!r} has no group(s) {unknown}; valid: '
                       f'{", ".join(known)}.')
    prompts = [p for p in prompts if p.group in set(groups)]
  if limit < 0:
    raise ValueError(f'limit must be >= 0, got {limit}.')
  return prompts[:limit] if limit else prompts


def write_prompt_file(path: str, prompts: Sequence[Prompt]) -> str:
  """One prompt text per line (config.prompt_file); returns the path."""
  if any('\n' in p.text for p in prompts):
    raise ValueError('a prompt holds a line break; it cannot go into a prompt file.')
  with open(path, 'w') as f:
    f.write(''.join(p.text + '\n' for p in prompts))
  return path


def main(argv) -> None:
  args = [a for a in argv[1:] if not a.startswith('--')]
  options = dict(a[2:].split('=', 1) for a in argv[1:] if a.startswith('--') and '=' in a)
  if len(args) != 2:
    raise SystemExit(f'usage: python -m experiments.data.prompt_suites SUITE OUT.txt '
                     f'[--groups=A,B] [--limit=N]; suites: {", ".join(SUITES)}')
  try:
    prompts = suite(args[0], [g for g in options.get('groups', '').split(',') if g],
                    int(options.get('limit', 0)))
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  write_prompt_file(args[1], prompts)
  print(f'{len(prompts)} prompts of {args[0]} written to {args[1]}')


if __name__ == '__main__':
  main(sys.argv)
