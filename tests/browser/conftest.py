from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser._lab import ARTIFACTS, Browser, Lab, start_lab


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Expose each test's outcome to fixtures (screenshots on failure)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One JupyterLab (loopback, no token) for every browser test of the run."""
    yield from start_lab(tmp_path_factory)


@pytest.fixture
def browser(lab, request):
    b = Browser(lab)
    yield b
    if getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        b.page.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"), full_page=True)
    b.close()
