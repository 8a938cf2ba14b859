r"""ResNet-50 Barlow Twins train step on a GPU: ssljax (JAX, bf16) beside PyTorch AMP, with MFU.

  bash benchmarks/gpu.sh                         # nvidia-smi -L, then this script with a timeout
  python benchmarks/gpu.py --batch_per_gpu=256 --steps=10 --repeats=5

What is measured (one compile, a few steps; about 3-5 minutes on one H100):

* **ssljax**: ``experiments/barlow.py:data=imagenet2012`` (ResNet-50, projector 8192-8192-8192,
  two asymmetric 224 px views) with ``compute_dtype=bfloat16`` and ``input.batch_size =
  batch_per_gpu x GPUs``, the jitted ``train_step`` on a synthetic uint8 batch of the shape the
  input pipeline yields (augmentation, forward/backward, LARS, method update, online probe). The
  median of ``--repeats`` timings of ``--steps`` steps, after compilation and ``--warmup`` steps.
* **PyTorch** (only where ``torch`` with CUDA imports): the same step in eager PyTorch with bf16
  autocast and channels_last: torchvision's ResNet-50 (a compact one written here if torchvision
  is missing), the config's projector (Linear-BN-ReLU, no biases), the Barlow loss (lambda from
  the config) in float32, SGD with momentum (a LARS-like trust ratio is left out: it is a cheap
  elementwise update), and an on-GPU augmentation of the same recipes (random resized crop and
  flip by ``affine_grid``/``grid_sample``, brightness/contrast/saturation jitter, grayscale,
  Gaussian blur, solarize; no hue jitter). Run in its own process so the two frameworks do not
  share GPU memory.

MFU = FLOPs per step / step time / the chip's dense bf16 peak. FLOPs per step are XLA's
``cost_analysis()`` count of the ssljax step's *lowered* HLO (convolutions and dots as 2 x MACs,
plus elementwise work; augmentation and optimizer included). Not the compiled module's count: on
GPU that one counts the cuDNN convolution custom calls as 0 (it is printed in the JSON as
``flops_compiled_per_step_per_gpu``). The PyTorch row uses the
same count (same network and batch), and its own ``torch.utils.flop_counter`` count (matmuls and
convolutions only) is printed as a cross-check. Peaks by ``jax.devices()[0].device_kind``
(:data:`PEAK_BF16`); unknown chips print ``n/a``.

Without a GPU (``jax.default_backend() != 'gpu'``) it prints a message and exits 0;
``--allow_cpu`` runs everything on CPU (for smoke tests of this script; the numbers mean nothing).
The table on stdout is Markdown, ready for ``benchmarks/NOTES.md``.
"""

import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

import ssljax  # noqa: E402

ssljax.configure_cpu()  # As main.py: the XLA:CPU flags, before JAX starts (no-op elsewhere).

# Dense (no sparsity) bf16 tensor-core peak FLOP/s per chip, from the vendors' data sheets.
# (pattern over device_kind, lower case; first match wins) -> (label, FLOP/s)
PEAK_BF16 = (
    (r"h100.*pcie", ("H100 PCIe", 756e12)),
    (r"h100.*nvl", ("H100 NVL", 835e12)),
    (r"h100", ("H100 SXM", 989e12)),
    (r"h200", ("H200", 989e12)),
    (r"b200", ("B200", 2250e12)),
    (r"a100", ("A100", 312e12)),
    (r"l40s", ("L40S", 362e12)),
    (r"\bl4\b", ("L4", 121e12)),
)
_MARK = "SSLJAX_GPU_JSON "
_CHILD_ENV = dict(os.environ)  # The environment the measurement processes get.


def peak_flops(device_kind: str) -> tuple[str, float | None]:
  """(label, dense bf16 FLOP/s) for a ``device_kind`` string, or (device_kind, None)."""
  kind = device_kind.lower()
  for pattern, value in PEAK_BF16:
    if re.search(pattern, kind):
      return value
  return device_kind, None


# ------------------------------------------------------------------------------------- JAX


def _cost_flops(stage) -> float:
  """``stage.cost_analysis()["flops"]`` (a Lowered or Compiled), NaN where it gives none."""
  try:
    cost = stage.cost_analysis()
  except Exception:  # noqa: BLE001 - some backends implement no cost analysis.
    return math.nan
  if isinstance(cost, list | tuple):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", math.nan))


def jax_part(config, *, batch_per_gpu: int, compute_dtype: str, steps: int, repeats: int,
             warmup: int) -> dict:
  """Compiles and times ssljax's train step; returns a JSON-able record."""
  import jax
  import numpy as np

  from ssljax import sharding, train
  from ssljax.tools import plan

  n = jax.device_count()
  config.input.batch_size = batch_per_gpu * n
  if "compute_dtype" in config:
    config.compute_dtype = compute_dtype
  else:
    compute_dtype = "float32 (this ssljax has no compute_dtype)"
  info = plan.synthetic_info(config)
  run = train.build(config, info=info)
  batch_size = int(config.input.batch_size)
  local = batch_size // jax.process_count()
  rng = np.random.default_rng(0)
  host = {"image": rng.integers(0, 256, (local, *info.image_shape), dtype=np.uint8),
          "label": rng.integers(0, info.num_classes, (local,), dtype=np.int32)}
  if train.label_fraction(config) < 1.0:
    host["labelled"] = np.ones((local,), bool)
  batch = sharding.global_batch(host, run.mesh)
  state = train.create_state(run)
  t0 = time.perf_counter()
  lowered = run.step_fn.lower(state, batch)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t0
  # FLOPs from the lowered HLO, before the backend's passes: the GPU-compiled module turns
  # convolutions into cuDNN custom calls that its cost analysis counts as 0 (seen on an H200:
  # 0.31 TFLOP/step compiled against 13.0 by PyTorch's counter). The compiled count is kept too.
  flops = _cost_flops(lowered)
  flops_compiled = _cost_flops(compiled)
  mem = compiled.memory_analysis()
  for _ in range(warmup):
    state, metrics = compiled(state, batch)
  jax.block_until_ready((state, metrics))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    for _ in range(steps):
      state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    times.append((time.perf_counter() - t) / steps)
  step_s = statistics.median(times)
  stats = jax.devices()[0].memory_stats() or {}
  return {
      "impl": "ssljax", "framework": f"jax {jax.__version__}", "precision": compute_dtype,
      "device_kind": jax.devices()[0].device_kind, "gpus": n, "backend": jax.default_backend(),
      "encoder": str(config.encoder.name), "batch_per_gpu": batch_per_gpu,
      "input_shape": list(info.image_shape), "view_size": int(run.method.views[0].size),
      "projector": list(config.projector.hidden_dims) + [int(config.projector.out_dim)],
      "compile_s": round(compile_s, 1), "step_s": round(step_s, 5),
      "step_s_all": [round(t, 5) for t in times],
      "samples_per_s_per_gpu": round(batch_size / step_s / n, 1),
      "flops_per_step_per_gpu": flops, "flops_compiled_per_step_per_gpu": flops_compiled,
      "loss": float(metrics["loss"]),
      "xla_peak_bytes_estimate": int(mem.argument_size_in_bytes + mem.output_size_in_bytes
                                     + mem.temp_size_in_bytes - mem.alias_size_in_bytes),
      "peak_bytes_in_use": int(stats.get("peak_bytes_in_use", 0)) or None,
  }


def torch_spec(config, *, batch_per_gpu: int, steps: int, repeats: int, warmup: int,
               device: str) -> dict:
  """What the PyTorch part needs from the config, as plain JSON (it never imports JAX)."""
  from ssljax.tools import plan

  info = plan.synthetic_info(config)
  views = []
  for name in sorted(config.input.views.keys()):
    v = config.input.views[name]
    views.append({k: (list(v[k]) if isinstance(v[k], tuple | list) else v[k]) for k in (
        "size", "crop_scale", "crop_ratio", "flip_prob", "jitter_prob", "brightness", "contrast",
        "saturation", "grayscale_prob", "blur_prob", "blur_sigma", "solarize_prob", "mean",
        "std")})
  barlow = config.get("barlow")
  return {
      "batch": batch_per_gpu, "input_shape": list(info.image_shape), "views": views,
      "width": int(config.encoder.get("width", 64)),
      "resnet50": str(config.encoder.name) == "resnet50" and int(config.encoder.width) == 64,
      "zero_init_residual": bool(config.encoder.get("zero_init_residual", True)),
      "projector": list(config.projector.hidden_dims) + [int(config.projector.out_dim)],
      "lambd": float(barlow.lambd) if barlow is not None else 0.0051,
      "steps": steps, "repeats": repeats, "warmup": warmup, "device": device,
  }


# ----------------------------------------------------------------------------------- PyTorch


def torch_part(spec: dict) -> dict:
  """Times the Barlow Twins step in eager PyTorch with bf16 autocast (see the module docstring)."""
  import torch
  from torch import nn

  device = torch.device(spec["device"])
  torch.manual_seed(0)
  if device.type == "cuda":
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

  try:
    if not spec["resnet50"]:
      raise ImportError
    import torchvision

    backbone = torchvision.models.resnet50(zero_init_residual=spec["zero_init_residual"])
    backbone.fc = nn.Identity()
    arch = f"torchvision {torchvision.__version__} resnet50"
  except ImportError:
    backbone = compact_resnet50(spec["width"])
    arch = f"compact resnet50 (width {spec['width']})"
  dims = [backbone_features(backbone, spec["width"]), *spec["projector"]]
  layers = []
  for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
    layers.append(nn.Linear(d_in, d_out, bias=False))
    if i < len(dims) - 2:
      layers += [nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
  model = nn.Sequential(backbone, *layers).to(device).to(memory_format=torch.channels_last)
  opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-6)
  lambd = spec["lambd"]

  def barlow_loss(z1, z2):
    z1, z2 = z1.float(), z2.float()
    n = z1.shape[0]
    z1 = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + 1e-5)
    z2 = (z2 - z2.mean(0)) / torch.sqrt(z2.var(0, unbiased=False) + 1e-5)
    c = z1.T @ z2 / n
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag

  amp_device = "cuda" if device.type == "cuda" else "cpu"

  def step(images_u8):
    with torch.autocast(amp_device, dtype=torch.bfloat16):
      zs = [model(_augment(images_u8, v)) for v in spec["views"]]
      loss = barlow_loss(zs[0], zs[1])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  h, w, c = spec["input_shape"]
  images = torch.randint(0, 256, (spec["batch"], h, w, c), dtype=torch.uint8, device=device)
  sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
  t0 = time.perf_counter()
  for _ in range(max(1, spec["warmup"])):  # The first steps also run cuDNN's autotuning.
    loss = step(images)
  sync()
  warmup_s = time.perf_counter() - t0
  times = []
  for _ in range(spec["repeats"]):
    t = time.perf_counter()
    for _ in range(spec["steps"]):
      loss = step(images)
    sync()
    times.append((time.perf_counter() - t) / spec["steps"])
  step_s = statistics.median(times)
  counted = None
  try:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
      step(images)
    counted = float(counter.get_total_flops())
  except Exception:  # noqa: BLE001 - the cross-check is optional; older torch lacks it.
    pass
  peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
  return {
      "impl": "pytorch", "framework": f"torch {torch.__version__}", "arch": arch,
      "precision": "bf16 autocast", "batch_per_gpu": spec["batch"], "compile_s": None,
      "warmup_s": round(warmup_s, 1), "step_s": round(step_s, 5),
      "step_s_all": [round(t, 5) for t in times],
      "samples_per_s_per_gpu": round(spec["batch"] / step_s, 1),
      "torch_counted_flops_per_step": counted, "loss": float(loss.detach()),
      "peak_bytes_in_use": peak,
  }


def backbone_features(backbone, width: int) -> int:
  return getattr(backbone, "features", 32 * width)  # ResNet-50: 4 x 8 x width channels.


def _augment(images_u8, recipe):
  """One view of a uint8 [B, H, W, C] batch on its device: float [B, 3, S, S], channels_last."""
  import torch
  import torch.nn.functional as F

  b, dev, size = images_u8.shape[0], images_u8.device, int(recipe["size"])
  x = images_u8.permute(0, 3, 1, 2).float() / 255.0
  if x.shape[1] == 1:
    x = x.expand(-1, 3, -1, -1)

  def uniform(lo, hi, shape=(b,)):
    return torch.empty(shape, device=dev).uniform_(lo, hi)

  def chance(p):
    return torch.rand((b,), device=dev) < p

  # Random resized crop + flip: an affine sampling grid per image (crop side fractions sw, sh).
  area = uniform(*recipe["crop_scale"])
  log_ratio = uniform(math.log(recipe["crop_ratio"][0]), math.log(recipe["crop_ratio"][1]))
  ratio = torch.exp(log_ratio)
  sw = torch.sqrt(area * ratio).clamp(max=1.0)
  sh = torch.sqrt(area / ratio).clamp(max=1.0)
  cx = (torch.rand((b,), device=dev) * 2 - 1) * (1 - sw)
  cy = (torch.rand((b,), device=dev) * 2 - 1) * (1 - sh)
  flip = torch.where(chance(recipe["flip_prob"]), -1.0, 1.0)
  theta = torch.zeros((b, 2, 3), device=dev)
  theta[:, 0, 0], theta[:, 0, 2] = sw * flip, cx
  theta[:, 1, 1], theta[:, 1, 2] = sh, cy
  grid = F.affine_grid(theta, (b, 3, size, size), align_corners=False)
  x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

  def gray(t):
    return (0.299 * t[:, 0:1] + 0.587 * t[:, 1:2] + 0.114 * t[:, 2:3])

  def per(v):
    return v[:, None, None, None]

  jitter = per(chance(recipe["jitter_prob"]))
  bright = per(uniform(1 - recipe["brightness"], 1 + recipe["brightness"]))
  contrast = per(uniform(1 - recipe["contrast"], 1 + recipe["contrast"]))
  sat = per(uniform(max(0.0, 1 - recipe["saturation"]), 1 + recipe["saturation"]))
  y = (x * bright).clamp(0, 1)
  y = ((y - gray(y).mean((1, 2, 3), keepdim=True)) * contrast
       + gray(y).mean((1, 2, 3), keepdim=True)).clamp(0, 1)
  y = (gray(y) + (y - gray(y)) * sat).clamp(0, 1)
  x = torch.where(jitter, y, x)
  x = torch.where(per(chance(recipe["grayscale_prob"])), gray(x).expand(-1, 3, -1, -1), x)
  if recipe["blur_prob"] > 0:  # Separable Gaussian, 23 taps (10% of 224), a sigma per image.
    sigma = uniform(*recipe["blur_sigma"])
    taps = torch.arange(23, device=dev, dtype=torch.float32) - 11
    k = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None] ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(3, 0)  # [B * 3, 23]
    flat = x.reshape(1, b * 3, size, size)
    flat = F.conv2d(F.pad(flat, (11, 11, 0, 0), mode="reflect"), k[:, None, None, :],
                    groups=b * 3)
    flat = F.conv2d(F.pad(flat, (0, 0, 11, 11), mode="reflect"), k[:, None, :, None],
                    groups=b * 3)
    x = torch.where(per(chance(recipe["blur_prob"])), flat.reshape(b, 3, size, size), x)
  if recipe["solarize_prob"] > 0:
    x = torch.where(per(chance(recipe["solarize_prob"])) & (x >= 0.5), 1.0 - x, x)
  mean = torch.tensor(recipe["mean"], device=dev)[None, :, None, None]
  std = torch.tensor(recipe["std"], device=dev)[None, :, None, None]
  return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def compact_resnet50(width: int = 64):
  """ResNet-50 (ImageNet stem, zero-init residual) returning pooled features (torch module)."""
  from torch import nn

  class Bottleneck(nn.Module):
    def __init__(self, c_in, width, stride):
      super().__init__()
      c_out = 4 * width
      self.body = nn.Sequential(
          nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
          nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
          nn.ReLU(inplace=True), nn.Conv2d(width, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
      nn.init.zeros_(self.body[-1].weight)  # zero-init residual, as the recipe
      self.skip = (nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
          nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))
      self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
      return self.relu(self.body(x) + self.skip(x))

  class ResNet50(nn.Module):
    """ResNet-50 (ImageNet stem, stages 3-4-6-3, bottleneck expansion 4), pooled features."""

    def __init__(self, width=64):
      super().__init__()
      layers = [nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
      c_in = width
      for stage, blocks in enumerate((3, 4, 6, 3)):
        w = width * 2**stage
        for i in range(blocks):
          layers.append(Bottleneck(c_in, w, 2 if i == 0 and stage > 0 else 1))
          c_in = 4 * w
      self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
      self.features = c_in

    def forward(self, x):
      return self.net(x)

  return ResNet50(width)


# ------------------------------------------------------------------------------------ driver


def _run_part(impl: str, args: list[str], env: dict, timeout: int) -> dict:
  """Runs this script as a child; returns its JSON record or ``{"impl": impl, "error": ...}``."""
  try:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=_ROOT)
  except subprocess.TimeoutExpired:
    return {"impl": impl, "error": f"timed out after {timeout} s (--part_timeout)"}
  records = [line[len(_MARK):] for line in proc.stdout.splitlines() if line.startswith(_MARK)]
  if proc.returncode == 0 and records:
    return json.loads(records[-1])
  lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
  return {"impl": impl,
          "error": f"exit status {proc.returncode}: {lines[-1] if lines else 'no output'}"}


def _fmt(value, pattern="{:.1f}"):
  return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
      else pattern.format(value)


def _shared_flops(jx: dict, pt: dict | None) -> tuple[float | None, str]:
  """The FLOPs per step both rows' MFU uses, and where they come from.

  The lowered HLO's count first. JAX's GPU backend gave none on an H200 (jax 0.11.2), and the
  compiled module's count there misses the cuDNN convolutions, so next comes PyTorch's counter
  (matmuls and convolutions of the same network and batch: a slight undercount). The compiled
  count only where neither exists.
  """
  def finite(v):
    return v is not None and not math.isnan(v) and v > 0

  if finite(jx.get("flops_per_step_per_gpu")):
    return jx["flops_per_step_per_gpu"], "XLA cost_analysis FLOPs of the ssljax step's lowered HLO"
  if pt and "error" not in pt and finite(pt.get("torch_counted_flops_per_step")):
    return (pt["torch_counted_flops_per_step"],
            "PyTorch's FLOP counter (matmul + conv only, so MFU is slightly low; XLA's GPU backend "
            "gave no lowered-HLO count, and its compiled count omits cuDNN convolutions)")
  if finite(jx.get("flops_compiled_per_step_per_gpu")):
    return (jx["flops_compiled_per_step_per_gpu"],
            "XLA cost_analysis FLOPs of the compiled step (on GPU this omits cuDNN convolutions)")
  return None, "no FLOP count"


def format_report(jx: dict, pt: dict | None, *, kind: str, peak: float | None) -> str:
  """The Markdown report: a header line, the table, notes."""
  flops, source = _shared_flops(jx, pt)
  lines = []
  label, _ = peak_flops(kind)
  lines.append(f"device: {kind} x {jx.get('gpus', '?')} "
               f"(dense bf16 peak: {_fmt(peak and peak / 1e12, '{:.0f} TFLOP/s')}, {label})")
  if "error" not in jx:
    lines.append(
        f"step: Barlow Twins {jx['encoder']}, 2 views of {jx['view_size']} px, projector "
        f"{'-'.join(str(d) for d in jx['projector'])}, batch {jx['batch_per_gpu']} per GPU, "
        f"synthetic uint8 {'x'.join(str(d) for d in jx['input_shape'])} input, augmentation "
        "on the device")
  lines += ["", "| impl | framework | precision | batch/GPU | step ms | samples/s/GPU | "
                "TFLOP/step/GPU | MFU | compile s | peak mem GiB |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
  for r in (jx, pt):
    if r is None:
      continue
    if "error" in r:
      lines.append(f"| {r.get('impl', '?')} | error: {r['error']} | | | | | | | | |")
      continue
    mfu = (flops / r["step_s"] / peak) if (peak and flops and not math.isnan(flops)) else None
    lines.append(
        f"| {r['impl']} | {r['framework']} | {r['precision']} | {r['batch_per_gpu']} | "
        f"{r['step_s'] * 1e3:.1f} | {r['samples_per_s_per_gpu']:.0f} | "
        f"{_fmt(flops and flops / 1e12, '{:.2f}')} | {_fmt(mfu and 100 * mfu, '{:.1f}%')} | "
        f"{_fmt(r.get('compile_s'))} | "
        f"{_fmt(r.get('peak_bytes_in_use') and r['peak_bytes_in_use'] / 2**30, '{:.1f}')} |")
  lines.append("")
  lines.append(f"MFU = {source} / step time / dense bf16 peak (both rows use these FLOPs: the "
               "same network and batch).")
  if pt and "error" not in pt:
    counted = pt["torch_counted_flops_per_step"]
    lines.append(f"PyTorch: {pt['arch']}, eager, channels_last, SGD; its own FLOP counter "
                 f"(matmul + conv only): {_fmt(counted and counted / 1e12, '{:.2f}')} "
                 "TFLOP/step.")
  return "\n".join(lines)


def report_from_log(path: str) -> str:
  """The report of a saved run: the last ``SSLJAX_GPU_JSON`` line of its output at ``path``."""
  try:
    with open(path) as fh:
      lines = [ln for ln in fh.read().splitlines() if ln.startswith(_MARK)]
  except OSError as e:
    raise SystemExit(f"error: cannot read --report={path}: {e.strerror}") from None
  if not lines:
    raise SystemExit(f"error: --report={path} has no {_MARK.strip()} line: pass the output of "
                     "bash benchmarks/gpu.sh")
  rec = json.loads(lines[-1][len(_MARK):])
  return format_report(rec["ssljax"], rec["pytorch"], kind=rec["device_kind"], peak=rec["peak"])


def main(argv):
  from absl import flags, logging

  del argv
  f = flags.FLAGS
  logging.set_verbosity(logging.WARNING)  # No "Unable to initialize backend 'tpu'" line.
  if f.report:
    print(report_from_log(f.report))
    return
  import jax

  backend = jax.default_backend()
  if backend != "gpu" and not f.allow_cpu:
    print(f"no GPU: jax.default_backend() is {backend!r}; benchmarks/gpu.py measures the step on "
          "a GPU machine (run it there with bash benchmarks/gpu.sh); nothing to do here",
          flush=True)
    return
  kind = jax.devices()[0].device_kind
  _, peak = peak_flops(kind)
  env = dict(_CHILD_ENV)
  passed = sys.argv[1:]
  print(f"measuring ssljax on {kind} ...", file=sys.stderr, flush=True)
  jx = _run_part("ssljax", [*passed, "--_part=jax"], env, f.part_timeout)
  pt = None
  if not f.torch:
    print("PyTorch: not measured (--notorch)", file=sys.stderr)
  elif not _torch_usable(f.allow_cpu):
    print("PyTorch: not measured (torch with CUDA is not importable)", file=sys.stderr)
  else:
    print("measuring PyTorch ...", file=sys.stderr, flush=True)
    spec = torch_spec(f.config, batch_per_gpu=f.batch_per_gpu, steps=f.steps, repeats=f.repeats,
                      warmup=f.warmup, device="cpu" if f.allow_cpu else "cuda")
    pt = _run_part("pytorch", ["--_torch_spec", json.dumps(spec)], env, f.part_timeout)
  print(format_report(jx, pt, kind=kind, peak=peak), flush=True)
  print(_MARK + json.dumps({"ssljax": jx, "pytorch": pt, "device_kind": kind, "peak": peak}))
  if "error" in jx:
    sys.exit(1)


def _torch_usable(allow_cpu: bool) -> bool:
  """torch imports and sees CUDA (checked in a child, so this process never initialises CUDA)."""
  code = "import torch; print(torch.cuda.is_available())"
  try:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120).stdout.strip()
  except subprocess.TimeoutExpired:
    return False
  return out == "True" or (allow_cpu and out == "False")


def _part_main(argv):
  from absl import flags, logging

  del argv
  f = flags.FLAGS
  logging.set_verbosity(logging.WARNING)
  config = f.config
  if not f.allow_cpu:
    import jax

    if jax.default_backend() != "gpu":
      raise SystemExit("error: the ssljax part needs a GPU")
  record = jax_part(config, batch_per_gpu=f.batch_per_gpu, compute_dtype=f.compute_dtype,
                    steps=f.steps, repeats=f.repeats, warmup=f.warmup)
  print(_MARK + json.dumps(record), flush=True)


def _define_flags():
  from absl import flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_file("config", "experiments/barlow.py:data=imagenet2012",
                                  "Experiment file[:variant].", lock_config=True)
  flags.DEFINE_integer("batch_per_gpu", 256, "Per-GPU batch (global = this x GPUs).")
  flags.DEFINE_string("compute_dtype", "bfloat16", "ssljax config.compute_dtype.")
  flags.DEFINE_integer("steps", 10, "Timed steps per repeat.")
  flags.DEFINE_integer("repeats", 5, "Timed repeats; the median is reported.")
  flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.")
  flags.DEFINE_bool("torch", True, "Also measure PyTorch where torch with CUDA imports.")
  flags.DEFINE_bool("allow_cpu", False, "Run on CPU too (smoke tests; numbers mean nothing).")
  flags.DEFINE_integer("part_timeout", 300, "Seconds allowed to each measurement process.")
  flags.DEFINE_string("report", "", "Print the report of a saved run's output (its "
                      "SSLJAX_GPU_JSON line) instead of measuring.")
  flags.DEFINE_string("_part", "", "Internal: 'jax' runs the ssljax measurement only.")


if __name__ == "__main__":
  if len(sys.argv) == 3 and sys.argv[1] == "--_torch_spec":  # The PyTorch child: no JAX, no absl.
    print(_MARK + json.dumps(torch_part(json.loads(sys.argv[2]))), flush=True)
    sys.exit(0)
  from absl import app

  _define_flags()
  # The parent only asks which backend JAX has: it must not take the GPU memory from its children.
  _CHILD_ENV = dict(os.environ)
  if "--_part=jax" not in sys.argv:
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
  app.run(_part_main if "--_part=jax" in sys.argv else main)
