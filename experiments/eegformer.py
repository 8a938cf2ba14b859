r"""EEGFormer (Chen et al., arXiv 2401.10278): vector-quantised reconstruction of each channel's
FFT-amplitude patches by a channel-independent transformer.

Variants (the argument after the colon; combine with commas):

* default — ``uea:BasicMotions`` (6-channel accelerometer/gyroscope, 40 training / 40 test series
  of 100 timestamps, 4 classes; ships inside aeon, so offline)::

    python main.py --config=experiments/eegformer.py --workdir=/tmp/eegformer

* ``data=<name>`` — ``uea:JapaneseVowels`` (12 channels, lengths 7-29; one FFT per series,
  patches of 4, stride 2 on its 15 bins; it does not learn, see below), any other UCR/UEA set,
  or your own recordings: EEG as an ``npz`` with
  ``series`` float [N, T, C] (or ``train_series`` / ``test_series``), optional ``labels`` and
  ``lengths``, or a ``.ts`` file::

    python main.py --config=experiments/eegformer.py:data=npz \
      --config.input.data.path=/data/tuab_12s_250hz.npz --config.eegformer.window=250 \
      --config.eegformer.patch=126 --config.eegformer.stride=126 --workdir=/tmp/eegformer_eeg

  The paper's preprocessing (secondary sources): resample to 250 Hz and cut 12-s windows
  (T = 3000) before writing the file. ``window=250`` takes one FFT per second (12 patches of 126
  bins per channel, as the BasicMotions default); ``window=0`` one FFT over the whole 12 s (1501
  bins; e.g. ``patch=stride=50``, 30 patches), the reading closer to the secondary sources. Split
  by patient, not by window (the spec's pitfall 4).
* ``steps=<n>`` — the run length.
* ``runlocal`` — a few steps of a narrow, shallow model (tests, laptops).

The recipe. Paper-described [secondary]: per-channel FFT amplitudes, instance-normalised; patches
with a learned position embedding; a transformer encoder shared by the channels and run on each
alone; a codebook with the nearest-code straight-through quantiser; a 3-layer transformer
decoder; loss = patch MSE + codebook + 0.25 x commitment; hidden width 128. Our choices
[unverified, config fields]: on BasicMotions (10 Hz) one FFT per 1-s window (``window=10``,
Hann taper, ``log(|X| / 10 + 1e-3)``), each window's 6 bins one patch (P = S = 6, 10 patches per
channel); K = 64 codes; a 4-block encoder (the paper's sizes use 6-12); the EMA codebook with
data-based init and dead-code re-seeding (``ssljax/methods/eegformer.py``); no masking
(``mask_ratio=0``, the spec's advice: with 0.4-0.5 the kNN ended 2.5-27.5 points lower than
without, on one FFT over the whole series and on 1-s windows alike, one seed each at 200 steps);
AdamW lr 1e-3, weight decay 0.05, batch 16, 300 steps. Evaluation: the mean of the encoder's
output over channels and patches (before quantisation), [B, 128], to the RBF SVM
(``svm_top1``), kNN (k=5) and the linear probe.

Measured (this default, seed 0, 2-core CPU shared with other jobs, 138 s, at commit 6b82689 plus
the EEGFormer files): SVM 95.0% -> 97.5% (untrained encoder -> trained), kNN 90.0% -> 97.5%,
linear probe 97.5% -> 95.0%, RankMe 7.1 -> 7.5; 57 of 64 codes used in the last logged batch
(perplexity 47.5), masked-patch MSE 0.72 (step 20) -> 0.15. Raw-series baselines: SVM 92.5%,
Euclidean 1-NN 57.5%. ``steps=150`` (the learning test) over seeds 0/1/2: kNN 90.0 -> 97.5,
87.5 -> 95.0, 92.5 -> 97.5. One FFT over the whole series instead (``window=0``, P = 8, S = 4)
did not beat the untrained encoder (kNN 85.0% -> 82.5% after 200 steps). ``data=uea:
JapaneseVowels`` does not learn: SVM 39.7% -> 37.6%, kNN 30.3% -> 34.3%, against 97.8% for the
SVM on the raw series: its 7-29 samples of LPC coefficients give a handful of frequency bins and
the class lies in the coefficients' levels, which the instance normalisation removes.

Published: AUROC/AUPRC on TUAB, TUAR, TUSL, TUSZ and Neonate after pre-training on the 1.7 TB TUH
EEG corpus (e.g. TUAB AUROC 0.876 for EEGFormer-base, from a secondary copy of Table 1). None of
that is comparable here: no labelled EEG ships offline, and these are small motion/speech sensor
sets. The target on this data is the method's own initialisation (the trained encoder must beat
it), more than one code in use, and codes that predict the class.
"""

import ml_collections as mlc

from experiments import common

# FFT window, patch length and stride per data set. BasicMotions (10 Hz): 1-s windows, one patch
# per window's 6 bins (10 tokens per channel). JapaneseVowels (lengths 7-29): one FFT over each
# series' own length, 15 bins, patches of 4 with stride 2 (6 tokens).
FEATURES = {"uea:BasicMotions": (10, 6, 6), "uea:JapaneseVowels": (0, 4, 2)}


def get_config(arg=None) -> mlc.ConfigDict:
  """Returns the EEGFormer config for the variant in ``arg`` (see the module docstring)."""
  arg = common.parse_arg(arg, data="uea:BasicMotions", steps=300, runlocal=False)
  c = common.base_config()
  c.method = "eegformer"
  common.set_series_data(c, arg.data)
  c.total_steps = int(arg.steps)
  c.input.batch_size = 16
  c.encoder = common.encoder(dict(name="eegformer", width=128, depth=4, num_heads=4,
                                  mlp_dim=256))
  window, patch, stride = FEATURES.get(arg.data, (0, 8, 4))
  c.eegformer = mlc.ConfigDict(dict(
      # Input features: window=0 is one FFT over the whole series, W > 0 one FFT per consecutive
      # window of W samples (spectra concatenated); taper 'hann' / 'rect'; amplitude 'log'
      # (log(a + log_eps)) / 'linear'.
      window=window, taper="hann", amplitude="log", log_eps=1e-3,
      patch=patch, stride=stride,
      num_codes=64, beta=0.25,
      # 0: quantise the encoder output h (width D); d > 0: quantise a linear projection of h to d.
      code_dim=0,
      # 'ema': EMA codebook, data-based init, dead codes re-seeded; 'loss': the codebook term.
      codebook_update="ema", ema_decay=0.99, dead_threshold=1.0,
      mask_ratio=0.0,
      decoder_width=128, decoder_depth=3, decoder_heads=4, decoder_mlp_dim=256,
      pool="mean"))
  c.optim = common.adamw(lr=1e-3, weight_decay=0.05, warmup_epochs=0.0, min_lr_ratio=1.0)
  if arg.runlocal:
    common.runlocal(c)
    c.encoder.update(dict(width=16, depth=1, num_heads=2, mlp_dim=32))
    c.eegformer.update(dict(num_codes=16, decoder_width=16, decoder_depth=1, decoder_heads=2,
                            decoder_mlp_dim=32))
  return c
