"""Image tokens: each provider's rule against the worked examples in that provider's own documentation.

Expected values are the published numbers (or, where a doc gives the rule and its table but no total, the
arithmetic on the published numbers written out beside them), never values computed by the code under test.
"""

from __future__ import annotations

import pytest

from coffee_nb.pricing._image_tokens import image_tokens

# --- OpenAI: https://platform.openai.com/docs/guides/images-vision#calculating-costs ---------------------------


@pytest.mark.parametrize(
    ("model", "width", "height", "detail", "tokens"),
    [
        # "Cost calculation examples (for gpt-4o)"
        ("gpt-4o", 1024, 1024, "high", 765),
        ("gpt-4o", 2048, 4096, "high", 1105),
        ("gpt-4o", 4096, 8192, "low", 85),
        ("gpt-4o", 1024, 1024, "auto", 765),  # auto is sized as high
        ("gpt-4o-2024-08-06", 2048, 4096, "high", 1105),  # a dated snapshot is its family
        ("gpt-4.1-2025-04-14", 1024, 1024, "high", 765),  # "4o, 4.1, 4.5 | 85 | 170"
        ("gpt-4.5-preview", 1024, 1024, "high", 765),
        # "4o-mini | 2833 | 5667": low is the base; 1024 x 1024 is 4 tiles, 2833 + 4 * 5667
        ("gpt-4o-mini", 4096, 8192, "low", 2833),
        ("gpt-4o-mini-2024-07-18", 1024, 1024, "high", 2833 + 4 * 5667),
        # "gpt-5, gpt-5-chat-latest | 70 | 140"
        ("gpt-5", 512, 512, "low", 70),
        ("gpt-5-chat-latest", 1024, 1024, "high", 70 + 4 * 140),
        ("gpt-5-2025-08-07", 2048, 4096, "high", 70 + 6 * 140),
        # "o1, o1-pro, o3 | 75 | 150"
        ("o1", 512, 512, "low", 75),
        ("o1-pro", 1024, 1024, "high", 75 + 4 * 150),
        ("o3-2025-04-16", 2048, 4096, "high", 75 + 6 * 150),
        # "computer-use-preview | 65 | 129"
        ("computer-use-preview", 512, 512, "low", 65),
        ("computer-use-preview-2025-03-11", 1024, 1024, "high", 65 + 4 * 129),
    ],
)
def test_openai_tiles(model, width, height, detail, tokens):
    got = image_tokens("openai", model, width, height, detail)
    assert got.tokens == tokens
    assert got.exact


def test_openai_tile_rule_text():
    assert image_tokens("openai", "gpt-4o", 1024, 1024).rule == "OpenAI tiles, high detail: 4 tiles"
    assert image_tokens("openai", "gpt-4o", 2048, 4096).rule == "OpenAI tiles, high detail: 6 tiles"
    assert "low detail" in image_tokens("openai", "gpt-4o", 4096, 8192, "low").rule
    assert "gpt-4o-mini" in image_tokens("openai", "gpt-4o-mini", 1024, 1024).rule


@pytest.mark.parametrize(
    ("model", "width", "height", "patches", "multiplier"),
    [
        # "A 1024 x 1024 image is 1024 tokens"; "A 1800 x 2400 image is 1452 tokens"; then the model's multiplier
        # ("gpt-5-mini 1.62, gpt-5-nano 2.46, gpt-4.1-mini 1.62, gpt-4.1-nano 2.46, o4-mini 1.72")
        ("gpt-4.1-mini", 1024, 1024, 1024, 1.62),
        ("gpt-4.1-mini-2025-04-14", 1800, 2400, 1452, 1.62),
        ("gpt-4.1-nano", 1024, 1024, 1024, 2.46),
        ("gpt-4.1-nano-2025-04-14", 1800, 2400, 1452, 2.46),
        ("o4-mini", 1024, 1024, 1024, 1.72),
        ("o4-mini-2025-04-16", 1800, 2400, 1452, 1.72),
        ("gpt-5-mini", 1800, 2400, 1452, 1.62),
        ("gpt-5-nano-2025-08-07", 1024, 1024, 1024, 2.46),
    ],
)
def test_openai_patches(model, width, height, patches, multiplier):
    got = image_tokens("openai", model, width, height, "high")
    # 1024 * 1.62 = 1658.88; OpenAI does not say how a fraction is billed: rounded up, as a reservation should
    expected = {
        (1024, 1.62): 1659,
        (1452, 1.62): 2353,  # 2352.24
        (1024, 2.46): 2520,  # 2519.04
        (1452, 2.46): 3572,  # 3571.92
        (1024, 1.72): 1762,  # 1761.28
        (1452, 1.72): 2498,  # 2497.44
    }[patches, multiplier]
    assert got.tokens == expected
    assert got.exact
    assert f"{patches} of 32 px" in got.rule


def test_openai_patches_ignore_detail_and_cap_at_1536():
    assert image_tokens("openai", "gpt-4.1-mini", 1024, 1024, "low").tokens == 1659  # no low-detail budget
    # step B on a square: r = sqrt(32^2 * 1536 / w^2), 39.19 patches a side, rescaled to 39: 39 * 39 = 1521 patches,
    # 1521 * 1.62 = 2464.02
    huge = image_tokens("openai", "gpt-4.1-mini", 20000, 20000)
    assert huge.tokens == 2465 and "1521 of 32 px" in huge.rule
    thin = image_tokens("openai", "o4-mini", 10, 200_000)  # degenerate shapes still count something
    assert 0 < thin.tokens <= 2642  # 1536 * 1.72 = 2641.92


def test_openai_unknown_model_is_the_tile_rule_as_an_estimate():
    got = image_tokens("openai", "gpt-9-turbo", 1024, 1024)
    assert got.tokens == 765 and not got.exact
    assert "estimate" in got.rule
    assert not image_tokens("openai", "gpt-5.1", 1024, 1024).exact  # "gpt-5" is not a prefix of "gpt-5.1"


def test_openai_unknown_size_is_the_worst_case():
    # the most a high-detail image can cost: fit 2048, short side 768, so at most 768 x 2048 = 2 x 4 tiles
    got = image_tokens("openai", "gpt-4o", 0, 0)
    assert got.tokens == 85 + 8 * 170 and not got.exact and "size unknown" in got.rule
    assert image_tokens("openai", "gpt-4o", 768, 2048).tokens == 85 + 8 * 170  # that worst case, by size
    assert image_tokens("openai", "gpt-4o-mini", -1, 300).tokens == 2833 + 8 * 5667
    patches = image_tokens("openai", "gpt-4.1-mini", 0, 0)
    assert patches.tokens == 2489 and not patches.exact  # 1536 * 1.62 = 2488.32
    low = image_tokens("openai", "gpt-4o", 0, 0, "low")  # a low-detail image costs the base whatever its size
    assert low.tokens == 85 and low.exact


# --- Azure OpenAI: OpenAI's rules by model / deployment name ------------------------------------------------------


def test_azure():
    named = image_tokens("azure", "gpt-4o-mini", 1024, 1024)
    assert named.tokens == 2833 + 4 * 5667 and named.exact
    inside = image_tokens("azure", "prod-gpt-4o-mini-eu", 1024, 1024)
    assert inside.tokens == 2833 + 4 * 5667 and not inside.exact and "estimate" in inside.rule
    assert image_tokens("azure", "team-gpt-4.1-mini", 1800, 2400).tokens == 2353  # 1452 * 1.62
    unknown = image_tokens("azure", "my-deployment", 1024, 1024)
    assert unknown.tokens == 765 and not unknown.exact and "estimate" in unknown.rule


# --- Anthropic: https://platform.claude.com/docs/en/build-with-claude/vision#evaluate-image-size -----------------


@pytest.mark.parametrize(
    ("width", "height", "standard", "high"),
    [
        # the docs' table: "Standard tier: tokens" and "High-resolution tier: tokens"
        (200, 200, 64, 64),
        (1000, 1000, 1296, 1296),
        (1092, 1092, 1521, 1521),
        (1920, 1080, 1560, 2691),
        (2000, 1500, 1564, 3888),
        (3840, 2160, 1560, 4784),
    ],
)
def test_anthropic_published_table(width, height, standard, high):
    for model in ("claude-sonnet-4-5-20250929", "claude-haiku-4-5", "claude-3-5-sonnet-20241022"):
        got = image_tokens("anthropic", model, width, height)
        assert (got.tokens, got.exact) == (standard, True)
    got = image_tokens("anthropic", "claude-opus-4-7", width, height)
    assert (got.tokens, got.exact) == (high, True)


def test_anthropic_resize_examples():
    # "1920x1080 px | 1456x819 px" (standard), "3840x2160 px | ... | 2576x1449 px" (high resolution)
    assert "resized to 1456x819" in image_tokens("anthropic", "claude-sonnet-4-5", 1920, 1080).rule
    assert "resized to 2576x1449" in image_tokens("anthropic", "claude-opus-4-7", 3840, 2160).rule
    # vision-coordinates: "an A4 page scanned at 130 DPI is 1075x1520 ... Claude resizes it to 924x1307";
    # ceil(924/28) * ceil(1307/28) = 33 * 47
    a4 = image_tokens("anthropic", "claude-sonnet-4-5", 1075, 1520)
    assert a4.tokens == 33 * 47 and "resized to 924x1307" in a4.rule
    assert image_tokens("anthropic", "claude-opus-4-7", 1075, 1520).tokens == 39 * 55  # "costs 39 x 55 = 2145"


def test_anthropic_on_bedrock_and_vertex_and_detail_ignored():
    for provider, model in [
        ("bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
        ("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        ("vertexai", "claude-haiku-4-5@20251001"),
    ]:
        got = image_tokens(provider, model, 1920, 1080)
        assert (got.tokens, got.exact) == (1560, True)
    assert image_tokens("bedrock", "global.anthropic.claude-opus-4-7", 1920, 1080).tokens == 2691
    assert image_tokens("anthropic", "claude-sonnet-4-5", 1000, 1000, "low").tokens == 1296


def test_anthropic_unknown_version_and_size():
    unknown = image_tokens("anthropic", "claude-latest", 1920, 1080)
    assert unknown.tokens == 2691 and not unknown.exact  # the larger (high-resolution) limits, labelled
    worst = image_tokens("anthropic", "claude-sonnet-4-5", 0, 0)
    assert (worst.tokens, worst.exact) == (1568, False)  # "Max visual tokens": standard 1568
    assert image_tokens("anthropic", "claude-opus-4-7", 0, 0).tokens == 4784  # high resolution 4784


# --- Google Gemini: https://ai.google.dev/gemini-api/docs/tokens ------------------------------------------------


@pytest.mark.parametrize("provider", ["google", "google_genai", "vertexai"])
def test_gemini_small_images_are_258(provider):
    # "Image inputs with both dimensions <=384 pixels are counted as 258 tokens."
    for width, height in [(384, 384), (200, 300), (1, 1)]:
        got = image_tokens(provider, "gemini-2.5-flash", width, height)
        assert (got.tokens, got.exact) == (258, True)


def test_gemini_tiles():
    # "Images larger in one or both dimensions are cropped and scaled as needed into tiles of 768x768 pixels,
    # each counted as 258 tokens." How tiles are cut is not published: an estimate
    one = image_tokens("google", "gemini-2.0-flash", 385, 384)
    assert (one.tokens, one.exact) == (258, False)
    four = image_tokens("google", "gemini-2.5-pro", 1024, 1024)  # 2 x 2 tiles of 768
    assert four.tokens == 4 * 258 and "4 tiles of 768 px" in four.rule and not four.exact
    # "larger images are scaled down to a maximum resolution of 3072x3072": at most 4 x 4 tiles
    assert image_tokens("vertexai", "gemini-2.5-pro", 8000, 8000).tokens == 16 * 258


def test_gemini_3_default_media_resolution():
    # media resolution, "MEDIA_RESOLUTION_UNSPECIFIED (Default) | Image 1120"
    got = image_tokens("google", "gemini-3-pro-preview", 200, 200)
    assert (got.tokens, got.exact) == (1120, False) and "media_resolution" in got.rule
    assert image_tokens("google_genai", "gemini-3.1-flash-preview", 4000, 3000).tokens == 1120


def test_gemini_unknown_size():
    worst = image_tokens("google", "gemini-2.5-flash", 0, 0)
    assert (worst.tokens, worst.exact) == (16 * 258, False) and "size unknown" in worst.rule


# --- Mistral, Groq, Ollama, Bedrock's others, the unknown: estimates ------------------------------------------------


def test_mistral_estimate_from_its_tokenizer():
    # mistral-common's ImageEncoder: ceil(side / patch) tokens a row, plus one break/end token per row
    pixtral = image_tokens("mistral", "pixtral-12b-2409", 1024, 1024)  # 16-px patches: 64 rows of 64 + 1
    assert (pixtral.tokens, pixtral.exact) == (64 * 65, False) and "estimate" in pixtral.rule
    small = image_tokens("mistral", "mistral-small-2506", 1024, 1024)  # 28 px: (1023 // 28 + 1) = 37 rows of 37 + 1
    assert (small.tokens, small.exact) == (37 * 38, False)
    worst = image_tokens("mistral", "mistral-medium-latest", 0, 0)  # at most 1540 px: 55 rows of 55 + 1
    assert (worst.tokens, worst.exact) == (55 * 56, False)


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("groq", "meta-llama/llama-4-scout-17b-16e-instruct"),
        ("ollama", "llava:13b"),
        ("bedrock", "amazon.nova-pro-v1:0"),
        ("someone-new", "vision-model"),
    ],
)
def test_other_providers_are_labelled_estimates(provider, model):
    got = image_tokens(provider, model, 1024, 1024)
    assert (got.tokens, got.exact) == (765, False)  # OpenAI's tile rule, as an estimate
    assert "estimate" in got.rule
    worst = image_tokens(provider, model, 0, 0)
    assert (worst.tokens, worst.exact) == (85 + 8 * 170, False)
    assert "size unknown" in worst.rule and "estimate" in worst.rule


def test_estimates_use_the_model_family_when_named():
    claude = image_tokens("openrouter", "anthropic/claude-sonnet-4-5", 1920, 1080)
    assert (claude.tokens, claude.exact) == (1560, False)
    assert image_tokens("bedrock", "mistral.pixtral-large-2502-v1:0", 1024, 1024).tokens == 37 * 38


# --- the sandbox: OpenAI's tile rule, counted that way by the sandbox itself -----------------------------------------


def test_sandbox_is_exact_tiles():
    assert image_tokens("sandbox", "fast", 1024, 1024) == (765, True, "OpenAI tiles, high detail: 4 tiles")
    assert image_tokens("sandbox", "fast", 2048, 4096, "auto").tokens == 1105
    assert image_tokens("sandbox", "fast", 4096, 8192, "low") == (85, True, "OpenAI, low detail")
    worst = image_tokens("sandbox", "fast", 0, 0)
    assert (worst.tokens, worst.exact) == (85 + 8 * 170, False)
