"""Images in prompts, through the invoker: fields become image blocks in order, a model that can't see is
skipped with its reason and the chain falls to one that can, image tokens are counted by each provider's
rule in reservations, dry runs and footers, and cache and cassette keys hold digests, never the bytes."""

from __future__ import annotations

import base64
import io
import json

import matplotlib
import pandas as pd
import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from PIL import Image

import coffee_nb
from coffee_nb import AllModelsFailedError, AutoPicker, Budget, BudgetExceededError, ModelSpec, register_price
from coffee_nb._shared._images import facts, image_block
from coffee_nb._shared._records import capture_records
from coffee_nb.replay._cache import request_key
from coffee_nb.session._interpolate import interpolate, prompt_text
from coffee_nb.testing import ScriptedChatModel

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def png(size=(64, 48), colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def seer(name="seer", reply="I see it"):
    return ScriptedChatModel(model_name=name, script=[reply])


def images_sent(model: ScriptedChatModel) -> list[str]:
    """The digests of the images each call of a scripted model received."""
    out = []
    for call in model.calls:
        for m in call["messages"]:
            if isinstance(m.content, list):
                out += [facts(b).digest for b in m.content if isinstance(b, dict) and b.get("type") == "image"]
    return out


def test_fields_become_text_and_image_blocks_in_the_order_they_appear(tmp_path):
    fig = plt.figure(figsize=(2, 1), dpi=50)
    path = tmp_path / "photo.png"
    path.write_bytes(png())
    prompt, unfilled = interpolate("Compare {fig} with {path} ({n} of them)", {"fig": fig, "path": str(path), "n": 2})
    assert not unfilled
    assert [b["type"] for b in prompt] == ["text", "image", "text", "image", "text"]
    assert prompt[0]["text"] == "Compare " and prompt[4]["text"] == " (2 of them)"
    assert facts(prompt[1])[:2] == (100, 50) and facts(prompt[3]).digest == facts(image_block(png())).digest
    assert prompt_text(prompt) == "Compare [image] with [image] (2 of them)"
    # {x:text} sends str(x) whatever x is; {{fig}} stays literal; a prompt without images stays a string
    as_text, _ = interpolate("{path:text} {{fig}}", {"path": str(path), "fig": fig})
    assert as_text == f"{path} {{fig}}"
    plt.close(fig)


def test_a_text_only_primary_is_skipped_and_the_vision_fallback_answers():
    blind, eyes = ScriptedChatModel(model_name="blind"), seer()
    llm = AutoPicker(ModelSpec(model=blind, vision=False), [ModelSpec(model=eyes, vision=True)])
    picture = png()
    with capture_records() as records:
        msg = llm.invoke([HumanMessage(coffee_nb.content_blocks("What is this?", picture))])
    assert msg.content == "I see it" and not blind.calls
    assert [(r.model, r.outcome.value, r.error_class) for r in records] == [
        ("fake/blind", "skipped", "capability"),
        ("fake/seer", "ok", None),
    ]
    assert "no image input" in (records[0].error_message or "")
    assert images_sent(eyes) == [facts(image_block(picture)).digest]
    meta = msg.response_metadata["coffee_nb"]
    assert meta["tokens"]["images"] == 1 and meta["fallback_reason"] == "capability"


def test_when_no_model_can_see_the_error_names_each_and_why():
    llm = AutoPicker(
        ModelSpec(model=ScriptedChatModel(model_name="a"), vision=False),
        [ModelSpec(model=ScriptedChatModel(model_name="b"), vision=False)],
    )
    with pytest.raises(AllModelsFailedError) as info:
        llm.invoke([HumanMessage(coffee_nb.content_blocks("What is this?", png()))])
    text = str(info.value)
    assert "fake/a" in text and "fake/b" in text and text.count("no image input") == 2
    # the same chain answers text: vision only matters to a prompt with images
    assert llm.invoke("hello").content == "ok"


def test_langchains_model_profile_says_a_model_cannot_see():
    """A user's own ChatOpenAI instance of a text-only model: its LangChain profile (image_inputs False)
    routes around it; no request is made to it."""
    old = ChatOpenAI(model="gpt-3.5-turbo", api_key="sk-test-not-used", base_url="http://127.0.0.1:9/v1")
    assert old.profile and old.profile.get("image_inputs") is False
    eyes = seer()
    llm = AutoPicker(old, [ModelSpec(model=eyes, vision=True)])
    with capture_records() as records:
        assert llm.invoke([HumanMessage(coffee_nb.content_blocks("What?", png()))]).content == "I see it"
    assert records[0].outcome.value == "skipped" and "no image input" in (records[0].error_message or "")


def test_image_tokens_are_counted_by_the_providers_rule_in_the_dry_run():
    session = coffee_nb.get_session()
    picture = Image.new("RGB", (1024, 1024), (0, 0, 0))
    with_image = coffee_nb.prompt("Describe {picture}", picture=picture)
    text_only = session.dry_run("Describe ", models=["openai/gpt-4o", "anthropic/claude-sonnet-4-5"])
    rows = session.dry_run(with_image, models=["openai/gpt-4o", "anthropic/claude-sonnet-4-5"])
    by_model = {r["model"]: r for r in rows}
    # OpenAI's published example: a 1024 x 1024 image at high detail is 765 tokens (4 tiles)
    gpt = by_model["openai/gpt-4o"]
    assert gpt["images"] == 1 and gpt["image_tokens"] == 765 and gpt["image_tokens_exact"]
    assert gpt["input_tokens"] == text_only[0]["input_tokens"] + 765
    # Anthropic counts 28-px patches (1024 px needs no resize): ceil(1024 / 28) = 37 per side
    claude = by_model["anthropic/claude-sonnet-4-5"]
    assert claude["image_tokens"] == 37 * 37


def test_a_reservation_holds_the_images_tokens():
    register_price("fake/seer", input=100, output=0)  # $100 per 1M input tokens: the image is the cost
    budget = Budget(total="0.05", ledger="memory")
    eyes = seer()
    llm = AutoPicker(ModelSpec(model=eyes, vision=True, max_output_tokens=1), budget=budget)
    assert llm.invoke("tiny").content == "I see it"  # text alone fits
    big = Image.new("RGB", (2048, 2048))  # far more than $0.05 of image tokens at $100 / 1M on any rule
    with pytest.raises(BudgetExceededError):
        llm.invoke([HumanMessage(coffee_nb.content_blocks("What?", big))])
    assert len(eyes.calls) == 1  # refused before anything was sent


def test_the_footer_says_how_many_images_and_what_they_counted_for():
    eyes = seer()
    answer = coffee_nb.ask(
        coffee_nb.prompt("What is in {p}?", p=png((1024, 1024))),
        models=[ModelSpec(model=eyes, vision=True)],
        cache=False,
    )
    assert answer.tokens["images"] == 1
    # a fake provider has no published rule: OpenAI's tiles as an estimate (~), 765 for 1024 x 1024
    assert "1 image (~765 tokens of the input)" in answer.footer()


def test_cache_keys_hold_a_digest_the_same_picture_in_any_shape():
    data = png()
    standard = HumanMessage([{"type": "text", "text": "x"}, image_block(data)])
    data_url = f"data:image/png;base64,{base64.b64encode(data).decode()}"
    openai_shape = HumanMessage([{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": data_url}}])
    other = HumanMessage([{"type": "text", "text": "x"}, image_block(png(colour=(0, 0, 255)))])
    keys = [request_key(["m"], [m], {}) for m in (standard, openai_shape, other)]
    assert keys[0] == keys[1] != keys[2]


def test_a_cassette_keeps_digests_and_replays_a_figure_strictly(tmp_path):
    path = tmp_path / "nb.llm-cassette.jsonl"
    eyes = seer()
    llm = AutoPicker(ModelSpec(model=eyes, vision=True))

    def ask_about_a_new_figure():
        fig, ax = plt.subplots(figsize=(3, 2), dpi=80)
        ax.bar(["a", "b"], [3, 5])
        prompt = coffee_nb.prompt("What does {fig} show?", fig=fig)
        plt.close(fig)
        return llm.invoke([HumanMessage(prompt)])

    with coffee_nb.cassette(path, mode="record"):
        first = ask_about_a_new_figure()
    size = path.stat().st_size
    entry = json.loads(path.read_text().splitlines()[0])
    (message,) = entry["request"]["messages"]
    assert len(message["images"]) == 1 and len(message["images"][0]) == 64  # a SHA-256, not the image
    assert size < 4000  # the PNG itself (several KB) is never written
    with coffee_nb.cassette(path, mode="strict"):
        again = ask_about_a_new_figure()  # the same figure drawn again: the same bytes, the same key
    assert again.content == first.content and again.response_metadata["coffee_nb"]["replayed"]
    assert len(eyes.calls) == 1 and path.stat().st_size == size


def test_map_rows_over_a_column_of_image_paths(tmp_path):
    paths = []
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        p = tmp_path / f"img{i}.png"
        p.write_bytes(png(colour=colour))
        paths.append(str(p))
    df = pd.DataFrame({"path": paths, "label": ["r", "g", "b"]})
    blind, eyes = ScriptedChatModel(model_name="blind"), seer()
    llm = AutoPicker(ModelSpec(model=blind, vision=False), [ModelSpec(model=eyes, vision=True)])
    out = coffee_nb.map_rows(df, "Which colour is {path}? ({label})", models=llm, progress=False, cache=False)
    assert list(out["answer"]) == ["I see it"] * 3 and list(out["fallback_from"]) == ["fake/blind"] * 3
    assert sorted(images_sent(eyes)) == sorted(
        facts(image_block(png(colour=c))).digest for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    )
    assert not blind.calls


def test_the_sandbox_routes_around_its_text_only_model_to_the_one_that_sees():
    """The real client against the sandbox: sandbox/fast is text-only by its provider's word (skipped);
    declared as seeing anyway, it answers the image with OpenAI's 400, the chain falls back, and it is
    skipped from then on."""
    picture = png((640, 480), (31, 59, 115))
    prompt = [HumanMessage(coffee_nb.content_blocks("What colour?", picture))]
    llm = AutoPicker("sandbox/fast", ["sandbox/vision"])
    with capture_records() as records:
        msg = llm.invoke(prompt)
    assert msg.content.startswith("Image 1: 640x480 px, mostly dark blue (#1f3b73).")
    assert [(r.model, r.outcome.value) for r in records] == [("sandbox/fast", "skipped"), ("sandbox/vision", "ok")]
    # the sandbox counts the image as OpenAI does, and so does coffee_nb: usage and estimate agree
    assert msg.response_metadata["coffee_nb"]["tokens"]["image_tokens"] == 425  # 2 tiles of 512 px
    blind = AutoPicker(ModelSpec(model="sandbox/fast", vision=True), ["sandbox/vision"])
    with capture_records() as records:
        assert blind.invoke(prompt).content.startswith("Image 1:")
    assert [(r.model, r.outcome.value, r.error_class) for r in records] == [
        ("sandbox/fast", "error", "capability"),
        ("sandbox/vision", "ok", None),
    ]
    assert blind.candidates[0].vision is False  # learned: the next image prompt skips it


def test_a_notebook_with_figures_and_tables_replays_strictly_in_a_new_kernel(tmp_path):
    """Recorded in one kernel, replayed with ``%llm_cassette strict`` in another: the figure is drawn
    again there (the same bytes, the same key) and nothing is called; the cassette holds no image."""
    from tests._kernels import run_cells

    tape = tmp_path / "figures.llm-cassette.jsonl"

    def run(mode: str) -> list[str]:
        _, ask, seen = run_cells(
            [
                "%load_ext coffee_nb\n"
                "import coffee_nb, matplotlib, pandas as pd\n"
                "matplotlib.use('Agg')\n"
                "import matplotlib.pyplot as plt\n"
                "coffee_nb.configure(ledger='memory')\n"
                "fig, ax = plt.subplots(figsize=(3, 2), dpi=80)\n"
                "ax.plot([1, 4, 2, 5]); plt.close(fig)\n"
                "df = pd.DataFrame({'x': range(1000), 'y': [i % 7 for i in range(1000)]})\n"
                f"%llm_cassette {mode} {tape}",
                "%%llm sandbox/vision\nWhat does {fig} show? Compare with {df}",
                "print(coffee_nb.sandbox._SANDBOX.server is not None)",
            ],
            tmp_path,
        )
        return [ask[-1]["data"]["text/plain"], seen[0]["text"].strip()]

    recorded, started = run("record")
    assert recorded.startswith("Image 1: 240x160 px") and started == "True"
    size = tape.stat().st_size
    replayed, started = run("strict")
    assert started == "False"  # no server, no request: every call came from the cassette
    assert replayed.split("\n—")[0] == recorded.split("\n—")[0] and "replayed from the cassette" in replayed
    assert tape.stat().st_size == size < 6000  # no image in it, and it did not grow


def test_out_holding_a_figure_and_a_million_row_frame_stay_within_the_limit():
    from coffee_nb.pricing._tokens import count_tokens

    fig = plt.figure(figsize=(2, 2), dpi=50)
    big = pd.DataFrame({f"c{i}": range(1_000_000) for i in range(8)})
    prompt, _ = interpolate("Chart: {Out[5]}. Data: {big}", {"Out": {5: fig}, "big": big}, context_tokens=500)
    assert [b["type"] for b in prompt] == ["text", "image", "text"]
    table = prompt[2]["text"].removeprefix(". Data: ")
    assert count_tokens(table) <= 500 and "1,000,000 rows" in table and "showing" in table
    summary, _ = interpolate("{big:describe}", {"big": big.head(1000)}, context_tokens=800)
    assert "mean" in summary and count_tokens(summary) <= 800
    plt.close(fig)
