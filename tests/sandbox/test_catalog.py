"""Models added to the sandbox are priced like the built-ins, and a replacement re-resolves its price."""

from __future__ import annotations

from decimal import Decimal

from coffee_nb import sandbox
from coffee_nb.pricing._pricing import price_for


def test_added_sandbox_models_are_priced_and_replacements_re_resolve():
    sandbox.add_model(sandbox.SandboxModel(name="t1", description="t", input_price=Decimal(1), output_price=Decimal(2)))
    assert price_for("sandbox", "t1").input == Decimal(1)
    sandbox.add_model(sandbox.SandboxModel(name="t1", description="t", input_price=Decimal(3), output_price=Decimal(4)))
    assert price_for("sandbox", "t1").input == Decimal(3)
