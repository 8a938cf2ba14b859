"""TimeX's synthetic sets (ssljax.data.synth_series): the documented class structure, ground truth
where the signal is, determinism, and the ``synth:`` data source."""

import ml_collections as mlc
import numpy as np
import pytest

from ssljax import data
from ssljax.data import synth_series as ss
from ssljax.errors import ConfigError

N = 200


def _runs(mask_t):
  """(start, length) of each run of True in a 1-d bool array."""
  padded = np.r_[False, mask_t, False].astype(int)
  edges = np.flatnonzero(np.diff(padded))
  return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


@pytest.mark.parametrize("name", sorted(ss.SHAPES))
def test_shapes_balance_and_determinism(name):
  a, b = ss.generate(name, N, seed=3), ss.generate(name, N, seed=3)
  t, c = ss.SHAPES[name]
  assert a.series.shape == (N, t, c) and a.series.dtype == np.float32
  assert a.salient.shape == (N, t, c) and a.salient.dtype == bool
  np.testing.assert_array_equal(np.bincount(a.label), [N // 4] * 4)
  np.testing.assert_array_equal(a.series, b.series)
  np.testing.assert_array_equal(a.salient, b.salient)
  assert not np.array_equal(a.series, ss.generate(name, N, seed=4).series)


def test_freqshapes_spikes_period_and_direction():
  s = ss.generate("FreqShapes", N, seed=0)
  for x, g, k in zip(s.series[..., 0], s.salient[..., 0], s.label, strict=True):
    runs = _runs(g)
    assert runs and all(length == 3 for _, length in runs)
    starts = np.array([a for a, _ in runs])
    period = 10 if k < 2 else 17
    # Consecutive spikes one period apart, and no room left for another after the last.
    assert np.all(np.diff(starts) == period)
    assert starts[-1] + 1 + period + 2 > 50
    centres = x[starts + 1]
    # Spike centres sit at +-2 plus N(0, 0.25) noise: the sign gives the shape (up for 1 and 3).
    assert np.all(np.sign(centres) == (1 if k % 2 else -1)), (k, centres)
  # Outside the spikes only noise (std 0.25).
  assert abs(np.std(s.series[~s.salient]) - 0.25) < 0.02


def test_seqcomb_uv_windows_and_slopes():
  s = ss.generate("SeqComb-UV", N, seed=0)
  for x, g, k in zip(s.series[..., 0], s.salient[..., 0], s.label, strict=True):
    runs = _runs(g)
    if k == 0:
      assert not runs
      continue
    # Two windows of 10-19 steps, the second after the first (they may touch).
    assert 1 <= len(runs) <= 2 and 20 <= g.sum() <= 38
    assert runs[0][0] < 100
    # The trend of each window: a least-squares slope (the sin term is bounded by 1).
    signs = []
    for start, length in (runs if len(runs) == 2 else []):
      seg = x[start:start + length]
      signs.append(np.sign(np.polyfit(np.arange(length), seg, 1)[0]))
    if len(signs) == 2:
      want = {1: [-1, -1], 2: [1, 1], 3: [1, -1]}[int(k)]
      assert signs == want, (k, signs)
  # The background outside the windows is NARMA(2) + N(0, 0.01): positive, below 1.
  background = s.series[~s.salient]
  assert 0.0 < background.mean() < 1.0


def test_narma2_recursion():
  # y_t = 0.3 y_{t-1} + 1.5 u_{t-2} u_t + 0.1 with u ~ U(0, 0.5): stationary mean
  # (0.1 + 1.5 E[u]^2) / 0.7 = (0.1 + 1.5 / 16) / 0.7.
  y = ss.narma2(np.random.default_rng(0), 400, 200)
  assert y.shape == (400, 200)
  assert abs(y[:, 50:].mean() - (0.1 + 1.5 / 16) / 0.7) < 0.01
  assert np.all(y > 0)


def test_lowvardetect_window_channel_and_level():
  s = ss.generate("LowVarDetect", N, seed=0)
  for x, g, k in zip(s.series, s.salient, s.label, strict=True):
    channel = 0 if k in (0, 1) else 1
    assert not g[:, 1 - channel].any()
    (start, length), = _runs(g[:, channel])
    assert 10 <= length <= 19 and 20 <= start < 160
    seg = x[start:start + length, channel]
    assert abs(seg.mean() - (-1.5 if k in (0, 2) else 1.5)) < 0.2 and seg.std() < 0.25


def test_scored_rows_skip_class0_where_documented():
  label = np.array([0, 1, 2, 3])
  np.testing.assert_array_equal(ss.scored_rows("synth:FreqShapes", label), [1, 1, 1, 1])
  np.testing.assert_array_equal(ss.scored_rows("synth:SeqComb-UV", label), [0, 1, 1, 1])
  np.testing.assert_array_equal(ss.scored_rows("LowVarDetect", label), [0, 1, 1, 1])


def test_unknown_name_is_a_config_error():
  with pytest.raises(ConfigError, match="synth:FreqShapes"):
    ss.canonical("synth:FreqShape")


def test_data_source_yields_the_generated_test_split():
  cfg = mlc.ConfigDict(dict(name="synth:FreqShapes", path=None, data_dir=None, download=False,
                            train_split="train", eval_split="test", labels=True, normalize="auto",
                            test_fraction=0.2))
  info = data.get_info(cfg)
  assert (info.num_train, info.num_eval, info.num_classes) == (5000, 1000, 4)
  assert info.element_spec["series"][0] == (50, 1)
  split = data.series.load_series(cfg, "test")
  want = ss.load_split("synth:FreqShapes", "test")
  np.testing.assert_array_equal(split.series, want.series)  # Not normalised, same order.
  np.testing.assert_array_equal(split.label, want.label)
