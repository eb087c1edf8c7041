"""Reads compiled HLO text: which collectives a program runs, and which of them sit inside a
loop (the body of a while, reached through any calls, fusions, or conditional branches)."""

import re

COLLECTIVES = ('all-gather', 'all-reduce', 'collective-permute', 'all-to-all', 'reduce-scatter')
_HEADER = re.compile(r'^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$')
_OP = re.compile(r'=\s*(\S+)\s+(' + '|'.join(COLLECTIVES) + r')(?:-start)?\(')
_CALLS = re.compile(r'(?:body|condition|to_apply|calls|true_computation|false_computation)'
                    r'=%?([\w.\-]+)')
_BRANCHES = re.compile(r'branch_computations=\{([^}]*)\}')


def computations(hlo: str) -> dict:
  """name -> list of instruction lines."""
  comps, current = {}, None
  for line in hlo.splitlines():
    header = _HEADER.match(line)
    if header and not line[:1].isspace():  # instructions are indented, headers are not
      current = header.group(1)
      comps[current] = []
    elif current is not None:
      if line.strip() == '}':
        current = None
      else:
        comps[current].append(line)
  return comps


def _callees(line: str) -> list:
  names = _CALLS.findall(line)
  for group in _BRANCHES.findall(line):
    names += [n.strip().lstrip('%') for n in group.split(',') if n.strip()]
  return names


def collectives(hlo: str, in_loops_only: bool = False) -> list:
  """[(kind, result shape)] of the collectives, optionally only those inside while bodies."""
  comps = computations(hlo)
  if in_loops_only:
    roots = [m for lines in comps.values() for line in lines if ' while(' in line
             for m in re.findall(r'body=%?([\w.\-]+)', line)]
    reached, stack = set(), list(roots)
    while stack:
      name = stack.pop()
      if name in reached or name not in comps:
        continue
      reached.add(name)
      for line in comps[name]:
        stack += _callees(line)
    names = reached
  else:
    names = comps.keys()
  found = []
  for name in names:
    for line in comps[name]:
      op = _OP.search(line)
      if op:
        found.append((op.group(2), op.group(1)))
  return found
