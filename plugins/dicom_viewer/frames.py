"""Rendered frames and thumbnails, cached, with ETags.

``GET /dicom/instances/{id}/frames/{n}/rendered?wc=&ww=&preset=&invert=&format=&quality=``:
``n`` is the frame index from 0 (as ``render.render_frame`` and ``Annotation.frame``; DICOMweb's
own frame numbers, from 1, are in ``dicomweb``). ``wc`` and ``ww`` go together and win over
``preset`` (a name of ``render.PRESETS``); neither: the file's window (else min/max). ``invert`` is
0/1. ``format`` png (exact, default), jpeg or webp; ``quality`` 1-100 for the lossy ones.

``GET /dicom/instances/{id}/thumbnail.jpg``: the middle frame, at most 128 px.

A stored file never changes (a masked instance is stored anew under another key), so the file key
and the parameters name the output: the ETag is known before anything is decoded, a revalidation
answers 304 at once, and rendered bytes are kept in an LRU (bounded in bytes) so scrolling back and
forth through a series or toggling a preset costs a dictionary lookup. Decoding and encoding run in
worker threads, at most ``RENDER_THREADS`` at a time (a 2-core server stays responsive).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict

import anyio
from anyio import to_thread
from litestar import Request, Response, get
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath

from plugins.dicom_viewer import access, render, store
from plugins.dicom_viewer.access import VIEW

CACHE_CONTROL = "private, max-age=300"
RENDER_THREADS = 2
THUMB_SIZE = 128
CACHE_BYTES = 128 * 1024**2
FORMATS = ("png", "jpeg", "webp")


class BadFrameRequest(HTTPException):
    status_code = 422


class _Bytes:
    """An LRU of encoded images by cache key, bounded by their total size."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self.items: OrderedDict[tuple, tuple[bytes, int]] = OrderedDict()
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple) -> bytes | None:
        with self.lock:
            hit = self.items.get(key)
            if hit is None:
                self.misses += 1
                return None
            self.hits += 1
            self.items.move_to_end(key)
            return hit[0]

    def put(self, key: tuple, data: bytes, instance_id: int) -> None:
        with self.lock:
            if key in self.items:
                return
            self.items[key] = (data, instance_id)
            self.used += len(data)
            while self.used > self.limit and len(self.items) > 1:
                _, (old, _) = self.items.popitem(last=False)
                self.used -= len(old)

    def forget(self, instance_id: int | None = None) -> None:
        if instance_id is None:
            with self.lock:
                self.items.clear()
                self.used = 0
            return
        self.forget_many({instance_id})

    def forget_many(self, instance_ids, file_keys=()) -> None:
        """Drop the entries of these instances, and any made from these stored files."""
        ids, keys = set(instance_ids), set(file_keys)
        with self.lock:
            for key in [k for k, (_, i) in self.items.items() if i in ids or k[0] in keys]:
                data, _ = self.items.pop(key)
                self.used -= len(data)


_rendered = _Bytes(CACHE_BYTES)
_limiter: anyio.CapacityLimiter | None = None


def limiter() -> anyio.CapacityLimiter:
    global _limiter
    if _limiter is None:
        _limiter = anyio.CapacityLimiter(RENDER_THREADS)
    return _limiter


def forget(instance_id: int | None = None) -> None:
    """Drop cached renderings (of one instance, or all): after masking, deletion, erasure."""
    _rendered.forget(instance_id)
    with _verdicts_lock:
        if instance_id is None:
            _verdicts.clear()
        else:
            for key in [k for k, (_, i) in _verdicts.items() if i == instance_id]:
                _verdicts.pop(key, None)


def forget_instances(instance_ids, file_keys=()) -> None:
    """Drop the cached renderings and thumbnails of these instances (and of these stored files)."""
    ids, keys = set(instance_ids), set(file_keys)
    _rendered.forget_many(ids, keys)
    with _verdicts_lock:
        for key in [k for k, (_, i) in _verdicts.items() if i in ids or k in keys]:
            _verdicts.pop(key, None)


# --- can the pixels be shown at all? -------------------------------------------------------------

MAX_VERDICTS = 4096
_verdicts: OrderedDict[str, tuple[str | None, int]] = OrderedDict()
_verdicts_lock = threading.Lock()


async def pixel_problem(instance: dict, settings=None) -> str | None:
    """Why the instance's pixels cannot be shown here, or None when they can: the first frame renders
    (as the review page shows it) and every other frame decodes. An image that cannot be shown cannot
    be checked for burned-in text either. The verdict is remembered per stored file (which never
    changes)."""
    key = instance["file_key"]
    with _verdicts_lock:
        hit = _verdicts.get(key)
    if hit is not None:
        return hit[0]
    problem = None
    try:
        await rendered_bytes(instance, 0, parse_options({"format": "png"}), settings)
    except HTTPException as exc:
        problem = str(exc.detail)
    except Exception as exc:  # noqa: BLE001 - e.g. the stored file cannot be read
        problem = f"The image cannot be read ({type(exc).__name__})."
    if problem is None:
        ds = await store.dataset(instance, settings)

        def others() -> str | None:
            count = render.number_of_frames(ds)
            for frame in range(1, count):
                try:
                    render.decode_frame(ds, frame)
                except Exception as exc:  # noqa: BLE001 - any failure means the frame cannot be seen
                    reason = str(exc) if isinstance(exc, render.UnsupportedPixelData) else type(exc).__name__
                    return f"Frame {frame + 1} of {count} cannot be decoded here: {reason}"
            return None

        problem = await to_thread.run_sync(others, limiter=limiter())
    with _verdicts_lock:
        _verdicts[key] = (problem, instance["id"])
        while len(_verdicts) > MAX_VERDICTS:
            _verdicts.popitem(last=False)
    return problem


def cached_instances() -> set[int]:
    """The instances some cached rendering belongs to."""
    with _rendered.lock:
        return {i for _, i in _rendered.items.values()}


def stats() -> dict:
    return {"entries": len(_rendered.items), "bytes": _rendered.used, "hits": _rendered.hits,
            "misses": _rendered.misses}


def _etag(key: tuple) -> str:
    return '"' + hashlib.sha256(repr(key).encode()).hexdigest()[:32] + '"'


def _matches(request: Request, etag: str) -> bool:
    given = request.headers.get("if-none-match", "")
    return bool(given) and (given.strip() == "*" or etag in [t.strip().removeprefix("W/") for t in given.split(",")])


def _number(name: str, raw: str | None, low: float, high: float) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadFrameRequest(detail=f"{name} must be a number.") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise BadFrameRequest(detail=f"{name} must be between {low:g} and {high:g}.")
    return value


def parse_options(params) -> dict:
    """The rendering options of a query (``wc``, ``ww``, ``preset``, ``invert``, ``format``,
    ``quality``), checked; BadFrameRequest (422) names what is wrong."""
    wc = _number("wc", params.get("wc"), -1e7, 1e7)
    ww = _number("ww", params.get("ww"), 1e-3, 1e7)
    if (wc is None) != (ww is None):
        raise BadFrameRequest(detail="Give both wc (window centre) and ww (window width), or neither.")
    preset = (params.get("preset") or "").strip().lower() or None
    if preset is not None and preset not in render.PRESETS:
        raise BadFrameRequest(detail=f"Unknown preset; known: {', '.join(render.PRESETS)}.")
    invert_raw = (params.get("invert") or "0").lower()
    if invert_raw not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
        raise BadFrameRequest(detail="invert must be 0 or 1.")
    fmt = (params.get("format") or "png").lower()
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt not in FORMATS:
        raise BadFrameRequest(detail="format must be png, jpeg or webp.")
    quality = _number("quality", params.get("quality"), 1, 100)
    return {"window": (wc, ww) if wc is not None else None, "preset": None if wc is not None else preset,
            "invert": invert_raw in ("1", "true", "yes", "on"), "format": fmt,
            "quality": int(quality) if quality is not None else (90 if fmt != "webp" else 85)}


def cache_key(instance: dict, frame: int, opts: dict) -> tuple:
    return (instance["file_key"], frame, opts["window"], opts["preset"], opts["invert"], opts["format"],
            opts["quality"] if opts["format"] != "png" else 0)


async def rendered_bytes(instance: dict, frame: int, opts: dict, settings=None) -> bytes:
    """The encoded frame, from the cache or rendered now (in a worker thread)."""
    key = cache_key(instance, frame, opts)
    data = _rendered.get(key)
    if data is not None:
        return data
    ds = await store.dataset(instance, settings)

    def work() -> bytes:
        return render.render(ds, frame, opts["format"], quality=opts["quality"], window=opts["window"],
                             preset=opts["preset"], invert=opts["invert"])

    try:
        data = await to_thread.run_sync(work, limiter=limiter())
    except render.UnsupportedPixelData as exc:
        raise HTTPException(status_code=415, detail=f"This frame cannot be decoded here: {exc}") from exc
    except (ValueError, KeyError, AttributeError, TypeError, NotImplementedError, RuntimeError) as exc:
        raise BadFrameRequest(detail=f"This frame cannot be rendered: {type(exc).__name__}") from exc
    _rendered.put(key, data, instance["id"])
    return data


@get("/dicom/instances/{instance_id:int}/frames/{frame:int}/rendered", opt={"permission": VIEW},
     include_in_schema=False)
async def rendered_frame(request: Request, instance_id: FromPath[int], frame: FromPath[int]) -> Response:
    ctx = await access.load_instance(request, instance_id)
    instance = ctx.instance
    if frame < 0 or frame >= max(1, int(instance["frames"] or 1)):
        raise NotFoundException(f"This instance has {instance['frames']} frame(s), numbered from 0.")
    opts = parse_options(request.query_params)
    key = cache_key(instance, frame, opts)
    etag = _etag(key)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if _matches(request, etag):
        return Response(b"", status_code=304, headers=headers)
    data = await rendered_bytes(instance, frame, opts, request.app.state.settings)
    return Response(data, media_type=render.MEDIA_TYPES[opts["format"]], headers=headers)


async def thumbnail_bytes(instance: dict, settings=None) -> bytes:
    key = (instance["file_key"], "thumbnail", THUMB_SIZE)
    data = _rendered.get(key)
    if data is not None:
        return data
    ds = await store.dataset(instance, settings)
    try:
        data = await to_thread.run_sync(lambda: render.thumbnail(ds, THUMB_SIZE), limiter=limiter())
    except Exception as exc:  # noqa: BLE001 - a thumbnail that cannot be made is a placeholder, not a 500
        raise HTTPException(status_code=415, detail=f"No thumbnail for this instance ({type(exc).__name__}).") from exc
    _rendered.put(key, data, instance["id"])
    return data


@get("/dicom/instances/{instance_id:int}/thumbnail.jpg", opt={"permission": VIEW}, include_in_schema=False)
async def thumbnail(request: Request, instance_id: FromPath[int]) -> Response:
    ctx = await access.load_instance(request, instance_id)
    etag = _etag((ctx.instance["file_key"], "thumbnail", THUMB_SIZE))
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if _matches(request, etag):
        return Response(b"", status_code=304, headers=headers)
    data = await thumbnail_bytes(ctx.instance, request.app.state.settings)
    return Response(data, media_type="image/jpeg", headers=headers)


ROUTES = [rendered_frame, thumbnail]
