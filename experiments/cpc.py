r"""CPC (van den Oord, Li & Vinyals 2018): contrastive prediction of future frames of raw audio.

Variants (the argument after the colon; combine with commas):

* default — ``wav:asterisk``: the Asterisk PBX's English prompts (one speaker, 8 kHz; Debian /
  Ubuntu ``sudo apt-get install -y asterisk-core-sounds-en-wav``), the isolated words of its
  ``digits``, ``letters`` and ``phonetic`` folders (136 training / 46 test clips, cut or padded
  to 1 s), labelled by that folder::

    python main.py --config=experiments/cpc.py --workdir=/tmp/cpc

* ``data=wav:tones`` — six classes of synthetic sounds (tones, chirps up/down, tremolo, noise
  bursts, buzz; 270 / 90 clips) written once into ``~/ssljax_data``: runs anywhere.
* ``data=wav`` with ``--config.input.data.path=FOLDER`` — your own folder of .wav files (labels
  from the sub-folders, or ``--config.input.data.label_from=file``; see ``ssljax.data.audio``),
  at ``--config.input.data.sample_rate`` / ``seconds``.
* ``steps=<n>`` — the run length.
* ``runlocal`` — a few steps of a narrow encoder (tests, laptops).

The recipe: the paper's encoder (kernels 10, 8, 4, 4, 4, strides 5, 4, 2, 2, 2: one frame per
160 samples, 48 valid frames in a 1 s clip at 8 kHz) at 128 channels (paper: 512) with a
LayerNorm per frame, a GRU of 128 (paper: 256), K = 6 future steps (paper: 12), W_k starting at
zero, negatives from every valid frame of the batch of 32 clips; Adam at lr 1e-3 (paper: 2e-4,
8 GPUs of 8 clips; 3e-3 collapsed on wav:tones) with no weight decay and no schedule, 300
steps. The representation is the GRU context averaged over the clip's valid frames. Evaluation:
an RBF SVM with C cross-validated on the training split (``svm_top1``), kNN (k=5) and the linear
probe, each also on the untrained network (``init_<metric>``).

The probe label is the prompt category (digit / letter / phonetic word), not the word: each word
is recorded once by one speaker, so a word can never be both in training and in test. The
majority class (digits) is 52.2% of the 46 test clips; one clip is 2.2 points.

Measured (this default, seed 0, ``python main.py --config=experiments/cpc.py`` on the working tree
over commit 6b82689, 2-core CPU: 139 s, 324 s while shared with other jobs; a second run gave the
same numbers): untrained -> trained SVM 52.2% -> 67.4%, kNN 45.7% -> 69.6%, linear probe 52.2% ->
60.9%, RankMe 15.6 -> 47.3 (the InfoNCE falls from log(1,400 frames) = 7.2 to 0.75: with 136 clips
CPC also learns to recognise the clips themselves). Single runs on 46 test clips move by several
points between seeds: a GPU sweep of this recipe (3 seeds, scikit-learn's 5-NN and logistic
regression on the same features) gave kNN 49% -> 54% after 200 steps and 59% after 400, logistic
regression 50% -> 60% and 54%.
``data=wav:tones`` (same sweep, 150 steps): kNN 50% -> 86%, logistic regression 44% -> 92%.

Published (the paper, LibriSpeech 100 h, linear probes on the context): speaker classification
97.4%, phone classification 64.6%. Not comparable: another corpus (LibriSpeech's 251 speakers
and 100 h, where this is one speaker and under 3 minutes), task (speaker / per-frame phone, where
this is a clip's word category) and scale (512 channels, 16 kHz, K = 12).
"""

import ml_collections as mlc

from experiments import common


def set_audio_data(c: mlc.ConfigDict, name: str, *, sample_rate: int = 8000,
                   seconds: float = 1.0) -> None:
  """``input.data`` for an audio folder (``ssljax.data.audio``) and the series evaluation."""
  common.set_series_data(c, name)
  c.input.data.normalize = "none"
  c.input.data.test_fraction = 0.25
  c.input.data.sample_rate = sample_rate
  c.input.data.seconds = seconds
  c.input.data.resample = True
  c.input.data.label_from = "folder"
  c.input.data.folders = ()
  c.eval.baselines = False  # An SVM and a 1-NN on 8,000 raw samples say little about audio.


def get_config(arg=None) -> mlc.ConfigDict:
  """Returns the CPC config for the variant in ``arg`` (see the module docstring)."""
  arg = common.parse_arg(arg, data="wav:asterisk", steps=300, runlocal=False)
  c = common.base_config()
  c.method = "cpc"
  set_audio_data(c, arg.data)
  c.total_steps = int(arg.steps)
  c.input.batch_size = 32
  c.encoder = common.encoder(dict(name="cpc", channels=128, kernels=(10, 8, 4, 4, 4),
                                  strides=(5, 4, 2, 2, 2), norm="layer", context_dim=128))
  c.cpc = mlc.ConfigDict(dict(steps=6, zero_init=True))
  c.optim = common.adamw(lr=1e-3, weight_decay=0.0, warmup_epochs=0.0, min_lr_ratio=1.0)
  if arg.runlocal:
    common.runlocal(c)
    c.encoder.channels = 16
    c.encoder.context_dim = 16
    c.cpc.steps = 3
  return c
