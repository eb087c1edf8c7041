"""The one registration style (samplers/ground/registry.py), on throwaway packages."""

import dataclasses
import sys
import textwrap
import types
from typing import Any, Mapping, Optional

import pytest

from samplers.ground import registry


@dataclasses.dataclass(frozen=True)
class Kind:
  fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  order: int = 100
  name: str = ''
  module: Optional[types.ModuleType] = None


@pytest.fixture
def package(tmp_path, monkeypatch):
  """make(name, {module: source}) -> a Registry over a fresh package of those modules."""
  monkeypatch.syspath_prepend(str(tmp_path))
  sys.modules['registry_kinds'] = types.ModuleType('registry_kinds')
  sys.modules['registry_kinds'].Kind = Kind

  def make(name, modules):
    folder = tmp_path / name
    folder.mkdir()
    (folder / '__init__.py').write_text('')
    for module, source in modules.items():
      (folder / f'{module}.py').write_text('from registry_kinds import Kind\n'
                                           + textwrap.dedent(source))
    return registry.Registry(name, 'THING', 'thing.name')
  yield make
  for name in [m for m in sys.modules if m.startswith('pkg_') or m == 'registry_kinds']:
    del sys.modules[name]


def test_discovery_names_order_and_helpers(package):
  reg = package('pkg_ok', {
      'beta': 'THING = Kind(fields={"a": 1})',
      'alpha': 'THING = Kind(order=5)',
      'helper': 'X = 1',                                  # no declaration: a helper
      'pair': 'THINGS = (Kind(name="p1", order=1), Kind(name="p2", fields={"a": 1}))',
  })
  assert reg.names() == ('p1', 'alpha', 'beta', 'p2')   # by order, then name
  assert reg.get('beta').module.__name__ == 'pkg_ok.beta'
  assert dict(reg.merged('fields')) == {'a': 1}
  with pytest.raises(ValueError, match="Unknown thing.name 'gamma'; valid: p1, alpha, beta, p2"):
    reg.get('gamma')


def test_a_name_declared_twice_names_both_modules(package):
  reg = package('pkg_twice', {'one': 'THING = Kind(name="x")', 'two': 'THING = Kind(name="x")'})
  with pytest.raises(ImportError, match="'x' is declared by both pkg_twice.one and pkg_twice.two"):
    reg.names()


def test_a_field_with_two_defaults_names_both(package):
  reg = package('pkg_fields', {'one': 'THING = Kind(fields={"w": 1})',
                               'two': 'THING = Kind(fields={"w": 2})'})
  with pytest.raises(ImportError, match="field 'w' has default 1 in one and 2 in two"):
    reg.merged('fields')
