"""The Deep Zoom tile server: the DZI descriptor, tiles (JPEG or WebP) and a thumbnail.

The caller has decided access (``access.load_slide`` or a share token). Everything here serves the
slide's pyramid only (``DeepZoomGenerator`` over OpenSlide's levels): associated images (label, macro,
the scanner's own thumbnail) are never read.

A tile is named by the stored file's content and the tile settings, so its ETag is known without
opening anything: a revalidation (If-None-Match) answers 304 at once, an address outside the pyramid
404, a format other than jpeg/webp 400. Encoding runs in a worker thread (anyio), so a slow tile never
blocks the event loop; encoded tiles are kept in a per-process LRU bounded by bytes and in the slide's
tiles folder, which every app process shares (``slides``).
"""

from __future__ import annotations

import functools
import io
import math

from anyio import to_thread
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException

from plugins.pathology_viewer import slides

FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "jpg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}
TILE_CACHE_CONTROL = "private, max-age=3600"
DZI_CACHE_CONTROL = "private, max-age=600"
THUMBNAIL_MAX = 512
#: An ICC profile larger than this is not embedded in every tile (some scanners ship ~0.5 MB ones).
MAX_ICC = 8192


class BadRequest(HTTPException):
    status_code = 400


@functools.lru_cache(maxsize=1024)
def geometry(width: int, height: int, tile_size: int) -> tuple[tuple[int, int], ...]:
    """(columns, rows) of each Deep Zoom level, as ``DeepZoomGenerator`` computes them (level 0 = 1x1 px)."""
    size = (max(1, int(width)), max(1, int(height)))
    dims = [size]
    while size[0] > 1 or size[1] > 1:
        size = (max(1, math.ceil(size[0] / 2)), max(1, math.ceil(size[1] / 2)))
        dims.append(size)
    return tuple((math.ceil(w / tile_size), math.ceil(h / tile_size)) for w, h in reversed(dims))


def _matches(request: Request, etag: str) -> bool:
    given = request.headers.get("if-none-match", "")
    return bool(given) and (given.strip() == "*" or etag in [t.strip().removeprefix("W/") for t in given.split(",")])


def _not_modified(etag: str, cache_control: str) -> Response:
    return Response(b"", status_code=304, headers={"ETag": etag, "Cache-Control": cache_control})


def _fmt(fmt: str) -> tuple[str, str, str]:
    name = (fmt or "").lower()
    if name not in FORMATS:
        raise BadRequest(detail="Tile format must be jpeg or webp.")
    pil, media = FORMATS[name]
    return ("jpeg" if name == "jpg" else name), pil, media


def encode(image, pil_format: str, quality: int) -> bytes:
    """An RGB PIL image as JPEG or WebP bytes (the ICC profile kept when small)."""
    out = io.BytesIO()
    icc = image.info.get("icc_profile")
    extra = {"icc_profile": icc} if icc and len(icc) <= MAX_ICC else {}
    if image.mode != "RGB":
        image = image.convert("RGB")
    if pil_format == "WEBP":
        image.save(out, "WEBP", quality=quality, method=2, **extra)
    else:
        image.save(out, "JPEG", quality=quality, **extra)
    return out.getvalue()


async def dzi_response(slide: dict, request: Request, fmt: str = "jpeg") -> Response:
    """The Deep Zoom descriptor (XML). ``fmt`` is the tile format it announces (jpeg or webp)."""
    name, _, _ = _fmt(fmt)
    cfg = slides.config(request.app.state.settings)
    etag = f'"dzi-{slide["sha256"][:24]}-{cfg.tile_size}-{cfg.overlap}-{name}"'
    if _matches(request, etag):
        return _not_modified(etag, DZI_CACHE_CONTROL)
    # Built from the row (what DeepZoomGenerator would compute, limit_bounds off), so the descriptor
    # needs no working copy: the first tile request makes it.
    xml = ('<?xml version="1.0" encoding="UTF-8"?>\n'
           f'<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" Format="{name}" Overlap="{cfg.overlap}" '
           f'TileSize="{cfg.tile_size}"><Size Height="{int(slide["height"])}" Width="{int(slide["width"])}"/></Image>')
    return Response(xml.encode(), media_type="application/xml",
                    headers={"ETag": etag, "Cache-Control": DZI_CACHE_CONTROL})


async def tile_response(slide: dict, level: int, col: int, row: int, fmt: str, request: Request) -> Response:
    """One Deep Zoom tile; 404 outside the pyramid, 400 for a format other than jpeg/webp, 304 on a
    matching If-None-Match."""
    name, pil, media = _fmt(fmt)
    settings = request.app.state.settings
    cfg = slides.config(settings)
    levels = geometry(slide["width"], slide["height"], cfg.tile_size)
    if not (0 <= level < len(levels) and 0 <= col < levels[level][0] and 0 <= row < levels[level][1]):
        raise NotFoundException(f"No tile {level}/{col}_{row}: this slide has levels 0 to {len(levels) - 1}.")
    etag = f'"t{slide["sha256"][:24]}-{cfg.tile_size}-{cfg.overlap}-{cfg.quality}-{level}-{col}-{row}-{name}"'
    if _matches(request, etag):
        return _not_modified(etag, TILE_CACHE_CONTROL)
    files = slides.files_for(settings)
    key = (slides.copy_name(slide["file_key"]), cfg.tile_size, cfg.overlap, cfg.quality, level, col, row, name)
    body = files.tile_get(key)
    if body is None:
        body = await _render(settings, slide, key, level, col, row, pil, cfg.quality)
    return Response(body, media_type=media, headers={"ETag": etag, "Cache-Control": TILE_CACHE_CONTROL})


async def _render(settings, slide: dict, key: tuple, level: int, col: int, row: int, pil: str, quality: int) -> bytes:
    files = slides.files_for(settings)
    try:
        entry = await files.ensure_local(slide)
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise NotFoundException("The slide file cannot be read; the helpdesk was told.") from exc

    def work() -> bytes:
        # Made by another app process (a viewer's connections reach several), or before a restart.
        # Writing the file costs about 0.1 ms, against 1.5 ms or more to compute the tile.
        body = files.disk_get(key)
        if body is None:
            zoom = files.deepzoom(slide, entry)
            body = encode(zoom.get_tile(level, (col, row)), pil, quality)
            files.tile_put(key, body)
        return body

    try:
        return await to_thread.run_sync(work)
    except Exception as exc:  # OpenSlideError: a damaged region of the file
        import logging

        # OpenSlide keeps a handle in its error state after a failed read: open afresh next time.
        files.drop_handle(slide["file_key"])
        logging.getLogger("cpms.pathology").warning("tile %s of slide %s failed: %s", key[4:7], slide["id"], type(exc).__name__)
        raise HTTPException(status_code=500, detail="This part of the slide cannot be read.") from exc


async def thumbnail_response(slide: dict, request: Request, size: int = 256) -> Response:
    """A small picture of the whole slide, drawn from its pyramid (never the label or the scanner's
    associated thumbnail, which may show the label)."""
    size = max(32, min(THUMBNAIL_MAX, int(size)))
    settings = request.app.state.settings
    cfg = slides.config(settings)
    etag = f'"th{slide["sha256"][:24]}-{size}-{cfg.quality}"'
    if _matches(request, etag):
        return _not_modified(etag, TILE_CACHE_CONTROL)
    files = slides.files_for(settings)
    key = (slides.copy_name(slide["file_key"]), "thumb", size, cfg.quality)
    body = files.tile_get(key)
    if body is None:
        try:
            entry = await files.ensure_local(slide)
        except (FileNotFoundError, OSError, ValueError) as exc:
            raise NotFoundException("The slide file cannot be read; the helpdesk was told.") from exc

        def work() -> bytes:
            out = files.disk_get(key)
            if out is None:
                out = encode(pyramid_thumbnail(files.handle(slide, entry), size), "JPEG", cfg.quality)
                files.tile_put(key, out)
            return out

        try:
            body = await to_thread.run_sync(work)
        except Exception as exc:
            raise HTTPException(status_code=500, detail="This slide cannot be read.") from exc
    return Response(body, media_type="image/jpeg", headers={"ETag": etag, "Cache-Control": TILE_CACHE_CONTROL})


def pyramid_thumbnail(osr, size: int):
    """``size``-pixel (longest side) RGB image of the whole slide from its best pyramid level, read in
    blocks so a slide without a small level never needs one huge region in memory. (OpenSlide's own
    ``get_thumbnail`` reads one region; written out also to make evident no associated image is used.)"""
    from PIL import Image

    w, h = osr.dimensions
    scale = min(size / w, size / h, 1.0)
    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    level = osr.get_best_level_for_downsample(1 / scale)
    down = osr.level_downsamples[level]
    lw, lh = osr.level_dimensions[level]
    background = "#" + osr.properties.get("openslide.background-color", "ffffff")
    out = Image.new("RGB", (tw, th), background)
    block = 2048
    for y in range(0, lh, block):
        for x in range(0, lw, block):
            bw, bh = min(block, lw - x), min(block, lh - y)
            region = osr.read_region((int(x * down), int(y * down)), level, (bw, bh))
            flat = Image.composite(region, Image.new("RGB", region.size, background), region)
            # Where this block lands in the thumbnail (level pixels -> thumbnail pixels).
            f = tw / lw
            x0, y0 = round(x * f), round(y * (th / lh))
            x1, y1 = max(x0 + 1, round((x + bw) * f)), max(y0 + 1, round((y + bh) * (th / lh)))
            out.paste(flat.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS), (x0, y0))
    return out
