"""Audio folders (``ssljax.data.audio``): the .wav reader, resampling, clips, labels, the split,
and one-line errors. Every file is written here with the standard library's ``wave``."""

import os
import wave

import numpy as np
import pytest

from ssljax.data import audio, series, sources
from ssljax.errors import ConfigError, DataError


def _write_pcm(path, values_nc, rate, width=2):
  """Integer PCM written by hand (little-endian, interleaved), not through ssljax's writer."""
  v = np.asarray(values_nc)
  v = v[:, None] if v.ndim == 1 else v
  if width == 1:
    raw = v.astype(np.uint8).tobytes()
  elif width == 3:
    u = v.astype(np.int64) & 0xFFFFFF
    raw = np.stack([u & 0xFF, (u >> 8) & 0xFF, (u >> 16) & 0xFF], -1).astype(np.uint8).tobytes()
  else:
    raw = v.astype({2: "<i2", 4: "<i4"}[width]).tobytes()
  with wave.open(str(path), "wb") as w:
    w.setnchannels(v.shape[1])
    w.setsampwidth(width)
    w.setframerate(rate)
    w.writeframes(raw)


def _tone(freq, rate, seconds, amp=0.5):
  t = np.arange(int(rate * seconds)) / rate
  return amp * np.sin(2 * np.pi * freq * t)


def _folder(root, classes=("a", "b", "c"), per_class=8, rate=8000, seconds=0.5):
  rng = np.random.default_rng(0)
  for i, c in enumerate(classes):
    os.makedirs(root / c, exist_ok=True)
    for j in range(per_class):
      x = _tone(200 * (i + 1), rate, seconds * rng.uniform(0.5, 1.0))
      _write_pcm(root / c / f"{c}_{j}.wav", np.round(x * 32767), rate)
  return root


def _cfg(path, **kw):
  return {"name": "wav", "path": str(path), "sample_rate": 8000, "seconds": 0.5, **kw}


def test_pcm_round_trip_mono_stereo_and_widths(tmp_path):
  rng = np.random.default_rng(1)
  x16 = rng.integers(-32768, 32768, size=(300, 2))
  _write_pcm(tmp_path / "s16.wav", x16, 11025)
  got, rate = audio.read_wav(str(tmp_path / "s16.wav"))
  assert rate == 11025 and got.dtype == np.float32 and got.shape == (300,)
  # Stereo -> the channels' mean, 16-bit values / 2^15.
  np.testing.assert_allclose(got, x16.mean(axis=1) / 32768.0, rtol=0, atol=1e-7)
  x8 = rng.integers(0, 256, size=200)
  _write_pcm(tmp_path / "u8.wav", x8, 8000, width=1)
  np.testing.assert_allclose(audio.read_wav(str(tmp_path / "u8.wav"))[0], (x8 - 128) / 128.0,
                             atol=1e-7)
  x24 = rng.integers(-(2**23), 2**23, size=200)
  _write_pcm(tmp_path / "s24.wav", x24, 8000, width=3)
  np.testing.assert_allclose(audio.read_wav(str(tmp_path / "s24.wav"))[0], x24 / 2.0**23,
                             atol=1e-7)
  # ssljax's own writer (used for the synthetic folder) reads back to within 16-bit rounding.
  y = rng.uniform(-0.9, 0.9, size=400)
  audio.write_wav(str(tmp_path / "w.wav"), y, 8000)
  np.testing.assert_allclose(audio.read_wav(str(tmp_path / "w.wav"))[0], y,
                             atol=0.5 / 32768 + 1e-7)


def _peak_hz(x, rate):
  spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
  return np.argmax(spectrum) * rate / len(x)


@pytest.mark.parametrize("rate_in", [16000, 44100, 22050])
def test_resampling_keeps_a_tones_frequency_and_duration(rate_in):
  x = _tone(440.0, rate_in, 1.0)
  y = audio.resample(x, rate_in, 8000)
  assert abs(len(y) - 8000) <= 1
  assert abs(_peak_hz(y, 8000) - 440.0) <= 1.0  # The FFT bin is 1 Hz wide at 1 s.
  # A tone above the new Nyquist frequency (4 kHz) is filtered out, not folded down to 8000 - f.
  high = audio.resample(_tone(5000.0, rate_in, 1.0), rate_in, 8000)
  assert np.sqrt(np.mean(high[200:-200] ** 2)) < 0.02


def test_folder_clips_are_resampled_cut_and_padded_with_their_length(tmp_path):
  os.makedirs(tmp_path / "x")
  long = _tone(300, 16000, 1.0)  # 1 s at 16 kHz: cut to 0.5 s at 8 kHz.
  short = _tone(300, 16000, 0.25)  # 0.25 s: padded.
  _write_pcm(tmp_path / "x" / "long.wav", np.round(long * 32767), 16000)
  _write_pcm(tmp_path / "x" / "short.wav", np.round(short * 32767), 16000)
  _write_pcm(tmp_path / "x" / "same.wav", np.round(_tone(300, 8000, 0.4) * 32767), 8000)
  sset = audio.load_audio(_cfg(tmp_path, test_fraction=0.1, labels=False), "train")
  sset_test = audio.load_audio(_cfg(tmp_path, test_fraction=0.1, labels=False), "test")
  assert sset.series.shape[1:] == (4000, 1) and sset.label is None
  lengths = sorted(sset.length.tolist() + sset_test.length.tolist())
  assert lengths == [2000, 3200, 4000]
  for s, n in zip(sset.series, sset.length, strict=True):
    assert np.all(s[n:] == 0.0) and np.abs(s[:n]).max() > 0.3
  whole = audio.resample(audio.read_wav(str(tmp_path / "x" / "long.wav"))[0], 16000, 8000)
  both = list(zip(sset.series, sset.length, strict=True)) + list(
      zip(sset_test.series, sset_test.length, strict=True))
  cut = [s for s, n in both if n == 4000][0]
  np.testing.assert_allclose(cut[:, 0], whole[:4000], atol=1e-6)  # The clip's first 0.5 s.


def test_labels_from_folders_and_a_stratified_deterministic_split(tmp_path):
  _folder(tmp_path, per_class=8)
  # A file at the top of the folder is left out when labels come from sub-folders.
  _write_pcm(tmp_path / "loose.wav", np.zeros(100), 8000)
  tr = audio.load_audio(_cfg(tmp_path), "train")
  te = audio.load_audio(_cfg(tmp_path), "test")
  assert tr.class_names == te.class_names == ("a", "b", "c")
  assert np.bincount(tr.label).tolist() == [6, 6, 6]  # round(0.25 * 8) = 2 of each class in test
  assert np.bincount(te.label).tolist() == [2, 2, 2]
  # The split depends on the file names only: the same on a second read of a copy elsewhere.
  other = tmp_path.parent / (tmp_path.name + "_copy")
  _folder(other, per_class=8)
  te2 = audio.load_audio(_cfg(other), "test")
  np.testing.assert_array_equal(te2.length, te.length)
  files = audio.split_files(str(tmp_path))
  names = lambda split: sorted(os.path.basename(p) for p, _ in files[split])  # noqa: E731
  assert not set(names("train")) & set(names("test")) and "loose.wav" not in names("train")
  # With labels off, every file is read, the loose one too.
  assert len(audio.load_audio(_cfg(tmp_path, labels=False), "train")) + len(
      audio.load_audio(_cfg(tmp_path, labels=False), "test")) == 25
  # ... and the split is the labelled one (the probes read labels: no probe test file may be
  # trained on by an unlabelled run); the loose file, which has no label, trains only.
  bare = audio.split_files(str(tmp_path), labelled=False)
  bare_names = lambda split: sorted(os.path.basename(p) for p, _ in bare[split])  # noqa: E731
  assert bare_names("test") == names("test")
  assert bare_names("train") == sorted(names("train") + ["loose.wav"])
  # folders= keeps some sub-folders only.
  kept = audio.load_audio(_cfg(tmp_path, folders=("a", "c")), "train")
  assert kept.class_names == ("a", "c")


def test_train_and_test_subfolders_and_labels_from_file_names(tmp_path):
  for split, n in (("train", 3), ("test", 2)):
    for c in ("yes", "no"):
      os.makedirs(tmp_path / split / "spk1", exist_ok=True)
      for j in range(n):
        _write_pcm(tmp_path / split / "spk1" / f"{c}_{j}.wav", np.ones(50) * 1000, 8000)
  tr = audio.load_audio(_cfg(tmp_path, label_from="file"), "train")
  te = audio.load_audio(_cfg(tmp_path, label_from="file"), "test")
  assert tr.class_names == ("no", "yes") and len(tr) == 6 and len(te) == 4
  assert np.bincount(te.label).tolist() == [2, 2]
  by_folder = audio.load_audio(_cfg(tmp_path), "test")
  assert by_folder.class_names == ("spk1",)


def test_the_source_is_a_mono_series_for_the_pipeline(tmp_path):
  _folder(tmp_path)
  cfg = _cfg(tmp_path)
  assert series.is_series("wav", cfg) and series.is_series("wav:asterisk")
  opened = sources.open_split(cfg, "train", key="input.data.train_split")
  spec = dict((k, (shape, dtype)) for k, shape, dtype in opened.features)
  assert spec["series"] == ((4000, 1), "float32") and spec["length"] == ((), "int32")
  assert opened.num_classes == 3


def test_series_normalisation_uses_the_valid_samples_only(tmp_path):
  _folder(tmp_path)
  tr = audio.load_audio(_cfg(tmp_path, normalize="series"), "train")
  for s, n in zip(tr.series[:, :, 0], tr.length, strict=True):
    assert abs(s[:n].mean()) < 1e-4 and abs(s[:n].std() - 1.0) < 1e-3 and np.all(s[n:] == 0)


def test_an_undecodable_file_is_named(tmp_path):
  _folder(tmp_path)
  bad = tmp_path / "b" / "broken.wav"
  bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really a wave file")
  with pytest.raises(DataError, match="cannot decode .*broken.wav") as e:
    audio.load_audio(_cfg(tmp_path, test_fraction=0.3), "train")
  assert "\n" not in str(e.value)
  with pytest.raises(DataError, match="cannot decode .*broken.wav"):
    audio.read_wav(str(bad))


def test_an_unexpected_sample_rate_without_resampling_is_named(tmp_path):
  _folder(tmp_path)
  _write_pcm(tmp_path / "a" / "odd.wav", np.zeros(1000), 16000)
  with pytest.raises(DataError, match=r"odd.wav: sample rate 16000 Hz.*resample=False"):
    audio.load_audio(_cfg(tmp_path, resample=False, test_fraction=0.35), "test")
  audio.load_audio(_cfg(tmp_path, resample=True, test_fraction=0.35), "test")  # Resampled: fine.


def test_missing_empty_and_flat_folders_and_bad_keys(tmp_path, monkeypatch):
  with pytest.raises(DataError, match="no such folder"):
    audio.load_audio(_cfg(tmp_path / "nope"), "train")
  with pytest.raises(DataError, match="holds no .wav files"):
    audio.load_audio(_cfg(tmp_path), "train")
  _write_pcm(tmp_path / "top.wav", np.zeros(10), 8000)
  with pytest.raises(DataError, match="label_from='file'"):
    audio.load_audio(_cfg(tmp_path), "train")
  monkeypatch.setitem(audio.PRESETS, "asterisk",
                      audio.Preset(path=str(tmp_path / "absent"), hint=audio.PRESETS[
                          "asterisk"].hint))
  with pytest.raises(DataError, match="apt-get install -y asterisk-core-sounds-en-wav"):
    audio.load_audio({"name": "wav:asterisk"}, "train")
  for key, value in (("sample_rate", 0), ("seconds", -1.0), ("label_from", "dir"),
                     ("normalize", "peak"), ("test_fraction", 1.0)):
    with pytest.raises(ConfigError, match=f"input.data.{key}"):
      audio.load_audio(_cfg(tmp_path, **{key: value}), "train")
  with pytest.raises(ConfigError, match="input.data.path"):
    audio.load_audio({"name": "wav"}, "train")
  with pytest.raises(ConfigError, match="unknown audio preset"):
    audio.load_audio({"name": "wav:nope"}, "train")


def test_the_synthetic_tones_preset_is_written_once_and_labelled(tmp_path):
  tr = audio.load_audio({"name": "wav:tones", "data_dir": str(tmp_path)}, "train")
  te = audio.load_audio({"name": "wav:tones", "data_dir": str(tmp_path)}, "test")
  assert tr.class_names == tuple(sorted(audio.TONE_CLASSES))
  assert len(tr) + len(te) == 60 * len(audio.TONE_CLASSES)
  assert tr.series.shape[1:] == (8000, 1) and 4000 < tr.length.min() and tr.length.max() <= 8000
  assert os.listdir(tmp_path) == [f"wav_tones_v{audio.TONES_VERSION}"]
