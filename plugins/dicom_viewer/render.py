"""Render DICOM frames to 8-bit images and PNG/JPEG/WebP bytes; thumbnails; measurements.

The grayscale pipeline follows PS3.3 C.11 (Modality LUT, VOI LUT, Presentation LUT for
MONOCHROME1) and is folded into one 8-bit lookup table indexed by the stored value's bit pattern
(256 or 65,536 entries), applied with a single ``np.take``; so the cost per pixel is one table
lookup whatever the window, and 16-bit images cost no float math per pixel.

Order of precedence for the VOI transform: an explicit ``window=(center, width)`` or ``preset``;
else the file's Window Center/Width (the first of several values; per-frame functional groups
first); else the file's VOI LUT Sequence; else the frame's own min/max.

Decoding goes through pydicom's pixel-data plugins. Those used by CPMS, and their licences (CPMS is
EUPL-1.2; the GPL-3 pylibjpeg-libjpeg is deliberately not used):

- native, deflated and RLE: pydicom (MIT), pylibjpeg-rle (MIT);
- JPEG baseline (8-bit), extended (8-bit): Pillow (MIT-CMU);
- JPEG lossless (process 14, SV1 and others): python-gdcm (wheel Apache-2.0, GDCM BSD-3);
- JPEG-LS: pyjpegls (MIT, CharLS BSD-3), python-gdcm as fallback;
- JPEG 2000: pylibjpeg + pylibjpeg-openjpeg (MIT, OpenJPEG BSD-2), Pillow, python-gdcm.

12-bit JPEG extended (process 2/4) has no decoder here: Pillow and the python-gdcm wheel refuse
it; :func:`decode_frame` raises :class:`UnsupportedPixelData` for it.

Coordinates of measurements are in pixels of the frame, x to the right (column), y down (row);
pixel (column c, row r) covers the square [c, c+1) x [r, r+1), so its centre is (c + 0.5, r + 0.5).
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import ImplicitVRLittleEndian, UID

PRESETS: dict[str, tuple[float, float]] = {  # name -> (center, width)
    "brain": (40, 80),
    "subdural": (75, 215),
    "stroke": (40, 40),
    "bone": (300, 1500),
    "lung": (-400, 1600),
    "abdomen": (60, 400),
    "liver": (60, 160),
    "chest": (40, 400),
    "angio": (300, 600),
    "soft tissue": (40, 350),
}

VoiFunction = Literal["LINEAR", "LINEAR_EXACT", "SIGMOID"]
Format = Literal["png", "jpeg", "webp"]


class UnsupportedPixelData(ValueError):
    """The frame cannot be decoded or rendered (no decoder for the transfer syntax, no pixels...)."""


# --- decoding ---------------------------------------------------------------------------------

def transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(ts) if ts else ImplicitVRLittleEndian


def number_of_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def decode_frame(ds: Dataset, frame: int = 0, *, view_only: bool = False) -> tuple[np.ndarray, str]:
    """The stored values of one frame (rows, cols[, samples]) and its photometric interpretation.

    YBR colour is converted to RGB (the returned interpretation says so). ``view_only``: native pixel
    data may come back as a read-only view on the dataset's buffer instead of a copy (pydicom's option,
    asked only where pydicom can honour it: little endian, Bits Stored = Bits Allocated >= 8, no YBR
    conversion), for callers that only read it."""
    from pydicom.pixels import get_decoder

    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise UnsupportedPixelData("the instance has no pixel data")
    frames = number_of_frames(ds)
    if not 0 <= frame < frames:
        raise IndexError(f"frame {frame} out of range (the instance has {frames})")
    ts = transfer_syntax(ds)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as exc:
        raise UnsupportedPixelData(f"no decoder for {ts.name}") from exc
    if not decoder.is_available:
        raise UnsupportedPixelData(f"no decoder installed for {ts.name}")
    if view_only:  # only where pydicom can give a view (else it copies anyway, and logs a warning)
        view_only = (not ts.is_encapsulated and ts.is_little_endian and int(ds.get("BitsAllocated") or 0) >= 8
                     and ds.get("BitsStored") == ds.get("BitsAllocated")
                     and str(ds.get("PhotometricInterpretation", "")).upper() not in ("YBR_FULL", "YBR_FULL_422"))
    try:
        arr, meta = decoder.as_array(ds, index=frame, as_rgb=True, view_only=view_only)
    except (RuntimeError, NotImplementedError) as exc:
        raise UnsupportedPixelData(f"cannot decode {ts.name}: {str(exc).strip().splitlines()[-1]}") from exc
    return arr, str(meta.get("photometric_interpretation", ds.get("PhotometricInterpretation", "MONOCHROME2")))


# --- per-frame attributes (enhanced multi-frame functional groups first) ----------------------

_FUNCTIONAL_GROUPS = ((Tag(0x5200, 0x9230), "PerFrameFunctionalGroupsSequence", True),
                      (Tag(0x5200, 0x9229), "SharedFunctionalGroupsSequence", False))


def _functional(ds: Dataset, frame: int, macro: str, keyword: str):
    for tag, groups, per_frame in _FUNCTIONAL_GROUPS:
        if tag not in ds:  # a Tag lookup: several times cheaper than ds.get(keyword) for the usual absence
            continue
        index = frame if per_frame else 0
        seq = ds.get(groups)
        if seq and len(seq) > index:
            inner = seq[index].get(macro)
            if inner and keyword in inner[0]:
                return inner[0].get(keyword)
    return ds.get(keyword)


def _first(value) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value[0]) if not isinstance(value, (str, bytes, int, float)) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def rescale(ds: Dataset, frame: int = 0) -> tuple[float, float]:
    slope = _first(_functional(ds, frame, "PixelValueTransformationSequence", "RescaleSlope"))
    intercept = _first(_functional(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept"))
    return (1.0 if slope is None or slope == 0 else slope), (0.0 if intercept is None else intercept)


def file_window(ds: Dataset, frame: int = 0) -> tuple[float, float] | None:
    center = _first(_functional(ds, frame, "FrameVOILUTSequence", "WindowCenter"))
    width = _first(_functional(ds, frame, "FrameVOILUTSequence", "WindowWidth"))
    if center is None or width is None or width <= 0:
        return None
    return center, width


# --- LUT pieces -------------------------------------------------------------------------------

def _modality(ds: Dataset, frame: int, values: np.ndarray) -> np.ndarray:
    """Modality LUT applied to ``values`` (any integer array), as float32."""
    seq = ds.get("ModalityLUTSequence")
    if seq and "RescaleSlope" not in ds:
        item = seq[0]
        n, first, bits = (int(v) for v in item.LUTDescriptor)
        n = n or 65536
        data = np.asarray(item.LUTData, dtype=np.float32).reshape(-1)[:n]
        idx = np.clip(values.astype(np.int64) - first, 0, len(data) - 1)
        return data[idx]
    slope, intercept = rescale(ds, frame)
    out = values.astype(np.float32)
    if slope != 1.0:
        out *= np.float32(slope)
    if intercept != 0.0:
        out += np.float32(intercept)
    return out


def window_to_unit(x: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """PS3.3 C.11.2.1.2: map values to [0, 1] with a window (float32 in, float32 out)."""
    function = (function or "LINEAR").upper()
    if function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (x - np.float32(center)) / np.float32(width)))).astype(np.float32)
    if function == "LINEAR_EXACT":
        y = (x - np.float32(center)) / np.float32(width) + np.float32(0.5)
    else:  # LINEAR
        w = max(width, 1.0)
        y = (x - np.float32(center - 0.5)) / np.float32(max(w - 1.0, 1e-6)) + np.float32(0.5)
    return np.clip(y, 0.0, 1.0, out=y)


def _voi_lut_sequence(ds: Dataset, x: np.ndarray) -> np.ndarray | None:
    seq = ds.get("VOILUTSequence")
    if not seq:
        return None
    item = seq[0]
    n, first, bits = (int(v) for v in item.LUTDescriptor)
    n = n or 65536
    data = np.asarray(item.LUTData, dtype=np.float32).reshape(-1)[:n]
    if data.size == 0:
        return None
    idx = np.clip(np.rint(x).astype(np.int64) - first, 0, data.size - 1)
    top = float(max((1 << bits) - 1, data.max())) if bits else float(data.max())
    return data[idx] / np.float32(top or 1.0)


@dataclass
class Rendered:
    """An 8-bit image: (rows, cols) grayscale or (rows, cols, 3) RGB, and what produced it."""
    pixels: np.ndarray
    window: tuple[float, float] | None  # (center, width) used, None for colour or VOI LUT
    voi: str  # "explicit", "preset", "file", "voi-lut", "minmax", "colour"


def render_frame(ds: Dataset, frame: int = 0, *, window: tuple[float, float] | None = None,
                 preset: str | None = None, voi_function: VoiFunction | None = None,
                 invert: bool = False) -> Rendered:
    """Render one frame to 8 bits. ``invert`` flips the gray scale once more (viewer's invert)."""
    arr, pi = decode_frame(ds, frame, view_only=True)  # only read: no copy of native pixel data
    pi = pi.upper()
    if arr.ndim == 3 or pi in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR"):
        return Rendered(_colour(ds, arr, pi, invert), None, "colour")

    how = "explicit"
    if window is None and preset is not None:
        try:
            window = PRESETS[preset.lower()]
        except KeyError:
            raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}") from None
        how = "preset"
    function = voi_function or str(_functional(ds, frame, "FrameVOILUTSequence", "VOILUTFunction") or "LINEAR")
    use_voi_lut = False
    if window is None:
        window = file_window(ds, frame)
        how = "file"
        if window is None and ds.get("VOILUTSequence"):
            use_voi_lut, how = True, "voi-lut"

    if not arr.dtype.isnative:  # big endian transfer syntax
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype.kind in "ui" and arr.dtype.itemsize <= 2:
        lo = hi = None
        if window is None and not use_voi_lut:
            lo, hi = arr.min(), arr.max()
            mod = _modality(ds, frame, np.array([lo, hi], dtype=arr.dtype))
            window, how = _minmax_window(float(mod.min()), float(mod.max())), "minmax"
            function = "LINEAR_EXACT" if voi_function is None else function
        pattern = np.dtype(f"u{arr.dtype.itemsize}")
        linear = _linear_map(ds, frame, use_voi_lut, window, function, (pi == "MONOCHROME1") != invert)
        if linear is not None:  # LINEAR / LINEAR_EXACT after a rescale: one affine map of the stored value
            lut, fit = _linear_table(arr.dtype.str, *linear)
            out = _take(lut, arr.view(pattern)) if fit is None else _affine_u8(arr, *fit)
        else:  # one LUT over every possible stored value, indexed by the bit pattern
            if lo is None:
                lo, hi = arr.min(), arr.max()
            if lo >= 0:  # a table up to the largest value present, indexed by the value itself
                domain = np.arange(int(hi) + 1, dtype=pattern).view(arr.dtype)
            else:  # every bit pattern: negative values index the upper half
                domain = np.arange(1 << (8 * arr.dtype.itemsize), dtype=pattern).view(arr.dtype)
            values = _modality(ds, frame, domain)
            unit = _voi_lut_sequence(ds, values) if use_voi_lut else window_to_unit(values, *window, function)
            lut = _to_u8(unit, pi == "MONOCHROME1", invert)
            out = _take(lut, arr.view(pattern))
    else:  # 32-bit or float pixels: direct float32 math
        values = _modality(ds, frame, arr) if arr.dtype.kind in "ui" else arr.astype(np.float32)
        if window is None and not use_voi_lut:
            window, how = _minmax_window(float(values.min()), float(values.max())), "minmax"
            function = "LINEAR_EXACT" if voi_function is None else function
        unit = _voi_lut_sequence(ds, values) if use_voi_lut else window_to_unit(values, *window, function)
        out = _to_u8(unit, pi == "MONOCHROME1", invert)
    return Rendered(out, None if use_voi_lut else (float(window[0]), float(window[1])), how)


_CHUNK = 1 << 16  # indices per np.take call: its intp temporary then stays in cache


def _take(lut: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``lut[idx]``, in chunks (about twice as fast as one call on a large image)."""
    flat = np.ascontiguousarray(idx).reshape(-1)
    out = np.empty(flat.size, dtype=lut.dtype)
    for start in range(0, flat.size, _CHUNK):
        np.take(lut, flat[start:start + _CHUNK], out=out[start:start + _CHUNK])
    return out.reshape(idx.shape)


def _linear_map(ds: Dataset, frame: int, use_voi_lut: bool, window, function: str,
                flip: bool) -> tuple[float, float] | None:
    """(A, B): the gray level before rounding is ``clip(A * stored value + B, 0, 255)`` when the grayscale
    pipeline is a plain rescale (slope, intercept) followed by a LINEAR or LINEAR_EXACT window (PS3.3
    C.11.2.1.2; ``flip`` for MONOCHROME1 / invert); None otherwise (Modality LUT, VOI LUT, SIGMOID...)."""
    if use_voi_lut or window is None:
        return None
    function = (function or "LINEAR").upper()
    if function not in ("LINEAR", "LINEAR_EXACT"):
        return None
    if ds.get("ModalityLUTSequence") and "RescaleSlope" not in ds:
        return None
    center, width = float(window[0]), float(window[1])
    if not (math.isfinite(center) and math.isfinite(width)):
        return None
    if function == "LINEAR_EXACT":  # y = (x - c) / w + 0.5
        if width <= 0:
            return None
        span = width
    else:  # y = (x - (c - 0.5)) / (w - 1) + 0.5
        center, span = center - 0.5, max(max(width, 1.0) - 1.0, 1e-6)
    slope, intercept = rescale(ds, frame)  # x = slope * stored value + intercept
    scale, offset = 255.0 * slope / span, 255.0 * ((intercept - center) / span + 0.5)
    if not (math.isfinite(scale) and math.isfinite(offset)):
        return None
    return (-scale, 255.0 - offset) if flip else (scale, offset)


def _linear_lut(values: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """The 8-bit LUT of a LINEAR / LINEAR_EXACT window over integer stored ``values``, from
    :func:`_linear_map`: ``floor(clip(scale * value + offset, 0, 255) + 0.5)``, in float64.

    Exact halves round up: a margin of 1e-6 of a gray level, far above the float64 error, is added; so the
    table is exactly the clipped staircase ``floor(A * value + B)`` of one affine map, which
    :func:`_affine_fit` relies on. (The float32 tables of the other functions round exact halves
    either way.)"""
    y = values.astype(np.float64)
    y *= scale
    y += offset
    np.clip(y, 0.0, 255.0, out=y)
    y += 0.5 + 1e-6
    return np.floor(y, out=y).astype(np.uint8)


@functools.lru_cache(maxsize=64)
def _linear_table(dtype: str, scale: float, offset: float) -> tuple[np.ndarray, tuple | None]:
    """The 8-bit table of :func:`_linear_lut` over every value of the integer ``dtype`` (indexed by bit
    pattern), and the arguments of :func:`_affine_u8` that give the same bytes without a lookup, or None
    (see :func:`_affine_fit`). Cached by window: every slice of a series shown with one window (same
    rescale) reuses it; 64 entries of at most 64 KiB."""
    pattern = np.dtype(f"u{np.dtype(dtype).itemsize}")
    values = np.arange(1 << (8 * pattern.itemsize), dtype=pattern).view(dtype)
    lut = _linear_lut(values, scale, offset)
    lut.flags.writeable = False
    return lut, _affine_fit(lut, np.dtype(dtype), scale)


def _affine_fit(lut: np.ndarray, dtype: np.dtype, a: float) -> tuple | None:
    """Arguments of :func:`_affine_u8` applying ``lut`` (indexed by the bit pattern of ``dtype``) as
    arithmetic instead of a table lookup, or None.

    A table lookup costs about 0.6 ns a pixel (numpy converts every index to intp); for a table that is an
    affine staircase (a LINEAR window) the same bytes come from ``uint8(float32(x) * A + B)`` in about
    0.2 ns a pixel (a conversion, a multiply and an add in float32 and the truncating cast), or, when the
    window clips values at either end, ``uint8(float32(clip(x, l, h) - l) * A + B)`` (the clip and the
    subtraction in the stored integer type keep float32 precise). ``A`` is the window's slope ``a`` in
    gray levels per stored value, ``B`` the middle of the interval that reproduces every step of the table.

    Each candidate is checked, with the very code applied to the pixels, at the first and the last value
    of every run of equal gray levels in the table: the arithmetic is monotonic (float32 multiply and add
    are correctly rounded, the clip and the cast monotonic), so it then equals the table on every value of
    ``dtype``: the result is the table lookup's, byte for byte. None (use the lookup) when the table is
    no staircase or no candidate passes."""
    info = np.iinfo(dtype)
    lo = int(info.min)
    if lo < 0:  # the table is indexed by bit pattern: negative values are in the upper half
        half = lut.size // 2
        by_value = np.concatenate((lut[half:], lut[:half]))
    else:
        by_value = lut
    edges = np.flatnonzero(by_value[1:] != by_value[:-1])  # the last index of every run but the last one
    if edges.size > 255:
        return None  # not monotonic
    firsts = np.concatenate(([0], edges + 1))
    lasts = np.append(edges, by_value.size - 1)
    points = np.concatenate((firsts, lasts))
    values = (points + lo).astype(dtype)
    expected = by_value[points]
    for fit in _fit_affine(by_value[firsts], firsts, lasts, lo, a):
        if np.array_equal(_affine_u8(values, *fit), expected):
            return fit
    return None


def _fit_affine(runs: np.ndarray, firsts: np.ndarray, lasts: np.ndarray, lo: int, a: float):
    """Candidate (A, B, bounds, clip) for :func:`_affine_u8` giving gray level ``runs[i]`` to the stored values
    ``lo + firsts[i]`` .. ``lo + lasts[i]``, from the slope ``a`` (gray levels per stored value): first
    without bounds, when the line stays within -1..256 over all the values (the cast truncates -0.99..255.99
    to 0..255); then with the stored values clipped to the ends of the first and last runs, the float
    clipped to 0..255 too when needed. B is the middle of the interval every run allows (a run at 0 or
    255 may stand for clipped values: one bound only); none when that interval is too narrow for float32
    (its errors here are below 5e-5 of a gray level)."""
    if runs.size == 1:  # one gray level
        yield np.float32(0.0), np.float32(float(runs[0]) + 0.5), None, False
        return
    level = runs.astype(np.float64)
    start, stop, end = int(lasts[0]), int(firsts[-1]), int(lasts[-1])
    for plain in (True, False):
        first, last = firsts.astype(np.float64), lasts.astype(np.float64)
        if not plain:
            first[0], last[-1] = start, stop
        first = (first - start) * a  # A t at both ends of every run, t = index - start
        last = (last - start) * a
        lower = level - np.minimum(first, last)  # B >= gray level - A t ...
        upper = level + 1.0 - np.maximum(first, last)  # ... and < gray level + 1 - A t
        lower[runs == 0] = -np.inf
        upper[runs == 255] = np.inf
        low, high = float(lower.max()), float(upper.min())
        if not (math.isfinite(low) and math.isfinite(high) and high - low > 1e-4):
            continue
        b = (low + high) / 2.0  # at the value lo + start
        if plain:
            line = (b - a * start, b + a * (end - start))  # at lo and hi
            if -0.99 < min(line) and max(line) < 255.99:
                yield np.float32(a), np.float32(b - a * (lo + start)), None, False
        else:
            ends = (b, b + a * (stop - start))
            clip = not (-0.99 < min(ends) and max(ends) < 255.99)
            yield np.float32(a), np.float32(b), (lo + start, lo + stop), clip


def _affine_u8(arr: np.ndarray, scale: np.float32, offset: np.float32, bounds: tuple[int, int] | None,
               clip: bool) -> np.ndarray:
    """``uint8(float32(x) * scale + offset)``, or with ``bounds`` (low, high)
    ``uint8(float32(clip(x, low, high) - low) * scale + offset)`` (the float clipped to 0..255 first with
    ``clip``); in chunks that stay in cache."""
    flat = np.ascontiguousarray(arr).reshape(-1)
    out = np.empty(flat.size, dtype=np.uint8)
    n = min(_CHUNK, flat.size)
    scaled = np.empty(n, dtype=np.float32)
    if bounds is not None:
        low, high = arr.dtype.type(bounds[0]), arr.dtype.type(bounds[1])
        clipped = np.empty(n, dtype=arr.dtype)
        shifted = clipped.view(f"u{arr.dtype.itemsize}")  # x - low >= 0 may not fit the signed type
        base = shifted.dtype.type(bounds[0] % (1 << (8 * arr.dtype.itemsize)))
    for begin in range(0, flat.size, _CHUNK):
        end = min(begin + _CHUNK, flat.size)
        f = scaled[:end - begin]
        if bounds is None:
            f[...] = flat[begin:end]
        else:
            c, s = clipped[:end - begin], shifted[:end - begin]
            np.clip(flat[begin:end], low, high, out=c)
            np.subtract(s, base, out=s)
            f[...] = s
        f *= scale
        f += offset
        if clip:
            np.clip(f, 0.0, 255.0, out=f)
        out[begin:end] = f
    return out.reshape(arr.shape)


def _minmax_window(lo: float, hi: float) -> tuple[float, float]:
    width = max(hi - lo, 1.0)
    return lo + width / 2.0, width


def _to_u8(unit: np.ndarray, monochrome1: bool, invert: bool) -> np.ndarray:
    scaled = unit * np.float32(255.0)
    if monochrome1 != invert:
        scaled = np.float32(255.0) - scaled
    return (scaled + np.float32(0.5)).astype(np.uint8)


def _colour(ds: Dataset, arr: np.ndarray, pi: str, invert: bool) -> np.ndarray:
    if pi == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut
        rgb = apply_color_lut(arr, ds)
        bits = 16 if rgb.dtype.itemsize > 1 else 8
    else:
        if pi.startswith("YBR"):  # the decoder left it in YBR (e.g. as_rgb unsupported)
            from pydicom.pixels import convert_color_space
            arr = convert_color_space(arr, pi, "RGB")
        rgb = arr
        bits = int(ds.get("BitsStored", 8) or 8)
    if rgb.dtype != np.uint8:
        shift = max(bits - 8, 0)
        rgb = (rgb >> shift).astype(np.uint8) if rgb.dtype.kind in "ui" else np.clip(rgb, 0, 255).astype(np.uint8)
    if invert:
        rgb = 255 - rgb
    if not rgb.flags.writeable:  # a view on the dataset's buffer (decode_frame's view_only)
        return np.array(rgb, order="C")
    return np.ascontiguousarray(rgb)


# --- encoding ---------------------------------------------------------------------------------

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def save_options(fmt: Format = "png", quality: int = 90) -> tuple[str, dict]:
    """Pillow's format name and ``Image.save`` options used by :func:`encode` (the benchmark's floor uses the
    same). JPEG: Pillow's defaults otherwise (baseline, no optimize; 4:2:0 chroma subsampling for colour,
    none for grayscale)."""
    if fmt == "png":
        return "PNG", {"compress_level": 1}
    if fmt == "jpeg":
        return "JPEG", {"quality": quality}
    if fmt == "webp":
        return "WEBP", {"quality": quality, "method": 0}
    raise ValueError(f"unknown format {fmt!r}")


def encode(pixels: np.ndarray, fmt: Format = "png", quality: int = 90) -> bytes:
    """PNG (exact, fast zlib level 1), JPEG or WebP bytes of an 8-bit image."""
    name, options = save_options(fmt, quality)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, name, **options)
    return buf.getvalue()


def render(ds: Dataset, frame: int = 0, fmt: Format = "png", *, quality: int = 90, **options) -> bytes:
    """Render and encode one frame (see :func:`render_frame` for the options)."""
    return encode(render_frame(ds, frame, **options).pixels, fmt, quality)


def thumbnail(ds: Dataset, size: int = 128, *, frame: int | None = None, fmt: Format = "jpeg",
              quality: int = 80) -> bytes:
    """A thumbnail no larger than ``size`` x ``size`` (aspect kept); the middle frame by default."""
    if frame is None:
        frame = number_of_frames(ds) // 2
    image = Image.fromarray(render_frame(ds, frame).pixels)
    image.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, "PNG")
    else:
        image.save(buf, "JPEG" if fmt == "jpeg" else "WEBP", quality=quality)
    return buf.getvalue()


# --- measurements -----------------------------------------------------------------------------

def modality_values(ds: Dataset, frame: int = 0) -> np.ndarray:
    """The frame's values after the Modality LUT (HU for CT), float32."""
    arr, pi = decode_frame(ds, frame)
    if arr.ndim == 3:
        raise UnsupportedPixelData("measurements need a grayscale image")
    return _modality(ds, frame, arr) if arr.dtype.kind in "ui" else arr.astype(np.float32)


def value_unit(ds: Dataset) -> str:
    unit = str(ds.get("RescaleType", "") or "")
    if unit and unit.upper() != "US":  # US = unspecified
        return unit
    return "HU" if str(ds.get("Modality", "")).upper() == "CT" else ""


def roi_stats(ds: Dataset, frame: int, ellipse: tuple[float, float, float, float]) -> dict:
    """Mean, standard deviation (population), min, max and pixel count of the modality values whose
    pixel centres lie inside ``ellipse = (cx, cy, rx, ry)`` (pixel coordinates); area in mm² when
    the pixel spacing is known. Values in ``unit`` (HU for CT)."""
    cx, cy, rx, ry = (float(v) for v in ellipse)
    if rx <= 0 or ry <= 0:
        raise ValueError("the ellipse's radii must be positive")
    values = modality_values(ds, frame)
    rows, cols = values.shape
    c0, c1 = max(0, int(math.floor(cx - rx))), min(cols, int(math.ceil(cx + rx)) + 1)
    r0, r1 = max(0, int(math.floor(cy - ry))), min(rows, int(math.ceil(cy + ry)) + 1)
    yy, xx = np.mgrid[r0:r1, c0:c1]
    inside = ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1.0
    sample = values[r0:r1, c0:c1][inside].astype(np.float64)
    if sample.size == 0:
        raise ValueError("the ellipse holds no pixel centre")
    spacing = pixel_spacing(ds, frame)
    area = sample.size * spacing[0][0] * spacing[0][1] if spacing else None
    return {"mean": float(sample.mean()), "std": float(sample.std()), "min": float(sample.min()),
            "max": float(sample.max()), "count": int(sample.size), "area_mm2": area, "unit": value_unit(ds)}


def pixel_spacing(ds: Dataset, frame: int = 0) -> tuple[tuple[float, float], str, str] | None:
    """((row spacing, column spacing) in mm, source attribute, note) or None when unknown."""
    value = _functional(ds, frame, "PixelMeasuresSequence", "PixelSpacing")
    if value and len(value) == 2:
        return (float(value[0]), float(value[1])), "PixelSpacing", ""
    value = ds.get("ImagerPixelSpacing")
    if value and len(value) == 2:
        factor = _first(ds.get("EstimatedRadiographicMagnificationFactor"))
        if factor and factor > 0:
            return ((float(value[0]) / factor, float(value[1]) / factor), "ImagerPixelSpacing",
                    "at the detector, corrected by the estimated radiographic magnification factor")
        return ((float(value[0]), float(value[1])), "ImagerPixelSpacing",
                "measured at the detector plane, not corrected for geometric magnification")
    return None


@dataclass
class Length:
    mm: float | None  # None when the pixel spacing is unknown
    pixels: float
    source: str  # "PixelSpacing", "ImagerPixelSpacing" or "" (pixels only)
    note: str


def length_mm(ds: Dataset, p1: tuple[float, float], p2: tuple[float, float], frame: int = 0) -> Length:
    """Distance between two points (x, y) in pixels, and in mm from the pixel spacing."""
    dx, dy = float(p2[0]) - float(p1[0]), float(p2[1]) - float(p1[1])
    spacing = pixel_spacing(ds, frame)
    pixels = math.hypot(dx, dy)
    if spacing is None:
        return Length(None, pixels, "", "no pixel spacing: length in pixels only")
    (row, col), source, note = spacing
    return Length(math.hypot(dx * col, dy * row), pixels, source, note)


def angle_deg(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float],
              spacing: tuple[float, float] | None = None) -> float:
    """The angle ABC at vertex ``b`` in degrees (0-180); ``spacing`` (row, col) for non-square pixels."""
    sy, sx = spacing or (1.0, 1.0)
    v1 = ((a[0] - b[0]) * sx, (a[1] - b[1]) * sy)
    v2 = ((c[0] - b[0]) * sx, (c[1] - b[1]) * sy)
    n1, n2 = math.hypot(*v1), math.hypot(*v2)
    if n1 == 0 or n2 == 0:
        raise ValueError("an angle needs three distinct points")
    cos = max(-1.0, min(1.0, (v1[0] * v2[0] + v1[1] * v2[1]) / (n1 * n2)))
    return math.degrees(math.acos(cos))
