"""Rendering: windows and presets, VOI LUT functions, MONOCHROME1, colour, multi-frame, every
compressed transfer syntax against its uncompressed reference, palette, encoders, measurements."""

from __future__ import annotations

import io
import math

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from plugins.dicom_viewer import render, synthetic
from plugins.dicom_viewer.render import (PRESETS, UnsupportedPixelData, angle_deg, length_mm, render_frame,
                                         roi_stats)


def data_file(name: str) -> str:
    """A pydicom test file: shipped with pydicom, or from the pydicom-data package; skip without it."""
    try:
        path = get_testdata_file(name)
    except Exception:  # noqa: BLE001 - pydicom tries to download files it does not have
        path = None
    if path is None:
        pytest.skip(f"{name} needs the pydicom-data package")
    return path


def read(name: str) -> Dataset:
    return pydicom.dcmread(data_file(name))


def gray(values, *, signed=False, bits=16, stored=None, pi="MONOCHROME2", **attrs) -> Dataset:
    arr = np.asarray(values, dtype=(f"int{bits}" if signed else f"uint{bits}"))
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_pixel_data(arr, pi, stored or bits)
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


# --- windowing ---------------------------------------------------------------------------------

def test_ct_window_from_hu():
    # stored = HU + 1024; HU -1000, 0, 40, 80, 1000
    ds = gray([[24, 1024, 1064, 1104, 2024]], RescaleSlope=1, RescaleIntercept=-1024)
    out = render_frame(ds, window=(40, 80)).pixels  # LINEAR: 0 below -0.5, 255 above 79.5
    assert out.tolist() == [[0, 0, 129, 255, 255]]
    exact = render_frame(ds, window=(40, 80), voi_function="LINEAR_EXACT").pixels
    assert exact.tolist() == [[0, 0, 128, 255, 255]]
    brain = render_frame(ds, preset="brain")
    assert brain.window == (40.0, 80.0) and brain.voi == "preset"
    assert np.array_equal(brain.pixels, out)
    lung = render_frame(ds, preset="lung").pixels  # -400/1600: -1200 .. 400
    assert lung[0, 0] == round((-1000 + 1200.5) / 1599 * 255) and lung[0, 4] == 255
    with pytest.raises(ValueError):
        render_frame(ds, preset="nonsense")


def test_presets_of_the_issue():
    assert PRESETS["brain"] == (40, 80) and PRESETS["bone"] == (300, 1500)
    assert PRESETS["lung"] == (-400, 1600) and PRESETS["abdomen"] == (60, 400)
    assert PRESETS["chest"] == (40, 400) and PRESETS["angio"] == (300, 600)
    assert {"subdural", "stroke", "liver", "soft tissue"} <= set(PRESETS)


def test_window_from_file_first_of_several_values_and_sigmoid():
    ds = gray([[0, 100, 200]], WindowCenter=[100, 500], WindowWidth=[200, 1000])
    r = render_frame(ds)
    assert r.voi == "file" and r.window == (100.0, 200.0)
    assert r.pixels.tolist() == [[0, 128, 255]]
    ds.VOILUTFunction = "SIGMOID"
    sig = render_frame(ds).pixels
    assert sig.tolist() == [[round(255 / (1 + math.exp(2))), 128, round(255 / (1 + math.exp(-2)))]]


def test_default_window_is_min_max_and_signed_values():
    ds = gray([[-2000, -1000, 0, 1000]], signed=True)
    r = render_frame(ds)
    assert r.voi == "minmax" and r.pixels[0, 0] == 0 and r.pixels[0, -1] == 255
    assert r.pixels[0].tolist() == sorted(r.pixels[0].tolist())
    eight = gray([[10, 20]], bits=8)
    assert render_frame(eight).pixels.tolist() == [[0, 255]]


def test_monochrome1_inverted_and_viewer_invert(tmp_path):
    ds = pydicom.dcmread(synthetic.cr_monochrome1(tmp_path / "cr.dcm", size=64))
    out = render_frame(ds).pixels
    assert out[0, 0] == 255 and out[0, -1] == 0  # low value shows white
    assert np.array_equal(render_frame(ds, invert=True).pixels, 255 - out.astype(int))
    rg3 = read("RG3_UNCR.dcm")
    assert rg3.PhotometricInterpretation == "MONOCHROME1"


def test_modality_lut_sequence_and_voi_lut_sequence():
    mlut = read("mlut_18.dcm")
    assert "ModalityLUTSequence" in mlut
    out = render_frame(mlut).pixels
    assert out.dtype == np.uint8 and out.shape == mlut.pixel_array.shape and out.max() > out.min()
    vlut = read("vlut_04.dcm")
    for k in ("WindowCenter", "WindowWidth"):
        if k in vlut:
            delattr(vlut, k)
    r = render_frame(vlut)
    assert r.voi == "voi-lut" and r.pixels.max() > r.pixels.min()


# --- the arithmetic fast path of LINEAR windows -------------------------------------------------

def _general_path(monkeypatch):
    """Make render_frame use the table lookup for LINEAR windows too (the fast path's reference)."""
    table = render._linear_table
    monkeypatch.setattr(render, "_linear_table", lambda *args: (table(*args)[0], None))


def _linear_cases():
    rng = np.random.default_rng(7)
    arrays = {  # 512 x 520 > 4 x 65536 pixels: the large-image sizes of the chunked loops too
        "u16": rng.integers(0, 65536, (512, 520)).astype(np.uint16),
        "u12": rng.integers(0, 4096, (64, 64)).astype(np.uint16),
        "i16": rng.integers(-3000, 3000, (64, 64)).astype(np.int16),
        "u8": rng.integers(0, 256, (64, 64)).astype(np.uint8),
        "i8": rng.integers(-128, 128, (64, 64)).astype(np.int8),
    }
    windows = [*PRESETS.values(), (32768, 65536), (2047.5, 4096), (127, 256), (0, 1), (10, 2), (40.5, 79.3), None]
    for n, (kind, arr) in enumerate(arrays.items()):
        for m, win in enumerate(windows):
            slope, intercept = [(1, -1024), (1, 0), (2, -1000), (0.5, 3.3), (-1, 100)][(n + m) % 5]
            function = ("LINEAR", "LINEAR_EXACT")[m % 2]
            yield kind, arr, win, slope, intercept, function, m % 3 == 0, (n + m) % 4 == 0


def test_linear_fast_path_gives_the_table_lookups_pixels(monkeypatch):
    fast_used = 0
    for kind, arr, win, slope, intercept, function, mono1, invert in _linear_cases():
        ds = gray(arr, signed=arr.dtype.kind == "i", bits=8 * arr.dtype.itemsize,
                  pi="MONOCHROME1" if mono1 else "MONOCHROME2", RescaleSlope=slope, RescaleIntercept=intercept)
        fast = render_frame(ds, window=win, voi_function=function, invert=invert)
        linear = render._linear_map(ds, 0, False, fast.window, function, mono1 != invert)
        fast_used += render._linear_table(arr.dtype.str, *linear)[1] is not None
        with monkeypatch.context() as m:
            _general_path(m)
            general = render_frame(ds, window=win, voi_function=function, invert=invert)
        assert np.array_equal(fast.pixels, general.pixels), (kind, win, slope, intercept, function, mono1, invert)
        assert fast.window == general.window and fast.voi == general.voi
        # and within one gray level of the float32 pipeline of the other functions (which rounds exact
        # halves either way): the same transform
        values = render._modality(ds, 0, arr)
        reference = render._to_u8(render.window_to_unit(values, *fast.window, function), mono1, invert)
        assert np.abs(fast.pixels.astype(int) - reference).max() <= 1
    assert fast_used >= 40  # the fast path is taken in the usual cases, not only correct when it is


def test_linear_fast_path_on_the_benchmark_images(tmp_path, monkeypatch):
    """The synthetic CT (file window, presets, MONOCHROME1-style invert) and 16-bit image take the fast path."""
    ct = pydicom.dcmread(synthetic.ct_slice(tmp_path / "ct.dcm", study_uid="1.2", series_uid="1.2.1",
                                            frame_of_reference="1.2.2", size=512))
    big = pydicom.dcmread(synthetic.large16(tmp_path / "big.dcm", size=600))
    for ds in (ct, big):
        for options in ({}, {"invert": True}, *({"preset": p} for p in PRESETS)):
            fast = render_frame(ds, **options).pixels
            with monkeypatch.context() as m:
                _general_path(m)
                assert np.array_equal(fast, render_frame(ds, **options).pixels), options
    linear = render._linear_map(big, 0, False, render.file_window(big), "LINEAR", False)
    assert render._linear_table("<u2", *linear)[1][2] is None  # 16-bit, whole range in the window: no clip
    linear = render._linear_map(ct, 0, False, PRESETS["brain"], "LINEAR", False)
    assert render._linear_table("<u2", *linear)[1] is not None


def test_linear_table_is_an_exact_staircase():
    """_linear_lut rounds exact halves up (the float32 pipeline may not): the tests' values above hold."""
    lut = render._linear_lut(np.arange(5, dtype=np.int64), 255 / 4, 0.0)  # 0, 63.75, 127.5, 191.25, 255
    assert lut.tolist() == [0, 64, 128, 191, 255]


# --- colour ------------------------------------------------------------------------------------

def test_rgb_and_ybr_render_as_rgb():
    rgb = render_frame(read("SC_rgb.dcm")).pixels
    assert rgb.shape == (100, 100, 3) and tuple(rgb[5, 50]) == (255, 0, 0)
    ybr = render_frame(read("SC_ybr_full_422_uncompressed.dcm")).pixels
    assert np.abs(ybr.astype(int) - rgb).max() <= 6
    ybr_full = render_frame(read("SC_ybr_full_uncompressed.dcm")).pixels
    assert np.abs(ybr_full.astype(int) - rgb).max() <= 6
    sixteen = render_frame(read("SC_rgb_16bit.dcm")).pixels
    assert sixteen.dtype == np.uint8 and tuple(sixteen[5, 50]) == (255, 0, 0)


def test_palette_colour():
    ds = pydicom.dcmread(get_testdata_file("examples_palette.dcm"))
    out = render_frame(ds).pixels
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8
    from pydicom.pixels import apply_color_lut
    expected = apply_color_lut(ds.pixel_array, ds)
    if expected.dtype != np.uint8:
        expected = (expected >> 8).astype(np.uint8)
    assert np.array_equal(out, expected)


def test_us_rgb_synthetic(tmp_path):
    ds = pydicom.dcmread(synthetic.us_rgb(tmp_path / "us.dcm"))
    out = render_frame(ds).pixels
    assert out.shape == (240, 320, 3) and tuple(out[10, 10]) == (255, 255, 255) and tuple(out[100, 200]) == (200, 100, 200)


# --- multi-frame -------------------------------------------------------------------------------

def test_multiframe_frame_selection(tmp_path):
    ds = pydicom.dcmread(synthetic.multiframe(tmp_path / "mf.dcm", frames=5, size=16))
    for f in range(5):
        out = render_frame(ds, f, window=(250, 500), voi_function="LINEAR_EXACT").pixels
        expected = round(min(max((100 * (f + 1) - 250) / 500 + 0.5, 0), 1) * 255)
        assert out[5, 5] == expected, f
    with pytest.raises(IndexError):
        render_frame(ds, 5)
    emri = read("emri_small.dcm")
    frames = [render_frame(emri, i, window=(500, 1000)).pixels for i in range(int(emri.NumberOfFrames))]
    assert not np.array_equal(frames[0], frames[5])


# --- compressed transfer syntaxes --------------------------------------------------------------

LOSSLESS_PAIRS = [
    ("MR_small.dcm", "MR_small_RLE.dcm"),  # RLE, 16-bit signed
    ("MR_small.dcm", "MR_small_jp2klossless.dcm"),  # JPEG 2000 lossless
    ("MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm"),  # JPEG-LS lossless
    ("emri_small.dcm", "emri_small_RLE.dcm"),  # multi-frame
    ("emri_small.dcm", "emri_small_jpeg_2k_lossless.dcm"),
    ("emri_small.dcm", "emri_small_jpeg_ls_lossless.dcm"),
    ("SC_rgb.dcm", "SC_rgb_jpeg_gdcm.dcm"),  # JPEG lossless process 14 SV1 (python-gdcm)
    ("SC_rgb.dcm", "SC_rgb_rle.dcm"),
    ("SC_rgb_2frame.dcm", "SC_rgb_rle_2frame.dcm"),
    ("SC_rgb_16bit.dcm", "SC_rgb_rle_16bit.dcm"),
    ("US1_UNCR.dcm", "US1_J2KR.dcm"),  # JPEG 2000 YBR_RCT colour
    ("693_UNCR.dcm", "693_J2KR.dcm"),
    ("JPEG2000_UNC.dcm", "JPEG2000.dcm"),
    ("OBXXXX1A.dcm", "OBXXXX1A_rle.dcm"),  # palette colour
]


@pytest.mark.parametrize("reference,compressed", LOSSLESS_PAIRS)
def test_lossless_syntaxes_render_the_reference_pixels(reference, compressed):
    ref, comp = read(reference), read(compressed)
    assert comp.file_meta.TransferSyntaxUID.is_compressed
    for frame in range(render.number_of_frames(ref)):
        a = render_frame(ref, frame, window=(100, 400)).pixels
        b = render_frame(comp, frame, window=(100, 400)).pixels
        assert np.array_equal(a, b), (compressed, frame)


@pytest.mark.parametrize("reference,compressed,tolerance", [
    ("SC_rgb.dcm", "SC_rgb_jpeg_dcmtk.dcm", 8),  # JPEG baseline, YBR_FULL_422
    ("SC_rgb.dcm", "SC_rgb_jpeg_gdcm.dcm", 0),
    ("SC_rgb.dcm", "SC_rgb_jls_lossy_line.dcm", 3),  # JPEG-LS near-lossless
    ("SC_rgb_small_odd.dcm", "SC_rgb_small_odd_jpeg.dcm", 8),
    ("US1_UNCI.dcm", "US1_J2KI.dcm", 40),  # JPEG 2000 lossy
])
def test_lossy_syntaxes_close_to_the_reference(reference, compressed, tolerance):
    a = render_frame(read(reference)).pixels.astype(int)
    b = render_frame(read(compressed)).pixels.astype(int)
    assert a.shape == b.shape and np.abs(a - b).max() <= tolerance and np.abs(a - b).mean() < 3


@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", "JPEGLSNearLossless_16.dcm",
                                  "color3d_jpeg_baseline.dcm", "image_dfl.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_implicit.dcm", "693_J2KI.dcm", "SC_rgb_rle_32bit.dcm"])
def test_other_syntaxes_decode(name):
    ds = read(name)
    out = render_frame(ds).pixels
    assert out.dtype == np.uint8 and out.max() > out.min()


def test_12bit_jpeg_extended_reported_unsupported():
    ds = read("JPEG-lossy.dcm")
    with pytest.raises(UnsupportedPixelData, match="JPEG Extended"):
        render_frame(ds)


def test_no_pixel_data():
    with pytest.raises(UnsupportedPixelData):
        render_frame(pydicom.dcmread(get_testdata_file("rtplan.dcm")))


# --- encoders and thumbnails -------------------------------------------------------------------

def test_png_exact_jpeg_webp_and_thumbnail(tmp_path):
    ds = pydicom.dcmread(synthetic.ct_slice(tmp_path / "ct.dcm", study_uid="1.2", series_uid="1.2.1",
                                            frame_of_reference="1.2.2", size=128))
    pixels = render_frame(ds, preset="abdomen").pixels
    png = render.render(ds, 0, "png", preset="abdomen")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), pixels)
    assert render.render(ds, 0, "jpeg")[:3] == b"\xff\xd8\xff"
    assert render.render(ds, 0, "webp")[8:12] == b"WEBP"
    with pytest.raises(ValueError):
        render.encode(pixels, "gif")
    thumb = Image.open(io.BytesIO(render.thumbnail(ds, 64)))
    assert thumb.size == (64, 64) and thumb.format == "JPEG"
    rgb = Image.open(io.BytesIO(render.thumbnail(read("US1_UNCR.dcm"), 100)))
    assert rgb.size == (100, 75) and rgb.mode == "RGB"


# --- measurements ------------------------------------------------------------------------------

def test_roi_stats_in_hu():
    values = np.full((20, 20), 1024, dtype=np.uint16)  # 0 HU
    values[5:15, 5:15] = 1024 + 40  # 40 HU square
    values[10, 10] = 1024 + 140
    ds = gray(values, RescaleSlope=1, RescaleIntercept=-1024, Modality="CT", PixelSpacing=[0.5, 0.5])
    stats = roi_stats(ds, 0, (10, 10, 3, 3))  # centre (10,10), radius 3: inside the square
    inside = [(c, r) for r in range(20) for c in range(20) if (c + 0.5 - 10) ** 2 + (r + 0.5 - 10) ** 2 <= 9]
    sample = np.array([140 if (c, r) == (10, 10) else 40 for c, r in inside], float)
    assert stats["count"] == len(inside) and stats["unit"] == "HU"
    assert stats["mean"] == pytest.approx(sample.mean()) and stats["std"] == pytest.approx(sample.std())
    assert stats["max"] == 140 and stats["min"] == 40
    assert stats["area_mm2"] == pytest.approx(len(inside) * 0.25)
    with pytest.raises(ValueError):
        roi_stats(ds, 0, (10, 10, 0, 3))


def test_roi_stats_on_the_synthetic_ct(tmp_path):
    ds = pydicom.dcmread(synthetic.ct_slice(tmp_path / "ct.dcm", study_uid="1.2", series_uid="1.2.1",
                                            frame_of_reference="1.2.2", size=512))
    water = roi_stats(ds, 0, (256, 400, 20, 10))
    assert abs(water["mean"]) < 1.5 and 3 < water["std"] < 6  # 0 HU with the +-8 texture
    bone = roi_stats(ds, 0, (153.3, 255.5, 10, 10))
    assert abs(bone["mean"] - 1000) < 2


def test_length_and_angle(tmp_path):
    ds = gray(np.zeros((4, 4)), PixelSpacing=[0.5, 0.25])  # rows 0.5 mm apart, columns 0.25 mm
    length = length_mm(ds, (0, 0), (4, 3))
    assert length.pixels == 5 and length.mm == pytest.approx(math.hypot(4 * 0.25, 3 * 0.5))
    assert length.source == "PixelSpacing" and length.note == ""
    cr = pydicom.dcmread(synthetic.cr_monochrome1(tmp_path / "cr.dcm", size=16))
    detector = length_mm(cr, (0, 0), (10, 0))
    assert detector.mm == pytest.approx(1.5) and detector.source == "ImagerPixelSpacing" and "detector" in detector.note
    nothing = length_mm(gray(np.zeros((2, 2))), (0, 0), (1, 1))
    assert nothing.mm is None and nothing.pixels == pytest.approx(math.sqrt(2))
    assert angle_deg((1, 0), (0, 0), (0, 1)) == pytest.approx(90)
    assert angle_deg((1, 0), (0, 0), (-1, 0)) == pytest.approx(180)
    assert angle_deg((1, 0), (0, 0), (1, 1)) == pytest.approx(45)
    assert angle_deg((1, 0), (0, 0), (1, 1), spacing=(2.0, 1.0)) == pytest.approx(math.degrees(math.atan(2)))
    with pytest.raises(ValueError):
        angle_deg((0, 0), (0, 0), (1, 1))
