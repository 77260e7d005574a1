"""``--show-prompt`` and ``--context-tokens`` on the three cell magics, through a real IPython shell: what
would be sent is shown (images by size and digest in the text twin, thumbnails in the HTML), and nothing is
called."""

from __future__ import annotations

import matplotlib
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from PIL import Image

from coffee_nb import sandbox

matplotlib.use("Agg")
import matplotlib.pyplot as plt


@pytest.fixture
def scene(ip, tmp_path):
    fig, ax = plt.subplots(figsize=(3, 2), dpi=100)
    ax.plot([1, 3, 2])
    plt.close(fig)
    paths = []
    for name, colour in [("red", (220, 40, 40)), ("blue", (40, 70, 200))]:
        path = tmp_path / f"{name}.png"
        Image.new("RGB", (64, 32), colour).save(path)
        paths.append(str(path))
    ip.user_ns.update(
        fig=fig,
        df=pd.DataFrame({"a": range(5000), "b": ["x", "y"] * 2500}),
        swatches=pd.DataFrame({"path": paths}),
    )
    ip.user_ns["Out"][7] = fig  # as if cell 7 had shown the figure
    sandbox.clear_log()
    return ip


def shown(ip, magic, line, cell):
    with capture_output() as cap:
        result = ip.run_cell_magic(magic, line, cell)
    outputs = [o.data for o in cap.outputs] + ([{"text/plain": repr(result)}] if result is not None else [])
    return outputs


def test_llm_show_prompt_shows_images_tables_and_the_dry_run_and_calls_nothing(scene):
    (out,) = shown(
        scene, "llm", "sandbox/fast sandbox/vision --show-prompt --context-tokens 200", "See {Out[7]} and {df}"
    )
    text, page = out["text/plain"], out["text/html"]
    assert text.startswith("Prompt as it will be sent — no call made")
    assert "[image 1: 300x200 px PNG" in text and "5,000 rows" in text and "(showing" in text
    assert "sandbox/fast" in text and "no image input (skipped)" in text and "sandbox/vision" in text
    assert page.count("<img src='data:image/jpeg;base64,") == 1
    assert sandbox.attempts() == []  # nothing was called


def test_compare_and_map_show_the_prompt_too(scene):
    (out,) = shown(scene, "llm_compare", "sandbox/vision sandbox/fast --show-prompt", "Describe {fig}")
    assert "Prompt as each model gets it" in out["text/plain"] and "[image 1: 300x200 px PNG" in out["text/plain"]
    (out,) = shown(scene, "llm_map", "swatches sandbox/fast sandbox/vision --show-prompt", "Colour of {path}?")
    text = out["text/plain"]
    assert "The first row's prompt as it will be sent" in text and "[image 1: 64x32 px PNG" in text
    assert "2" in text and "sandbox/vision" in text  # the projection of the job under it
    assert sandbox.attempts() == []


def test_context_tokens_must_leave_room_for_a_table(scene):
    with pytest.raises(UsageError, match="--context-tokens must be at least 100"):
        scene.run_cell_magic("llm", "--context-tokens 5", "{df}")
