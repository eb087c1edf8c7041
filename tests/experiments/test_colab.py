"""The Colab notebooks run headless, every cell, with shrunken parameters (papermill), on the CPU:
the 2D quickstart, the digits notebook with tiny models, and the text-to-image notebook with the
tiny random Stable Diffusion and CLIP folders (the last two with `-m slow`)."""

import os

import nbformat
import papermill
import pytest

from tests.conftest import ROOT

COLAB = os.path.join(ROOT, 'experiments', 'colab')


def _execute(name, tmp_path, monkeypatch, **parameters):
  # Plumbing, not speed: the kernel inherits the environment.
  monkeypatch.setenv('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')
  out = str(tmp_path / f'{name}.ipynb')
  papermill.execute_notebook(os.path.join(COLAB, f'{name}.ipynb'), out,
                             parameters=dict(parameters, WORKDIR=str(tmp_path / 'work')),
                             cwd=COLAB, kernel_name='python3', progress_bar=False,
                             execution_timeout=600)
  return nbformat.read(out, as_version=4)


def _outputs(nb) -> str:
  texts = []
  for cell in nb.cells:
    for output in cell.get('outputs', []):
      texts.append(output.get('text', '') or str(output.get('data', {}).get('text/plain', '')))
  return '\n'.join(texts)


def _image_count(nb) -> int:
  return sum('image/png' in o.get('data', {}) for c in nb.cells for o in c.get('outputs', []))


@pytest.mark.parametrize('name', ['quickstart', 'digits', 'text_to_image'])
def test_notebooks_have_setup_then_parameters_cells(name):
  nb = nbformat.read(os.path.join(COLAB, f'{name}.ipynb'), as_version=4)
  code = [c for c in nb.cells if c.cell_type == 'code']
  assert 'find_project()' in code[0].source and 'install.py' in code[0].source
  assert code[1].metadata.get('tags') == ['parameters']
  assert 'PLATFORM = jax.devices()[0].platform' in code[2].source
  assert all(not c.get('outputs') for c in code)  # committed without outputs


def test_quickstart_notebook_runs_and_reruns_with_new_parameters(tmp_path, monkeypatch):
  nb = _execute('quickstart', tmp_path, monkeypatch, BUDGET=200, NUM_STEPS=10, NUM_PARTICLES=4)
  text = _outputs(nb)
  assert 'budget 200 NFE, 10 steps, 4 particles' in text
  assert 'requirements: everything needed is installed.' in text
  for method in ('bon', 'sop', 'smc', 'svdd', 'code', 'rbf', 'dts', 'dts_star'):
    assert f'| {method} |' in text
  assert _image_count(nb) == 2   # the samples over the target, the reward-NFE curves
  # The same notebook again with another budget, into the same WORKDIR: a run of its own
  # (the workdir refused a changed run when the notebook wrote every run to WORKDIR).
  nb = _execute('quickstart', tmp_path, monkeypatch, BUDGET=240, NUM_STEPS=10, NUM_PARTICLES=4)
  assert 'budget 240 NFE, 10 steps, 4 particles' in _outputs(nb)
  assert len([d for d in os.listdir(tmp_path / 'work') if d.startswith('compare-')]) == 2


def test_the_install_step_leaves_the_runtime_alone_and_restarts_when_it_must(tmp_path):
  """experiments/colab/install.py on a Colab-like runtime: the test tooling is never installed,
  the runtime's own numpy and matplotlib are kept whatever their version, what is missing or
  differs (jax, flax) is pinned; a restart is asked for exactly when a loaded package changed."""
  import runpy  # pylint: disable=g-import-not-at-top
  install = runpy.run_path(os.path.join(COLAB, 'install.py'))
  requirements = tmp_path / 'requirements.txt'
  requirements.write_text('# pins\njax==0.12.1\nflax==0.12.12\nnumpy==2.5.5\nmatplotlib==3.11.2\n'
                          'scikit-learn==1.9.1\npytest==9.2.0\nipykernel==7.4.0\n'
                          'papermill==2.7.0\n')
  colab = {'jax': '0.7.2', 'numpy': '2.0.2', 'matplotlib': '3.10.0', 'flax': None,
           'scikit-learn': None}
  assert install['plan'](str(requirements), colab.get) == [
      'jax==0.12.1', 'flax==0.12.12', 'scikit-learn==1.9.1']
  pinned = {'jax': '0.12.1', 'flax': '0.12.12', 'numpy': '2.0.2', 'matplotlib': '3.10.0',
            'scikit-learn': '1.9.1'}
  assert install['plan'](str(requirements), pinned.get) == []
  assert install['stale']({'jax': '0.7.2', 'numpy': '2.0.2'}, pinned.get) == ['jax']
  assert install['stale']({'numpy': '2.0.2'}, pinned.get) == []


@pytest.mark.slow  # ~50 s each on 2 cores; the quickstart notebook runs by default
def test_digits_notebook_runs(tmp_path, monkeypatch):
  nb = _execute('digits', tmp_path, monkeypatch, QUICK=True, TRAIN_STEPS=30,
                CLASSIFIER_STEPS=30, BUDGET=48, NUM_STEPS=6, NUM_PARTICLES=4, NUM_RUNS=2)
  text = _outputs(nb)
  for name in ('smc', 'rbf', 'dts', 'linear_sde', 'vp_sde'):
    assert f'{name}: reward' in text
  assert _image_count(nb) == 5


@pytest.mark.slow  # ~50 s each on 2 cores; the quickstart notebook runs by default
def test_text_to_image_notebook_runs(sd_tiny, tmp_path, monkeypatch):
  nb = _execute('text_to_image', tmp_path, monkeypatch,
                MODEL_PATH=os.path.join(sd_tiny, 'stable_diffusion'),
                CLIP_MODEL=os.path.join(sd_tiny, 'clip'), DTYPE='float32', GUIDANCE_SCALE=2.0,
                PROMPTS=['a red cat', 'a blue dog'], BUDGET=16, PARTICLES_PER_DEVICE=2,
                RBF_STEPS=4, DTS_STEPS=4, BRANCH_EVERY=2)
  text = _outputs(nb)
  assert "Mesh('particles': 1" in text   # the project's mesh over this machine's one device
  assert 'rbf: best reward' in text and 'dts_star: best reward' in text
  assert _image_count(nb) == 4   # two prompts x two methods


@pytest.mark.slow
@pytest.mark.parametrize('model, folder', [('flux', ('flux', 'schnell')),
                                           ('sd3', ('sd3', 'medium'))])
def test_text_to_image_notebook_runs_a_flow_backbone(sd_tiny, tmp_path, monkeypatch, model,
                                                     folder):
  """FLUX.1-schnell and SD3.5 (the medium folder: dual attention, guidance) through the
  notebook: their transformers over a (particles, model) mesh."""
  path = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'models', 'data', *folder)
  nb = _execute('text_to_image', tmp_path, monkeypatch, MODEL=model, MODEL_PATH=path,
                CLIP_MODEL=os.path.join(sd_tiny, 'clip'), DTYPE='float32', IMAGE_SIZE=16,
                GUIDANCE_SCALE=2.0 if model == 'sd3' else None,
                PROMPTS=['a red cat', 'a blue dog'], BUDGET=16, PARTICLES_PER_DEVICE=2,
                RBF_STEPS=4, DTS_STEPS=4, BRANCH_EVERY=2)
  text = _outputs(nb)
  assert "Mesh('particles': 1, 'model': 1" in text
  assert 'rbf: best reward' in text and 'dts_star: best reward' in text
  assert _image_count(nb) == 4
