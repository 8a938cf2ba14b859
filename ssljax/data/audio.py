"""Audio as data: folders of ``.wav`` files read as mono series ``[T, 1]`` (a sequence source).

A folder opens as the two splits of :class:`ssljax.data.series.SeriesSet`, so audio plugs into
everything that reads series (``SeriesRows`` and the other series views, the SVM / kNN / linear
probes, ``DatasetInfo.modality == 'series'``). Each file is decoded with the standard library's
``wave`` (integer PCM, 8/16/24/32 bit, any number of channels; the channels are averaged to mono
and scaled to [-1, 1)), resampled to ``input.data.sample_rate`` (polyphase,
``scipy.signal.resample_poly``), cut to its first ``input.data.seconds`` seconds or zero-padded
to them; ``length`` holds the samples that are data (the rest are zeros).

Names (``input.data.name``):

* ``wav`` with ``input.data.path=FOLDER``: your own folder.
* ``wav:asterisk``: the English prompts of the Asterisk PBX (Debian/Ubuntu package
  ``asterisk-core-sounds-en-wav``, one female speaker, 8 kHz 16-bit mono) in
  ``/usr/share/asterisk/sounds/en_US_f_Allison``. Its labels are the prompt category, the
  sub-folders ``digits`` (94 files), ``letters`` (61) and ``phonetic`` (27: alfa, bravo, ...).
  Each word is recorded once, by one speaker, so a word-identity probe has no test examples; the
  category is the only label a split can test. The 358 sentence prompts at the top of the folder
  and the small ``dictate`` (12), ``followme`` (6) and ``silence`` (10) folders are left out:
  the three kept classes are isolated words of similar duration (0.6-1.6 s), so a probe has to
  tell them apart by their sound, where sentences (median 2.2 s) would be told from words by how
  much of the clip is speech. Widen it with ``input.data.folders`` (or ``name='wav'`` and the
  path).
* ``wav:tones``: a synthetic folder written once by :func:`write_tones` into
  ``<input.data.data_dir or ~/ssljax_data>/wav_tones_v1`` (tests and machines without the
  package): six classes of one-second sounds (steady tones, rising and falling chirps, tremolo,
  noise bursts, harmonic buzz) with random pitch, phase, loudness, onset, length and noise.

Labels (``input.data.label_from``): ``'folder'`` (the first sub-folder under the root, or under
``train/`` / ``test/``; files directly in the root are left out), or ``'file'`` (the file name up
to its first ``_``: ``yes_003.wav`` -> ``yes``; a name without ``_`` is its own class). With
``input.data.labels=False`` every file is read, unlabelled. ``input.data.folders`` (a tuple of
sub-folder names; empty = all) keeps only those sub-folders.

Splits: ``train/`` and ``test/`` sub-folders when the root has both; otherwise a deterministic
stratified hold-out: in each class, the ``round(test_fraction * n)`` files (at least 1 and at most
``n - 1`` when ``n >= 2``; none of a class of one file) whose SHA-1 of the relative path is the
smallest go to test. It depends on the file names only (not on the listing order or the
machine), and adding a file moves at most one other.

``input.data.resample=False`` refuses a file whose rate is not ``sample_rate`` (instead of
resampling it). ``input.data.normalize``: ``'none'`` (the default), ``'series'`` (each clip
z-normalised over its own samples) or ``'channel'`` (the training split's mean and std over every
sample that is data).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import wave

import numpy as np

from ssljax.data import series as series_lib
from ssljax.errors import ConfigError, DataError

LABEL_FROM = ("folder", "file")
NORMALIZE = ("none", "series", "channel")
APT_INSTALL = "sudo apt-get install -y asterisk-core-sounds-en-wav"
TONES_VERSION = 1  # Bump when write_tones changes: the folder name carries it.


@dataclasses.dataclass(frozen=True)
class Preset:
  """A named folder: where it is, the sub-folders it keeps, and how to get it."""

  path: str
  folders: tuple[str, ...] = ()
  hint: str = ""


PRESETS = {
    "asterisk": Preset(path="/usr/share/asterisk/sounds/en_US_f_Allison",
                       folders=("digits", "letters", "phonetic"),
                       hint=f"install the Debian/Ubuntu package: {APT_INSTALL}"),
}
SYNTHETIC = ("tones",)


def is_audio(name: str) -> bool:
  """Whether ``input.data.name`` names an audio folder (``wav`` or ``wav:<preset>``)."""
  return name == "wav" or name.startswith("wav:")


# ------------------------------------------------------------------------------- .wav files


def read_wav(path: str) -> tuple[np.ndarray, int]:
  """Decodes an integer-PCM ``.wav`` file.

  Returns:
    ``(samples, sample_rate)``: float32 [N] mono (the channels' mean), in [-1, 1): 16-bit values
    divided by 2^15 (8-bit: ``(v - 128) / 2^7``, 24-bit: ``/ 2^23``, 32-bit: ``/ 2^31``).

  Raises:
    DataError: the file cannot be read or decoded (not RIFF/WAVE, a compressed or float format,
      no samples), naming it.
  """
  try:
    with wave.open(path, "rb") as w:
      channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
      raw = w.readframes(w.getnframes())
  except (wave.Error, EOFError, OSError, ValueError, KeyError) as e:
    reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
    raise DataError(f"cannot decode {path}: {reason} (ssljax reads integer-PCM .wav files; "
                    "convert or remove it, e.g. ffmpeg -i IN -acodec pcm_s16le OUT.wav)") from None
  if width not in (1, 2, 3, 4) or channels < 1 or rate < 1:
    raise DataError(f"cannot decode {path}: {width}-byte samples, {channels} channels, {rate} Hz "
                    "(ssljax reads 8/16/24/32-bit PCM)")
  frames = len(raw) // (width * channels)  # A truncated last frame is dropped.
  if frames == 0:
    raise DataError(f"cannot decode {path}: it holds no samples; remove it")
  raw = raw[:frames * width * channels]
  if width == 1:
    values = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
  elif width == 3:  # Little-endian 24-bit: widen to int32 with the sign in the top byte.
    b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
    values = ((b[:, 0] << 8 | b[:, 1] << 16 | b[:, 2] << 24) >> 8).astype(np.float32) / 2.0**23
  else:
    dtype = {2: "<i2", 4: "<i4"}[width]
    values = np.frombuffer(raw, dtype).astype(np.float32) / float(2 ** (8 * width - 1))
  return values.reshape(frames, channels).mean(axis=1, dtype=np.float32), int(rate)


def write_wav(path: str, samples: np.ndarray, sample_rate: int) -> None:
  """Writes float samples in [-1, 1) as 16-bit PCM (``round(x * 2^15)``, clipped; the inverse of
  :func:`read_wav`): [N] mono or [N, C] channels."""
  x = np.asarray(samples, np.float64)
  x = x[:, None] if x.ndim == 1 else x
  pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")
  with wave.open(path, "wb") as w:
    w.setnchannels(x.shape[1])
    w.setsampwidth(2)
    w.setframerate(int(sample_rate))
    w.writeframes(pcm.tobytes())


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
  """[N] at ``rate_in`` Hz -> about ``N * rate_out / rate_in`` samples at ``rate_out`` Hz.

  Polyphase: upsample by ``rate_out / g``, low-pass (a Kaiser-windowed FIR), downsample by
  ``rate_in / g`` with ``g = gcd(rate_in, rate_out)`` (``scipy.signal.resample_poly``).
  """
  if rate_in == rate_out:
    return np.asarray(x, np.float32)
  from scipy.signal import resample_poly

  g = math.gcd(int(rate_in), int(rate_out))
  return resample_poly(np.asarray(x, np.float64), rate_out // g, rate_in // g).astype(np.float32)


# ----------------------------------------------------------------------------- the folder


def _label_of_file(relpath: str) -> str:
  stem = os.path.splitext(os.path.basename(relpath))[0]
  return stem.split("_", 1)[0] if "_" in stem else stem


def _list(root: str, *, label_from: str, folders: tuple[str, ...], labelled: bool):
  """``[(relative path, label or None)]`` of the .wav files under ``root``, sorted."""
  found = []
  for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
    dirnames.sort()
    for f in sorted(filenames):
      if f.lower().endswith(".wav"):
        found.append(os.path.relpath(os.path.join(dirpath, f), root))
  if folders:
    found = [p for p in found if p.split(os.sep)[0] in folders]
  if not labelled:
    return [(p, None) for p in found]
  if label_from == "file":
    return [(p, _label_of_file(p)) for p in found]
  return [(p, p.split(os.sep)[0]) for p in found if os.sep in p]


def _test_share(paths: list[str], fraction: float) -> set[str]:
  """The stratum's files that go to test: the smallest SHA-1s of their relative paths."""
  n = len(paths)
  if n < 2:
    return set()
  n_test = min(n - 1, max(1, int(round(n * fraction))))
  ranked = sorted(paths, key=lambda p: hashlib.sha1(p.encode("utf-8")).hexdigest())
  return set(ranked[:n_test])


def split_files(root: str, *, label_from: str = "folder", folders: tuple[str, ...] = (),
                labelled: bool = True, test_fraction: float = 0.25, where: str = "input.data.path"
                ) -> dict[str, list[tuple[str, str | None]]]:
  """``{"train": [(path, label)], "test": [...]}`` of a folder (see the module docstring).

  Raises:
    DataError: the folder is missing, or holds no .wav file (in the kept sub-folders, or, with
      folder labels, in any sub-folder).
  """
  if not os.path.isdir(root):
    raise DataError(f"{where}={root!r}: no such folder; give a folder of .wav files")
  has_splits = all(os.path.isdir(os.path.join(root, s)) for s in ("train", "test"))
  out = {}
  for split in ("train", "test") if has_splits else ("all",):
    base = os.path.join(root, split) if has_splits else root
    files = _list(base, label_from=label_from, folders=folders, labelled=labelled)
    if not files:
      kept = f" in the sub-folders {list(folders)}" if folders else ""
      any_wav = _list(base, label_from="file", folders=(), labelled=False)
      if any_wav and not folders and label_from == "folder" and labelled:
        raise DataError(f"{where}={base!r}: every .wav sits at the top, but labels come from "
                        "sub-folders; set input.data.label_from='file' or input.data.labels=False")
      raise DataError(f"{where}={base!r}: holds no .wav files{kept}; give a folder of .wav files")
    out[split] = [(os.path.join(base, p), label) for p, label in files]
  if has_splits:
    return out
  # Strata by the label the path gives, whether or not this run reads labels: a run with
  # input.data.labels=False pre-trains on exactly the training files its probes (which read the
  # labels) train on. Files without such a label (at the top, under folder labels) train only.
  strata: dict[str, list[str]] = {}
  for path, _ in out["all"]:
    rel = os.path.relpath(path, root)
    if label_from == "file":
      key = _label_of_file(rel)
    else:
      key = rel.split(os.sep)[0] if os.sep in rel else None
    if key is not None:
      strata.setdefault(key, []).append(rel)
  test = set().union(*(_test_share(p, test_fraction) for p in strata.values()))
  return {"train": [(p, y) for p, y in out["all"] if os.path.relpath(p, root) not in test],
          "test": [(p, y) for p, y in out["all"] if os.path.relpath(p, root) in test]}


# ----------------------------------------------------------------------- synthetic folder


TONE_CLASSES = ("tone", "chirp_up", "chirp_down", "tremolo", "bursts", "buzz")


def synth_clip(kind: str, rng: np.random.Generator, *, sample_rate: int = 8000) -> np.ndarray:
  """One synthetic sound of class ``kind`` (:data:`TONE_CLASSES`), float [N] in [-1, 1].

  Random in every class: length 0.6-1.0 s, onset 0-0.1 s of silence, loudness 0.2-0.8, phase,
  white noise (SNR about 20 dB), and the pitch (150-1500 Hz; chirps sweep a factor 2-4).
  """
  n = int(rng.uniform(0.6, 1.0) * sample_rate)
  onset = int(rng.uniform(0.0, 0.1) * sample_rate)
  t = np.arange(n - onset) / sample_rate
  dur = t[-1] if len(t) > 1 else 1.0
  f0 = float(np.exp(rng.uniform(np.log(150.0), np.log(1500.0))))
  phase = rng.uniform(0, 2 * np.pi)
  if kind == "tone":
    y = np.sin(2 * np.pi * f0 * t + phase)
  elif kind in ("chirp_up", "chirp_down"):
    ratio = rng.uniform(2.0, 4.0)
    lo = min(f0, 1500.0 / ratio)
    f_start, f_end = (lo, lo * ratio) if kind == "chirp_up" else (lo * ratio, lo)
    # Exponential sweep: instantaneous frequency f_start * (f_end / f_start)^(t / dur).
    k = np.log(f_end / f_start) / dur
    y = np.sin(2 * np.pi * f_start * (np.exp(k * t) - 1.0) / k + phase)
  elif kind == "tremolo":
    rate = rng.uniform(4.0, 10.0)
    y = np.sin(2 * np.pi * f0 * t + phase) * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t))
  elif kind == "bursts":
    y = rng.normal(size=len(t)) * 0.5
    gate = np.sin(2 * np.pi * rng.uniform(3.0, 8.0) * t + phase) > rng.uniform(-0.3, 0.3)
    y = y * gate
  elif kind == "buzz":  # A band-limited sawtooth: the first harmonics of f0.
    f0 = min(f0, 600.0)
    harmonics = np.arange(1, max(2, int(sample_rate / 2 / f0)))
    y = np.sum(np.sin(2 * np.pi * f0 * harmonics[:, None] * t + phase) / harmonics[:, None],
               axis=0) * 0.6
  else:
    raise ValueError(f"unknown synthetic class {kind!r}; choose one of {TONE_CLASSES}")
  y = rng.uniform(0.2, 0.8) * y / max(np.abs(y).max(), 1e-6)
  y = y + rng.normal(size=len(t)) * 0.1 * np.sqrt(np.mean(y**2))
  return np.concatenate([np.zeros(onset), y]).clip(-1.0, 1.0)


def write_tones(folder: str, *, per_class: int = 60, sample_rate: int = 8000, seed: int = 0,
                classes: tuple[str, ...] = TONE_CLASSES) -> str:
  """Writes ``per_class`` synthetic clips of each class to ``folder/<class>/<class>_<i>.wav``
  (16-bit mono); the same files for the same arguments. Returns ``folder``."""
  rng = np.random.default_rng(seed)
  for kind in classes:
    os.makedirs(os.path.join(folder, kind), exist_ok=True)
    for i in range(per_class):
      write_wav(os.path.join(folder, kind, f"{kind}_{i:03d}.wav"),
                synth_clip(kind, rng, sample_rate=sample_rate), sample_rate)
  return folder


def _tones_folder(data_dir) -> str:
  root = os.path.expanduser(data_dir or "~/ssljax_data")
  folder = os.path.join(root, f"wav_tones_v{TONES_VERSION}")
  if os.path.isdir(folder):
    return folder
  # Written beside the final name and renamed: parallel test workers never see half a folder.
  tmp = f"{folder}.tmp{os.getpid()}"
  write_tones(tmp)
  try:
    os.rename(tmp, folder)
  except OSError:  # Another process renamed its copy first; keep that one.
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
  return folder


# --------------------------------------------------------------------------------- loading


def _check_config(data_cfg, name: str) -> dict:
  get = data_cfg.get
  rate = get("sample_rate", 8000)
  if isinstance(rate, bool) or not isinstance(rate, int) or rate < 1:
    raise ConfigError(f"input.data.sample_rate={rate!r} must be a positive integer (Hz)")
  seconds = get("seconds", 1.0)
  if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
    raise ConfigError(f"input.data.seconds={seconds!r} must be a number > 0 (clip length)")
  label_from = get("label_from", "folder")
  if label_from not in LABEL_FROM:
    raise ConfigError(f"input.data.label_from={label_from!r}: choose one of {LABEL_FROM}")
  normalize = get("normalize", "auto") or "auto"
  normalize = "none" if normalize == "auto" else normalize
  if normalize not in NORMALIZE:
    raise ConfigError(f"input.data.normalize={normalize!r}: audio takes one of {NORMALIZE} or "
                      "'auto' (= 'none')")
  fraction = float(get("test_fraction", 0.25))
  if not 0.0 < fraction < 1.0:
    raise ConfigError(f"input.data.test_fraction={fraction!r} must be in (0, 1)")
  folders = tuple(str(f) for f in (get("folders", ()) or ()))
  preset = name.split(":", 1)[1] if ":" in name else None
  if preset is None:
    path = get("path")
    if not path:
      raise ConfigError("input.data.name='wav' needs input.data.path (a folder of .wav files)")
    path = os.path.expanduser(str(path))
  elif preset in PRESETS:
    path, folders = PRESETS[preset].path, folders or PRESETS[preset].folders
    if not os.path.isdir(path):
      raise DataError(f"input.data.name={name!r} reads {path}, which is missing; "
                      f"{PRESETS[preset].hint}")
  elif preset in SYNTHETIC:
    path = _tones_folder(get("data_dir"))
  else:
    raise ConfigError(f"input.data.name={name!r}: unknown audio preset; choose wav:"
                      f"{', wav:'.join((*PRESETS, *SYNTHETIC))} or name='wav' with a path")
  return dict(path=path, sample_rate=int(rate), seconds=float(seconds), label_from=label_from,
              normalize=normalize, test_fraction=fraction, folders=folders,
              resample=bool(get("resample", True)), labelled=bool(get("labels", True)))


def _clip(path: str, *, sample_rate: int, resample_on: bool, total: int):
  x, rate = read_wav(path)
  if rate != sample_rate:
    if not resample_on:
      raise DataError(f"{path}: sample rate {rate} Hz, but input.data.sample_rate={sample_rate} "
                      "and input.data.resample=False; set input.data.resample=True or "
                      f"input.data.sample_rate={rate}")
    x = resample(x, rate, sample_rate)
  n = min(len(x), total)
  out = np.zeros((total, 1), np.float32)
  out[:n, 0] = x[:n]
  return out, n


@functools.lru_cache(maxsize=8)
def _load_both(path, sample_rate, seconds, label_from, normalize, test_fraction, folders,
               resample_on, labelled) -> dict[str, series_lib.SeriesSet]:
  files = split_files(path, label_from=label_from, folders=folders, labelled=labelled,
                      test_fraction=test_fraction)
  total = max(1, int(round(seconds * sample_rate)))
  parts = {}
  for split, items in files.items():
    clips = [_clip(p, sample_rate=sample_rate, resample_on=resample_on, total=total)
             for p, _ in items]
    x = np.stack([c for c, _ in clips]) if clips else np.zeros((0, total, 1), np.float32)
    parts[split] = (x, np.asarray([n for _, n in clips], np.int32), [y for _, y in items])
  valid = lambda x, n: np.arange(total)[None, :] < n[:, None]  # noqa: E731
  if normalize == "series":
    for x, n, _ in parts.values():
      m = valid(x, n)
      mean = np.sum(x[..., 0] * m, axis=1) / np.maximum(n, 1)
      std = np.sqrt(np.sum(((x[..., 0] - mean[:, None]) * m) ** 2, axis=1) / np.maximum(n, 1))
      x[..., 0] = np.where(m, (x[..., 0] - mean[:, None]) / np.where(std > 0, std, 1.0)[:, None],
                           0.0)
  elif normalize == "channel":
    x, n, _ = parts["train"]
    data = x[..., 0][valid(x, n)]
    mean, std = float(data.mean()), float(data.std()) or 1.0
    for x, n, _ in parts.values():
      x[..., 0] = np.where(valid(x, n), (x[..., 0] - mean) / std, 0.0)
  classes: tuple[str, ...] = ()
  if labelled:
    classes = series_lib.training_classes(parts["train"][2])
  out = {}
  for split, (x, n, labels) in parts.items():
    label = None
    if classes:
      label, unknown = series_lib.label_codes(labels, classes)
      if unknown:
        raise DataError(f"{path}: class(es) {unknown[:5]} of the {split} split have no training "
                        "files; add some to train/ or drop them from test/")
    out[split] = series_lib.SeriesSet(x, n, label, classes)
  return out


def load_audio(data_cfg, split: str, *, key: str = "split") -> series_lib.SeriesSet:
  """Opens split ``'train'`` or ``'test'`` of the configured audio folder as series [N, T, 1].

  ``T = round(seconds * sample_rate)``; ``length`` [N] counts each clip's samples (the rest are
  zeros).

  Raises:
    ConfigError: a bad ``sample_rate``, ``seconds``, ``label_from``, ``normalize``,
      ``test_fraction``, split or preset name; ``wav`` without a ``path``.
    DataError: a missing or empty folder, a preset whose package is not installed (naming the
      apt-get command), a file that cannot be decoded or has another sample rate while
      ``resample=False`` (naming the file), test classes without training files.
  """
  name = str(data_cfg.get("name"))
  if split not in ("train", "test"):
    raise ConfigError(f"{key}={split!r}: audio folders have the splits 'train' and 'test'")
  cfg = _check_config(data_cfg, name)
  return _load_both(cfg["path"], cfg["sample_rate"], cfg["seconds"], cfg["label_from"],
                    cfg["normalize"], cfg["test_fraction"], cfg["folders"], cfg["resample"],
                    cfg["labelled"])[split]
