"""Real whole-slide files for the tests, the demo and the benchmark, written with tifffile (no
imagecodecs: tiles are zlib-compressed or raw, which libtiff and so OpenSlide read natively).

- :func:`write_generic_tiff` (from ``synthetic``): a pyramidal tiled TIFF (OpenSlide's ``generic-tiff``), levels halving
  down to about a tile, with the resolution in the TIFF tags (so OpenSlide reports microns per pixel).
- :func:`write_svs`: an Aperio-style SVS (OpenSlide's ``aperio``): tiled levels, a stripped thumbnail as
  the second directory, and stripped ``label`` and ``macro`` images, with an ImageDescription carrying
  identifying fields (``Filename = Doe_John_123``, ``User``, ``Barcode``), as real scanners write.

The tissue is synthetic (smooth pink/purple fields with dark nuclei on a near-white background) and is
drawn tile by tile from a small master texture, so a 16k x 16k slide never sits in memory. The label
is pure magenta and the macro pure green with the patient's "name" written on them: markers no tissue
pixel comes near, so a test can prove they never leak (:func:`marker_pixels`).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from plugins.pathology_viewer.synthetic import TILE, Texture, full_image, tiles_of, level_sizes, write_generic_tiff  # noqa: F401

MAGENTA = (255, 0, 255)  # the label
GREEN = (0, 255, 0)  # the macro
NAME = "Doe_John_123"
BARCODE = "BC-998877-XQ"
USER = "dr.secret.scanner.user"


def label_image(width: int = 400, height: int = 300, color=MAGENTA, text: str = NAME) -> np.ndarray:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), color)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate((text, BARCODE)):
        draw.text((20, 30 + 40 * i), line, fill=(0, 0, 0))
    draw.rectangle((20, 150, width - 20, 200), outline=(0, 0, 0), width=3)  # a "barcode"
    return np.asarray(image)


def aperio_description(width: int, height: int, mpp: float, header: str) -> str:
    return (f"Aperio Image Library v12.0.15 \r\n{header}|AppMag = 20|StripeWidth = 2040|ScanScope ID = SS1234"
            f"|Filename = {NAME}|Date = 11/29/26|Time = 10:00:00|User = {USER}|MPP = {mpp}|Barcode = {BARCODE}"
            f"|Left = 25.69|Top = 23.44")


def write_svs(path: Path, width: int = 2048, height: int = 1536, *, levels: int = 3, mpp: float = 0.499,
              compression: str | None = "zlib", seed: int = 11) -> Path:
    """An Aperio-style SVS with thumbnail, label (magenta) and macro (green)."""
    import tifffile

    texture = Texture(width, height, seed)
    path = Path(path)
    sizes = level_sizes(width, height, levels)
    first = f"{width}x{height} [0,0 {width}x{height}] ({TILE}x{TILE}) RAW"
    thumb_w = 256
    thumb_h = max(1, round(height * thumb_w / width))
    with tifffile.TiffWriter(path) as tif:
        def level(i: int) -> None:
            lw, lh = sizes[i]
            header = first if i == 0 else f"{width}x{height} -> {lw}x{lh} - ({TILE}x{TILE}) RAW"
            tif.write(tiles_of(texture, lw, lh), shape=(lh, lw, 3), dtype=np.uint8, tile=(TILE, TILE),
                      photometric="rgb", compression=compression,
                      description=aperio_description(width, height, mpp, header), metadata=None)

        level(0)
        tif.write(full_image(texture, thumb_w, thumb_h), photometric="rgb", compression=compression,
                  description=aperio_description(width, height, mpp, f"{width}x{height} -> {thumb_w}x{thumb_h} - "),
                  metadata=None, rowsperstrip=16)
        for i in range(1, len(sizes)):
            level(i)
        label = label_image()
        tif.write(label, photometric="rgb", compression=compression, subfiletype=1, rowsperstrip=16,
                  description=f"Aperio Image Library v12.0.15\r\nlabel {label.shape[1]}x{label.shape[0]}", metadata=None)
        macro = label_image(800, 300, GREEN, f"{NAME} macro")
        tif.write(macro, photometric="rgb", compression=compression, subfiletype=9, rowsperstrip=16,
                  description=f"Aperio Image Library v12.0.15\r\nmacro {macro.shape[1]}x{macro.shape[0]}", metadata=None)
    return path


def marker_pixels(image) -> int:
    """How many pixels look like the label's magenta or the macro's green (JPEG-tolerant)."""
    a = np.asarray(image.convert("RGB"), dtype=np.int16)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    magenta = (r > 200) & (g < 70) & (b > 200)
    green = (g > 200) & (r < 70) & (b < 70)
    return int(magenta.sum() + green.sum())


def zip_of(path: Path, members: dict[str, Path | bytes]) -> Path:
    """A ZIP holding ``members`` (archive name -> file or bytes)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, src in members.items():
            if isinstance(src, bytes):
                zf.writestr(name, src)
            else:
                zf.write(src, name)
    return path


if __name__ == "__main__":  # a quick look: python -m plugins.pathology_viewer.tests.slidegen /tmp
    import sys

    import openslide

    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    for p in (write_generic_tiff(out / "gen.tiff"), write_svs(out / "gen.svs")):
        s = openslide.OpenSlide(str(p))
        print(p, s.properties.get("openslide.vendor"), s.dimensions, s.level_count, s.level_downsamples,
              list(s.associated_images), s.properties.get("openslide.mpp-x"))
