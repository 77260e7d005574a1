"""What a notebook shows, as image content blocks: one test per kind of object, and what is refused."""

from __future__ import annotations

import base64
import io

import matplotlib
import pytest
from IPython.display import Image as IPythonImage
from PIL import Image

from coffee_nb import ConfigError, content_blocks
from coffee_nb._shared._images import facts, image_block, sniff_mime
from coffee_nb.content._objects import MAX_IMAGE_BYTES, as_image, is_image_like

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def png(size=(64, 48), colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def decoded(block) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(block["base64"])))


def test_a_figure_and_its_axes_are_the_picture_the_notebook_shows():
    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    ax.plot([1, 2, 3], [3, 1, 2])
    for value in (fig, ax):
        block = as_image(value)
        assert block is not None and block["type"] == "image" and block["mime_type"] == "image/png"
        assert decoded(block).size == (400, 300)  # the figure's own size at its own dpi
        assert set(block) == {"type", "base64", "mime_type"}  # LangChain's standard block, plain data only
    plt.close(fig)


def test_a_pil_image_keeps_its_size_and_a_jpeg_stays_a_jpeg():
    img = Image.new("RGB", (120, 80), (10, 200, 10))
    assert decoded(as_image(img)).size == (120, 80)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG")
    photo = Image.open(io.BytesIO(buffer.getvalue()))
    block = as_image(photo)
    assert block["mime_type"] == "image/jpeg" and decoded(block).size == (120, 80)
    cmyk = Image.new("CMYK", (10, 10))  # not a PNG mode: converted, not refused
    assert decoded(as_image(cmyk)).mode == "RGB"


def test_ipython_images_bytes_and_paths(tmp_path):
    data = png()
    assert facts(as_image(IPythonImage(data=data)))[:2] == (64, 48)
    assert facts(as_image(data))[:3] == (64, 48, "image/png")
    assert facts(as_image(bytearray(data))).digest == facts(image_block(data)).digest
    path = tmp_path / "chart.png"
    path.write_bytes(data)
    for value in (str(path), path):
        assert facts(as_image(value)).digest == facts(image_block(data)).digest


def test_what_is_not_an_image_stays_text(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    for value in ("hello", b"plain bytes", str(tmp_path / "notes.txt"), str(tmp_path / "missing.png"), 3, None):
        assert as_image(value) is None and not is_image_like(value)


def test_an_image_that_cannot_be_sent_says_why(tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("not a picture")
    with pytest.raises(ConfigError, match="not a PNG, JPEG, GIF or WebP image"):
        as_image(str(fake), "{path}")
    with pytest.raises(ConfigError, match="given by URL, which coffee_nb does not fetch"):
        as_image(IPythonImage(url="https://example.com/a.png", embed=False), "{img}")
    huge = b"\x89PNG\r\n\x1a\n" + bytes(MAX_IMAGE_BYTES)
    with pytest.raises(ConfigError, match=r"\{big\} is an image of 20.0 MB.*at most 20 MB"):
        as_image(huge, "{big}")


def test_content_blocks_keep_the_order_they_are_given():
    fig = plt.figure(figsize=(1, 1), dpi=50)
    blocks = content_blocks("Compare", fig, "with", png(), 42)
    assert [b["type"] for b in blocks] == ["text", "image", "text", "image", "text"]
    assert blocks[4] == {"type": "text", "text": "42"}
    plt.close(fig)


def test_sniffing_knows_the_four_formats():
    assert sniff_mime(png()) == "image/png"
    assert sniff_mime(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert sniff_mime(b"GIF89a...") == "image/gif"
    assert sniff_mime(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_mime(b"%PDF-1.7") is None
