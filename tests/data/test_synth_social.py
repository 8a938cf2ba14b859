"""The synthetic social recommendation set: seeded, the planted structure is there (communities in
the ties and the tastes, power-law popularity, friends sharing items), and it loads as the
interaction source ``synth-social`` with its social graph."""

import numpy as np
import pytest

from ssljax.data import interactions, synth_social
from ssljax.errors import ConfigError

SMALL = dict(synth_users=300, synth_items=400, synth_communities=6, synth_interactions=10,
             synth_friends=6, synth_seed=0)


def _gen(**changes):
  return synth_social.generate(*synth_social.sizes({**SMALL, **changes}))


def test_seeded_and_sized():
  a, b, c = _gen(), _gen(), _gen(synth_seed=1)
  np.testing.assert_array_equal(a.item, b.item)
  np.testing.assert_array_equal(a.follower, b.follower)
  assert len(a.item) != len(c.item) or not np.array_equal(a.item, c.item)
  assert set(a.user) == set(range(300)) and a.item.max() < 400
  counts = np.bincount(a.user)
  assert counts.min() >= synth_social.MIN_OWN
  # No duplicated (user, item) picks, no self-ties, no duplicated ties.
  assert len(np.unique(a.user * 400 + a.item)) == len(a.user)
  assert not np.any(a.follower == a.followee)
  assert len(np.unique(a.follower * 300 + a.followee)) == len(a.follower)


def test_planted_structure():
  d = _gen()
  chance = 1 / 6
  same_tie = np.mean(d.community[d.follower] == d.community[d.followee])
  assert same_tie > synth_social.HOMOPHILY - 0.05 > 3 * chance
  same_taste = np.mean(d.home[d.item] == d.community[d.user])
  assert same_taste > 0.6 > 3 * chance
  # Power law: the most popular tenth of the items holds far more than a tenth of the picks.
  pop = np.sort(np.bincount(d.item, minlength=400))[::-1]
  assert pop[:40].sum() / pop.sum() > 0.3
  # Friends share items: a followed user shares more items with its follower than a random user.
  sets = [set(d.item[d.user == u]) for u in range(300)]
  rng = np.random.default_rng(0)
  tie = np.mean([len(sets[a] & sets[b]) for a, b in zip(d.follower, d.followee, strict=True)])
  rand = np.mean([len(sets[a] & sets[rng.integers(300)]) for a in d.follower])
  assert tie > 1.5 * rand


def test_loads_as_an_interaction_source_with_its_social_graph():
  cfg = dict(name="synth-social", split="user_ratio", **SMALL)
  assert interactions.is_interactions("synth-social")
  data = interactions.load(cfg)
  d = _gen()
  assert data.num_users == 300 and data.num_items == len(np.unique(d.item))
  assert sum(len(data.split(s)[0]) for s in interactions.SPLIT_NAMES) == len(d.item)
  src, dst = data.social
  assert len(src) == len(d.follower)
  # Indices map back to the generated ties through the raw ids.
  got = set(zip(data.user_ids[src].astype(int), data.user_ids[dst].astype(int), strict=True))
  assert got == set(zip(d.follower, d.followee, strict=True))
  com = synth_social.communities(cfg, data.user_ids)
  np.testing.assert_array_equal(com, d.community[data.user_ids.astype(int)])
  # Another size is another data set (the settings key the cache).
  assert interactions.load({**cfg, "synth_users": 200}).num_users == 200
  # k-core filtering drops the ties of removed users.
  cored = interactions.load({**cfg, "k_core": 8})
  assert cored.num_users < 300 and cored.social[0].max() < cored.num_users


@pytest.mark.parametrize("key,value,match", [
    ("synth_users", 0, "synth_users=0 must be an integer >= 1"),
    ("synth_communities", 500, "synth_communities=500 must be at most"),
    ("synth_items", 5, "synth_items=5 must be > 5"),  # With synth_communities=2 below.
    ("synth_seed", 1.5, "synth_seed=1.5 must be an integer >= 0"),
])
def test_bad_sizes_are_one_line_errors(key, value, match):
  with pytest.raises(ConfigError, match=match):
    synth_social.sizes({**SMALL, "synth_communities": 2, key: value})
