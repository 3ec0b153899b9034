"""Synthetic tissue-like slides, written with tifffile (no imagecodecs: tiles are zlib-compressed or raw,
which libtiff, and so OpenSlide, reads natively): for the demo patient, the tests and the benchmark.

The tissue (smooth pink/purple fields with dark nuclei on a near-white background) is drawn tile by
tile from a small master texture, so a 16k x 16k slide never sits in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TILE = 256
BACKGROUND = (242, 240, 244)


class Texture:
    """Low-frequency fields over the whole slide (tissue mask, stain mix), sampled at any level."""

    def __init__(self, width: int, height: int, seed: int = 7, size: int = 256) -> None:
        from PIL import Image

        self.width, self.height = width, height
        rng = np.random.default_rng(seed)

        def smooth(cells: int) -> np.ndarray:
            small = (rng.random((cells, cells)) * 255).astype(np.uint8)
            return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) / 255

        self.tissue = 0.6 * smooth(6) + 0.4 * smooth(14)
        self.stain = smooth(10)
        self.size = size

    def sample(self, field: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        # Bilinear lookup of field at slide-relative positions (0..1).
        fx = np.clip(xs * (self.size - 1), 0, self.size - 1.001)
        fy = np.clip(ys * (self.size - 1), 0, self.size - 1.001)
        x0, y0 = fx.astype(np.int32), fy.astype(np.int32)
        dx, dy = fx - x0, fy - y0
        a = field[np.ix_(y0, x0)]
        b = field[np.ix_(y0, x0 + 1)]
        c = field[np.ix_(y0 + 1, x0)]
        d = field[np.ix_(y0 + 1, x0 + 1)]
        top = a * (1 - dx)[None, :] + b * dx[None, :]
        bottom = c * (1 - dx)[None, :] + d * dx[None, :]
        return top * (1 - dy)[:, None] + bottom * dy[:, None]

    def tile(self, level_w: int, level_h: int, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """RGB pixels of the area (x0, y0, w, h) of a level of size level_w x level_h."""
        from PIL import Image

        # The fields are smooth: sampled every STEP pixels, then enlarged (bilinear).
        step = 8
        gw, gh = w // step + 2, h // step + 2
        xs = (x0 + np.arange(gw, dtype=np.float32) * step + 0.5) / level_w
        ys = (y0 + np.arange(gh, dtype=np.float32) * step + 0.5) / level_h

        def field(values: np.ndarray) -> np.ndarray:
            grid = self.sample(values, xs, ys).astype(np.float32)
            return np.asarray(Image.fromarray(grid).resize((gw * step, gh * step), Image.Resampling.BILINEAR))[:h, :w]

        tissue, stain = field(self.tissue), field(self.stain)
        rng = np.random.default_rng((x0 * 73856093) ^ (y0 * 19349663) ^ (level_w * 83492791))
        color = EOSIN * (1 - stain[..., None] * 0.6) + HAEM * (stain[..., None] * 0.6)
        oy, ox = rng.integers(0, NOISE - h + 1), rng.integers(0, NOISE - w + 1)
        color += _noise()[oy:oy + h, ox:ox + w, None]
        # Nuclei: dark blobs from thresholded coarse noise, about 6 level-0 pixels across at every level.
        cell = max(2, round(6 / (self.width / level_w)))
        coarse = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
        fine = np.asarray(Image.fromarray(coarse).resize(((w // cell + 2) * cell, (h // cell + 2) * cell),
                                                         Image.Resampling.BILINEAR))[:h, :w]
        color[fine > 0.9] = HAEM * 0.6
        out = np.empty((h, w, 3), np.float32)
        out[:] = BACKGROUND
        mask = tissue > 0.5
        out[mask] = color[mask]
        return np.clip(out, 0, 255).astype(np.uint8)


EOSIN = np.array([228, 140, 188], np.float32)
HAEM = np.array([128, 78, 168], np.float32)
NOISE = 1024
_noise_block: list[np.ndarray] = []


def _noise() -> np.ndarray:
    """Grain shared by every tile (a random window of it per tile): drawing fresh noise per pixel is slow."""
    if not _noise_block:
        _noise_block.append(np.random.default_rng(99).normal(0, 6, (NOISE, NOISE)).astype(np.float32))
    return _noise_block[0]


def level_sizes(width: int, height: int, levels: int | None = None) -> list[tuple[int, int]]:
    sizes = [(width, height)]
    while (levels is None and max(sizes[-1]) > TILE) or (levels is not None and len(sizes) < levels):
        w, h = sizes[-1]
        sizes.append((max(1, w // 2), max(1, h // 2)))
    return sizes


def tiles_of(texture: Texture, lw: int, lh: int):
    for ty in range(0, lh, TILE):
        for tx in range(0, lw, TILE):
            block = np.full((TILE, TILE, 3), BACKGROUND, np.uint8)
            w, h = min(TILE, lw - tx), min(TILE, lh - ty)
            block[:h, :w] = texture.tile(lw, lh, tx, ty, w, h)
            yield block


def full_image(texture: Texture, lw: int, lh: int) -> np.ndarray:
    return texture.tile(lw, lh, 0, 0, lw, lh)


def write_generic_tiff(path: Path, width: int = 2048, height: int = 1536, *, levels: int | None = None,
                       mpp: float = 0.25, compression: str | None = "zlib", seed: int = 7) -> Path:
    """A pyramidal tiled TIFF that OpenSlide opens as ``generic-tiff``."""
    import tifffile

    texture = Texture(width, height, seed)
    path = Path(path)
    sizes = level_sizes(width, height, levels)
    big = width * height * 3 > 2**31
    with tifffile.TiffWriter(path, bigtiff=big) as tif:
        for i, (lw, lh) in enumerate(sizes):
            scale = width / lw
            resolution = (1e4 / (mpp * scale), 1e4 / (mpp * scale))  # pixels per centimetre
            tif.write(tiles_of(texture, lw, lh), shape=(lh, lw, 3), dtype=np.uint8, tile=(TILE, TILE),
                      photometric="rgb", compression=compression, resolution=resolution,
                      resolutionunit="CENTIMETER", subfiletype=1 if i else 0, metadata=None,
                      maxworkers=2)
    return path
