"""The catalogue of official weights: each DINO, DINOv2, DINOv3 and MAE checkpoint by its torch hub name, with its
URL, where that URL is published, the architecture it must load as, its parameter count and its checksum where
one is published. Data only: ``highlighter.weights`` downloads, verifies and caches them.

The URLs are copied from the official repositories (mirrored for this work at facebookresearch/dino 7c446df,
dinov2 b8931f7, mae efb2a80, dinov3 6876159); each entry names the file that publishes its URL. The DINOv3
files are gated (``gated`` names the page where the DINOv3 License is accepted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from highlighter.errors import HighlighterError

# Where each URL is published (paths in the official repositories).
_DINO_SRC = "facebookresearch/dino: hubconf.py ({name}) and README.md ('backbone only' link)"
_DINOV2_SRC = ("facebookresearch/dinov2: dinov2/hub/backbones.py ({name}; _make_dinov2_model builds "
               "_DINOV2_BASE_URL from dinov2/hub/utils.py + /<arch>/<arch>[_reg4]_pretrain.pth) and README.md")
_MAE_NOTEBOOK = "facebookresearch/mae: demo/mae_visualize.ipynb (!wget -nc ...)"
_MAE_ISSUE_3 = ("facebookresearch/mae issue #3, comment by the author Kaiming He, 2022-01-10 (not in the "
                "repository's files; the notebook names only the ViT-L files)")
_MAE_README = "facebookresearch/mae: README.md (pre-trained checkpoint table, md5 row)"
_DINOV3_SRC = ("facebookresearch/dinov3: dinov3/hub/backbones.py ({name}; hash {hash}, the sha256 prefix torch.hub "
               "checks; _make_dinov3_vit_model_url builds _DINOV3_BASE_URL from dinov3/hub/utils.py + "
               "/dinov3_<arch>/dinov3_<arch>_pretrain_lvd1689m-<hash>.pth) and README.md (parameters, access link)")
DINOV3_LICENCE = "https://ai.meta.com/resources/models-and-libraries/dinov3-license"
DINOV3_ACCESS = "https://ai.meta.com/resources/models-and-libraries/dinov3-downloads/"


@dataclass(frozen=True)
class Official:
    """One released weights file and the architecture it must hold."""

    name: str  # the torch hub entry point (DINO, DINOv2) or the file's stem (MAE)
    family: str  # dino | dinov2 | mae
    url: str
    source: str  # where the URL is published
    arch: str  # ViT name / patch, as ViTConfig.arch_name
    depth: int
    pos_grid: int  # position-embedding grid of the released file (for the size estimate only)
    registers: int = 0
    decoder: bool = False  # MAE 'visualize' files carry the decoder; the 'pretrain' ones do not
    checksum: tuple[str, str] | None = None  # (hashlib algorithm, published hex prefix)
    params: str | None = None  # the parameter count as the source publishes it
    note: str = ""
    gated: str = ""  # where the licence is accepted and the download link obtained; never downloaded here
    licence: str = ""  # the licence's page, when it is not the repository's open one
    hub: str = ""  # the same weights under a hub name in a layout we read (timm's), when there is one
    swiglu_hidden: int = 0  # a SwiGLU MLP of this hidden width (DINOv3 'plus' models); 0: a GELU MLP of 4 x dim

    @property
    def family_name(self) -> str:
        return {"dino": "DINO", "dinov2": "DINOv2", "dinov3": "DINOv3", "mae": "MAE"}[self.family]

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]

    @property
    def embed_dim(self) -> int:
        from highlighter.config import ARCH_DIMS

        return ARCH_DIMS[self.arch.split("/")[0]]

    @property
    def patch_size(self) -> int:
        return int(self.arch.split("/")[1])

    @property
    def layerscale(self) -> bool:
        return self.family in ("dinov2", "dinov3")

    @property
    def rope(self) -> bool:
        return self.family == "dinov3"

    def describe(self) -> str:
        extra = ((f" + {self.registers} registers" if self.registers else "") + (" + MAE decoder" if self.decoder
                                                                                  else "")
                 + (", RoPE" if self.rope else "") + (", SwiGLU" if self.swiglu_hidden else ""))
        return f"{self.arch} (dim {self.embed_dim}, depth {self.depth}{extra})"

    def gated_message(self, path: Path | None = None) -> str:
        """One line: why this file is not downloaded, and how to get it and use it."""
        where = f" (looked for {path})" if path else ""
        hub = f"; or use the timm copy on the hub, --checkpoint {self.hub}" if self.hub else ""
        return (f"{self.name} ({self.family_name} {self.arch}) is licensed under the DINOv3 License ({self.licence}), "
                f"which must be accepted before download: request access at {self.gated}, download {self.filename} "
                f"from the link Meta sends, then run `highlighter weights get {self.name} --file PATH` (checks it and "
                f"keeps it in the cache) or pass --checkpoint PATH{hub}{where}")

    def estimated_params(self) -> int:
        """Parameters of the released file, counted from the architecture (tested against real models)."""
        d = self.embed_dim
        if self.rope:
            return dinov3_params(d, self.depth, self.patch_size, d // 64, self.registers, self.swiglu_hidden)
        n = vit_params(d, self.depth, self.patch_size, self.pos_grid, self.registers, self.layerscale)
        if self.family == "dinov2":
            n += d  # mask_token (1, D)
        if self.decoder:
            n += mae_decoder_params(d, self.patch_size, self.pos_grid)
        return n

    def estimated_bytes(self) -> int:
        return 4 * self.estimated_params()  # float32 tensors; the container adds well under 1%


def block_params(dim: int, hidden: int | None = None, layerscale: bool = False) -> int:
    """One transformer block: norm1, qkv, proj, norm2, the MLP, and DINOv2's ls1/ls2."""
    hidden = hidden or 4 * dim
    return (4 * dim + 3 * dim * dim + 3 * dim + dim * dim + dim + dim * hidden + hidden + hidden * dim + dim
            + (2 * dim if layerscale else 0))


def vit_params(dim: int, depth: int, patch: int, grid: int, registers: int = 0, layerscale: bool = False) -> int:
    """Parameter count of a ViT in the official key layout (class token, learned position embeddings)."""
    return (3 * patch * patch * dim + dim  # patch_embed.proj
            + dim + (grid * grid + 1) * dim + registers * dim  # cls_token, pos_embed, register_tokens
            + depth * block_params(dim, layerscale=layerscale) + 2 * dim)  # blocks, norm


def dinov3_params(dim: int, depth: int, patch: int, heads: int, registers: int = 4, swiglu_hidden: int = 0) -> int:
    """An official DINOv3 ViT file: patch_embed, cls_token, storage_tokens, mask_token, rope_embed.periods, blocks
    (with layer scale and the qkv bias mask, a buffer the file holds), norm. No position embedding."""
    if swiglu_hidden:
        mlp = 3 * dim * swiglu_hidden + 2 * swiglu_hidden + dim  # w1, w2, w3
    else:
        mlp = 2 * dim * 4 * dim + 4 * dim + dim
    block = 4 * dim + 4 * dim * dim + 4 * dim + 3 * dim + 2 * dim + mlp  # norms, qkv + proj, biases, bias_mask, ls
    return 3 * patch * patch * dim + dim + (2 + registers) * dim + dim // heads // 4 + depth * block + 2 * dim


def mae_decoder_params(dim: int, patch: int, grid: int, dec_dim: int = 512, dec_depth: int = 8) -> int:
    """models_mae.py's decoder: decoder_embed, mask_token, decoder_pos_embed, blocks, norm, pred."""
    return (dim * dec_dim + dec_dim + dec_dim + (grid * grid + 1) * dec_dim + dec_depth * block_params(dec_dim)
            + 2 * dec_dim + dec_dim * patch * patch * 3 + patch * patch * 3)


def _dino(name: str, folder: str, arch: str, params: str) -> Official:
    patch = int(arch.split("/")[1])
    return Official(name, "dino", f"https://dl.fbaipublicfiles.com/dino/{folder}/{folder}.pth",
                    _DINO_SRC.format(name=name), arch, 12, 224 // patch, params=params)


def _dinov2(name: str, arch: str, depth: int, params: str) -> Official:
    stem = name.replace("_reg", "")
    file = stem + ("_reg4" if name.endswith("_reg") else "")
    return Official(name, "dinov2", f"https://dl.fbaipublicfiles.com/dinov2/{stem}/{file}_pretrain.pth",
                    _DINOV2_SRC.format(name=name), arch, depth, 37, registers=4 if name.endswith("_reg") else 0,
                    params=params)


def _dinov3(name: str, arch: str, depth: int, hash: str, params: str, timm_name: str,
            swiglu_hidden: int = 0) -> Official:
    folder = name  # dinov3_vits16 -> dinov3_vits16/dinov3_vits16_pretrain_lvd1689m-<hash>.pth
    return Official(name, "dinov3", f"https://dl.fbaipublicfiles.com/dinov3/{folder}/{folder}_pretrain_lvd1689m-"
                    f"{hash}.pth", _DINOV3_SRC.format(name=name, hash=hash), arch, depth, 0, registers=4,
                    checksum=("sha256", hash), params=params, gated=DINOV3_ACCESS, licence=DINOV3_LICENCE,
                    hub=f"hf-hub:timm/{timm_name}.lvd1689m", swiglu_hidden=swiglu_hidden,
                    note="gated: the DINOv3 License must be accepted before download")


_VISUALIZE = "encoder + decoder, pixel targets: for reconstructions (the MAE tab) and attention maps"
_PRETRAIN = "encoder only (norm-pix pretraining, for fine-tuning): attention maps, but no reconstructions"

CATALOGUE: dict[str, Official] = {e.name: e for e in [
    # facebookresearch/dino hubconf.py: url= at lines 30, 45, 60, 75; README.md 'backbone only' links
    _dino("dino_vits16", "dino_deitsmall16_pretrain", "vit_small/16", "21M"),
    _dino("dino_vits8", "dino_deitsmall8_pretrain", "vit_small/8", "21M"),
    _dino("dino_vitb16", "dino_vitbase16_pretrain", "vit_base/16", "85M"),
    _dino("dino_vitb8", "dino_vitbase8_pretrain", "vit_base/8", "85M"),
    # facebookresearch/dinov2 dinov2/hub/backbones.py line 57 (url = _DINOV2_BASE_URL + ...), the base in
    # dinov2/hub/utils.py line 14, the entry points at lines 64-128; README.md 'backbone only' links
    _dinov2("dinov2_vits14", "vit_small/14", 12, "21M"),
    _dinov2("dinov2_vits14_reg", "vit_small/14", 12, "21M"),
    _dinov2("dinov2_vitb14", "vit_base/14", 12, "86M"),
    _dinov2("dinov2_vitb14_reg", "vit_base/14", 12, "86M"),
    _dinov2("dinov2_vitl14", "vit_large/14", 24, "300M"),
    _dinov2("dinov2_vitl14_reg", "vit_large/14", 24, "300M"),
    # facebookresearch/dinov3 dinov3/hub/backbones.py: the entry points with their hashes (dinov3_vits16 line 199 ...),
    # _make_dinov3_vit_model_url (line 42) and _DINOV3_BASE_URL (dinov3/hub/utils.py); README.md: parameters, access
    _dinov3("dinov3_vits16", "vit_small/16", 12, "08c60483", "21M", "vit_small_patch16_dinov3_qkvb"),
    _dinov3("dinov3_vits16plus", "vit_small/16", 12, "4057cbaa", "29M", "vit_small_plus_patch16_dinov3_qkvb", 1536),
    _dinov3("dinov3_vitb16", "vit_base/16", 12, "73cec8be", "86M", "vit_base_patch16_dinov3_qkvb"),
    _dinov3("dinov3_vitl16", "vit_large/16", 24, "8aa4cbdd", "300M", "vit_large_patch16_dinov3_qkvb"),
    _dinov3("dinov3_vith16plus", "vit_huge/16", 32, "7c1da9a5", "840M", "vit_huge_plus_patch16_dinov3_qkvb", 5120),
    # facebookresearch/mae issue #3 (Kaiming He, 2022-01-10): the base and huge 'visualize' files
    Official("mae_visualize_vit_base", "mae", "https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_base.pth",
             _MAE_ISSUE_3, "vit_base/16", 12, 14, decoder=True, note=_VISUALIZE),
    # facebookresearch/mae demo/mae_visualize.ipynb: `!wget -nc` cells for the two ViT-L files
    Official("mae_visualize_vit_large", "mae",
             "https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_large.pth",
             _MAE_NOTEBOOK, "vit_large/16", 24, 14, decoder=True, note=_VISUALIZE),
    Official("mae_visualize_vit_large_ganloss", "mae",
             "https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_large_ganloss.pth",
             _MAE_NOTEBOOK, "vit_large/16", 24, 14, decoder=True,
             note="encoder + decoder trained with an extra GAN loss (sharper reconstructions)"),
    Official("mae_visualize_vit_huge", "mae", "https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_huge.pth",
             _MAE_ISSUE_3, "vit_huge/14", 32, 16, decoder=True, note=_VISUALIZE),
    # facebookresearch/mae README.md: the 'pre-trained checkpoint' row and the 'md5' row under it
    Official("mae_pretrain_vit_base", "mae", "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth",
             _MAE_README, "vit_base/16", 12, 14, checksum=("md5", "8cad7c"), note=_PRETRAIN),
    Official("mae_pretrain_vit_large", "mae",
             "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_large.pth",
             _MAE_README, "vit_large/16", 24, 14, checksum=("md5", "b8b06e"), note=_PRETRAIN),
    Official("mae_pretrain_vit_huge", "mae", "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_huge.pth",
             _MAE_README, "vit_huge/14", 32, 16, checksum=("md5", "9bdbb0"), note=_PRETRAIN),
]}


def lookup(name: str) -> Official:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise HighlighterError(f"unknown official weights {name!r}; `highlighter weights list` shows the "
                               "names") from None
