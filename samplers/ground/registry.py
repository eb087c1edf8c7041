"""One registration style for every pluggable concept: interpolants, backbones, rewards and
search methods.

A package's registry discovers its modules. A module that declares `NAME = Declaration(...)`
(or a tuple `NAMES` of named ones, for a module that implements several variants) contributes
them; a module without one is a helper. A declaration's name is its module's unless it gives
one. Nothing else in the project lists them: adding a concept is adding its file
(docs/extending.md).

A module of the user's own, outside these packages (a script's, or any importable module or
file), joins by `register(module or 'pkg.module' or 'path/to/file.py')`, which main.py's
`--import` flag calls before the config is read: its declarations are then listed, configured
and run like the project's own.

Declarations are frozen dataclasses with the fields `name`, `module` (both filled in here) and
optionally `order` (their place in listings; ties by name).
"""

import dataclasses
import importlib
import importlib.util
import os
import pkgutil
import sys
import types
from typing import Any, Mapping

# The packages that hold a registry (their REGISTRY), in the order a module's declarations are
# offered to them.
PACKAGES = ('samplers.interpolants', 'models', 'rewards', 'search')


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
      self._add(found, importlib.import_module(f'{self.package}.{info.name}'), info.name)
    return _sorted(found)

  def _add(self, found: dict, module, default_name: str) -> list:
    declared = getattr(module, self.attribute + 'S', None)
    if declared is None:
      declared = (getattr(module, self.attribute),) if hasattr(module, self.attribute) else ()
    added = []
    for decl in declared:
      decl = dataclasses.replace(decl, name=decl.name or default_name, module=module)
      if decl.name in found and found[decl.name].module is not module:
        raise ImportError(f'{self.what} {decl.name!r} is declared by both '
                          f'{found[decl.name].module.__name__} and {module.__name__}.')
      found[decl.name] = decl
      added.append(decl.name)
    return added

  def add_module(self, module) -> list:
    """Adds the declarations of a module outside the package (named after the module's last
    component unless they give a name); returns their names."""
    found = dict(self.entries)
    added = self._add(found, module, module.__name__.rsplit('.', 1)[-1])
    self._entries = _sorted(found)
    return added

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


def _sorted(found: dict) -> dict:
  order = lambda item: (getattr(item[1], 'order', 100), item[0])
  return dict(sorted(found.items(), key=order))


def register(spec) -> list:
  """Registers a module of the user's own: a module object, an importable dotted name
  ('my_project.my_reward', found on sys.path, the working directory included) or a Python file
  ('path/to/my_method.py'). Its declarations (METHOD, REWARD, BACKBONE, INTERPOLANT, or their
  plurals) join the project's registries. A declaration itself (a RewardKind, Method,
  BackboneKind or InterpolantKind with its `name` given) joins as a module of its own. Returns
  [(config field, name)] of what it added; ValueError (one line) when it cannot be imported or
  declares nothing."""
  if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
    spec = _declaration_module(spec)
  module = spec if isinstance(spec, types.ModuleType) else _import(str(spec))
  added = []
  for package in PACKAGES:
    reg = importlib.import_module(package).REGISTRY
    added += [(reg.what, name) for name in reg.add_module(module)]
  if not added:
    raise ValueError(f'{module.__name__} ({getattr(module, "__file__", spec)}) declares none of '
                     'METHOD, REWARD, BACKBONE or INTERPOLANT (or their plurals); see '
                     'docs/extending.md.')
  return added


def _declaration_module(decl) -> types.ModuleType:
  """A module holding one declaration under the attribute its registry reads."""
  if not getattr(decl, 'name', ''):
    raise ValueError(f'register({type(decl).__name__}(...)) needs name=...: it has no module '
                     'to be named after.')
  for package in PACKAGES:
    reg = importlib.import_module(package).REGISTRY
    if any(type(d) is type(decl) for d in reg.entries.values()):
      module = types.ModuleType(f'registered_{decl.name}')
      setattr(module, reg.attribute, decl)
      return module
  raise ValueError(f'{type(decl).__name__} is not a declaration of a method, reward, backbone '
                   'or interpolant.')


def _import(spec: str):
  if spec.endswith('.py'):
    path = os.path.abspath(spec)
    if not os.path.isfile(path):
      raise ValueError(f'--import {spec}: no such file.')
    name = os.path.splitext(os.path.basename(path))[0]
    if name in sys.modules and getattr(sys.modules[name], '__file__', None) == path:
      return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module
  if os.getcwd() not in sys.path:
    sys.path.append(os.getcwd())
  try:
    return importlib.import_module(spec)
  except ModuleNotFoundError as e:
    raise ValueError(f'--import {spec}: cannot import it ({e}); give a dotted name on the '
                     'Python path (PYTHONPATH, or the working directory) or a path to a .py '
                     'file.') from None
