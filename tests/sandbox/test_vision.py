"""sandbox/vision through the real client (langchain-openai's ChatOpenAI against the running sandbox): images
made here with Pillow get their size and dominant colour back, in order, streamed or not, priced by
coffee_nb's image rule; text-only models and remote URLs get OpenAI-shaped 400s; the text paths (echo,
judge, faults, streaming) take content as a list of parts."""

from __future__ import annotations

import base64
import io
import json
import re

import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from PIL import Image

from coffee_nb import sandbox
from coffee_nb.comparison._judge import judge_messages
from coffee_nb.pricing._image_tokens import image_tokens
from coffee_nb.pricing._tokens import count_prompt
from coffee_nb.sandbox._catalog import ENCODING, MODELS
from coffee_nb.sandbox._vision import colour_name

DARK_BLUE = (31, 59, 115)  # #1f3b73
TEXT_ONLY = ["fast", "smart", "flaky", "limited", "echo"]


def _chat(model: str = "vision", **kwargs) -> ChatOpenAI:
    return ChatOpenAI(
        model=model, base_url=sandbox.server().url, api_key="sk-test-not-a-real-key", max_retries=0, **kwargs
    )


def _image(colour: tuple[int, ...], size: tuple[int, int], fmt: str = "PNG", mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, colour).save(out, fmt)
    return out.getvalue()


def _block(data: bytes, mime: str = "image/png") -> dict:
    """LangChain's standard image block, as coffee_nb puts images in prompts."""
    return {"type": "image", "base64": base64.b64encode(data).decode(), "mime_type": mime}


def _ask(*parts: dict | str) -> HumanMessage:
    return HumanMessage(content=[{"type": "text", "text": p} if isinstance(p, str) else p for p in parts])


def test_a_png_gets_its_size_and_dominant_colour_then_the_usual_text():
    answer = _chat().invoke([_ask("What is in this picture?", _block(_image(DARK_BLUE, (640, 480))))]).content
    assert answer.startswith("Image 1: 640x480 px, mostly dark blue (#1f3b73). [sandbox/vision] You said: ")
    assert "What is in this picture?" in answer


def test_a_jpeg_reads_the_same_way_within_its_compression():
    answer = _chat().invoke([_ask("colour?", _block(_image((200, 30, 30), (320, 200), "JPEG"), "image/jpeg"))]).content
    found = re.match(r"Image 1: 320x200 px, mostly red \(#([0-9a-f]{6})\)\. \[sandbox/vision\]", answer)
    assert found, answer
    rgb = bytes.fromhex(found.group(1))
    assert all(abs(a - b) <= 4 for a, b in zip(rgb, (200, 30, 30), strict=True))  # JPEG rounds a little


def test_the_same_bytes_always_get_the_same_answer_and_a_transparent_image_reads_over_white():
    clear = _block(_image((0, 0, 0, 0), (50, 40), mode="RGBA"))
    first = _chat().invoke([_ask("and this?", clear)]).content
    assert first.startswith("Image 1: 50x40 px, mostly white (#ffffff).")
    assert _chat().invoke([_ask("and this?", clear)]).content == first


def test_two_images_in_one_message_are_answered_in_order():
    green = _block(_image((0, 128, 0), (30, 20), "JPEG"), "image/jpeg")
    message = _ask("Compare these.", _block(_image((255, 255, 0), (64, 64))), green)
    answer = _chat().invoke([message]).content
    assert answer.startswith("Image 1: 64x64 px, mostly yellow (#ffff00). Image 2: 30x20 px, mostly dark green (#")


def test_a_big_photo_is_described_by_its_full_size():
    answer = _chat().invoke([_ask(_block(_image((240, 240, 240), (4000, 3000), "JPEG"), "image/jpeg"))]).content
    assert answer.startswith("Image 1: 4000x3000 px, mostly white (#f")  # counted on a cut-down copy


def test_streaming_with_an_image_gives_the_same_answer_and_usage():
    message = _ask("Stream it.", _block(_image(DARK_BLUE, (100, 100))))
    whole = _chat().invoke([message])
    chunks = list(_chat(stream_usage=True).stream([message]))
    assert "".join(c.content for c in chunks) == whole.content
    assert whole.content.startswith("Image 1: 100x100 px, mostly dark blue (#1f3b73).")
    streamed = next(c.usage_metadata for c in chunks if c.usage_metadata)
    assert streamed["input_tokens"] == whole.usage_metadata["input_tokens"]


@pytest.mark.parametrize("model", TEXT_ONLY)
def test_a_text_only_model_refuses_an_image_as_openai_does(model):
    sandbox.clear_log()
    with pytest.raises(openai.BadRequestError) as info:
        _chat(model).invoke([_ask("What is this?", _block(_image(DARK_BLUE, (8, 8))))])
    assert info.value.status_code == 400
    assert info.value.body == {
        "message": "Invalid content type. image_url is only supported by certain models. "
        f"(sandbox/{model} is text-only; sandbox/vision takes images.)",
        "type": "invalid_request_error",
        "param": "messages.[0].content.[1].type",
        "code": None,
    }
    assert "image_url is only supported by certain models" in str(info.value)
    # refused like any bad request: before faults (sandbox/limited's 429s, sandbox/flaky's 5xx) are drawn
    assert [a["fault"] for a in sandbox.attempts(f"sandbox/{model}")] == ["bad_request"]


def test_a_remote_image_url_is_refused_never_fetched():
    with pytest.raises(openai.BadRequestError) as info:
        _chat().invoke([_ask("Look:", {"type": "image", "url": "https://example.com/cat.png"})])
    body = info.value.body
    assert body["type"] == "invalid_request_error" and body["code"] == "invalid_image_url"
    assert body["param"] == "messages.[0].content.[1].image_url.url"
    assert "only takes inline images" in body["message"] and "https://example.com/cat.png" in body["message"]


def test_bytes_that_are_no_image_and_an_unknown_detail_are_refused():
    client = openai.OpenAI(base_url=sandbox.server().url, api_key="sk-test-not-a-real-key", max_retries=0)

    def send(url: str, detail: str = "auto") -> None:
        part = {"type": "image_url", "image_url": {"url": url, "detail": detail}}
        client.chat.completions.create(model="vision", messages=[{"role": "user", "content": [part]}])

    with pytest.raises(openai.BadRequestError) as info:
        send("data:image/png;base64," + base64.b64encode(b"not a picture").decode())
    assert info.value.body["code"] == "invalid_image_format" and "unsupported image" in info.value.body["message"]
    png = "data:image/png;base64," + base64.b64encode(_image(DARK_BLUE, (8, 8))).decode()
    with pytest.raises(openai.BadRequestError) as info:
        send(png, detail="medium")
    assert info.value.body["param"] == "messages.[0].content.[0].image_url.detail"
    with pytest.raises(openai.BadRequestError) as info:
        send("")
    assert info.value.body["code"] == "missing_required_parameter"
    send(png, detail="low")  # the three OpenAI knows are taken


@pytest.mark.parametrize("detail", [None, "low", "high"])
def test_prompt_tokens_are_the_text_plus_each_image_by_coffee_nbs_rule(detail):
    sizes = [(640, 480), (1500, 900)]
    parts: list[dict] = [{"type": "text", "text": "Describe both images, please."}]
    for size in sizes:
        url = "data:image/png;base64," + base64.b64encode(_image(DARK_BLUE, size)).decode()
        ref = {"url": url} if detail is None else {"url": url, "detail": detail}
        parts.append({"type": "image_url", "image_url": ref})  # OpenAI's shape passes through langchain-openai
    messages = [SystemMessage("You see images."), HumanMessage(content=parts)]
    usage = _chat().invoke(messages).usage_metadata
    text_only = [SystemMessage("You see images."), HumanMessage(content=parts[:1])]  # the same text, no images
    images = sum(image_tokens("sandbox", "vision", w, h, detail or "auto").tokens for w, h in sizes)
    assert usage["input_tokens"] == count_prompt(text_only, ENCODING) + images
    assert images > 0


def test_vision_without_images_answers_like_any_sandbox_model():
    answer = _chat().invoke([HumanMessage("Just text.")]).content
    assert answer.startswith("[sandbox/vision] You said: 'Just text.'.")
    assert MODELS["vision"].vision and not any(MODELS[m].vision for m in TEXT_ONLY)


def test_the_text_paths_take_content_as_a_list_of_parts():
    # echo repeats the parts' text; a streamed answer arrives whole
    assert _chat("echo").invoke([_ask("one ", "two")]).content == "one two"
    assert "".join(c.content for c in _chat("echo").stream([_ask("three ", "four")])) == "three four"
    # the judge reads a request whose parts hold the answers
    asked = judge_messages("How hot should coffee be brewed?", "93 degrees.", "Boiling.", "pick")
    as_parts = [type(m)(content=[{"type": "text", "text": m.content}]) for m in asked]
    verdict = _chat("smart").invoke(as_parts).content
    assert verdict == _chat("smart").invoke(asked).content and set(json.loads(verdict)) == {"winner", "reason"}
    # faults still come first on a request with an image, and go with it
    image = _block(_image(DARK_BLUE, (16, 16)))
    with sandbox.faults("sandbox/vision", ["rate_limit:2"]), pytest.raises(openai.RateLimitError):
        _chat().invoke([_ask("again?", image)])
    got: list[str] = []
    with sandbox.faults("sandbox/vision", ["stream_error"]), pytest.raises(openai.APIError):
        got.extend(c.content for c in _chat().stream([_ask("again?", image)]))
    assert "".join(got).startswith("Image 1:")  # the answer had begun when the stream failed
    assert _chat().invoke([_ask("again?", image)]).content.startswith("Image 1: 16x16 px")


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((0, 0, 0), "black"),
        ((128, 128, 128), "grey"),
        ((255, 255, 255), "white"),
        ((255, 0, 0), "red"),
        ((255, 165, 0), "orange"),
        ((139, 69, 19), "brown"),
        ((255, 255, 0), "yellow"),
        ((0, 128, 0), "dark green"),
        ((0, 255, 0), "green"),
        ((0, 128, 128), "teal"),
        ((31, 119, 180), "blue"),  # matplotlib's first colour
        ((173, 216, 230), "light blue"),
        ((31, 59, 115), "dark blue"),
        ((128, 0, 128), "purple"),
        ((255, 0, 255), "magenta"),
        ((255, 192, 203), "pink"),
    ],
)
def test_colour_names(rgb, name):
    assert colour_name(*rgb) == name
