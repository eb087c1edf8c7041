import jax.numpy as jnp
import numpy as np
import pytest

import rewards
from configs import common


def _reward(**fields):
  return rewards.get_reward(common.reward_config(**fields), 2)


def test_values():
  x = jnp.array([[1.0, 2.0], [-1.0, 0.5], [0.0, 0.0]])
  np.testing.assert_allclose(_reward(name='linear', weights=(2.0, -1.0), bias=0.5)(x),
                             [0.5, -2.0, 0.5])
  np.testing.assert_allclose(_reward(name='gaussian', center=(1.0, 2.0), width=2.0)(x),
                             [0.0, -(4 + 2.25) / 8, -5 / 8])
  np.testing.assert_allclose(_reward(name='quadratic')(x), [-2.5, -0.625, 0.0])


def test_mode_weighting_prefers_the_heaviest_mode():
  reward = _reward(name='mode_weighting')
  angles = 2 * np.pi * np.arange(8) / 8
  modes = 4.0 * np.stack([np.cos(angles), np.sin(angles)], -1)
  r = np.asarray(reward(jnp.asarray(modes)))
  assert r.shape == (8,)
  np.testing.assert_allclose(np.diff(r), 1.5, rtol=1e-4)  # log w_i = 1.5 i at each mode centre
  assert float(reward(jnp.zeros((1, 2)))[0]) < r.min()


def test_bad_rewards():
  with pytest.raises(ValueError, match='valid: linear, gaussian, quadratic, mode_weighting'):
    _reward(name='clipscore')  # a typo of clip_score
  with pytest.raises(ValueError, match='reward.weights has 3 entries but the data has dimension 2'):
    _reward(name='linear', weights=(1.0, 2.0, 3.0))


def test_heldout_entries_are_parsed_and_refused_by_name():
  from configs import common as config_common  # pylint: disable=g-import-not-at-top
  from rewards import heldout  # pylint: disable=g-import-not-at-top
  cfg = config_common.reward_config(name='pickscore', model='a', timeout=5.0)
  one = heldout.config_of('clip_score,model=b,timeout=7', cfg)
  assert (one.name, one.model, one.timeout, one.heldout) == ('clip_score', 'b', 7.0, ())
  assert heldout.entries('hpsv2;clip_score ;') == ('hpsv2', 'clip_score')
  with pytest.raises(ValueError, match="Unknown reward.name 'hps'"):
    heldout.config_of('hps', cfg)
  with pytest.raises(ValueError, match="'modle=b' is not FIELD=VALUE"):
    heldout.config_of('clip_score,modle=b', cfg)
  with pytest.raises(ValueError, match='timeout takes a float'):
    heldout.config_of('clip_score,timeout=soon', cfg)
  cfg.heldout = ('linear', 'linear,bias=1.0')
  with pytest.raises(ValueError, match="lists 'linear' twice"):
    heldout.build(cfg, (2,))
