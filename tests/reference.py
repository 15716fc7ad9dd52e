"""Independent re-statements of the official computations, used as the ground truth in tests.

They follow the semantics of DINO's vision_transformer.py / visualize_attention.py, DINOv2's
vision_transformer.py and MAE's models_mae.py and demo notebook, written with plain torch and
explicit softmax attention (no timm), and save files in the official layouts.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class RefAttention(nn.Module):
    def __init__(self, dim, heads, qkv_bias=True):
        super().__init__()
        self.num_heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C)), attn


class RefMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class RefSwiGLU(nn.Module):  # DINOv2 ViT-g: w12 -> (x1, x2), silu(x1) * x2 -> w3
    def __init__(self, dim, hidden):
        super().__init__()
        self.w12, self.w3 = nn.Linear(dim, 2 * hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class RefLayerScale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(1 + 0.2 * torch.randn(dim))

    def forward(self, x):
        return x * self.gamma


class RefBlock(nn.Module):
    def __init__(self, dim, heads, hidden, layerscale=False, swiglu=False):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = RefAttention(dim, heads)
        self.mlp = RefSwiGLU(dim, hidden) if swiglu else RefMlp(dim, hidden)
        self.ls1 = RefLayerScale(dim) if layerscale else nn.Identity()
        self.ls2 = RefLayerScale(dim) if layerscale else nn.Identity()

    def forward(self, x, return_attention=False):
        y, attn = self.attn(self.norm1(x))
        if return_attention:
            return attn
        x = x + self.ls1(y)
        return x + self.ls2(self.mlp(self.norm2(x)))


def _randomise(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("gamma"):
                continue
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


class RefViT(nn.Module):
    """DINO (offset 0.1) or DINOv2 (layer scale, registers, its own offset/antialias) backbone."""

    def __init__(self, dim=192, depth=12, heads=3, patch=16, grid=14, hidden=None, layerscale=False, n_reg=0,
                 swiglu=False, interpolate_offset=0.1, interpolate_antialias=False, seed=0):
        super().__init__()
        hidden = hidden or 4 * dim
        self.patch = patch
        self.interpolate_offset, self.interpolate_antialias = interpolate_offset, interpolate_antialias
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, n_reg, dim)) if n_reg else None
        self.n_reg = n_reg
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, patch)
        self.blocks = nn.ModuleList(RefBlock(dim, heads, hidden, layerscale, swiglu) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        _randomise(self, seed)

    def interpolate_pos_encoding(self, x, w, h):  # official argument order: w = rows, h = columns
        npatch, N = x.shape[1] - 1, self.pos_embed.shape[1] - 1
        if npatch == N and w == h:
            return self.pos_embed
        class_pos_embed, patch_pos_embed = self.pos_embed[:, 0], self.pos_embed[:, 1:]
        dim = x.shape[-1]
        w0, h0 = w // self.patch, h // self.patch
        M = int(math.sqrt(N))
        kwargs = {}
        if self.interpolate_offset:
            kwargs["scale_factor"] = (float(w0 + self.interpolate_offset) / M, float(h0 + self.interpolate_offset) / M)
        else:
            kwargs["size"] = (w0, h0)
        patch_pos_embed = F.interpolate(patch_pos_embed.reshape(1, M, M, dim).permute(0, 3, 1, 2), mode="bicubic",
                                        antialias=self.interpolate_antialias, **kwargs)
        assert (w0, h0) == patch_pos_embed.shape[-2:]
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
        return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)

    def prepare_tokens(self, x):
        B, nc, w, h = x.shape
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x, w, h)
        if self.register_tokens is not None:
            x = torch.cat((x[:, :1], self.register_tokens.expand(B, -1, -1), x[:, 1:]), dim=1)
        return x

    def get_last_selfattention(self, x):
        x = self.prepare_tokens(x)
        for i, blk in enumerate(self.blocks):
            if i < len(self.blocks) - 1:
                x = blk(x)
            else:
                return blk(x, return_attention=True)


def visualize_attention(model: RefViT, pil_img, image_size, patch, threshold=0.6):
    """visualize_attention.py, step by step: returns (attentions (nh, h, w), th_attn (nh, h, w))."""
    from torchvision import transforms as pth_transforms

    transform = pth_transforms.Compose([
        pth_transforms.Resize(image_size),
        pth_transforms.ToTensor(),
        pth_transforms.Normalize(MEAN, STD),
    ])
    img = transform(pil_img)
    w, h = img.shape[1] - img.shape[1] % patch, img.shape[2] - img.shape[2] % patch
    img = img[:, :w, :h].unsqueeze(0)
    w_featmap, h_featmap = img.shape[-2] // patch, img.shape[-1] // patch
    with torch.no_grad():
        attentions = model.get_last_selfattention(img)
    nh = attentions.shape[1]
    attentions = attentions[0, :, 0, 1 + model.n_reg:].reshape(nh, -1)
    val, idx = torch.sort(attentions)
    val /= torch.sum(val, dim=1, keepdim=True)
    cumval = torch.cumsum(val, dim=1)
    th_attn = cumval > (1 - threshold)
    idx2 = torch.argsort(idx)
    for head in range(nh):
        th_attn[head] = th_attn[head][idx2[head]]
    th_attn = th_attn.reshape(nh, w_featmap, h_featmap).float()
    return attentions.reshape(nh, w_featmap, h_featmap).numpy(), th_attn.numpy()


def mass_rule(maps: np.ndarray, threshold: float = 0.6) -> np.ndarray:
    """visualize_attention.py's threshold on maps (..., h, w): per map, sort ascending, divide by the sum,
    cumulative sum, keep where it exceeds 1 - threshold, unsort. Returns uint8 of maps' shape."""
    shape = maps.shape
    attentions = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32)).reshape(-1, shape[-2] * shape[-1])
    val, idx = torch.sort(attentions)
    val /= torch.sum(val, dim=1, keepdim=True)
    th_attn = torch.cumsum(val, dim=1) > (1 - threshold)
    idx2 = torch.argsort(idx)
    for head in range(th_attn.shape[0]):
        th_attn[head] = th_attn[head][idx2[head]]
    return th_attn.reshape(shape).numpy().astype(np.uint8)


class RefMAE(nn.Module):
    """models_mae.MaskedAutoencoderViT semantics."""

    def __init__(self, dim=192, depth=12, heads=3, patch=16, grid=14, dec_dim=512, dec_depth=8, dec_heads=16,
                 norm_pix_loss=False, encoder_only=False, seed=0):
        super().__init__()
        self.patch, self.norm_pix_loss = patch, norm_pix_loss
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim), requires_grad=False)
        self.blocks = nn.ModuleList(RefBlock(dim, heads, 4 * dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        if not encoder_only:
            self.decoder_embed = nn.Linear(dim, dec_dim)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
            self.decoder_pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dec_dim), requires_grad=False)
            self.decoder_blocks = nn.ModuleList(RefBlock(dec_dim, dec_heads, 4 * dec_dim) for _ in range(dec_depth))
            self.decoder_norm = nn.LayerNorm(dec_dim, eps=1e-6)
            self.decoder_pred = nn.Linear(dec_dim, patch**2 * 3)
        _randomise(self, seed)

    def patchify(self, imgs):
        p = self.patch
        h = w = imgs.shape[2] // p
        x = imgs.reshape(shape=(imgs.shape[0], 3, h, p, w, p))
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(shape=(imgs.shape[0], h * w, p**2 * 3))

    def random_masking(self, x, mask_ratio, noise):
        N, L, D = x.shape
        len_keep = int(L * (1 - mask_ratio))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_masked = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, D))
        mask = torch.ones([N, L])
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, dim=1, index=ids_restore)
        return x_masked, mask, ids_restore

    def forward(self, imgs, mask_ratio, noise):
        x = self.patch_embed.proj(imgs).flatten(2).transpose(1, 2)
        x = x + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, mask_ratio, noise)
        cls_token = self.cls_token + self.pos_embed[:, :1, :]
        x = torch.cat((cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        x = self.decoder_embed(x)
        mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, dim=1, index=ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1)
        x = x + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        pred = self.decoder_pred(self.decoder_norm(x))[:, 1:, :]
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum(), pred, mask


def notebook_input(pil_img, size=224):
    """The demo notebook: img.resize((224, 224)) (PIL's default, bicubic), /255., - mean, / std."""
    img = np.array(pil_img.resize((size, size))) / 255.0
    img = (img - np.array(MEAN)) / np.array(STD)
    return torch.einsum("nhwc->nchw", torch.tensor(img).unsqueeze(0)).float()


def noise_for_mask(mask: np.ndarray) -> torch.Tensor:
    """A noise whose ascending argsort keeps exactly the visible patches of ``mask`` (1 = hidden)."""
    L = mask.size
    return torch.from_numpy(mask.astype(np.float64) + np.arange(L) / (2.0 * L)).float()[None]


def x_norm_patchtokens(model: RefViT, x: torch.Tensor) -> torch.Tensor:
    """DINOv2's ``forward_features(x)["x_norm_patchtokens"]``: every block, the final norm, the class and register
    tokens dropped. (B, h*w, D): what its PCA demo projects."""
    t = model.prepare_tokens(x)
    for blk in model.blocks:
        t = blk(t)
    return model.norm(t)[:, 1 + model.n_reg:]


def official_input(pil_img, image_size, patch) -> torch.Tensor:
    """visualize_attention.py's transform: Resize, ToTensor, Normalize, crop to the patch grid. (1, 3, H, W)."""
    from torchvision import transforms as pth_transforms

    transform = pth_transforms.Compose([
        pth_transforms.Resize(image_size),
        pth_transforms.ToTensor(),
        pth_transforms.Normalize(MEAN, STD),
    ])
    img = transform(pil_img)
    w, h = img.shape[1] - img.shape[1] % patch, img.shape[2] - img.shape[2] % patch
    return img[:, :w, :h].unsqueeze(0)


# ---------------------------------------------------------------------------------------------------------------
# DINO training (main_dino.py, utils.py): the head, the multi-crop wrapper, the loss and one full step, restated
# from the official code's semantics with plain torch (torch's own weight_norm, a loop per parameter).


def ref_vit_cls(vit: RefViT, x: torch.Tensor) -> torch.Tensor:
    """vision_transformer.py's forward: the final-norm class token."""
    x = vit.prepare_tokens(x)
    for blk in vit.blocks:
        x = blk(x)
    return vit.norm(x)[:, 0]


class RefDINOHead(nn.Module):
    """main_dino.py's DINOHead (nlayers 3, no BN): the MLP initialised by apply(_init_weights), *then* the
    weight-normed last layer, which keeps nn.Linear's own initialisation; its weight_g is 1 and frozen."""

    def __init__(self, in_dim, out_dim, hidden_dim=2048, bottleneck_dim=256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.constant_(m.bias, 0)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's deprecation of the old weight_norm
            self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        self.last_layer.weight_g.requires_grad = False

    def forward(self, x):
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))


class RefMultiCrop(nn.Module):
    """utils.MultiCropWrapper: consecutive crops of one resolution go through the backbone together."""

    def __init__(self, backbone: RefViT, head: RefDINOHead):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, crops):
        idx_crops = torch.cumsum(torch.unique_consecutive(torch.tensor([c.shape[-1] for c in crops]),
                                                          return_counts=True)[1], 0)
        start, output = 0, []
        for end in idx_crops.tolist():
            output.append(ref_vit_cls(self.backbone, torch.cat(crops[start:end])))
            start = end
        return self.head(torch.cat(output))


def ref_cosine_scheduler(base, final, epochs, niter, warmup_epochs=0, start_warmup=0.0):
    warmup = np.linspace(start_warmup, base, warmup_epochs * niter) if warmup_epochs > 0 else np.array([])
    iters = np.arange(epochs * niter - len(warmup))
    return np.concatenate((warmup, final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))))


class RefDINOTrainer:
    """main_dino.py's train_one_epoch for one process, fp32, a step at a time: lr / wd schedules (wd on group 0
    only), the teacher on the 2 global crops, the student on all, the loss over all pairs but a crop with itself
    (teacher centred and sharpened), backward, per-parameter clipping, the last layer's gradient dropped while
    frozen, AdamW, the teacher EMA, the centre EMA."""

    def __init__(self, student: RefMultiCrop, teacher: RefMultiCrop, *, out_dim, ncrops, epochs, niter, lr,
                 batch, min_lr, warmup_epochs, wd, wd_end, momentum, warmup_teacher_temp, teacher_temp,
                 warmup_teacher_temp_epochs, student_temp=0.1, center_momentum=0.9, clip_grad=3.0,
                 freeze_last_layer=1):
        self.student, self.teacher = student, teacher
        self.ncrops, self.student_temp, self.center_momentum = ncrops, student_temp, center_momentum
        self.clip_grad, self.freeze_last_layer, self.niter = clip_grad, freeze_last_layer, niter
        self.center = torch.zeros(1, out_dim, dtype=next(student.parameters()).dtype)
        self.temps = np.concatenate((np.linspace(warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs),
                                     np.ones(epochs - warmup_teacher_temp_epochs) * teacher_temp))
        self.lr = ref_cosine_scheduler(lr * batch / 256.0, min_lr, epochs, niter, warmup_epochs)
        self.wd = ref_cosine_scheduler(wd, wd_end, epochs, niter)
        self.momentum = ref_cosine_scheduler(momentum, 1, epochs, niter)
        regularized, not_regularized = [], []
        for name, p in student.named_parameters():
            if not p.requires_grad:
                continue
            if name.endswith(".bias") or len(p.shape) == 1:
                not_regularized.append(p)
            else:
                regularized.append(p)
        self.optimizer = torch.optim.AdamW([{"params": regularized},
                                            {"params": not_regularized, "weight_decay": 0.0}])

    def loss(self, student_output, teacher_output, epoch):
        student_out = (student_output / self.student_temp).chunk(self.ncrops)
        teacher_out = F.softmax((teacher_output - self.center) / self.temps[epoch], dim=-1).detach().chunk(2)
        total, n = 0, 0
        for iq, q in enumerate(teacher_out):
            for v in range(len(student_out)):
                if v == iq:
                    continue
                total += torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1).mean()
                n += 1
        total /= n
        with torch.no_grad():
            batch_center = torch.sum(teacher_output, dim=0, keepdim=True) / len(teacher_output)
            self.center = self.center * self.center_momentum + batch_center * (1 - self.center_momentum)
        return total

    def step(self, images, it):
        epoch = it // self.niter
        for i, group in enumerate(self.optimizer.param_groups):
            group["lr"] = self.lr[it]
            if i == 0:
                group["weight_decay"] = self.wd[it]
        teacher_output = self.teacher(images[:2])
        student_output = self.student(images)
        loss = self.loss(student_output, teacher_output, epoch)
        self.optimizer.zero_grad()
        loss.backward()
        for _, p in self.student.named_parameters():
            if p.grad is not None:
                norm = p.grad.data.norm(2)
                coef = self.clip_grad / (norm + 1e-6)
                if coef < 1:
                    p.grad.data.mul_(coef)
        if epoch < self.freeze_last_layer:
            for n, p in self.student.named_parameters():
                if "last_layer" in n:
                    p.grad = None
        self.optimizer.step()
        with torch.no_grad():
            m = self.momentum[it]
            for q, k in zip(self.student.parameters(), self.teacher.parameters()):
                k.data.mul_(m).add_((1 - m) * q.detach().data)
        return loss.item()


# ============================================================================= eval_video_segmentation.py
# DINO's label propagation, restated step by step from facebookresearch/dino's eval_video_segmentation.py (read at
# its main branch): the same reading of frames and of the first segmentation, the same queue, the same dense
# affinity and neighbourhood mask, the same upsampling. Plain numpy loops where the script has them; on the CPU.
def vos_read_frame(path, scale_size=(480,)):
    """``read_frame``: OpenCV BGR, the shorter side at scale_size[0] and the longer one floored to a multiple of
    64, /255, BGR -> RGB, mean/std with the script's 0.228. Returns ((3, th, tw) tensor, ori_h, ori_w)."""
    import cv2

    img = cv2.imread(str(path))
    ori_h, ori_w, _ = img.shape
    if ori_h > ori_w:
        tw = scale_size[0]
        th = int(((tw * ori_h) / ori_w // 64) * 64)
    else:
        th = scale_size[0]
        tw = int(((th * ori_w) / ori_h // 64) * 64)
    img = cv2.resize(img, (tw, th)).astype(np.float32) / 255.0
    img = torch.from_numpy(np.transpose(img[:, :, ::-1].copy(), (2, 0, 1))).float()
    for t, m, s in zip(img, [0.485, 0.456, 0.406], [0.228, 0.224, 0.225]):
        t.sub_(m)
        t.div_(s)
    return img, ori_h, ori_w


def vos_read_seg(seg: np.ndarray, factor, scale_size=(480,)):
    """``read_seg`` on a label array: PIL nearest to the patch grid, one-hot with max + 1 channels. (For a square
    picture the script swaps height and width here; the tests use wide frames, where it does not.)"""
    from PIL import Image

    img = Image.fromarray(seg.astype(np.uint8))
    _w, _h = img.size
    if _w > _h:
        _th = scale_size[0]
        _tw = int(((_th * _w) / _h // 64) * 64)
    else:
        _tw = scale_size[0]
        _th = int(((_tw * _h) / _w // 64) * 64)
    small = torch.from_numpy(np.array(img.resize((_tw // factor, _th // factor), 0)).copy()).float().unsqueeze(0)
    n_dims = int(small.max() + 1)
    _, h, w = small.size()
    y = small.type(torch.LongTensor).view(-1, 1)
    y_one_hot = torch.zeros(y.size()[0], n_dims).scatter_(1, y, 1).view(h, w, n_dims)
    return y_one_hot.permute(2, 0, 1).unsqueeze(0)


def vos_restrict_neighborhood(h, w, size):
    mask = np.zeros((h, w, h, w), np.float32)
    for i in range(h):
        for j in range(w):
            for p in range(2 * size + 1):
                for q in range(2 * size + 1):
                    if i - size + p < 0 or i - size + p >= h:
                        continue
                    if j - size + q < 0 or j - size + q >= w:
                        continue
                    mask[i, j, i - size + p, j - size + q] = 1
    return torch.from_numpy(mask.reshape(h * w, h * w))


def vos_norm_mask(mask):
    for cnt in range(mask.size()[0]):
        mask_cnt = mask[cnt, :, :]
        if mask_cnt.max() > 0:
            mask_cnt = mask_cnt - mask_cnt.min()
            mask_cnt = mask_cnt / mask_cnt.max()
            mask[cnt, :, :] = mask_cnt
    return mask


def vos_extract_feature(model: RefViT, frame, patch):
    """``get_intermediate_layers(x, n=1)[0]`` (every block, the final norm), the class token dropped: (h*w, dim)."""
    t = model.prepare_tokens(frame.unsqueeze(0))
    for blk in model.blocks:
        t = blk(t)
    out = model.norm(t)[:, 1:, :]
    h, w = int(frame.shape[1] / patch), int(frame.shape[2] / patch)
    return out[0].reshape(h * w, -1), h, w


def vos_label_propagation(model, frame_tar, list_frame_feats, list_segs, patch, size_mask_neighborhood, topk,
                          mask_neighborhood=None):
    feat_tar, h, w = vos_extract_feature(model, frame_tar, patch)
    return_feat_tar = feat_tar.T
    ncontext = len(list_frame_feats)
    feat_sources = torch.stack(list_frame_feats)  # ncontext x dim x h*w
    feat_tar = F.normalize(feat_tar, dim=1, p=2)
    feat_sources = F.normalize(feat_sources, dim=1, p=2)
    feat_tar = feat_tar.unsqueeze(0).repeat(ncontext, 1, 1)
    aff = torch.exp(torch.bmm(feat_tar, feat_sources) / 0.1)  # ncontext x h*w (queries) x h*w (keys)
    if size_mask_neighborhood > 0:
        if mask_neighborhood is None:
            mask_neighborhood = vos_restrict_neighborhood(h, w, size_mask_neighborhood)
            mask_neighborhood = mask_neighborhood.unsqueeze(0).repeat(ncontext, 1, 1)
        aff *= mask_neighborhood
    aff = aff.transpose(2, 1).reshape(-1, h * w)  # ncontext*h*w (keys) x h*w (queries)
    tk_val, _ = torch.topk(aff, dim=0, k=topk)
    tk_val_min, _ = torch.min(tk_val, dim=0)
    aff[aff < tk_val_min] = 0
    aff = aff / torch.sum(aff, keepdim=True, axis=0)
    segs = torch.cat(list_segs)
    nmb_context, C, h, w = segs.shape
    segs = segs.reshape(nmb_context, C, -1).transpose(2, 1).reshape(-1, C).T  # C x ncontext*h*w
    seg_tar = torch.mm(segs, aff).reshape(1, C, h, w)
    return seg_tar, return_feat_tar, mask_neighborhood


@torch.no_grad()
def vos_track(model: RefViT, frame_paths, first_seg: np.ndarray, patch, scale_size=(480,), n_last_frames=7,
              size_mask_neighborhood=12, topk=5):
    """``eval_video_tracking_davis``: returns (soft labels (C, h, w) per later frame, label maps (ori_h, ori_w)
    uint8 per later frame)."""
    import copy
    import queue

    from PIL import Image

    que = queue.Queue(n_last_frames)
    frame1, ori_h, ori_w = vos_read_frame(frame_paths[0], scale_size)
    frame1_feat = vos_extract_feature(model, frame1, patch)[0].T  # dim x h*w
    first = vos_read_seg(first_seg, patch, scale_size)
    softs, maps = [], []
    mask_neighborhood = None
    for cnt in range(1, len(frame_paths)):
        frame_tar = vos_read_frame(frame_paths[cnt], scale_size)[0]
        used_frame_feats = [frame1_feat] + [pair[0] for pair in list(que.queue)]
        used_segs = [first] + [pair[1] for pair in list(que.queue)]
        frame_tar_avg, feat_tar, mask_neighborhood = vos_label_propagation(
            model, frame_tar, used_frame_feats, used_segs, patch, size_mask_neighborhood, topk, mask_neighborhood)
        if que.qsize() == n_last_frames:
            que.get()
        que.put([feat_tar, copy.deepcopy(frame_tar_avg)])
        softs.append(frame_tar_avg[0].clone())
        frame_tar_avg = F.interpolate(frame_tar_avg, scale_factor=patch, mode="bilinear", align_corners=False,
                                      recompute_scale_factor=False)[0]
        frame_tar_avg = vos_norm_mask(frame_tar_avg)
        _, frame_tar_seg = torch.max(frame_tar_avg, dim=0)
        frame_tar_seg = frame_tar_seg.squeeze().cpu().numpy().astype(np.uint8)
        maps.append(np.array(Image.fromarray(frame_tar_seg).resize((ori_w, ori_h), 0)))
    return softs, maps


# ============================================================================= davis2017-evaluation metrics
# davisvideochallenge/davis2017-evaluation davis2017/metrics.py: db_eval_iou, f_measure (bound_th 0.008), _seg2bmap
# and skimage.morphology.disk, restated.
def davis_j(annotation, segmentation):
    annotation, segmentation = annotation.astype(bool), segmentation.astype(bool)
    inters = np.sum(segmentation & annotation)
    union = np.sum(segmentation | annotation)
    return 1.0 if np.isclose(union, 0) else inters / union


def _davis_seg2bmap(seg):
    seg = seg.astype(bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def _skimage_disk(radius):
    L = np.arange(-radius, radius + 1)
    X, Y = np.meshgrid(L, L)
    return np.array((X ** 2 + Y ** 2) <= radius ** 2, dtype=np.uint8)


def davis_f(foreground_mask, gt_mask, bound_th=0.008):
    import cv2

    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(foreground_mask.shape))
    fg_boundary = _davis_seg2bmap(foreground_mask)
    gt_boundary = _davis_seg2bmap(gt_mask)
    fg_dil = cv2.dilate(fg_boundary.astype(np.uint8), _skimage_disk(bound_pix))
    gt_dil = cv2.dilate(gt_boundary.astype(np.uint8), _skimage_disk(bound_pix))
    gt_match = gt_boundary * fg_dil
    fg_match = fg_boundary * gt_dil
    n_fg, n_gt = np.sum(fg_boundary), np.sum(gt_boundary)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision, recall = np.sum(fg_match) / float(n_fg), np.sum(gt_match) / float(n_gt)
    return 0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
