"""DINO (Caron et al., ICCV 2021): self-distillation from an EMA teacher with multi-crop.

Config keys read (see ``experiments/dino.py``): ``encoder.*``, ``dino.*`` (head widths, number of
prototypes, student temperature, teacher temperature warm-up, centre momentum, EMA momentum) and
the views ``input.views.global1``, ``input.views.global2`` and, optionally,
``input.views.local`` (whose ``crops`` field is the number of local crops; ``crops=0`` or no
``local`` view trains on the two global crops only, as solo-learn's CIFAR recipe). The teacher sees
only the two global crops; the student sees all of them, and each (teacher crop, student crop)
pair of different crops is a term of the loss. Crops of one size go through the network
together, as the official forward does.

``method_state`` holds the teacher (EMA of the student), the centre, and the teacher temperature
of the next step (the official per-epoch linear warm-up).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssljax import losses
from ssljax.errors import ConfigError
from ssljax.methods import Method, _common
from ssljax.models.compose import EncoderHead
from ssljax.models.heads import DINO_HEAD_INITS, DINOHead

GLOBAL_VIEWS = ("global1", "global2")
LOCAL_VIEW = "local"  # Optional: solo-learn's CIFAR recipe trains on the two global crops only.
NUM_GLOBAL = 2


def teacher_temperature(step, *, start: float, end: float, warmup_epochs: int,
                        steps_per_epoch: int):
  """The official schedule: ``linspace(start, end, warmup_epochs)`` per epoch, then ``end``."""
  epoch = jnp.asarray(step, jnp.int32) // steps_per_epoch
  if warmup_epochs <= 0:
    return jnp.asarray(end, jnp.float32)
  frac = jnp.minimum(epoch / max(warmup_epochs - 1, 1), 1.0)
  warm = start + (end - start) * frac
  return jnp.where(epoch < warmup_epochs, warm, end).astype(jnp.float32)


def view_agreement(a_nk: jax.Array, b_nk: jax.Array) -> jax.Array:
  """Mean cosine between the batch-centred rows of ``a`` and ``b`` (one image per row).

  On the teacher's logits of the two global crops it says how much of what the teacher says about
  an image survives the augmentations: 1 for identical crops, ~0 when the crops' outputs are
  unrelated. DINO's student learns from the part of one crop's teacher output that it can predict
  from the other crop; where that part is near 0 (0.005 at step 1 for a random width-8 ResNet on
  the digits' views, ``experiments/dino.py``) its best answer is the same output for every image,
  and the head collapses.
  """
  a = a_nk - jnp.mean(a_nk, 0)
  b = b_nk - jnp.mean(b_nk, 0)
  cos = jnp.sum(a * b, -1) / jnp.maximum(jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1),
                                         1e-12)
  return jnp.mean(cos)


def _head_init(d) -> str:
  init = str(d.get("head_init", "trunc_normal"))
  if init not in DINO_HEAD_INITS:
    raise ConfigError(f"dino.head_init={init!r} must be one of {DINO_HEAD_INITS} (the official "
                      "head is 'trunc_normal'; 'fan_in' for narrow backbones)")
  return init


def make(config, *, total_steps: int, steps_per_epoch: int) -> Method:
  """Builds DINO from an experiment config."""
  d = config.dino
  encoder, _ = _common.make_backbone(config)
  head = DINOHead(hidden_dims=tuple(d.hidden_dims), bottleneck_dim=int(d.bottleneck_dim),
                  num_prototypes=int(d.num_prototypes), use_bn=bool(d.use_bn),
                  dense_init=_head_init(d), input_bn=bool(d.get("head_input_bn", False)),
                  cpu_kernels=_common.cpu_kernels(config))
  net = EncoderHead(encoder=encoder, head=head)
  student_temp = _common.check_positive(d.student_temp, "dino.student_temp")
  temp_kw = dict(start=_common.check_positive(d.warmup_teacher_temp, "dino.warmup_teacher_temp"),
                 end=_common.check_positive(d.teacher_temp, "dino.teacher_temp"),
                 warmup_epochs=int(d.warmup_teacher_temp_epochs), steps_per_epoch=steps_per_epoch)
  center_momentum = _common.check_momentum(d.center_momentum, "dino.center_momentum")
  centering = str(d.get("centering", "center"))
  if centering not in losses.DINO_CENTERINGS:
    raise ConfigError(f"dino.centering={centering!r} must be one of {losses.DINO_CENTERINGS} "
                      "('center': DINO's running centre; 'sinkhorn': DINOv2's Sinkhorn-Knopp "
                      "teacher)")
  sinkhorn_iterations = int(d.get("sinkhorn_iterations", 3))
  if sinkhorn_iterations < 1:
    raise ConfigError(f"dino.sinkhorn_iterations={sinkhorn_iterations} must be >= 1")
  target_kw = dict(centering=centering, sinkhorn_iterations=sinkhorn_iterations)
  koleo_weight = float(d.get("koleo_weight", 0.0))
  if not koleo_weight >= 0.0:
    raise ConfigError(f"dino.koleo_weight={d.get('koleo_weight')!r} must be a number >= 0 "
                      "(0 turns the KoLeo term off, as DINO; DINOv2 uses 0.1)")
  base = _common.check_momentum(d.base_momentum, "dino.base_momentum")
  final = _common.check_momentum(d.final_momentum, "dino.final_momentum")
  names = GLOBAL_VIEWS + ((LOCAL_VIEW,) if LOCAL_VIEW in config.input.views else ())
  views = _common.view_recipes(config, names, optional=(LOCAL_VIEW,))
  if views[0].size != views[1].size:
    raise ConfigError(f"input.views.global1.size={views[0].size} and global2.size="
                      f"{views[1].size} must be equal (the teacher sees both in one batch)")
  if _common.view_count(config, "global1") != 1 or _common.view_count(config, "global2") != 1:
    raise ConfigError("input.views.global1.crops and global2.crops must be 1 (DINO has two "
                      "global crops); add local crops with input.views.local.crops")

  def init(rng, images_bhwc):
    params, state = _common.init_variables(net, rng, images_bhwc)
    teacher = {"params": params, "state": state}  # The teacher starts as a copy of the student.
    center = jnp.zeros((int(d.num_prototypes),), jnp.float32)
    return {"student": params}, {"student": state, "teacher": teacher, "center": center,
                                 "teacher_temp": teacher_temperature(0, **temp_kw)}

  def loss(params, method_state, views, rng):
    teacher = method_state["teacher"]

    def student_fn(state, x):
      # A ViT's stochastic depth (encoder.drop_path_rate) draws from 'dropout'; the teacher has
      # none, as the official code. One key per crop size (forward_groups calls once per size).
      key = jax.random.fold_in(rng, x.shape[1])
      return _common.apply_train(net, params["student"], state, x, rngs={"dropout": key})

    def teacher_fn(state, x):
      return _common.apply_train(net, teacher["params"], state, x)

    student_out, student_state = _common.forward_groups(student_fn, views,
                                                        method_state["student"])
    teacher_out, teacher_state = _common.forward_groups(teacher_fn, views[:NUM_GLOBAL],
                                                        teacher["state"])
    student_logits = [z for _, z in student_out]
    teacher_logits = [jax.lax.stop_gradient(z) for _, z in teacher_out]
    center = method_state["center"]
    # The targets once, for the loss and the logged entropies.
    targets = losses.dino_teacher_targets(teacher_logits, center,
                                          teacher_temp=method_state["teacher_temp"], **target_kw)
    loss = losses.dino_cross_entropy(student_logits, targets, student_temp=student_temp)
    metrics = {"dino_loss": loss}
    if koleo_weight > 0.0:
      # DINOv2: KoLeo on each global crop's student backbone features, summed over the crops.
      koleo = sum(losses.koleo_loss(h) for h, _ in student_out[:NUM_GLOBAL])
      loss = loss + koleo_weight * koleo
      metrics["koleo_loss"] = koleo
    state = {
        "student": student_state,
        "teacher": {"params": teacher["params"], "state": teacher_state},
        "center": losses.dino_center(center, teacher_logits, momentum=center_momentum),
        "teacher_temp": method_state["teacher_temp"],
    }
    # The two collapses centring and sharpening balance: every sample on one prototype (entropy
    # of the mean distribution -> 0) or every sample uniform (per-sample entropy -> log K).
    p_t = targets[0]
    p_mean = jnp.mean(p_t, 0)
    metrics = {**metrics, "teacher_temp": state["teacher_temp"],
               "teacher_mean_entropy": -jnp.sum(p_mean * jnp.log(p_mean + 1e-12)),
               "teacher_entropy": jnp.mean(-jnp.sum(p_t * jnp.log(p_t + 1e-12), -1)),
               "teacher_view_agreement": view_agreement(*teacher_logits)}
    return loss, (state, metrics, student_out[0][0])

  def update(params, method_state, step):
    momentum = _common.cosine_momentum(step, base=base, final=final, total_steps=total_steps)
    teacher = method_state["teacher"]
    teacher = {"params": _common.ema(teacher["params"], params["student"], momentum),
               "state": teacher["state"]}
    return {**method_state, "teacher": teacher,
            "teacher_temp": teacher_temperature(step + 1, **temp_kw)}

  def represent(params, method_state, images_bhwc):
    # The official evaluations use the teacher's backbone. RankMe is taken on the backbone
    # features too: the head's output has up to 65536 prototype logits.
    del params
    teacher = method_state["teacher"]
    h, _ = _common.apply_eval(net, teacher["params"], teacher["state"], images_bhwc)
    return _common.as_float32({"representation": h, "embedding": h})

  return Method(name="dino", views=views, init=init, loss=loss, update=update,
                represent=represent,
                backbone=_common.submodule_backbone(
                    net, lambda p, s: (s["teacher"]["params"], s["teacher"]["state"])))
