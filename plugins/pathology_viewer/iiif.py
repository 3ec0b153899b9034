"""The IIIF Image API 3.0 (compliance level 2) for the same slides, behind the same access rules, so
IIIF viewers (Mirador, QuPath's IIIF reader) read them: ``/pathology/iiif/{id}/info.json`` and
``/pathology/iiif/{id}/{region}/{size}/{rotation}/{quality}.{format}``.

- region: ``full``, ``square``, ``x,y,w,h``, ``pct:x,y,w,h`` (cropped to the image; outside it: 400);
- size: ``max``, ``w,``, ``,h``, ``pct:n``, ``w,h``, ``!w,h``; ``^`` before any of them allows upscaling
  (up to maxWidth/maxHeight); without it a size larger than the region is a 400, as the spec says;
- rotation: ``0``, ``90``, ``180``, ``270``, with ``!`` for mirroring first; any other angle is a 400;
- quality: ``default``, ``color``, ``gray``, ``bitonal``; format: ``jpg``, ``png``, ``webp``.

Only the slide's pyramid is read (``read_region`` on the best level, then resized): never an associated
image. Responses carry an ETag from the content hash and the canonical request; recent ones stay in the
per-process tile LRU.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from dataclasses import dataclass
from typing import Any, Literal, TypedDict
from urllib.parse import unquote

from anyio import to_thread
from litestar import Request, Response, get
from litestar.exceptions import HTTPException
from litestar.params import FromPath
from litestar.response import Redirect

from core.openapi import Id, json_schema, operation
from plugins.pathology_viewer import access, slides, tiles

MAX_SIDE = 4096
TILE = 512
CONTEXT = "http://iiif.io/api/image/3/context.json"
FORMATS = {"jpg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png"), "webp": ("WEBP", "image/webp")}
QUALITIES = ("default", "color", "gray", "bitonal")
NUMBER = r"[0-9]+(?:\.[0-9]+)?"


class BadIIIF(HTTPException):
    status_code = 400


@dataclass(frozen=True)
class Request3:
    region: tuple[int, int, int, int]  # level-0 pixels, clipped to the image
    size: tuple[int, int]
    mirror: bool
    rotation: int
    quality: str
    fmt: str

    def canonical(self) -> str:
        x, y, w, h = self.region
        return f"{x},{y},{w},{h}/{self.size[0]},{self.size[1]}/{'!' if self.mirror else ''}{self.rotation}/{self.quality}.{self.fmt}"


def parse_region(text: str, width: int, height: int) -> tuple[int, int, int, int]:
    if text == "full":
        return 0, 0, width, height
    if text == "square":
        side = min(width, height)
        return (width - side) // 2, (height - side) // 2, side, side
    if m := re.fullmatch(rf"pct:({NUMBER}),({NUMBER}),({NUMBER}),({NUMBER})", text):
        px, py, pw, ph = (float(g) for g in m.groups())
        x, y = round(px * width / 100), round(py * height / 100)
        w, h = round(pw * width / 100), round(ph * height / 100)
    elif m := re.fullmatch(r"([0-9]{1,9}),([0-9]{1,9}),([0-9]{1,9}),([0-9]{1,9})", text):
        x, y, w, h = (int(g) for g in m.groups())
    else:
        raise BadIIIF(detail="Region must be full, square, x,y,w,h or pct:x,y,w,h.")
    if w <= 0 or h <= 0:
        raise BadIIIF(detail="The region has no width or height.")
    if x >= width or y >= height:
        raise BadIIIF(detail=f"The region lies outside the image ({width}x{height}).")
    return x, y, min(w, width - x), min(h, height - y)


def parse_size(text: str, rw: int, rh: int) -> tuple[int, int]:
    upscale = text.startswith("^")
    body = text[1:] if upscale else text
    limit_w, limit_h = MAX_SIDE, MAX_SIDE
    if body == "max":
        scale = min(1.0 if not upscale else math.inf, limit_w / rw, limit_h / rh)
        w, h = max(1, round(rw * scale)), max(1, round(rh * scale))
    elif m := re.fullmatch(rf"pct:({NUMBER})", body):
        pct = float(m.group(1))
        w, h = round(rw * pct / 100), round(rh * pct / 100)
    elif m := re.fullmatch(r"([0-9]{1,6}),", body):
        w = int(m.group(1))
        h = round(rh * w / rw)
    elif m := re.fullmatch(r",([0-9]{1,6})", body):
        h = int(m.group(1))
        w = round(rw * h / rh)
    elif m := re.fullmatch(r"(!?)([0-9]{1,6}),([0-9]{1,6})", body):
        bw, bh = int(m.group(2)), int(m.group(3))
        if m.group(1):  # best fit inside bw x bh, keeping the aspect ratio
            scale = min(bw / rw, bh / rh)
            w, h = max(1, math.floor(rw * scale)), max(1, math.floor(rh * scale))
        else:
            w, h = bw, bh
    else:
        raise BadIIIF(detail="Size must be max, w,, ,h, pct:n, w,h or !w,h (with ^ to allow upscaling).")
    if w <= 0 or h <= 0:
        raise BadIIIF(detail="The requested size is zero.")
    if not upscale and (w > rw or h > rh):
        raise BadIIIF(detail="The requested size is larger than the region; prefix the size with ^ to upscale.")
    if w > limit_w or h > limit_h:
        raise BadIIIF(detail=f"The largest image served is {MAX_SIDE} pixels on a side (maxWidth/maxHeight).")
    return w, h


def parse_rotation(text: str) -> tuple[bool, int]:
    mirror = text.startswith("!")
    body = text[1:] if mirror else text
    if not re.fullmatch(NUMBER, body):
        raise BadIIIF(detail="Rotation must be a number of degrees, optionally after ! for mirroring.")
    degrees = float(body)
    if degrees >= 360 or degrees % 90 != 0:
        raise BadIIIF(detail="Rotation is served in steps of 90 degrees only (0, 90, 180, 270).")
    return mirror, int(degrees)


def parse(region: str, size: str, rotation: str, name: str, width: int, height: int) -> Request3:
    region, size, rotation, name = (unquote(v) for v in (region, size, rotation, name))
    quality, dot, fmt = name.rpartition(".")
    if not dot or quality not in QUALITIES:
        raise BadIIIF(detail="Quality must be default, color, gray or bitonal.")
    if fmt not in FORMATS:
        raise BadIIIF(detail="Format must be jpg, png or webp.")
    box = parse_region(region, width, height)
    out = parse_size(size, box[2], box[3])
    mirror, degrees = parse_rotation(rotation)
    return Request3(box, out, mirror, degrees, "color" if quality == "default" else quality, fmt)


def render(osr, req: Request3, quality: int) -> bytes:
    """Read the region from the best pyramid level, resize, mirror, rotate, change quality, encode."""
    from PIL import Image, ImageOps

    x, y, w, h = req.region
    ow, oh = req.size
    level = osr.get_best_level_for_downsample(max(min(w / ow, h / oh), 1.0))
    down = osr.level_downsamples[level]
    lw, lh = max(1, math.ceil(w / down)), max(1, math.ceil(h / down))
    region = osr.read_region((x, y), level, (lw, lh))
    background = "#" + osr.properties.get("openslide.background-color", "ffffff")
    image = Image.composite(region, Image.new("RGB", region.size, background), region)
    if image.size != (ow, oh):
        image = image.resize((ow, oh), Image.Resampling.LANCZOS if ow < lw else Image.Resampling.BICUBIC,
                             reducing_gap=3.0 if ow < lw else None)
    if req.mirror:
        image = ImageOps.mirror(image)
    if req.rotation:
        image = image.transpose({90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180,
                                 270: Image.Transpose.ROTATE_90}[req.rotation])
    if req.quality == "gray":
        image = image.convert("L")
    elif req.quality == "bitonal":
        image = image.convert("L").point(lambda v: 255 if v >= 128 else 0).convert("1")
    pil, _ = FORMATS[req.fmt]
    out = io.BytesIO()
    if pil == "JPEG":
        (image.convert("L") if image.mode == "1" else image).save(out, "JPEG", quality=quality)
    elif pil == "WEBP":
        image.convert("L" if image.mode == "1" else image.mode).save(out, "WEBP", quality=quality, method=2)
    else:
        image.save(out, "PNG", compress_level=3)
    return out.getvalue()


def info(slide: dict, base_url: str) -> dict:
    w, h = int(slide["width"]), int(slide["height"])
    factors, f = [], 1
    while True:
        factors.append(f)
        if max(w, h) / f <= TILE:
            break
        f *= 2
    sizes = []
    for f in reversed(factors):
        sw, sh = max(1, math.ceil(w / f)), max(1, math.ceil(h / f))
        if sw <= MAX_SIDE and sh <= MAX_SIDE:
            sizes.append({"width": sw, "height": sh})
    out = {
        "@context": CONTEXT, "id": f"{base_url.rstrip('/')}/pathology/iiif/{slide['id']}", "type": "ImageService3",
        "protocol": "http://iiif.io/api/image", "profile": "level2", "width": w, "height": h,
        "maxWidth": MAX_SIDE, "maxHeight": MAX_SIDE,
        "tiles": [{"width": TILE, "height": TILE, "scaleFactors": factors}], "sizes": sizes,
        "preferredFormats": ["jpg"], "extraFormats": ["webp"], "extraQualities": ["color", "gray", "bitonal"],
        "extraFeatures": ["mirroring", "rotationBy90s", "regionByPct", "regionSquare", "sizeByConfinedWh",
                          "sizeByPct", "sizeByWh", "sizeUpscaling", "baseUriRedirect"],
    }
    mpp = slides.slide_mpp(slide)
    if mpp:
        # The Physical Dimensions service: how QuPath and Mirador learn the scale.
        out["service"] = [{"id": f"{out['id']}/physdim", "type": "PhysicalDimensions",
                           "profile": "http://iiif.io/api/annex/services/physdim",
                           "physicalScale": mpp / 1000, "physicalUnits": "mm"}]
    return out


@get("/pathology/iiif/{slide_id:int}", opt={"permission": access.VIEW}, include_in_schema=False)
async def base_uri(request: Request, slide_id: FromPath[int]) -> Redirect:
    await access.load_slide(request, slide_id)
    return Redirect(f"/pathology/iiif/{slide_id}/info.json", status_code=303)


class _ImageService(TypedDict):
    """IIIF Image API 3.0 image information (info.json), compliance level 2."""

    id: str
    type: Literal["ImageService3"]
    protocol: str
    profile: Literal["level2"]
    width: int
    height: int
    maxWidth: int
    maxHeight: int
    tiles: list[dict[str, Any]]
    sizes: list[dict[str, int]]
    preferredFormats: list[str]
    extraFormats: list[str]
    extraQualities: list[str]
    extraFeatures: list[str]


class ImageService(_ImageService, total=False):
    #: The Physical Dimensions service, for calibrated slides.
    service: list[dict[str, Any]]


IMAGE_SERVICE = json_schema(ImageService)
IMAGE_SERVICE["properties"]["@context"] = {"const": CONTEXT}
IMAGE_SERVICE["required"] = [*IMAGE_SERVICE["required"], "@context"]
LD_JSON = f'application/ld+json;profile="{CONTEXT}"'


@get("/pathology/iiif/{slide_id:int}/info.json", opt={"permission": access.VIEW}, operation_id="iiifInfo",
     tags=["pathology viewer"], operation_class=operation(content={200: {"application/json": IMAGE_SERVICE, LD_JSON: IMAGE_SERVICE}}))
async def info_json(request: Request, slide_id: Id) -> Response[ImageService]:
    """The slide's IIIF image information (JSON-LD when asked for with Accept: application/ld+json)."""
    import json

    ctx = await access.load_slide(request, slide_id)
    await access.audit_read(request, ctx, "pathology.view", {"via": "iiif"})
    body = json.dumps(info(ctx.slide, request.app.state.settings.base_url)).encode()
    ld = "application/ld+json" in request.headers.get("accept", "")
    media = f'application/ld+json;profile="{CONTEXT}"' if ld else "application/json"
    return Response(body, media_type=media, headers={"Cache-Control": tiles.DZI_CACHE_CONTROL,
                                                     "Link": f'<{CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'})


@get("/pathology/iiif/{slide_id:int}/{region:str}/{size:str}/{rotation:str}/{name:str}",
     opt={"permission": access.VIEW}, include_in_schema=False)
async def image(request: Request, slide_id: FromPath[int], region: FromPath[str], size: FromPath[str],
                rotation: FromPath[str], name: FromPath[str]) -> Response:
    ctx = await access.load_slide(request, slide_id)
    slide = ctx.slide
    req = parse(region, size, rotation, name, int(slide["width"]), int(slide["height"]))
    settings = request.app.state.settings
    cfg = slides.config(settings)
    # Commas separate ETags in If-None-Match: the canonical request goes in hashed.
    etag = f'"i{slide["sha256"][:24]}-{cfg.quality}-{hashlib.sha256(req.canonical().encode()).hexdigest()[:16]}"'
    _, media = FORMATS[req.fmt]
    headers = {"ETag": etag, "Cache-Control": tiles.TILE_CACHE_CONTROL,
               "Link": f'<{settings.base_url.rstrip("/")}/pathology/iiif/{slide_id}/{req.canonical()}>;rel="canonical"'}
    if tiles._matches(request, etag):
        return Response(b"", status_code=304, headers=headers)
    files = slides.files_for(settings)
    key = (slides.copy_name(slide["file_key"]), "iiif", cfg.quality, req.canonical())
    body = files.tile_get(key)
    if body is None:
        osr = await slides.open_handle(settings, slide)
        try:
            body = await to_thread.run_sync(render, osr, req, cfg.quality)
        except Exception as exc:
            files.drop_handle(slide["file_key"])
            raise HTTPException(status_code=500, detail="This part of the slide cannot be read.") from exc
        files.tile_put(key, body)
    return Response(body, media_type=media, headers=headers)


ROUTES = [base_uri, info_json, image]
