"""The CIFAR and ImageNet recipes match the sources of the numbers they quote.

Every reference value below was copied once from the cited source, never from our experiment
files. CIFAR: solo-learn (https://github.com/vturrisi/solo-learn) at commit
9187ea39c2c3f43c455ab06664d2b019a9802954, ``scripts/pretrain/cifar/<method>.yaml`` and the
``augmentations/*.yaml`` it includes; settings the YAML leaves out come from solo-learn's code at
the same commit (named per entry). ImageNet: the paper's official code at the commit named per
method (the recipe behind the paper's number), or the paper where it states the value.

Where our loss normalises a term differently from the source, the test compares the effective
weight (the term's weight times the factor between the two normalisations), not the name.
Cheap: ``get_config`` only, nothing is trained.
"""

import math

import pytest

from experiments import barlow, byol, dino, mae, mocov3, simclr, simsiam, vicreg

# ------------------------------------------------------------------ solo-learn's CIFAR YAMLs

# augmentations/asymmetric.yaml: two crops, jitter p 0.8 (0.4, 0.4, 0.2, 0.1), grayscale 0.2,
# no blur, solarisation 0.0 / 0.2, flip 0.5, crop scale (0.08, 1).
_ASYM = (
    dict(crop_scale=(0.08, 1.0), jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.2,
         hue=0.1, grayscale_prob=0.2, blur_prob=0.0, solarize_prob=0.0, flip_prob=0.5),
    dict(crop_scale=(0.08, 1.0), jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.2,
         hue=0.1, grayscale_prob=0.2, blur_prob=0.0, solarize_prob=0.2, flip_prob=0.5),
)
# augmentations/symmetric.yaml (num_crops 2): jitter (0.8, 0.8, 0.8, 0.2), blur 0.5.
_SYM = dict(crop_scale=(0.08, 1.0), jitter_prob=0.8, brightness=0.8, contrast=0.8, saturation=0.8,
            hue=0.2, grayscale_prob=0.2, blur_prob=0.5, solarize_prob=0.0, flip_prob=0.5)
# augmentations/symmetric_weak.yaml (num_crops 2): jitter (0.4, 0.4, 0.4, 0.1), blur 0.5.
_SYM_WEAK = dict(crop_scale=(0.08, 1.0), jitter_prob=0.8, brightness=0.4, contrast=0.4,
                 saturation=0.4, hue=0.1, grayscale_prob=0.2, blur_prob=0.5, solarize_prob=0.0,
                 flip_prob=0.5)
# vicreg.yaml's own augmentations block (num_crops 2).
_VICREG_VIEW = dict(crop_scale=(0.2, 1.0), jitter_prob=0.8, brightness=0.4, contrast=0.4,
                    saturation=0.2, hue=0.1, grayscale_prob=0.2, blur_prob=0.0,
                    solarize_prob=0.1, flip_prob=0.5)
# solo/data/pretrain_dataloader.py GaussianBlur: sigma ~ U(0.1, 2.0).
_SOLO_BLUR_SIGMA = (0.1, 2.0)

# Every YAML: batch_size 256, max_epochs 1000. LARS kwargs (barlow, simclr, byol, mocov3, vicreg,
# dino): eta 0.02, clip_lr True, exclude_bias_n_norm True. scheduler warmup_cosine with
# solo/methods/base.py's defaults warmup_epochs 10 and min_lr 0. No batch scaling at batch 256
# (solo/args/pretrain.py: lr x batch_size / 256).
_LARS = dict(name="lars", eta=0.02, clip_lr=True, exclude_bias_bn=True)

SOLO_CIFAR = {
    # barlow.yaml (+ solo/methods/barlow_twins.py default lamb 0.0051).
    "barlow": dict(module=barlow, optim=dict(_LARS, lr=0.3, weight_decay=1e-4),
                   projector=((2048, 2048), 2048), views=_ASYM,
                   method=dict(scale_loss=0.1, lambd=0.0051)),
    # simclr.yaml.
    "simclr": dict(module=simclr, optim=dict(_LARS, lr=0.4, weight_decay=1e-4),
                   projector=((2048,), 256), views=(_SYM, _SYM),
                   method=dict(temperature=0.2)),
    # byol.yaml (momentum base_tau 0.99, final_tau 1.0).
    "byol": dict(module=byol, optim=dict(_LARS, lr=1.0, weight_decay=1e-5),
                 projector=((4096,), 256), predictor=((4096,), 256), views=_ASYM,
                 method=dict(base_momentum=0.99, final_momentum=1.0)),
    # mocov3.yaml; solo/methods/mocov3.py _build_mlp: linear layers without bias, projector with
    # a BatchNorm without affine on its output.
    "mocov3": dict(module=mocov3, optim=dict(_LARS, lr=0.3, weight_decay=1e-6),
                   projector=((4096,), 256), predictor=((4096,), 256), views=_ASYM,
                   method=dict(temperature=0.2, base_momentum=0.99, final_momentum=1.0),
                   heads=dict(projector=dict(use_bias=False, last_bn=True),
                              predictor=dict(use_bias=False, last_bn=False))),
    # vicreg.yaml: weights 25 / 25 / 1 (var_weight checked as an effective weight below).
    "vicreg": dict(module=vicreg, optim=dict(_LARS, lr=0.3, weight_decay=1e-4),
                   projector=((2048, 2048), 2048), views=(_VICREG_VIEW, _VICREG_VIEW),
                   method=dict(sim_weight=25.0, cov_weight=1.0)),
    # simsiam.yaml: SGD (solo/args/pretrain.py momentum default 0.9); solo/methods/simsiam.py:
    # projector output BatchNorm without affine, predictor static_lr.
    "simsiam": dict(module=simsiam, optim=dict(name="sgd", lr=0.5, weight_decay=1e-5,
                                               momentum=0.9),
                    projector=((2048, 2048), 2048), predictor=((512,), 2048),
                    views=(_SYM_WEAK, _SYM_WEAK),
                    heads=dict(projector=dict(last_bn=True))),
    # dino.yaml (proj_hidden_dim 2048, proj_output_dim 256, num_prototypes 4096, base_tau 0.9995);
    # solo/methods/dino.py defaults: student 0.1, teacher 0.07 from 0.04, freeze_last_layer 1,
    # clip_grad 0, use_bn_in_head False.
    "dino": dict(module=dino, optim=dict(_LARS, lr=0.3, weight_decay=1e-6, clip_grad_norm=0.0,
                                         freeze_epochs=1.0),
                 views=_ASYM, view_names=("global1", "global2"),
                 method=dict(hidden_dims=(2048, 2048), bottleneck_dim=256, num_prototypes=4096,
                             base_momentum=0.9995, final_momentum=1.0, student_temp=0.1,
                             teacher_temp=0.07, warmup_teacher_temp=0.04, use_bn=False)),
}


def _check_views(c, names, expected):
  for name, want in zip(names, expected, strict=True):
    got = c.input.views[name]
    assert int(got.size) == 32, name
    for key, value in want.items():
      assert tuple(got[key]) == pytest.approx(value) if isinstance(value, tuple) else (
          got[key] == pytest.approx(value)), f"input.views.{name}.{key}: {got[key]} != {value}"
    if got.blur_prob > 0:
      assert tuple(got.blur_sigma) == pytest.approx(_SOLO_BLUR_SIGMA)


def _check_optim_and_heads(c, ref) -> None:
  """The reference's optimiser fields, projector / predictor shapes and other heads' fields."""
  for key, value in ref["optim"].items():
    got = c.optim[key]
    assert got == value if isinstance(value, str) else got == pytest.approx(value), (
        f"optim.{key}: {got} != {value}")
  if "projector" in ref:
    _check_head(c.projector, ref["projector"], "projector")
  if "predictor" in ref:
    _check_head(c.predictor, ref["predictor"], "predictor")
  for head, fields in ref.get("heads", {}).items():
    for key, value in fields.items():
      assert c[head][key] == value, f"{head}.{key}"


def _check_head(head, want, where):
  hidden, out = want
  assert tuple(head.hidden_dims) == hidden, where
  assert head.out_dim == out, where


@pytest.mark.parametrize("data", ["cifar10", "cifar100"])
@pytest.mark.parametrize("name", sorted(SOLO_CIFAR))
def test_cifar_recipe_matches_solo_learn_yaml(name, data):
  ref = SOLO_CIFAR[name]
  c = ref["module"].get_config(f"data={data}")
  assert c.input.data.name == data
  assert c.input.batch_size == 256
  assert c.total_epochs == 1000.0
  assert c.encoder.name == "resnet18" and c.encoder.stem == "cifar" and c.encoder.width == 64
  # warmup_cosine with base.py's defaults; lr as given (batch 256 = solo-learn's scaling base).
  assert c.optim.warmup_epochs == 10.0
  assert c.optim.min_lr_ratio == 0.0
  assert c.optim.lr_scaling == "none"
  _check_optim_and_heads(c, ref)
  _check_views(c, ref.get("view_names", ("view1", "view2")), ref["views"])
  for key, value in ref.get("method", {}).items():
    got = c[name][key]
    assert (tuple(got) if isinstance(value, tuple) else got) == pytest.approx(value), (
        f"{name}.{key}: {got} != {value}")


@pytest.mark.parametrize("data", ["cifar10", "cifar100"])
def test_vicreg_cifar_effective_variance_weight_is_solo_learns(data):
  # solo/losses/vicreg.py variance_loss returns mean(relu(1 - std_z1)) + mean(relu(1 - std_z2))
  # (a SUM over the views) times var_loss_weight 25 (vicreg.yaml); ssljax.losses.vicreg_terms
  # returns the MEAN of the two, so the weight that gives solo-learn's loss is 2 x 25. The
  # covariance terms are summed by both, so cov_weight carries over unchanged.
  solo_var_weight, solo_views_summed = 25.0, 2
  c = vicreg.get_config(f"data={data}")
  assert c.vicreg.var_weight == pytest.approx(solo_var_weight * solo_views_summed)


def test_vicreg_imagenet_keeps_the_official_weights():
  # facebookresearch/vicreg main_vicreg.py (commit 4e12602fd495af83efd1631fbe82523e6db092e0):
  # std-coeff 25 on (mean_view1 + mean_view2) / 2, the reduction vicreg_terms uses.
  c = vicreg.get_config("data=imagenet2012")
  assert (c.vicreg.sim_weight, c.vicreg.var_weight, c.vicreg.cov_weight) == (25.0, 25.0, 1.0)


# ------------------------------------------------------------------ ImageNet: papers / code

# BYOL's augmentations (BYOL paper, Appendix B, Table 6), used by BYOL, Barlow Twins, VICReg and
# MoCo v3: jitter p 0.8 (0.4, 0.4, 0.2, 0.1), grayscale 0.2, blur 1.0 / 0.1, solarise 0.0 / 0.2.
_BYOL_VIEWS = (
    dict(jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1,
         grayscale_prob=0.2, blur_prob=1.0, solarize_prob=0.0, flip_prob=0.5),
    dict(jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1,
         grayscale_prob=0.2, blur_prob=0.1, solarize_prob=0.2, flip_prob=0.5),
)

PAPER_IMAGENET = {
    # Barlow Twins (Zbontar et al. 2021), section "Implementation details": LARS, batch 2048, 1000
    # epochs, lr 0.2 (weights) / 0.0048 (biases, BN) x batch/256, 10 warm-up epochs, cosine down
    # by 1000x, weight decay 1.5e-6, projector 3 x 8192; BYOL's augmentations. lambda: 0.0051 in
    # the official main.py (facebookresearch/barlowtwins), "5e-3" rounded in the text.
    "barlow": dict(module=barlow, batch=2048, epochs=1000.0,
                   optim=dict(name="lars", lr=0.2, weight_decay=1.5e-6, eta=0.001,
                              lr_scaling="linear", warmup_epochs=10.0, min_lr_ratio=0.001,
                              bias_bn_lr_scale=0.0048 / 0.2),
                   projector=((8192, 8192), 8192), views=_BYOL_VIEWS,
                   method=dict(lambd=0.0051, scale_loss=1.0)),
    # SimCLR (Chen et al. 2020): section 2.1 head W2 relu(W1 h) (one hidden layer), output 128;
    # LARS lr 0.3 x batch/256, wd 1e-6, batch 4096, 10 warm-up epochs, 1000 epochs for Table 6's
    # 69.3%; temperature 0.1; colour jitter strength 1.0 (0.8, 0.8, 0.8, 0.2), blur 0.5.
    "simclr": dict(module=simclr, batch=4096, epochs=1000.0,
                   optim=dict(name="lars", lr=0.3, weight_decay=1e-6, lr_scaling="linear",
                              warmup_epochs=10.0),
                   projector=((2048,), 128),
                   views=(dict(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2,
                               jitter_prob=0.8, grayscale_prob=0.2, blur_prob=0.5),) * 2,
                   method=dict(temperature=0.1)),
    # BYOL (Grill et al. 2020), Appendix C: LARS lr 0.2 x batch/256, wd 1.5e-6, batch 4096, 1000
    # epochs, 10 warm-up epochs, tau_base 0.996, projector / predictor 4096 -> 256.
    "byol": dict(module=byol, batch=4096, epochs=1000.0,
                 optim=dict(name="lars", lr=0.2, weight_decay=1.5e-6, lr_scaling="linear",
                            warmup_epochs=10.0),
                 projector=((4096,), 256), predictor=((4096,), 256), views=_BYOL_VIEWS,
                 method=dict(base_momentum=0.996, final_momentum=1.0)),
    # MoCo v3 (Chen et al. 2021), ResNet-50 1000 epochs: facebookresearch/moco-v3 CONFIG.md
    # (commit c349e6e24f40d3fedb22d973f92defa4cedf37a7): --lr=.3 --wd=1.5e-6 --epochs=1000
    # --moco-m=0.996 --moco-m-cos --crop-min=.2; main_moco.py defaults batch 4096, moco-t 1.0,
    # LARS, 10 warm-up epochs, mlp 4096 -> 256; builder.py _build_mlp without biases.
    "mocov3": dict(module=mocov3, batch=4096, epochs=1000.0,
                   optim=dict(name="lars", lr=0.3, weight_decay=1.5e-6, eta=0.001,
                              lr_scaling="linear", warmup_epochs=10.0, min_lr_ratio=0.0),
                   projector=((4096,), 256), predictor=((4096,), 256),
                   views=tuple(dict(v, crop_scale=(0.2, 1.0)) for v in _BYOL_VIEWS),
                   method=dict(temperature=1.0, base_momentum=0.996, final_momentum=1.0),
                   heads=dict(projector=dict(use_bias=False, last_bn=True),
                              predictor=dict(use_bias=False, last_bn=False))),
    # VICReg (Bardes et al. 2022): facebookresearch/vicreg (commit 4e12602f...) README's
    # 1000-epoch command (batch 2048, base-lr 0.2) and main_vicreg.py: lr x batch/256, wd 1e-6,
    # LARS eta 0.001, 10 warm-up epochs, cosine to 0.001 x, mlp 8192-8192-8192.
    "vicreg": dict(module=vicreg, batch=2048, epochs=1000.0,
                   optim=dict(name="lars", lr=0.2, weight_decay=1e-6, eta=0.001,
                              lr_scaling="linear", warmup_epochs=10.0, min_lr_ratio=0.001),
                   projector=((8192, 8192), 8192), views=_BYOL_VIEWS),
    # SimSiam (Chen & He 2021), 100 epochs: facebookresearch/simsiam main_simsiam.py (commit
    # a7bc1772896d0dad0806c51f0bb6f3b16d290468): SGD lr 0.05 x batch/256, momentum 0.9, wd 1e-4,
    # cosine without warm-up, batch 512, dim 2048, pred-dim 512, crop (0.2, 1), jitter
    # (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale 0.2, blur 0.5.
    "simsiam": dict(module=simsiam, batch=512, epochs=100.0,
                    optim=dict(name="sgd", lr=0.05, weight_decay=1e-4, momentum=0.9,
                               lr_scaling="linear", warmup_epochs=0.0),
                    projector=((2048, 2048), 2048), predictor=((512,), 2048),
                    views=(dict(crop_scale=(0.2, 1.0), brightness=0.4, contrast=0.4,
                                saturation=0.4, hue=0.1, jitter_prob=0.8, grayscale_prob=0.2,
                                blur_prob=0.5),) * 2),
    # DINO ViT-S/16 (Caron et al. 2021): facebookresearch/dino (commit
    # 7c446df5b9f45747937fb0d72314eb9f7b66930a) main_dino.py defaults (lr 5e-4 x batch/256,
    # wd 0.04 -> 0.4, clip_grad 3.0, freeze_last_layer 1, warmup 10 epochs, min_lr 1e-6,
    # drop_path_rate 0.1, momentum 0.996, out_dim 65536, global crops (0.4, 1), local (0.05, 0.4))
    # and the README's 300-epoch command (teacher_temp 0.07, warmup_teacher_temp_epochs 30,
    # 16 GPUs x 64 = batch 1024).
    "dino": dict(module=dino, batch=1024, epochs=300.0,
                 optim=dict(name="adamw", lr=5e-4, weight_decay=0.04, weight_decay_end=0.4,
                            lr_scaling="linear", warmup_epochs=10.0, clip_grad_norm=3.0,
                            freeze_epochs=1.0),
                 view_names=("global1", "global2"),
                 views=(dict(crop_scale=(0.4, 1.0), blur_prob=1.0, solarize_prob=0.0),
                        dict(crop_scale=(0.4, 1.0), blur_prob=0.1, solarize_prob=0.2)),
                 method=dict(num_prototypes=65536, base_momentum=0.996, teacher_temp=0.07,
                             warmup_teacher_temp=0.04, warmup_teacher_temp_epochs=30,
                             student_temp=0.1),
                 encoder=dict(name="vit:S/16", drop_path_rate=0.1)),
    # MAE ViT-B/16 (He et al. 2022): facebookresearch/mae PRETRAIN.md (commit
    # efb2a8062c206524e35e47d04501ed4f544c0ae8): batch 4096, 800 epochs, 40 warm-up epochs,
    # blr 1.5e-4 x batch/256, wd 0.05, mask 0.75, norm_pix_loss; AdamW betas (0.9, 0.95).
    "mae": dict(module=mae, batch=4096, epochs=800.0,
                optim=dict(name="adamw", lr=1.5e-4, weight_decay=0.05, b1=0.9, b2=0.95,
                           lr_scaling="linear", warmup_epochs=40.0),
                view_names=("view",), views=(dict(crop_scale=(0.2, 1.0), jitter_prob=0.0,
                                                  blur_prob=0.0, solarize_prob=0.0),),
                method=dict(mask_ratio=0.75, norm_pix=True, decoder_width=512,
                            decoder_depth=8, decoder_heads=16),
                encoder=dict(name="vit:B/16")),
}


@pytest.mark.parametrize("name", sorted(PAPER_IMAGENET))
def test_imagenet_recipe_matches_the_paper(name):
  ref = PAPER_IMAGENET[name]
  c = ref["module"].get_config("data=imagenet2012")
  assert c.input.batch_size == ref["batch"]
  assert c.total_epochs == ref["epochs"]
  _check_optim_and_heads(c, ref)
  for name_, want in zip(ref.get("view_names", ("view1", "view2")), ref["views"], strict=True):
    got = c.input.views[name_]
    assert int(got.size) == 224
    for key, value in want.items():
      have = tuple(got[key]) if isinstance(value, tuple) else got[key]
      assert have == pytest.approx(value), f"input.views.{name_}.{key}: {have} != {value}"
  for key, value in ref.get("method", {}).items():
    assert c[name][key] == pytest.approx(value), f"{name}.{key}"
  for key, value in ref.get("encoder", {}).items():
    assert c.encoder[key] == value, f"encoder.{key}"
  # Probes on 100k train images (experiments' docstrings say so beside the number).
  assert c.eval.max_train_samples == 100_000


def test_dino_imagenet_min_lr_is_the_official_1e_minus_6():
  # main_dino.py --min_lr 1e-6, an absolute LR; ours is a ratio of the batch-scaled peak.
  c = dino.get_config("data=imagenet2012")
  peak = c.optim.lr * c.input.batch_size / 256
  assert math.isclose(c.optim.min_lr_ratio * peak, 1e-6, rel_tol=1e-9)


@pytest.mark.parametrize("module", [barlow, simclr, byol, mocov3, vicreg, simsiam, dino, mae])
def test_imagenet_docstrings_say_the_probe_uses_a_100k_subset(module):
  doc = " ".join(module.__doc__.split())
  part = doc[doc.index("data=imagenet2012"):]
  assert "100k-image subset" in part, module.__name__
