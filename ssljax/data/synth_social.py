"""A synthetic social recommendation data set (``input.data.name='synth-social'``), offline.

Social recommenders (SEPT, ``ssljax.methods.sept``) need a user-user graph next to the user-item
interactions, and no such data set ships in an installed package. This module plants one whose
structure a social method can use, from a seed and a few sizes:

* Users: ``synth_users`` users split evenly (at random) into ``synth_communities`` communities.
* Social ties (directed, follower -> followee): each user follows ``1 + Poisson(synth_friends -
  1)`` others, a member of its own community with probability :data:`HOMOPHILY` and any user
  otherwise; each tie is reciprocated with probability :data:`RECIPROCITY`. Within a community
  ties close triangles often (the friend view of SEPT keeps those).
* Items: ``synth_items`` items, each with a home community (an even random split) and a
  power-law popularity ``pop_i = rank_i^-ALPHA`` (ranks a random permutation, so every
  community has head and tail items).
* Interactions, in two rounds. Own taste: user ``u`` of community ``c`` picks ``max(MIN_OWN,
  Poisson(synth_interactions))`` distinct items, a share :data:`IN_COMMUNITY` of the probability
  on the items of home ``c`` and the rest elsewhere, each side proportional to popularity.
  Social influence: then it adopts ``round(ADOPTION * own)`` items drawn uniformly from what
  the users it follows picked in the first round (items it does not have yet), so friends share
  items beyond what the community alone predicts (SEPT's sharing view keeps those ties).

Records come out as ``(user_id, item_id, rating=1, timestamp)`` with ids ``"0" .. "U-1"`` and
``"0" .. "I-1"`` (an item nobody picked is absent, as from a file) and timestamps the order of
the picks (own taste first, then adoption). ``ssljax.data.interactions`` reads them as any other
source (min_rating, k_core, split) and the edges as ``Interactions.social``.

Config keys (``input.data``): ``synth_users`` (default 800), ``synth_items`` (1000),
``synth_communities`` (16), ``synth_interactions`` (mean own picks per user, 10),
``synth_friends`` (mean ties a user starts, 8), ``synth_seed`` (0).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from ssljax.errors import ConfigError

DEFAULTS = {"synth_users": 800, "synth_items": 1000, "synth_communities": 16,
            "synth_interactions": 10, "synth_friends": 8, "synth_seed": 0}
HOMOPHILY = 0.85  # Share of the ties a user starts inside its own community.
RECIPROCITY = 0.5  # Probability that a tie is followed back.
ALPHA = 1.0  # Popularity exponent: pop_i = rank^-ALPHA (Zipf).
IN_COMMUNITY = 0.8  # Share of a user's own-taste probability on its community's items.
MIN_OWN = 5  # Own picks at least: with RecBole's user_ratio rounding every user keeps 3 / 1 / 1.
ADOPTION = 0.4  # Adopted items per own pick.


@dataclasses.dataclass(frozen=True)
class SocialSet:
  """The generated data: ``user`` / ``item`` int [N] (picks in time order), ``follower`` /
  ``followee`` int [E] (directed ties, no duplicates or self-loops), ``community`` int [U] of
  each user and ``home`` int [I] of each item."""

  user: np.ndarray
  item: np.ndarray
  follower: np.ndarray
  followee: np.ndarray
  community: np.ndarray
  home: np.ndarray


def sizes(data_cfg) -> tuple[int, ...]:
  """The six settings of ``input.data`` (defaults :data:`DEFAULTS`), checked.

  Raises:
    ConfigError: a size that is not a positive integer, more communities than users or items,
      fewer items than :data:`MIN_OWN`.
  """
  values = []
  for key, default in DEFAULTS.items():
    value = data_cfg.get(key, default) if hasattr(data_cfg, "get") else default
    value = default if value is None else value
    low = 0 if key == "synth_seed" else 1
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
      raise ConfigError(f"input.data.{key}={value!r} must be an integer >= {low}")
    values.append(int(value))
  users, items, communities = values[:3]
  if communities > min(users, items):
    raise ConfigError(f"input.data.synth_communities={communities} must be at most synth_users="
                      f"{users} and synth_items={items}")
  if items < MIN_OWN + 1:
    raise ConfigError(f"input.data.synth_items={items} must be > {MIN_OWN} (each user picks at "
                      f"least {MIN_OWN} items)")
  return tuple(values)


@functools.lru_cache(maxsize=4)
def generate(users: int, items: int, communities: int, interactions: int, friends: int,
             seed: int) -> SocialSet:
  """The data set of these sizes (module docstring); the same arguments give the same data."""
  rng = np.random.default_rng(seed)
  community = rng.permutation(users) % communities
  home = rng.permutation(items) % communities
  popularity = (1.0 + rng.permutation(items)) ** -ALPHA
  members = [np.flatnonzero(community == c) for c in range(communities)]

  follower, followee = [], []
  for u in range(users):
    for _ in range(1 + rng.poisson(max(friends - 1, 0))):
      pool = members[community[u]] if rng.random() < HOMOPHILY else None
      v = int(rng.choice(pool)) if pool is not None else int(rng.integers(users))
      if v == u:
        continue
      follower.append(u)
      followee.append(v)
      if rng.random() < RECIPROCITY:
        follower.append(v)
        followee.append(u)
  code = np.unique(np.asarray(follower, np.int64) * users + np.asarray(followee, np.int64))
  follower, followee = code // users, code % users

  taste = []
  for c in range(communities):
    inside = np.where(home == c, popularity, 0.0)
    outside = np.where(home != c, popularity, 0.0)
    p = IN_COMMUNITY * inside / inside.sum()
    if outside.sum() > 0:
      p = p + (1.0 - IN_COMMUNITY) * outside / outside.sum()
    taste.append(p / p.sum())
  own = []
  for u in range(users):
    n = min(max(MIN_OWN, int(rng.poisson(interactions))), items - 1)
    own.append(rng.choice(items, size=n, replace=False, p=taste[community[u]]))
  starts = np.searchsorted(follower, np.arange(users + 1))
  pick_user, pick_item = [], []
  for u in range(users):
    pick_user.append(np.full(len(own[u]), u))
    pick_item.append(own[u])
  for u in range(users):
    followed = followee[starts[u]:starts[u + 1]]
    if not len(followed):
      continue
    pool = np.setdiff1d(np.concatenate([own[v] for v in followed]), own[u])
    n = min(len(pool), int(round(ADOPTION * len(own[u]))))
    if n:
      pick_user.append(np.full(n, u))
      pick_item.append(rng.choice(pool, size=n, replace=False))
  return SocialSet(user=np.concatenate(pick_user), item=np.concatenate(pick_item),
                   follower=follower, followee=followee, community=community, home=home)


def of_config(data_cfg) -> SocialSet:
  """The data set ``input.data`` describes (cached)."""
  return generate(*sizes(data_cfg))


def frame(data_cfg):
  """The interactions as a DataFrame of strings: ``user_id``, ``item_id``, ``rating`` (1) and
  ``timestamp`` (the pick's position), what ``interactions.read_records`` reads from a file."""
  import pandas as pd

  data = of_config(data_cfg)
  return pd.DataFrame({"user_id": data.user.astype(str), "item_id": data.item.astype(str),
                       "rating": np.ones(len(data.user)).astype(str),
                       "timestamp": np.arange(len(data.user)).astype(str)})


def social_edges(data_cfg, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The directed ties as indices of ``user_ids`` (the kept users' raw ids), sorted by (user,
  friend); ties of users filtered out of the interactions (min_rating, k_core) are dropped."""
  data = of_config(data_cfg)
  position = np.full(len(data.community), -1, np.int64)
  kept = user_ids.astype(np.int64)
  position[kept] = np.arange(len(kept))
  src, dst = position[data.follower], position[data.followee]
  keep = (src >= 0) & (dst >= 0)
  code = np.unique(src[keep] * len(kept) + dst[keep])
  return (code // len(kept)).astype(np.int32), (code % len(kept)).astype(np.int32)


def communities(data_cfg, user_ids: np.ndarray) -> np.ndarray:
  """The planted community (int [U]) of each kept user, in ``user_ids`` order."""
  return of_config(data_cfg).community[user_ids.astype(np.int64)]
