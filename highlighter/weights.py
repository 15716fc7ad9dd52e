"""Official DINO, DINOv2, DINOv3 and MAE weights by name: the catalogue, the local cache, and a download that
resumes, verifies and only then keeps the file.

Nothing here touches the network unless ``download()`` is called. The catalogue's URLs are copied from
the official repositories (mirrored for this work at facebookresearch/dino 7c446df, dinov2 b8931f7,
mae efb2a80, dinov3 6876159); each entry names the file that publishes its URL.

The DINOv3 files are gated: Meta hands out their download links only to whoever accepts the DINOv3 License
(``gated`` names the page), so they are never downloaded here. The user downloads the file, and ``adopt()`` checks
it (the sha256 prefix published in its name, the architecture, a strict build) and keeps it in the cache under its
official name; ``--checkpoint PATH`` opens it where it is, too.

Files live in ``<cache root>/weights/<official file name>``. The cache root is ``$HIGHLIGHTER_CACHE`` when
set, else ``$XDG_CACHE_HOME/highlighter`` or ``~/.cache/highlighter`` (the same root as the ONNX graphs,
``runtime.predictor.cache_dir``); ``cache=DIR`` means the same as ``HIGHLIGHTER_CACHE=DIR``.

What a failure leaves behind:

- the server's answer is complete but the file is wrong (truncated, corrupt, another architecture, a
  checksum mismatch), or the server answers with an error, or cannot be reached: nothing new is kept;
- the connection drops (or the user cancels) before all announced bytes arrived: the bytes so far stay in
  ``<file>.partial`` (with ``<file>.partial.json``: the URL and the server's validators), so that the
  same ``get`` resumes with an HTTP Range request instead of starting over. A ``.partial`` file is never
  used as a checkpoint; the final name appears only after verification, by an atomic rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

from highlighter.errors import CheckpointError, HighlighterError

PARTIAL = ".partial"
CHUNK = 1 << 20

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


class DownloadError(HighlighterError):
    """A download failed; the message says what, and what (if anything) was kept for a resume."""


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


# ============================================================================= the cache
def cache_root(cache: str | os.PathLike | None = None) -> Path:
    if cache:
        return Path(cache)
    if os.environ.get("HIGHLIGHTER_CACHE"):
        return Path(os.environ["HIGHLIGHTER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "highlighter"


def weights_dir(cache: str | os.PathLike | None = None) -> Path:
    return cache_root(cache) / "weights"


def local_path(entry: Official, cache: str | os.PathLike | None = None) -> Path:
    """Where ``entry`` lives once downloaded (whether it is there or not)."""
    return weights_dir(cache) / entry.filename


def downloaded(cache: str | os.PathLike | None = None) -> list[tuple[Official, Path]]:
    """The catalogue entries whose verified file is in the cache, in catalogue order. Reads the disk only."""
    return [(e, p) for e in CATALOGUE.values() if (p := local_path(e, cache)).is_file()]


def resolve(spec: str, cache: str | os.PathLike | None = None) -> str:
    """An official name -> the path of its downloaded file; a hub name (``hf-hub:owner/name[@revision]``) -> its
    verified file in the hub's cache (``hub_file``); anything else (a path, ``random:...``) unchanged. An existing
    file of that name wins over both."""
    if spec.startswith(HUB_PREFIX) and not Path(spec).exists():
        return str(hub_file(spec))
    entry = CATALOGUE.get(spec)
    if entry is None or Path(spec).exists():
        return spec
    path = local_path(entry, cache)
    if not path.is_file() and entry.gated:
        raise CheckpointError(entry.gated_message(path))
    if not path.is_file():
        raise CheckpointError(f"{spec} (official {entry.family_name} weights) is not downloaded yet: run "
                              f"`highlighter weights get {spec}` (looked for {path})")
    return str(path)


# ============================================================================= the Hugging Face hub
HUB_PREFIX = "hf-hub:"  # timm's spelling: hf-hub:timm/vit_small_patch16_224.dino
HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm looks for, in its order


def _hub_name(spec: str) -> tuple[str, str | None]:
    import re

    repo, _, revision = spec[len(HUB_PREFIX):].partition("@")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo) or ".." in repo:
        raise CheckpointError(f"{spec}: a hub name is hf-hub:OWNER/NAME, optionally @REVISION "
                              "(e.g. hf-hub:timm/vit_small_patch16_224.dino)")
    return repo, revision or None


def hub_file(spec: str) -> Path:
    """``hf-hub:owner/name[@revision]`` -> the local path of its weights (``model.safetensors``, else
    ``pytorch_model.bin``), through ``huggingface_hub``: its shared cache (a file already there is used without
    asking the hub), HF_HUB_OFFLINE, HF_ENDPOINT mirrors, tokens (HF_TOKEN or ``hf auth login``) and resumed
    downloads are the library's. What arrives is then checked as a downloaded official file is: read without
    running code, recognised, built strictly (``verify_file``). Raises CheckpointError with one line."""
    repo, revision = _hub_name(spec)
    try:
        from huggingface_hub import constants, hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:
        raise CheckpointError(f"{spec}: hub names need huggingface_hub (pip install huggingface_hub)") from None
    where = constants.ENDPOINT
    path = None
    for local_only in (True, False):
        for filename in HUB_FILES:
            try:
                path = hf_hub_download(repo, filename, revision=revision, local_files_only=local_only)
                break
            except GatedRepoError:
                raise CheckpointError(f"{spec} is gated: accept its terms at {where}/{repo} and log in "
                                      "(`hf auth login`, or set HF_TOKEN)") from None
            except RepositoryNotFoundError:
                raise CheckpointError(f"{spec}: no such model on {where} (or a private one: log in with "
                                      "`hf auth login`, or set HF_TOKEN)") from None
            except RevisionNotFoundError:
                raise CheckpointError(f"{spec}: {repo} has no revision {revision!r} on {where}") from None
            except LocalEntryNotFoundError as e:
                if local_only:
                    continue  # not in the cache: ask the hub
                if constants.is_offline_mode():
                    raise CheckpointError(f"{spec} is not in the hub cache ({constants.HF_HUB_CACHE}) and offline "
                                          "mode is on (HF_HUB_OFFLINE)") from None
                reason = str(e.__cause__ or e).splitlines()[0][:120]
                raise CheckpointError(f"{spec}: cannot reach {where} and the file is not in the hub cache "
                                      f"({reason})") from None
            except EntryNotFoundError:
                continue  # the next file name
            except (HfHubHTTPError, OSError) as e:
                reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
                raise CheckpointError(f"{spec}: the hub answered with an error ({reason})") from None
        if path is not None:
            break
    if path is None:
        raise CheckpointError(f"{spec}: {repo} on {where} has no {' or '.join(HUB_FILES)}: not a timm model")
    try:
        verify_file(Path(path), spec)
    except CheckpointError:
        if not local_only:  # fetched by this call and refused: not kept (a file that was in the cache stays)
            blob = Path(path).resolve()
            Path(path).unlink(missing_ok=True)
            blob.unlink(missing_ok=True)
        raise
    return Path(path)


def verify_file(path: Path, what: str):
    """Check a file that came from elsewhere as ``verify`` checks an official one, without a promised architecture:
    read safely, recognised, its ViT built strictly (with its MAE decoder, when it has one)."""
    from highlighter.core.build import build_attention_model, build_mae_model
    from highlighter.core.formats import load_checkpoint

    try:
        ck = load_checkpoint(path)
        (build_mae_model if ck.decoder is not None else build_attention_model)(ck)
    except CheckpointError as e:
        raise CheckpointError(f"{what}: refused the file from the hub ({e})") from None
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{what}: the weights do not fit the model ({str(e).splitlines()[0][:160]})") from None
    return ck


# ============================================================================= URLs
def mirror_url(url: str, mirror: str | None) -> str:
    """Replace the scheme and host of ``url`` by the mirror's and keep its path. A path in the mirror URL
    (``https://host/prefix``) goes in front of the official path."""
    if not mirror:
        return url
    m = urllib.parse.urlsplit(mirror)
    if m.scheme not in ("http", "https") or not m.netloc:
        raise HighlighterError(f"--mirror needs an http(s) URL with a host, like https://mirror.example.org "
                               f"(got {mirror!r})")
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((m.scheme, m.netloc, m.path.rstrip("/") + u.path, u.query, ""))


# ============================================================================= verification
def check_architecture(entry: Official, ck) -> None:
    """Raise ``CheckpointError`` unless the loaded checkpoint is the architecture ``entry`` promises."""
    v = ck.vit
    wrong = (v.arch_name != entry.arch or v.depth != entry.depth or v.num_register_tokens != entry.registers
             or v.layerscale != entry.layerscale or (ck.decoder is not None) != entry.decoder
             or v.rope != entry.rope or v.swiglu != bool(entry.swiglu_hidden)
             or (entry.swiglu_hidden and v.mlp_hidden != 2 * entry.swiglu_hidden))
    if not wrong:
        return
    what = v.describe() + (", with layer scale" if v.layerscale else "") + (", SwiGLU" if v.swiglu else "") + (
        ", with an MAE decoder" if ck.decoder is not None else ", without an MAE decoder" if entry.decoder else "")
    kind = ("DINOv3 (RoPE) " if entry.rope else "DINOv2 (layer-scale) " if entry.layerscale else "")
    raise CheckpointError(f"it holds a {what}, not the {kind}{entry.describe()} of {entry.name}")


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def verify(entry: Official, path: Path):
    """Load ``path`` through the checkpoint loader, check the architecture and build the model strictly
    (every tensor present, every shape right). Returns the ``LoadedCheckpoint``; raises ``CheckpointError``."""
    from highlighter.core.build import build_attention_model, build_mae_model
    from highlighter.core.formats import load_checkpoint

    ck = load_checkpoint(path)
    check_architecture(entry, ck)
    try:
        (build_mae_model if entry.decoder else build_attention_model)(ck)
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"the weights do not fit the model ({str(e).splitlines()[0][:160]})") from None
    return ck


# ============================================================================= download
@dataclass
class Result:
    entry: Official
    path: Path
    url: str
    fetched: int = 0  # bytes transferred by this call
    resumed_from: int = 0  # bytes that were already in the .partial file
    already: bool = False  # the file was in the cache; nothing was fetched
    checkpoint: object = None  # the verified LoadedCheckpoint (None when ``already``)


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f} MB"


class _Interrupted(Exception):
    def __init__(self, done: int, total: int | None, reason: str):
        super().__init__(reason)
        self.done, self.total, self.reason = done, total, reason


def _reason(e: BaseException) -> str:
    r = getattr(e, "reason", None) or e
    return str(r) or type(r).__name__


class _Fetch:
    """One GET (with Range when a matching partial exists) streamed into ``part``."""

    def __init__(self, url: str, part: Path, progress, should_stop, timeout: float):
        self.url, self.part, self.side = url, part, part.with_name(part.name + ".json")
        self.progress, self.should_stop, self.timeout = progress, should_stop, timeout
        self.resumed_from = self.fetched = 0
        self.total: int | None = None

    def read_side(self) -> dict:
        try:
            side = json.loads(self.side.read_text())
            return side if isinstance(side, dict) else {}
        except (OSError, ValueError):
            return {}

    def discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.side.unlink(missing_ok=True)

    def run(self, folder_made: Callable[[], None]) -> None:
        side = self.read_side()
        have = self.part.stat().st_size if self.part.is_file() else 0
        if have and side.get("url") != self.url:
            self.discard()  # bytes from another URL: start over
            have, side = 0, {}
        if have and side.get("total") == have:
            self.total = have  # complete already (a verification was interrupted): verify again
            return
        for _ in range(2):
            if self._get(have, side, folder_made):
                return
            self.discard()  # the server refused the range: once more from byte 0
            have, side = 0, {}

    def _get(self, have: int, side: dict, folder_made) -> bool:
        headers = {"User-Agent": "highlighter (weights get)", "Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
            if side.get("etag") or side.get("last_modified"):
                headers["If-Range"] = side.get("etag") or side["last_modified"]
        req = urllib.request.Request(self.url, headers=headers)
        try:
            resp = urllib.request.urlopen(req, timeout=self.timeout)  # noqa: S310 - http(s) only, see mirror_url
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 416 and have:
                return False
            raise DownloadError(f"{self.url} answered HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError, HTTPException, ValueError) as e:
            host = urllib.parse.urlsplit(self.url).netloc
            raise DownloadError(f"cannot reach {host} ({_reason(e)})") from None
        with resp:
            length = resp.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            if have and resp.status == 206:
                crange = resp.headers.get("Content-Range", "")  # bytes START-END/TOTAL
                start = crange.split(" ")[-1].split("-")[0]
                if start != str(have):
                    return False
                total = crange.rsplit("/", 1)[-1]
                self.total = int(total) if total.isdigit() else (have + length if length is not None else None)
                self.resumed_from = have
                mode = "ab"
            else:  # 200: the whole file (a server that ignores Range, or a changed file under If-Range)
                self.total, self.resumed_from, mode = length, 0, "wb"
            folder_made()
            self.side.write_text(json.dumps({"url": self.url, "total": self.total,
                                             "etag": resp.headers.get("ETag"),
                                             "last_modified": resp.headers.get("Last-Modified")}))
            done = self.resumed_from
            if self.progress:
                self.progress(done, self.total)
            with open(self.part, mode) as f:
                while True:
                    if self.should_stop and self.should_stop():
                        raise _Interrupted(done, self.total, "cancelled")
                    try:
                        block = resp.read(CHUNK)
                    except (OSError, HTTPException) as e:
                        raise _Interrupted(done, self.total, _reason(e)) from None
                    if not block:
                        break
                    f.write(block)
                    done += len(block)
                    self.fetched += len(block)
                    if self.progress:
                        self.progress(done, self.total)
                f.flush()
                os.fsync(f.fileno())
        if self.total is not None and done < self.total:
            raise _Interrupted(done, self.total, "the connection closed early")
        if self.total is not None and done > self.total:
            raise DownloadError(f"{self.url} sent {done} bytes after announcing {self.total}")
        if self.total is None:
            self.total = done
            side = self.read_side()
            self.side.write_text(json.dumps({**side, "total": done}))
        return True


def download(entry: Official, mirror: str | None = None, cache: str | os.PathLike | None = None,
             progress: Callable[[int, int | None], None] | None = None,
             should_stop: Callable[[], bool] | None = None, log: Callable[[str], None] | None = None,
             timeout: float = 60.0) -> Result:
    """Fetch ``entry`` (from ``mirror``'s host if given) into the cache, verify it, then rename it into place.

    ``progress(done_bytes, total_bytes_or_None)`` is called as bytes arrive; ``should_stop()`` is polled
    between chunks (a stop keeps the partial file, like a dropped connection). Raises ``DownloadError``
    with a one-line message.
    """
    url = mirror_url(entry.url, mirror)
    dest = local_path(entry, cache)
    if dest.is_file():
        return Result(entry, dest, url, already=True)
    if entry.gated:
        raise DownloadError(entry.gated_message())
    folder = dest.parent
    new_dirs = [p for p in [folder, *folder.parents] if not p.exists()]
    part = folder / (entry.filename + PARTIAL)
    fetch = _Fetch(url, part, progress, should_stop, timeout)
    if log:
        log(f"downloading {entry.name}, {entry.describe()}, from {url}")
        if part.is_file():
            log(f"resuming from the {_mb(part.stat().st_size)} already in {part}")

    def tidy() -> None:  # leave nothing new behind
        fetch.discard()
        for d in new_dirs:  # innermost first
            try:
                d.rmdir()
            except OSError:
                break

    def kept() -> str:
        n = part.stat().st_size if part.is_file() else 0
        return (f"; {_mb(n)} already fetched are kept in {part} and the same command resumes from there"
                if n else "")

    try:
        fetch.run(lambda: folder.mkdir(parents=True, exist_ok=True))
    except _Interrupted as e:
        what = "cancelled" if e.reason == "cancelled" else f"the download broke off ({e.reason})"
        raise DownloadError(f"{entry.name}: {what} at {_mb(e.done)} of {_mb(e.total)}{kept()}") from None
    except DownloadError as e:
        if not part.is_file():
            tidy()
        raise DownloadError(f"{entry.name}: {e}{kept() or '; nothing was downloaded'}") from None

    try:
        if entry.checksum:
            algorithm, prefix = entry.checksum
            digest = file_digest(part, algorithm)
            if not digest.startswith(prefix.lower()):
                raise CheckpointError(f"{algorithm} {digest[:12]}... does not start with the published {prefix}")
        ck = verify(entry, part)
    except CheckpointError as e:
        tidy()
        reason = str(e).replace(f"{part}: ", "").replace(str(part), part.name)
        raise DownloadError(f"{entry.name}: refused the file from {url}: {reason}; nothing was kept") from None
    os.replace(part, dest)
    fetch.side.unlink(missing_ok=True)
    return Result(entry, dest, url, fetch.fetched, fetch.resumed_from, checkpoint=ck)


def adopt(entry: Official, source: str | os.PathLike, cache: str | os.PathLike | None = None) -> Result:
    """Keep a file the user downloaded (a gated one, or any official file fetched elsewhere) as ``entry``: checked as
    a download is (the published checksum, then the architecture and a strict build), copied next to its final
    name and renamed into place only then. Raises ``CheckpointError`` with one line; the source is left as it is."""
    import shutil

    src = Path(source).expanduser()
    if not src.is_file():
        raise CheckpointError(f"{entry.name}: {src} is not a file")
    if entry.checksum:
        algorithm, prefix = entry.checksum
        digest = file_digest(src, algorithm)
        if not digest.startswith(prefix.lower()):
            raise CheckpointError(f"{entry.name}: {src} is not the released {entry.filename}: its {algorithm} "
                                  f"{digest[:12]}... does not start with the published {prefix}")
    try:
        ck = verify(entry, src)
    except CheckpointError as e:
        raise CheckpointError(f"{entry.name}: refused {src}: {str(e).replace(f'{src}: ', '')}") from None
    dest = local_path(entry, cache)
    if dest.is_file() and dest.resolve() == src.resolve():
        return Result(entry, dest, str(src), already=True, checkpoint=ck)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + PARTIAL)
    try:
        shutil.copyfile(src, part)
        os.replace(part, dest)
    except OSError as e:
        part.unlink(missing_ok=True)
        raise CheckpointError(f"{entry.name}: could not keep a copy in {dest.parent} ({e.strerror or e})") from None
    return Result(entry, dest, str(src), fetched=dest.stat().st_size, checkpoint=ck)
