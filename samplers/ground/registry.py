"""One registration style for every pluggable concept: interpolants, backbones, rewards and
search methods.

A package's registry discovers its modules. A module that declares `NAME = Declaration(...)`
(or a tuple `NAMES` of named ones, for a module that implements several variants) contributes
them; a module without one is a helper. A declaration's name is its module's unless it gives
one. Nothing else in the project lists them: adding a concept is adding its file
(docs/extending.md).

Declarations are frozen dataclasses with the fields `name`, `module` (both filled in here) and
optionally `order` (their place in listings; ties by name).
"""

import dataclasses
import importlib
import pkgutil
import sys
from typing import Any, Mapping


class Registry:
  """The declarations of one kind, discovered from a package on first use.

  package: the package to scan ('search'); attribute: the declaration's module attribute
  ('METHOD'; its plural 'METHODS' declares several); what: the config field that names one,
  for error messages ('search.method').
  """

  def __init__(self, package: str, attribute: str, what: str):
    self.package, self.attribute, self.what = package, attribute, what
    self._entries = None

  def _discover(self) -> dict:
    package = sys.modules.get(self.package) or importlib.import_module(self.package)
    found = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
      if info.name.startswith('_'):
        continue
      module = importlib.import_module(f'{self.package}.{info.name}')
      declared = getattr(module, self.attribute + 'S', None)
      if declared is None:
        declared = (getattr(module, self.attribute),) if hasattr(module, self.attribute) else ()
      for decl in declared:
        decl = dataclasses.replace(decl, name=decl.name or info.name, module=module)
        if decl.name in found:
          raise ImportError(f'{self.what} {decl.name!r} is declared by both '
                            f'{found[decl.name].module.__name__} and {module.__name__}.')
        found[decl.name] = decl
    order = lambda item: (getattr(item[1], 'order', 100), item[0])
    return dict(sorted(found.items(), key=order))

  @property
  def entries(self) -> dict:
    if self._entries is None:
      self._entries = self._discover()
    return self._entries

  def names(self) -> tuple:
    return tuple(self.entries)

  def get(self, name: str):
    if name not in self.entries:
      raise ValueError(f'Unknown {self.what} {name!r}; valid: {", ".join(self.entries)}.')
    return self.entries[name]

  def merged(self, field: str) -> Mapping[str, Any]:
    """The union of every declaration's mapping `field` (config fields with their defaults);
    two declarations may share a key only with the same default."""
    merged, owner = {}, {}
    for decl in self.entries.values():
      for key, default in getattr(decl, field).items():
        if key in merged and merged[key] != default:
          raise ImportError(f'{self.what} field {key!r} has default {merged[key]!r} in '
                            f'{owner[key]} and {default!r} in {decl.name}.')
        merged[key], owner[key] = default, decl.name
    return merged
