"""DINO head, loss, centre, EMA teacher and clipping, checked against direct computations."""

import math

import pytest
import torch
import torch.nn.functional as F

from highlighter.config import DinoCfg
from highlighter.core.dino import DINOHead, DINOLoss, clip_gradients, param_groups
from highlighter.train.dist import Dist
from highlighter.train.steps import DinoTask

from reference import RefDINOHead

TINY = DinoCfg(arch="vit_tiny", global_crop_size=32, local_crop_size=16, local_crops_number=2, out_dim=64,
               head_hidden_dim=64, head_bottleneck_dim=32, batch_size=4, epochs=2, warmup_epochs=0, precision="fp32",
               lr=0.01, drop_path_rate=0.0)


def test_head_layout_and_normalised_last_layer():
    head = DINOHead(48, 100, 64, 16, norm_last_layer=True)
    keys = set(head.state_dict())
    assert keys == {"mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias", "mlp.4.weight", "mlp.4.bias",
                    "last_layer.weight_g", "last_layer.weight_v"}  # the official names
    assert not head.last_layer.weight_g.requires_grad and torch.all(head.last_layer.weight_g == 1)
    x = torch.randn(5, 48)
    z = F.normalize(head.mlp(x), dim=-1)
    v = head.last_layer.weight_v
    torch.testing.assert_close(head(x), z @ (v / v.norm(dim=1, keepdim=True)).T)


def test_loss_is_the_cross_entropy_over_pairs_and_the_centre_update_is_exact():
    torch.manual_seed(0)
    K, B, ncrops = 10, 3, 4
    loss_fn = DINOLoss(K, ncrops, [0.04, 0.05], student_temp=0.1, center_momentum=0.9)
    loss_fn.center.copy_(torch.randn(1, K))
    c0 = loss_fn.center.clone()
    s, t = torch.randn(ncrops * B, K), torch.randn(2 * B, K)
    got = loss_fn(s, t, step=1)
    terms = []
    for iq in range(2):
        q = F.softmax((t[iq * B:(iq + 1) * B] - c0) / 0.05, dim=-1)
        for v in range(ncrops):
            if v != iq:  # never a crop against itself
                logp = F.log_softmax(s[v * B:(v + 1) * B] / 0.1, dim=-1)
                terms.append(-(q * logp).sum(-1).mean())
    assert len(terms) == 2 * ncrops - 2
    torch.testing.assert_close(got, torch.stack(terms).mean())
    torch.testing.assert_close(loss_fn.center, 0.9 * c0 + 0.1 * t.mean(0, keepdim=True))


def test_no_weight_decay_on_biases_and_norms():
    head = DINOHead(8, 4, 8, 4)
    reg, noreg = param_groups(head)
    names = {id(p): n for n, p in head.named_parameters()}
    assert sorted(names[id(p)] for p in reg["params"]) == ["last_layer.weight_v", "mlp.0.weight", "mlp.2.weight",
                                                            "mlp.4.weight"]
    assert sorted(names[id(p)] for p in noreg["params"]) == ["mlp.0.bias", "mlp.2.bias", "mlp.4.bias"]
    assert noreg["weight_decay"] == 0.0 and "weight_decay" not in reg  # group 0 follows the wd schedule
    # the whole student as training builds it: both groups non-empty, together every trainable parameter
    # exactly once (the frozen weight_g of the normalised last layer in neither)
    task = DinoTask(TINY, Dist(), niter_per_epoch=5)
    groups = task.optimizer.param_groups
    names = {id(p): n for n, p in task.student_plain.named_parameters()}
    assert len(groups) == 2 and all(g["params"] for g in groups)
    assert sorted(names[id(p)] for g in groups for p in g["params"]) == sorted(
        n for n, p in task.student_plain.named_parameters() if p.requires_grad)
    assert all(p.ndim > 1 and not names[id(p)].endswith(".bias") for p in groups[0]["params"])
    assert all(p.ndim == 1 or names[id(p)].endswith(".bias") for p in groups[1]["params"])
    assert groups[1]["weight_decay"] == 0.0


def test_per_parameter_clipping():
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    a.grad, b.grad = torch.tensor([3.0, 4.0, 0.0]), torch.tensor([0.3, 0.4])
    m = torch.nn.Module()
    m.a, m.b = a, b
    clip_gradients(m, 1.0)
    torch.testing.assert_close(a.grad, torch.tensor([3.0, 4.0, 0.0]) / (5 + 1e-6))  # clipped alone
    torch.testing.assert_close(b.grad, torch.tensor([0.3, 0.4]))  # under the limit: untouched


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    def crops(size):  # uint8, as the data loader delivers them
        return torch.randint(0, 256, (4, 3, size, size), generator=g, dtype=torch.uint8)

    return [crops(32)] * 2 + [crops(16)] * 2


def test_teacher_gets_no_gradients_and_its_ema_is_exact():
    task = DinoTask(TINY, Dist(), niter_per_epoch=5)
    assert all(not p.requires_grad for p in task.teacher.parameters())
    before = [p.detach().clone() for p in task.teacher.parameters()]
    last_v = task.student_plain.head.last_layer.weight_v.detach().clone()
    task.step(_batch(), it=3, epoch=0, in_epoch=3)
    assert all(p.grad is None for p in task.teacher.parameters())
    m = float(task.momentum[3])
    for t_before, t_after, s in zip(before, task.teacher.parameters(), task.student_plain.parameters()):
        assert torch.equal(t_after, t_before * m + (1 - m) * s.detach())
    # the head's last layer is frozen during the first epoch (freeze_last_layer=1), not after
    assert torch.equal(task.student_plain.head.last_layer.weight_v, last_v)
    task.step(_batch(), it=6, epoch=1, in_epoch=1)
    assert not torch.equal(task.student_plain.head.last_layer.weight_v, last_v)


def real_batch(folder, transform, n=4):
    from highlighter.train.data import TrainImages, collate
    from highlighter.train.packed import find_training_images

    ds = TrainImages(find_training_images([folder])[:n], transform, seed=0)
    return collate([ds[(0, i)] for i in range(n)])["data"]


def test_dino_loss_falls_on_a_repeated_batch(real_photos):
    from highlighter.train.augment import DinoMultiCrop

    cfg = DinoCfg(**{**TINY.to_dict(), "freeze_last_layer": 0})
    task = DinoTask(cfg, Dist(), niter_per_epoch=25)
    batch = real_batch(real_photos, DinoMultiCrop(32, 16, local_number=2))
    losses = [task.step(batch, it=i, epoch=0, in_epoch=i)["loss"] for i in range(25)]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_mae_loss_falls_on_a_repeated_batch(real_photos):
    from highlighter.config import MaeCfg
    from highlighter.train.augment import MaeCrop
    from highlighter.train.steps import MaeTask

    cfg = MaeCfg(arch="vit_tiny", input_size=64, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
                 batch_size=4, epochs=2, warmup_epochs=0, precision="fp32", blr=0.2)
    task = MaeTask(cfg, Dist(), niter_per_epoch=20)
    batch = real_batch(real_photos, MaeCrop(64, (0.2, 1.0), 16))
    losses = [task.step(batch, it=i, epoch=0, in_epoch=i)["loss"] for i in range(20)]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < 0.7 * losses[0], losses


def test_mae_gradient_accumulation_steps_every_accum_iter(real_photos):
    from highlighter.config import MaeCfg
    from highlighter.train.augment import MaeCrop
    from highlighter.train.steps import MaeTask

    cfg = MaeCfg(arch="vit_tiny", input_size=64, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
                 batch_size=4, epochs=2, warmup_epochs=0, precision="fp32", accum_iter=2)
    task = MaeTask(cfg, Dist(), niter_per_epoch=10)
    assert task.base_lr == cfg.blr * 4 * 2 / 256  # the effective batch counts the accumulation
    batch = real_batch(real_photos, MaeCrop(64, (0.2, 1.0), 16))
    w0 = task.model_plain.decoder_pred.weight.detach().clone()
    task.step(batch, it=0, epoch=0, in_epoch=0)
    assert torch.equal(task.model_plain.decoder_pred.weight, w0)  # gradients accumulated, no step yet
    assert task.model_plain.decoder_pred.weight.grad is not None
    task.step(batch, it=1, epoch=0, in_epoch=1)
    assert not torch.equal(task.model_plain.decoder_pred.weight, w0)
    assert task.model_plain.decoder_pred.weight.grad is None  # zeroed after the step


def test_initial_parameters_are_distributed_as_the_official_models():
    """Every parameter of a fresh student against what the official vision_transformer.py and DINOHead draw:
    Linear weights trunc_normal(0.02) and zero biases (apply(_init_weights)), LayerNorms 1 / 0, pos_embed and
    cls_token trunc_normal(0.02), the patch convolution and the head's last layer (created after the apply) with
    PyTorch's own default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and weight_g 1. A test on shared weights cannot see
    the initialisation; this one can (the last layer drawn from trunc_normal(0.02) has rows 1.8x too short)."""
    cfg = DinoCfg(arch="vit_tiny", patch_size=8, global_crop_size=64, local_crop_size=32, out_dim=1024,
                  precision="fp32")
    task = DinoTask(cfg, Dist(), niter_per_epoch=5)
    ref_head = RefDINOHead(192, 1024)

    def expected_std(name, p):
        if name.endswith("last_layer.weight_v"):
            return 1 / math.sqrt(3 * p.shape[1])
        if name.endswith("patch_embed.proj.weight") or name.endswith("patch_embed.proj.bias"):
            return 1 / math.sqrt(3 * 3 * 8 * 8)
        if name.endswith(("pos_embed", "cls_token")) or (name.endswith(".weight") and p.ndim == 2):
            return 0.02
        return None

    checked = 0
    for name, p in task.student_plain.named_parameters():
        p = p.detach()
        if name.endswith("weight_g"):
            assert torch.all(p == 1), name
        elif "norm" in name:
            assert torch.all(p == (1.0 if name.endswith("weight") else 0.0)), name
        elif name.endswith(".bias") and "patch_embed" not in name:
            assert torch.all(p == 0), name
        else:
            want = expected_std(name, p)
            assert want is not None, name
            assert abs(p.std().item() / want - 1) < 0.1 and abs(p.mean().item()) < 0.2 * want, (name, p.std(), want)
            checked += 1
    assert checked >= 12 * 4 + 4 + 4  # every block's 4 matrices, the head's 4, patch conv, pos_embed, cls_token
    # the last layer as the official head draws it: uniform, bounded by 1/sqrt(256), rows of the same length
    ours = task.student_plain.head.last_layer.weight_v.detach()
    theirs = ref_head.last_layer.weight_v.detach()
    assert ours.abs().max() <= 1 / 16 and theirs.abs().max() <= 1 / 16
    assert ours.norm(dim=1).mean() == pytest.approx(theirs.norm(dim=1).mean().item(), rel=0.02)
