"""The notebooks' install step (the standard library only: it runs before anything is
installed), for a Colab runtime as it is today (Python 3.12, its own numpy, scipy, matplotlib
and jax) or any other kernel.

It installs, from requirements.txt, only what the project needs and the kernel lacks:
- the test tooling (pytest, papermill, ipykernel) never: the notebooks do not use it, and
  installing ipykernel into a live kernel can break it;
- the scientific stack the runtime already has (numpy, scipy, matplotlib, scikit-learn, tqdm,
  absl-py) is left as it is, whatever its version; pinned only where missing;
- everything else at its pin where missing or different (jax, flax, optax, orbax, ...), with
  the accelerator's jaxlib (jax[tpu] or jax[cuda12] at the same version).
If pip changed a package whose modules the kernel had already imported, the running kernel
holds the old code: on Colab the runtime restarts itself (run the notebook again from the top;
the second time nothing is installed), elsewhere it stops with that instruction.
"""

import glob
import importlib.metadata
import os
import shutil
import subprocess
import sys

TEST_ONLY = {'pytest', 'papermill', 'ipykernel'}
RUNTIME_OWN = {'numpy', 'scipy', 'matplotlib', 'scikit-learn', 'tqdm', 'absl-py'}


def pins(requirements: str) -> list:
  """[(name, version)] of the exact pins in a requirements file."""
  out = []
  with open(requirements) as f:
    for line in f:
      pin = line.split('#')[0].strip()
      if '==' in pin:
        name, version = pin.split('==')
        out.append((name.strip(), version.strip()))
  return out


def installed(name: str):
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def plan(requirements: str, version_of=installed) -> list:
  """The pins to install ('name==version'), by the rules above."""
  todo = []
  for name, version in pins(requirements):
    have = version_of(name)
    if name in TEST_ONLY or (name in RUNTIME_OWN and have is not None):
      continue
    if have != version:
      todo.append(f'{name}=={version}')
  return todo


def accelerator_extra(jax_version: str):
  if glob.glob('/dev/accel*') or os.environ.get('COLAB_TPU_ADDR') or os.environ.get('TPU_NAME'):
    return f'jax[tpu]=={jax_version}'
  if shutil.which('nvidia-smi'):
    return f'jax[cuda12]=={jax_version}'
  return None


def loaded_distributions() -> dict:
  """{distribution: version} of the installed distributions whose top-level modules this
  kernel has imported."""
  top = {name.split('.')[0] for name in list(sys.modules)}
  out = {}
  for module, dists in importlib.metadata.packages_distributions().items():
    if module in top:
      for dist in dists:
        out[dist] = installed(dist)
  return out


def stale(before: dict, version_of=installed) -> list:
  """The loaded distributions whose installed version pip changed."""
  return sorted(d for d, v in before.items() if version_of(d) != v)


def install(root: str) -> None:
  requirements = os.path.join(root, 'requirements.txt')
  todo = plan(requirements)
  if not todo:
    print('requirements: everything needed is installed.')
    return
  before = loaded_distributions()
  print('installing:', ' '.join(todo))
  subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', *todo], check=True)
  jax_pin = dict(pins(requirements)).get('jax')
  extra = accelerator_extra(jax_pin) if jax_pin and any(p.startswith('jax') for p in todo) else None
  if extra:
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', extra], check=True)
  changed = stale(before)
  if not changed:
    return
  message = (f'{", ".join(changed)} changed under the running kernel: restart it and run the '
             'notebook again from the top (nothing will be installed the second time).')
  if 'google.colab' in sys.modules:
    print(message.replace('restart it', 'restarting the runtime now'), flush=True)
    os.kill(os.getpid(), 9)   # Colab restarts a runtime whose kernel exits
  raise SystemExit(message)
