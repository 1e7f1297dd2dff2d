"""Images to content parts: every accepted kind, downscaling, passthrough and errors."""

from __future__ import annotations

import base64
import io
import struct
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image, features

from clarifai_magic.media import MediaError, image_part, user_content


def encoded(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def decode(part: dict) -> tuple[str, bytes]:
    """The MIME type and bytes inside a data-URL image part (checking the part's shape)."""
    assert part["type"] == "image_url"
    url = part["image_url"]["url"]
    header, payload = url.split(",", 1)
    assert header.startswith("data:") and header.endswith(";base64")
    return header[5:-7], base64.b64decode(payload)


def decode_image(part: dict) -> tuple[str, Image.Image]:
    mime, data = decode(part)
    return mime, Image.open(io.BytesIO(data))


# ---------------------------------------------------------------- PIL images


def test_pil_rgb_image_becomes_jpeg_data_url_of_same_size():
    img = Image.new("RGB", (40, 30), (200, 10, 10))
    part = image_part(img)
    assert set(part) == {"type", "image_url"} and set(part["image_url"]) == {"url"}
    mime, sent = decode_image(part)
    assert mime == "image/jpeg" and sent.format == "JPEG"
    assert sent.size == (40, 30)
    r, g, b = sent.convert("RGB").getpixel((20, 15))
    assert abs(r - 200) < 8 and g < 20 and b < 20


def test_pil_image_with_alpha_becomes_png_keeping_transparency():
    img = Image.new("RGBA", (10, 10), (0, 255, 0, 0))
    mime, sent = decode_image(image_part(img))
    assert mime == "image/png"
    assert sent.convert("RGBA").getpixel((5, 5)) == (0, 255, 0, 0)


def test_pil_image_loaded_from_png_stays_png(tmp_path):
    path = tmp_path / "chart.png"
    Image.new("RGB", (12, 8), (1, 2, 3)).save(path)
    with Image.open(path) as img:
        mime, sent = decode_image(image_part(img))
    assert mime == "image/png"
    assert sent.getpixel((0, 0)) == (1, 2, 3)


def test_large_pil_image_is_downscaled_without_touching_the_callers_image():
    img = Image.new("RGB", (400, 100), "white")
    mime, sent = decode_image(image_part(img, max_side=100))
    assert sent.size == (100, 25)
    assert img.size == (400, 100)


def test_default_max_side_is_1568():
    mime, sent = decode_image(image_part(Image.new("L", (10, 2000))))
    assert max(sent.size) == 1568
    assert sent.size[0] < 10


def test_palette_image_with_transparency_is_sent_as_png():
    img = Image.new("P", (8, 8), 0)
    img.info["transparency"] = 0
    mime, sent = decode_image(image_part(img))
    assert mime == "image/png"
    assert sent.convert("RGBA").getpixel((0, 0))[3] == 0


# ---------------------------------------------------------------- NumPy arrays


def test_numpy_rgb_array_becomes_jpeg_with_width_and_height_from_shape():
    arr = np.zeros((20, 30, 3), dtype=np.uint8)
    arr[..., 2] = 255
    mime, sent = decode_image(image_part(arr))
    assert mime == "image/jpeg"
    assert sent.size == (30, 20)
    r, g, b = sent.convert("RGB").getpixel((15, 10))
    assert r < 10 and g < 10 and b > 245


def test_numpy_rgba_array_becomes_png_with_exact_pixels():
    arr = np.zeros((4, 5, 4), dtype=np.uint8)
    arr[1, 2] = (10, 20, 30, 128)
    mime, sent = decode_image(image_part(arr))
    assert mime == "image/png"
    assert sent.size == (5, 4)
    assert sent.getpixel((2, 1)) == (10, 20, 30, 128)


@pytest.mark.parametrize("shape", [(6, 9), (6, 9, 1)])
def test_numpy_grayscale_array_becomes_grayscale_image(shape):
    arr = np.full(shape, 77, dtype=np.uint8)
    mime, sent = decode_image(image_part(arr))
    assert sent.mode == "L" and sent.size == (9, 6)
    assert abs(sent.getpixel((4, 3)) - 77) < 3


def test_large_numpy_array_is_downscaled():
    arr = np.zeros((300, 60, 3), dtype=np.uint8)
    mime, sent = decode_image(image_part(arr, max_side=150))
    assert sent.size == (30, 150)


def gray_levels(part: dict, points: list[tuple[int, int]]) -> list[int]:
    """The sent image's gray level at each (x, y)."""
    _, sent = decode_image(part)
    gray = sent.convert("L")
    return [gray.getpixel(xy) for xy in points]


def near(levels: list[int], expected: list[int]) -> bool:
    # JPEG moves flat gray levels by a step or two.
    return all(abs(a - b) <= 3 for a, b in zip(levels, expected, strict=True))


def quadrants(values: list[float], dtype: str, side: int = 16) -> np.ndarray:
    """A side×side array whose four quadrants (row by row) hold ``values``."""
    arr = np.empty((side, side), dtype=dtype)
    half = side // 2
    for i, v in enumerate(values):
        arr[(i // 2) * half : (i // 2 + 1) * half, (i % 2) * half : (i % 2 + 1) * half] = v
    return arr


CORNERS = [(4, 4), (12, 4), (4, 12), (12, 12)]


def test_16_bit_png_keeps_its_tones_instead_of_turning_white():
    arr = quadrants([0, 16384, 32768, 65535], "uint16", side=64)
    data = encoded(Image.fromarray(arr), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really a 16-bit file
    part = image_part(data, max_side=32)  # too large: decoded and re-encoded
    mime, sent = decode_image(part)
    assert mime == "image/png" and sent.size == (32, 32)
    points = [(8, 8), (24, 8), (8, 24), (24, 24)]
    assert [sent.getpixel(xy) for xy in points] == [0, 64, 128, 255]


@pytest.mark.parametrize(
    ("values", "dtype", "expected"),
    [
        ([0, 16384, 32768, 65535], "uint16", [0, 64, 128, 255]),
        ([0.0, 0.25, 0.5, 1.0], "float32", [0, 64, 128, 255]),
        ([-1.0, 0.0, 1.0, 3.0], "float64", [0, 64, 128, 255]),  # stretched
        ([0, 10, 200, 255], "int64", [0, 10, 200, 255]),  # already 8-bit values
        ([-500, 0, 500, 1500], "int32", [0, 64, 128, 255]),  # stretched
        ([False, True, False, True], "bool", [0, 255, 0, 255]),
    ],
)
def test_numpy_arrays_of_other_dtypes_are_scaled_to_8_bits(values, dtype, expected):
    assert near(gray_levels(image_part(quadrants(values, dtype)), CORNERS), expected)


def test_numpy_float_rgb_in_0_to_1_keeps_its_colour():
    arr = np.zeros((8, 8, 3), dtype=np.float32)
    arr[..., 0] = 1.0
    arr[..., 2] = 0.5
    _, sent = decode_image(image_part(arr))
    r, g, b = sent.convert("RGB").getpixel((4, 4))
    assert r > 245 and g < 10 and abs(b - 128) < 6


def test_nan_pixels_are_black_and_an_all_nan_array_is_refused():
    arr = quadrants([float("nan"), 0.5, 1.0, 0.0], "float32")
    assert near(gray_levels(image_part(arr), CORNERS), [0, 128, 255, 0])
    with pytest.raises(MediaError, match="no finite values"):
        image_part(np.full((4, 4), np.nan))


def test_numpy_complex_array_is_refused_naming_its_dtype():
    with pytest.raises(MediaError, match="complex128"):
        image_part(np.zeros((4, 4), dtype=complex))


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("I;16", [0, 16384, 32768, 65535], [0, 64, 128, 255]),
        ("F", [0.0, 0.25, 0.5, 1.0], [0, 64, 128, 255]),
        ("F", [-2.0, 0.0, 2.0, 6.0], [0, 64, 128, 255]),
        ("I", [0, 10, 200, 255], [0, 10, 200, 255]),
        ("I", [-500, 0, 500, 1500], [0, 64, 128, 255]),
    ],
)
def test_pil_high_bit_depth_images_are_scaled_to_8_bits(mode, values, expected):
    dtype = {"I;16": "uint16", "F": "float32", "I": "int32"}[mode]
    img = Image.fromarray(quadrants(values, dtype))
    if img.mode != mode:
        img = img.convert(mode)
    assert img.mode == mode
    assert near(gray_levels(image_part(img), CORNERS), expected)


def test_truncated_large_jpeg_is_a_clear_error():
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (600, 600, 3), dtype=np.uint8))
    data = encoded(noisy, "JPEG")
    with pytest.raises(MediaError, match="truncated or corrupt"):
        image_part(data[: len(data) // 2], max_side=100)


def test_decompression_bomb_is_a_clear_error(monkeypatch):
    data = encoded(Image.new("RGB", (100, 100)), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10,000 pixels is over twice this
    with pytest.raises(MediaError, match="too large to decode safely") as info:
        image_part(data, max_side=50)
    assert "MAX_IMAGE_PIXELS" in str(info.value)


@pytest.mark.parametrize("shape", [(4, 4, 2), (4,), (4, 4, 3, 1), (0, 4, 3)])
def test_numpy_array_of_wrong_shape_is_refused_naming_its_shape(shape):
    with pytest.raises(MediaError, match="H×W×3") as info:
        image_part(np.zeros(shape, dtype=np.uint8))
    assert "×".join(map(str, shape)) in str(info.value)


# ---------------------------------------------------------------- bytes and files


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")],
)
def test_small_image_bytes_pass_through_identical(fmt, mime):
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("this Pillow build cannot write WEBP")
    data = encoded(Image.new("RGB", (30, 20), (5, 6, 7)), fmt)
    assert decode(image_part(data)) == (mime, data)
    assert decode(image_part(bytearray(data))) == (mime, data)


def test_large_png_bytes_are_downscaled_and_stay_png():
    data = encoded(Image.new("RGB", (400, 100), (9, 9, 9)), "PNG")
    mime, sent = decode_image(image_part(data, max_side=200))
    assert mime == "image/png"
    assert sent.size == (200, 50)


def test_large_jpeg_bytes_are_downscaled_as_jpeg():
    data = encoded(Image.new("RGB", (100, 500), (9, 9, 9)), "JPEG")
    mime, sent = decode_image(image_part(data, max_side=250))
    assert mime == "image/jpeg"
    assert sent.size == (50, 250)


def test_downscaled_phone_photo_keeps_its_exif_rotation():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90° clockwise to display
    out = io.BytesIO()
    Image.new("RGB", (40, 20), "white").save(out, format="JPEG", exif=exif)
    mime, sent = decode_image(image_part(out.getvalue(), max_side=30))
    assert sent.size == (15, 30)
    assert sent.getexif().get(0x0112, 1) == 1


def test_other_formats_pillow_reads_are_converted():
    data = encoded(Image.new("RGB", (16, 12), (250, 0, 0)), "BMP")
    mime, sent = decode_image(image_part(data))
    assert mime == "image/jpeg" and sent.size == (16, 12)


def test_bytes_that_are_no_image_are_refused():
    with pytest.raises(MediaError, match="not an image"):
        image_part(b"hello, this is text")


def test_local_path_as_str_or_pathlike_sends_the_file_bytes(tmp_path):
    data = encoded(Image.new("RGB", (8, 8), (1, 1, 1)), "PNG")
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    assert decode(image_part(str(path))) == ("image/png", data)
    assert decode(image_part(path)) == ("image/png", data)


def test_large_local_file_is_downscaled(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (640, 480), (100, 100, 100)).save(path)
    mime, sent = decode_image(image_part(path, max_side=320))
    assert mime == "image/jpeg" and sent.size == (320, 240)


def test_missing_file_error_names_the_path(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(MediaError, match="does not exist") as info:
        image_part(str(missing))
    assert str(missing) in str(info.value)


def test_directory_is_refused(tmp_path):
    with pytest.raises(MediaError, match="is a directory"):
        image_part(tmp_path)


def test_a_name_too_long_for_a_path_reads_as_missing():
    with pytest.raises(MediaError, match="does not exist"):
        image_part("x" * 5000)


# ---------------------------------------------------------------- URLs, options, errors


@pytest.mark.parametrize(
    "url",
    [
        "https://samples.clarifai.com/metro-north.jpg",
        "http://example.com/a.png",
        "data:image/png;base64,iVBORw0KGgo=",
    ],
)
def test_urls_pass_through_unchanged(url):
    assert image_part(url) == {"type": "image_url", "image_url": {"url": url}}


def test_detail_is_forwarded_and_checked():
    part = image_part("https://example.com/a.png", detail="low")
    assert part == {
        "type": "image_url",
        "image_url": {"url": "https://example.com/a.png", "detail": "low"},
    }
    with pytest.raises(MediaError, match="auto, low, high"):
        image_part("https://example.com/a.png", detail="medium")


def test_max_side_must_be_positive():
    with pytest.raises(MediaError, match="at least 1"):
        image_part(Image.new("RGB", (2, 2)), max_side=0)


@pytest.mark.parametrize("obj", [42, {"url": "x"}, None])
def test_unsupported_objects_list_what_is_accepted(obj):
    with pytest.raises(MediaError) as info:
        image_part(obj)
    message = str(info.value)
    assert "PIL image" in message and "NumPy array" in message and "URL" in message


# ---------------------------------------------------------------- without Pillow


@pytest.fixture
def no_pillow(monkeypatch):
    """Behave as if Pillow were not installed (`from PIL import ...` raises ImportError)."""
    monkeypatch.setitem(sys.modules, "PIL", None)


def test_without_pillow_numpy_arrays_ask_for_pillow(no_pillow):
    with pytest.raises(MediaError, match="pip install pillow"):
        image_part(np.zeros((4, 4, 3), dtype=np.uint8))


def test_without_pillow_known_bytes_are_sent_as_they_are(monkeypatch):
    data = encoded(Image.new("RGB", (400, 100)), "PNG")
    monkeypatch.setitem(sys.modules, "PIL", None)
    assert decode(image_part(data, max_side=100)) == ("image/png", data)


def test_without_pillow_unknown_bytes_are_refused_mentioning_pillow(no_pillow):
    with pytest.raises(MediaError, match="pip install pillow"):
        image_part(b"BM not really a bitmap")


def test_importing_media_imports_neither_pillow_nor_numpy():
    code = (
        "import sys\n"
        "from clarifai_magic import media\n"
        "media.image_part('https://example.com/a.png')\n"
        "print('PIL' in sys.modules, 'numpy' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------- user content


def test_user_content_is_plain_text_without_images():
    assert user_content("Describe it", []) == "Describe it"


def test_user_content_puts_text_first_then_images():
    part = image_part("https://example.com/a.png")
    assert user_content("What is this?", [part, part]) == [
        {"type": "text", "text": "What is this?"},
        part,
        part,
    ]


# ---------------------------------------------------------------- bounds


def png_bomb(side: int) -> bytes:
    """A grayscale PNG of ``side``×``side`` black pixels, compressed row by row into ~1/1000."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    packer = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte 0, then the pixels
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def peak_memory_of(code: str) -> tuple[str, int]:
    """Run ``code`` in a fresh interpreter: what it printed, and its peak RSS growth in bytes."""
    script = (
        "import resource, sys\n"
        "from clarifai_magic.media import MediaError, image_part\n"
        "from PIL import Image\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"{code}\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(after - before)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    *printed, grown = out.stdout.strip().splitlines()
    return "\n".join(printed), int(grown) * 1024  # ru_maxrss is in kB on Linux


def test_a_multi_gigabyte_file_is_refused_without_being_read(tmp_path):
    path = tmp_path / "huge.png"
    with path.open("wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.truncate(3 * 2**30)  # sparse: no disk is used
    tracemalloc.start()
    try:
        with pytest.raises(MediaError) as info:
            image_part(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert "huge.png" in message and "3.2 GB" in message and "50 MB limit" in message
    assert "image_max_bytes" in message
    assert peak < 1_000_000


def test_bytes_over_the_limit_are_refused_naming_size_and_limit():
    data = encoded(Image.new("RGB", (300, 300)), "PNG")
    assert 100 < len(data) < 1000
    with pytest.raises(MediaError, match=f"These bytes are {len(data)} bytes, over the 100 bytes"):
        image_part(memoryview(data), max_bytes=100)
    assert decode(image_part(data, max_bytes=len(data)))[1] == data
    url = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    with pytest.raises(MediaError, match="This data: URL is 3"):
        image_part(url, max_bytes=100)


def test_a_small_png_that_decodes_to_169_megapixels_is_refused_before_decoding(tmp_path):
    data = png_bomb(13_000)
    assert len(data) < 300_000
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    printed, grown = peak_memory_of(
        f"try:\n    image_part({str(path)!r})\nexcept MediaError as exc:\n    print(exc)"
    )
    assert "13000×13000 pixels (169 megapixels)" in printed
    assert "50-megapixel limit" in printed and "image_max_pixels" in printed
    assert grown < 50_000_000  # decoding would take 169 MB
    # The same file as bytes, or opened lazily with PIL, is refused the same way.
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow's own, on the user's open
        lazy = Image.open(path)
    for source in (data, lazy):
        with pytest.raises(MediaError, match="169 megapixels"):
            image_part(source)


def test_a_large_allowed_jpeg_is_decoded_at_reduced_scale(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (8000, 6000), (40, 90, 200)).save(path, quality=80)
    printed, grown = peak_memory_of(
        "import base64, io\n"
        f"part = image_part({str(path)!r})\n"
        "data = base64.b64decode(part['image_url']['url'].split(',', 1)[1])\n"
        "print(Image.open(io.BytesIO(data)).size)"
    )
    assert printed == "(1568, 1176)"
    assert grown < 80_000_000  # the whole 48-megapixel image decoded would take 144 MB


def test_numpy_arrays_and_pil_images_over_the_pixel_limit_are_refused():
    wide = np.broadcast_to(np.zeros(1, dtype=np.uint8), (8000, 8000))  # no memory behind it
    with pytest.raises(MediaError, match="8000×8000 pixels"):
        image_part(wide)
    with pytest.raises(MediaError, match="This PIL image is 300×200 pixels"):
        image_part(Image.new("RGB", (300, 200)), max_pixels=50_000)
    assert decode_image(image_part(Image.new("RGB", (300, 200)), max_pixels=60_000))[1].size == (
        300,
        200,
    )
