"""``python -m ssljax.embed --workdir=RUN`` (or ``--backbone=DIR``): look at the representations.

Extracts the backbone representations of the probe data's test split (``--split=train`` for the
train split; ``eval.data`` picks the data, as in ``ssljax.evaluate``), maps them to 2-D and writes
into ``<RUN or DIR>/embed/`` (or ``--out``):

* ``map_<split>_step<N>.png``: the 2-D map, one colour per label (grey when unlabelled);
* ``map_<split>_step<N>.npz``: the 2-D points, the labels and the row indices drawn;
* ``projector/``: ``tensors.tsv``, ``metadata.tsv`` and ``projector_config.pbtxt`` for
  TensorBoard's embedding projector (``tensorboard --logdir <RUN>/embed/projector``).

``--map=auto`` is UMAP when ``umap-learn`` is installed, else t-SNE (scikit-learn); ``pca`` on
request. More than ``--max_points`` rows (default 5000) are subsampled at random, with a note:
t-SNE and UMAP grow faster than linearly in the number of points.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
from absl import flags

from ssljax.tools import cli

MAPS = ("auto", "umap", "tsne", "pca")


def two_d(x: np.ndarray, kind: str, *, seed: int = 0) -> tuple[np.ndarray, str]:
  """``x`` [N, F] mapped to [N, 2] by ``kind`` (``auto``: UMAP if installed, else t-SNE)."""
  x = np.asarray(x, np.float32)
  if kind == "auto":
    kind = "umap" if importlib.util.find_spec("umap") is not None else "tsne"
  if len(x) < 3 or kind == "pca":
    from sklearn.decomposition import PCA

    n = min(2, *x.shape)
    points = PCA(n_components=n, random_state=seed).fit_transform(x)
    return np.pad(points, ((0, 0), (0, 2 - n))), "pca"
  if kind == "umap":
    import umap

    return umap.UMAP(n_components=2, random_state=seed).fit_transform(x), "umap"
  from sklearn.manifold import TSNE

  perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
  return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
              ).fit_transform(x), "tsne"


def plot(points: np.ndarray, labels: np.ndarray | None, path: str, *, title: str) -> None:
  """A scatter of ``points`` coloured by ``labels`` (a legend up to 20 classes)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6.4, 6.0), dpi=120)
  size = max(2.0, 30.0 / np.sqrt(max(1, len(points) / 100)))
  if labels is None:
    ax.scatter(points[:, 0], points[:, 1], s=size, c="0.4", linewidths=0)
  else:
    classes = np.unique(labels)
    cmap = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    for i, c in enumerate(classes):
      keep = labels == c
      ax.scatter(points[keep, 0], points[keep, 1], s=size, color=cmap(i % cmap.N),
                 label=str(c), linewidths=0)
    if len(classes) <= 20:
      ax.legend(markerscale=2, fontsize=7, loc="best", title="label")
  ax.set_title(title, fontsize=9)
  ax.set_xticks([])
  ax.set_yticks([])
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def write_projector(folder: str, x: np.ndarray, labels: np.ndarray | None) -> None:
  """TensorBoard projector files: tensors, metadata and the config that links them."""
  os.makedirs(folder, exist_ok=True)
  np.savetxt(os.path.join(folder, "tensors.tsv"), np.asarray(x, np.float32), delimiter="\t",
             fmt="%.6g")
  # A one-column metadata file has no header line in the projector's format.
  lines = [str(v) for v in labels] if labels is not None else ["-"] * len(x)
  with open(os.path.join(folder, "metadata.tsv"), "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(os.path.join(folder, "projector_config.pbtxt"), "w") as f:
    f.write('embeddings {\n  tensor_name: "representation"\n  tensor_path: "tensors.tsv"\n'
            '  metadata_path: "metadata.tsv"\n}\n')


def run(argv) -> dict:
  """The command in process (``argv[0]`` is the program name); returns what was written."""
  from ssljax.errors import UserError
  from ssljax.tools import evaluate as evaluate_tool

  def define(fv):
    flags.DEFINE_enum("map", "auto", MAPS, "2-D map: auto (UMAP if installed, else t-SNE), "
                      "umap, tsne or pca.", flag_values=fv)
    flags.DEFINE_enum("split", "test", ("train", "test"), "Which probe split to draw.",
                      flag_values=fv)
    flags.DEFINE_integer("max_points", 5000, "Subsample to at most this many rows.",
                         flag_values=fv)
    flags.DEFINE_string("out", None, "Output folder (default: embed/ in the run folder).",
                        flag_values=fv)

  config, workdir, folder, step, fv = evaluate_tool.parse(argv, define)
  if fv.map == "umap" and importlib.util.find_spec("umap") is None:
    cli.fail("--map=umap needs umap-learn: pip install umap-learn (or use --map=tsne / pca)")
  if importlib.util.find_spec("matplotlib") is None:
    cli.fail("embed draws with matplotlib: pip install matplotlib")
  if fv.max_points < 2:
    cli.fail(f"--max_points={fv.max_points} must be at least 2")
  try:
    evaluator, state = evaluate_tool.prepare(config, workdir=workdir, backbone_dir=folder,
                                             step=step)
    cfg = evaluator.data_cfg
    split = cfg.train_split if fv.split == "train" else cfg.eval_split
    feats = evaluator.features(state, split)
  except UserError as e:
    cli.fail(str(e))
  x, labels = feats["representation"], feats.get("label")
  rows = np.arange(len(x))
  if len(x) > fv.max_points:
    rows = np.sort(np.random.default_rng(0).choice(len(x), fv.max_points, replace=False))
    print(f"note: {len(x)} rows in split {split!r}; drew {fv.max_points} at random "
          "(--max_points); the map's cost grows faster than the number of points")
    x = x[rows]
    labels = None if labels is None else labels[rows]
  at = int(state.step)
  out = fv.out or os.path.join(workdir or folder, "embed")
  os.makedirs(out, exist_ok=True)
  points, kind = two_d(x, fv.map)
  stem = os.path.join(out, f"map_{fv.split}_step{at}")
  shown = {"tsne": "t-SNE", "umap": "UMAP", "pca": "PCA"}[kind]
  title = (f"{evaluator.method.name} step {at}: {shown} of {len(x)} "
           f"{cfg.name} {split} representations ({x.shape[-1]}-d)")
  plot(points, labels, stem + ".png", title=title)
  np.savez(stem + ".npz", points=points, rows=rows,
           **({} if labels is None else {"labels": labels}))
  write_projector(os.path.join(out, "projector"), x, labels)
  written = {"png": stem + ".png", "points": stem + ".npz",
             "projector": os.path.join(out, "projector"), "map": kind, "rows": int(len(x))}
  print(f"wrote {json.dumps(written)}")
  return written


def main() -> None:
  run(sys.argv)


if __name__ == "__main__":
  main()
