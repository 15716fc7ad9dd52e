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

from highlighter.catalogue import CATALOGUE, Official
from highlighter.errors import CheckpointError, HighlighterError

PARTIAL = ".partial"
CHUNK = 1 << 20

class DownloadError(HighlighterError):
    """A download failed; the message says what, and what (if anything) was kept for a resume."""


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
    name, the copy checked against the source, and renamed into place only then. Raises ``CheckpointError`` with one
    line; the source is left as it is."""
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
    algorithm = entry.checksum[0] if entry.checksum else "sha256"
    want = digest if entry.checksum else file_digest(src, algorithm)
    try:
        shutil.copyfile(src, part)
        if file_digest(part, algorithm) != want:  # a full disk or a flaky drive: never keep a copy that differs
            part.unlink(missing_ok=True)
            raise CheckpointError(f"{entry.name}: the copy in {dest.parent} differs from {src} (a full disk?); "
                                  "nothing kept")
        os.replace(part, dest)
    except OSError as e:
        part.unlink(missing_ok=True)
        raise CheckpointError(f"{entry.name}: could not keep a copy in {dest.parent} ({e.strerror or e})") from None
    return Result(entry, dest, str(src), fetched=dest.stat().st_size, checkpoint=ck)
