"""Slide files on this machine: the decrypted working copies, OpenSlide handles, Deep Zoom generators,
hot tiles, and what may be said about a slide (facts, the property whitelist).

The file at rest is the encrypted original in the core store (``core.storage``). OpenSlide needs a real
file (several, for MIRAX and DICOM), so a decrypted working copy is kept under
``<data dir>/pathology-cache`` (mode 0700): one folder per stored file, ``<name>/slide/…`` written to a
temporary name and renamed into place, so two processes may race to make it and neither sees half of
it. Beside it, ``<name>/tiles/…`` keeps the encoded Deep Zoom tiles and thumbnails, so every app
process (``--workers``) serves a tile another one made without computing it again. The cache folder
has a size budget; the least recently used slides (copy and tiles together) go first (never one this
process has open, nor one used within the last minute), and a slide's folder goes when the slide is
deleted or its patient erased.

In memory, per process and bounded: open handles (an LRU of OpenSlide objects, dropped rather than
closed, since another thread may still be reading through one: OpenSlide closes on release), one
DeepZoomGenerator per (file, tile size, overlap), and encoded tiles in an LRU bounded by bytes (the
first place a tile is looked for; the tiles folder is the second).

Settings (environment, read through ``core.settings``' ``extra``; defaults in :class:`Config`):
``CPMS_PATHOLOGY_TILE_SIZE``, ``_OVERLAP``, ``_QUALITY`` (JPEG/WebP quality), ``_CACHE_BYTES`` (working
copies and their tiles folders), ``_TILE_CACHE_BYTES`` (hot tiles in memory, per process), ``_HANDLES``, ``_MAX_UPLOAD_BYTES``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, fields
from pathlib import Path

CACHE_FOLDER = "pathology-cache"
INCOMING_PREFIX = ".incoming-"
#: Check the cache budget after this many tiles written to disk by this process.
EVICT_EVERY = 512
#: Extensions a single uploaded slide file may keep (OpenSlide tells some formats apart by name).
SINGLE_EXTENSIONS = {"svs", "tif", "tiff", "ndpi", "scn", "bif", "svslide", "dcm", "vsf"}


@dataclass(frozen=True)
class Config:
    tile_size: int = 254  # 254 + 2 x 1 overlap = 256: what OpenSeadragon and OpenSlide expect
    overlap: int = 1
    quality: int = 75
    cache_bytes: int = 20 * 1024**3
    tile_cache_bytes: int = 96 * 1024**2
    handles: int = 16
    max_upload_bytes: int = 8 * 1024**3

    LIMITS = {"tile_size": (64, 1024), "overlap": (0, 8), "quality": (10, 100), "cache_bytes": (64 * 1024**2, 2**50),
              "tile_cache_bytes": (0, 2**40), "handles": (1, 1024), "max_upload_bytes": (1024**2, 2**50)}


_configs: dict[int, tuple[object, Config]] = {}


def config(settings) -> Config:
    """The plugin's settings from ``CPMS_PATHOLOGY_*`` (``settings.extra``), checked once per settings object."""
    from core.settings import SettingsError

    hit = _configs.get(id(settings))
    if hit is not None and hit[0] is settings:
        return hit[1]
    values = {}
    for f in fields(Config):
        raw = settings.extra.get(f"pathology_{f.name}")
        if raw is None or raw == "":
            continue
        low, high = Config.LIMITS[f.name]
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"CPMS_PATHOLOGY_{f.name.upper()} must be a whole number, not {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(f"CPMS_PATHOLOGY_{f.name.upper()} must be between {low} and {high}")
        values[f.name] = value
    cfg = Config(**values)
    _configs[id(settings)] = (settings, cfg)
    return cfg


# --- what may be said about a slide --------------------------------------------------------

#: Properties shown outside the enrolling hospital: geometry and optics, nothing free-text. A whitelist,
#: because vendors put names, barcodes, file names, user names and serial numbers in arbitrary fields.
SAFE_PROPERTIES = re.compile(
    r"^(openslide\.(vendor|mpp-x|mpp-y|objective-power|level-count|background-color|bounds-(x|y|width|height)"
    r"|level\[\d{1,2}\]\.(width|height|downsample|tile-width|tile-height))"
    r"|aperio\.(AppMag|MPP)|hamamatsu\.SourceLens|tiff\.(ResolutionUnit|XResolution|YResolution))$"
)
#: And the values must look like numbers or a short word (a vendor name, a unit, a hex colour).
SAFE_VALUE = re.compile(r"^(-?[0-9]{1,12}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?|[a-z][a-z-]{0,19}|[0-9A-Fa-f]{6})$")


def safe_properties(properties) -> dict[str, str]:
    return {k: str(v) for k, v in properties.items() if SAFE_PROPERTIES.match(k) and SAFE_VALUE.match(str(v))}


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 1e6 and number == number else None


def facts(osr) -> dict:
    """What the slide row keeps: vendor, size, levels, optics, filtered properties, associated image names."""
    props = osr.properties
    return {
        "vendor": str(props.get("openslide.vendor", "") or "")[:40],
        "width": int(osr.dimensions[0]), "height": int(osr.dimensions[1]), "level_count": int(osr.level_count),
        "mpp_x": _positive(props.get("openslide.mpp-x")), "mpp_y": _positive(props.get("openslide.mpp-y")),
        "objective_power": _positive(props.get("openslide.objective-power")),
        "properties": safe_properties(props),
        "associated": sorted(str(name)[:40] for name in osr.associated_images),
    }


def slide_mpp(slide: dict) -> float | None:
    """Microns per pixel at level 0 (the mean of x and y when both are known), for scale bars and
    measurements; None when the scanner did not say."""
    xs = [v for v in (slide.get("mpp_x"), slide.get("mpp_y")) if v]
    return sum(xs) / len(xs) if xs else None


def _loads(value, default):
    import json

    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return default
    return value if value is not None else default


def slide_properties(slide: dict) -> dict[str, str]:
    """The row's stored properties, filtered again (the whitelist may have narrowed since upload)."""
    return safe_properties(_loads(slide.get("properties"), {}))


# --- working copies ------------------------------------------------------------------------


def sweep_incoming(root: Path, older_than: float = 3600.0) -> int:
    """Remove what uploads or decryptions interrupted by a killed process left in the cache folder:
    upload folders whose owner lock is free (core/workfiles.py), anything else untouched for
    ``older_than`` seconds (a live one writes continually). Returns how many were removed."""
    from core import workfiles

    removed = 0
    for child in root.glob(f"{INCOMING_PREFIX}*"):
        try:
            if child.is_dir() and (child / workfiles.OWNER).exists():
                gone = workfiles.abandoned(child, older_than=older_than)
            else:
                gone = child.stat().st_mtime < time.time() - older_than
            if gone:
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
                removed += 1
        except OSError:
            continue
    return removed


def cache_root(settings) -> Path:
    root = Path(settings.data_dir) / CACHE_FOLDER
    if not root.is_dir():
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    return root


def copy_name(file_key: str) -> str:
    """The folder of a stored file's working copy: the last part of its (opaque) storage key."""
    name = file_key.rsplit("/", 1)[-1]
    if not re.fullmatch(r"[0-9a-f]{64}", name):
        raise ValueError("not a storage key")
    return name


def find_entry(folder: Path) -> Path | None:
    """The file OpenSlide opens in an unpacked upload: the ``.mrxs`` or ``.vms`` index, else one
    ``.dcm`` of a DICOM series (OpenSlide finds the others beside it), else the only file."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    for suffix in (".mrxs", ".vms"):
        found = [p for p in files if p.suffix.lower() == suffix]
        if len(found) == 1:
            return found[0]
        if found:
            return None  # two slides in one archive: ambiguous
    dicom = [p for p in files if p.suffix.lower() == ".dcm" or _is_dicom(p)]
    if dicom:
        return dicom[0]
    slides = [p for p in files if p.suffix.lower().lstrip(".") in SINGLE_EXTENSIONS]
    if len(slides) == 1:
        return slides[0]
    return files[0] if len(files) == 1 else None


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


class SlideFiles:
    """Working copies, handles, generators and hot tiles of one data folder, for this process."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.cfg = config(settings)
        self.root = cache_root(settings)
        self._lock = threading.Lock()
        self._making: dict[str, object] = {}
        self._handles: OrderedDict[str, object] = OrderedDict()
        self._zooms: dict[tuple, object] = {}
        self._tiles: OrderedDict[tuple, bytes] = OrderedDict()
        self._tile_bytes = 0
        self._entries: dict[str, Path] = {}
        self._written = 0
        self._sweep_incoming()
        self._touched: dict[str, float] = {}

    def _sweep_incoming(self, older_than: float = 3600.0) -> int:
        return sweep_incoming(self.root, older_than)

    # --- working copy ---

    def entry_path(self, name: str) -> Path | None:
        """The openable file of an existing working copy (touching it for the LRU), or None."""
        known = self._entries.get(name)
        if known is not None and known.exists():
            return known
        folder = self.root / name / "slide"
        if not folder.is_dir():
            return None
        entry = find_entry(folder)
        if entry is not None:
            try:
                os.utime(self.root / name)
            except OSError:
                pass
            self._entries[name] = entry
        return entry

    async def ensure_local(self, slide: dict) -> Path:
        """The working copy's openable file, decrypting the stored original first if needed."""
        from anyio import to_thread

        name = copy_name(slide["file_key"])
        entry = self._entries.get(name)
        if entry is not None:
            return entry
        entry = await to_thread.run_sync(self.entry_path, name)
        if entry is not None:
            return entry
        import asyncio

        # One decryption per slide at a time in this process (a viewer asks for many tiles at once).
        lock = self._making.setdefault(name, asyncio.Lock())
        async with lock:
            entry = await to_thread.run_sync(self.entry_path, name)
            if entry is None:
                entry = await self._materialise(slide, name)
        self._making.pop(name, None)
        return entry

    async def _materialise(self, slide: dict, name: str) -> Path:
        from anyio import to_thread

        from core.storage import Storage

        temp = self.root / f"{INCOMING_PREFIX}{secrets.token_hex(8)}"
        await to_thread.run_sync(lambda: temp.mkdir(mode=0o700))
        try:
            raw = temp / "stored"
            stream = await Storage(self.settings).open_stream(slide["file_key"])
            fh = await to_thread.run_sync(lambda: open(raw, "wb"))
            try:
                async for chunk in stream:
                    await to_thread.run_sync(fh.write, chunk)
            finally:
                await stream.aclose()
                await to_thread.run_sync(fh.close)
            await to_thread.run_sync(self._unpack_stored, raw, temp, slide.get("container") or "")
            await to_thread.run_sync(self._evict_for, _tree_size(temp))
            return await to_thread.run_sync(self.adopt, temp, name)
        finally:
            # Synchronous: under cancellation an await here would not run.
            shutil.rmtree(temp, ignore_errors=True)

    @staticmethod
    def _unpack_stored(raw: Path, folder: Path, container: str) -> None:
        with open(raw, "rb") as fh:
            zipped = fh.read(4) == b"PK\x03\x04"
        if zipped:
            # It was checked at upload (ingest.safe_extract); extracting it again with the same checks
            # costs little and keeps one code path.
            from plugins.pathology_viewer.ingest import safe_extract

            safe_extract(raw, folder / "slide")
            raw.unlink()
        else:
            ext = container if container in SINGLE_EXTENSIONS else "tiff"
            (folder / "slide").mkdir(mode=0o700)
            raw.rename(folder / "slide" / f"slide.{ext}")

    def adopt(self, folder: Path, name: str) -> Path:
        """Move a prepared folder (``folder/slide/...``) into place as the working copy of ``name``;
        if another process was first, keep theirs. Returns the openable file."""
        final = self.root / name
        final.mkdir(mode=0o700, exist_ok=True)
        try:
            os.rename(folder / "slide", final / "slide")
        except OSError:
            if not (final / "slide").is_dir():
                raise
        os.utime(final)
        entry = find_entry(final / "slide")
        if entry is None:
            raise FileNotFoundError("the working copy holds no slide")
        self._entries[name] = entry
        return entry

    def _evict_for(self, incoming: int) -> None:
        """Make room for ``incoming`` bytes: least recently used copies first, never an open one."""
        budget = self.cfg.cache_bytes
        copies = []
        for child in self.root.iterdir():
            if child.name.startswith(INCOMING_PREFIX) or not child.is_dir():
                continue
            try:
                copies.append((child.stat().st_mtime, child, _tree_size(child)))
            except OSError:
                continue
        total = sum(size for _, _, size in copies) + incoming
        now = time.time()
        with self._lock:
            busy = set(self._handles)
        for mtime, child, size in sorted(copies, key=lambda c: c[0]):
            if total <= budget:
                break
            # Another process may be reading it: only copies untouched for a minute go.
            if child.name in busy or now - mtime < 60:
                continue
            shutil.rmtree(child, ignore_errors=True)
            self._entries.pop(child.name, None)
            total -= size

    def drop_handle(self, file_key: str) -> None:
        name = copy_name(file_key)
        with self._lock:
            self._handles.pop(name, None)
            for key in [k for k in self._zooms if k[0] == name]:
                del self._zooms[key]

    def remove_copy(self, file_key: str) -> None:
        """Forget a stored file here: handles, generators, tiles and its working copy."""
        name = copy_name(file_key)
        with self._lock:
            self._handles.pop(name, None)
            for key in [k for k in self._zooms if k[0] == name]:
                del self._zooms[key]
            for key in [k for k in self._tiles if k[0] == name]:
                self._tile_bytes -= len(self._tiles.pop(key))
        self._entries.pop(name, None)
        shutil.rmtree(self.root / name, ignore_errors=True)

    # --- handles and generators (called in worker threads) ---

    def handle(self, slide: dict, entry: Path):
        import openslide

        name = copy_name(slide["file_key"])
        self._touch(name)
        with self._lock:
            osr = self._handles.get(name)
            if osr is not None:
                self._handles.move_to_end(name)
                return osr
        osr = openslide.OpenSlide(str(entry))
        with self._lock:
            self._handles[name] = osr
            while len(self._handles) > self.cfg.handles:
                old, _ = self._handles.popitem(last=False)
                for key in [k for k in self._zooms if k[0] == old]:
                    del self._zooms[key]
        return osr

    def _touch(self, name: str) -> None:
        """Mark a slide's folder used (the eviction's LRU clock), at most once a minute per process."""
        now = time.monotonic()
        if now - self._touched.get(name, -1e9) > 60:
            self._touched[name] = now
            try:
                os.utime(self.root / name)
            except OSError:
                pass

    def deepzoom(self, slide: dict, entry: Path, tile_size: int | None = None, overlap: int | None = None):
        from openslide.deepzoom import DeepZoomGenerator

        tile_size = tile_size or self.cfg.tile_size
        overlap = self.cfg.overlap if overlap is None else overlap
        key = (copy_name(slide["file_key"]), tile_size, overlap)
        zoom = self._zooms.get(key)
        if zoom is None:
            zoom = DeepZoomGenerator(self.handle(slide, entry), tile_size=tile_size, overlap=overlap, limit_bounds=False)
            with self._lock:
                self._zooms[key] = zoom
        return zoom

    # --- hot tiles: memory first, then the slide's tiles folder (shared by processes) ---

    def _tile_file(self, key: tuple) -> Path | None:
        name = key[0]
        if len(key) == 8:  # (name, tile size, overlap, quality, level, col, row, format)
            size, overlap, quality, level, col, row, fmt = key[1:]
            return self.root / name / "tiles" / f"{size}-{overlap}-{quality}" / str(level) / f"{col}_{row}.{fmt}"
        if len(key) == 4 and key[1] == "thumb":
            return self.root / name / "tiles" / f"thumb-{key[2]}-{key[3]}.jpeg"
        return None  # IIIF answers: too varied to keep on disk

    def disk_get(self, key: tuple) -> bytes | None:
        """A tile another process (or an earlier run) wrote; call from a worker thread."""
        path = self._tile_file(key)
        if path is None:
            return None
        try:
            with open(path, "rb") as fh:
                body = fh.read()
        except OSError:
            return None
        self.tile_put(key, body, disk=False)
        return body

    def _disk_put(self, key: tuple, body: bytes) -> None:
        path = self._tile_file(key)
        if path is None or not (self.root / key[0] / "slide").is_dir():
            return  # the working copy was evicted meanwhile: do not leave an orphan tiles folder
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            with open(temp, "wb") as fh:
                fh.write(body)
            os.replace(temp, path)
        except OSError:
            return  # a cache: failing to keep a tile only costs computing it again
        self._written += 1
        if self._written % EVICT_EVERY == 0:
            self._evict_for(0)

    def tile_get(self, key: tuple) -> bytes | None:
        with self._lock:
            body = self._tiles.get(key)
            if body is not None:
                self._tiles.move_to_end(key)
            return body

    def tile_put(self, key: tuple, body: bytes, disk: bool = True) -> None:
        """Keep an encoded tile (in memory; with ``disk``, also in the tiles folder: worker threads only)."""
        if disk:
            self._disk_put(key, body)
        budget = self.cfg.tile_cache_bytes
        if len(body) > budget // 8:
            return
        with self._lock:
            if key in self._tiles:
                return
            self._tiles[key] = body
            self._tile_bytes += len(body)
            while self._tile_bytes > budget:
                _, old = self._tiles.popitem(last=False)
                self._tile_bytes -= len(old)


def _tree_size(folder: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(folder):
        for n in names:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:
                pass
    return total


_files: dict[str, SlideFiles] = {}
_files_lock = threading.Lock()


def files_for(settings) -> SlideFiles:
    """The process-wide :class:`SlideFiles` of a data folder."""
    key = f"{settings.data_dir}|{id(settings)}"
    found = _files.get(key)
    if found is None:
        with _files_lock:
            found = _files.get(key)
            if found is None:
                found = _files[key] = SlideFiles(settings)
    return found


async def open_handle(settings, slide: dict):
    from anyio import to_thread

    files = files_for(settings)
    entry = await files.ensure_local(slide)
    return await to_thread.run_sync(files.handle, slide, entry)


def forget_everywhere(file_key: str) -> None:
    """Drop a stored file's copies and cached tiles in every data folder this process knows."""
    for files in list(_files.values()):
        try:
            files.remove_copy(file_key)
        except ValueError:
            pass
