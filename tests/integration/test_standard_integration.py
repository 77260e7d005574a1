"""langchain-tests' standard integration suite for AutoPicker, over the sandbox's real HTTP path."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.utils.function_calling import convert_to_json_schema
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.integration_tests.chat_models import _get_joke_class

from coffee_nb import AutoPicker


class TestAutoPickerOverSandbox(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[AutoPicker]:
        return AutoPicker

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "sandbox/fast", "fallbacks": ["sandbox/smart"]}

    @property
    def supports_model_override(self) -> bool:
        # AutoPicker picks the model itself; a per-call model= is refused with a clear error.
        return False

    # AutoPicker is a router: each candidate it tries runs as a child chat-model run (as with
    # LangChain's with_fallbacks), so the standard "on_chat_model_start exactly once" counts two.
    # The standard tests stay, marked strict xfail for that one reason; the *_top_level tests below
    # run every other check and count top-level chat-model runs only.
    @pytest.mark.xfail(reason="counts the nested candidate run too (2 starts, not 1)", strict=True)
    @pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
    def test_structured_output(self, model: Any, schema_type: str) -> None:
        super().test_structured_output(model, schema_type)

    @pytest.mark.xfail(reason="counts the nested candidate run too (2 starts, not 1)", strict=True)
    @pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
    async def test_structured_output_async(self, model: Any, schema_type: str) -> None:
        await super().test_structured_output_async(model, schema_type)

    @pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
    def test_structured_output_top_level(self, model: Any, schema_type: str) -> None:
        schema, validate = _get_joke_class(schema_type)
        handler = _ChatRuns()
        result = model.with_structured_output(schema).invoke(
            "Tell me a joke about cats.", config={"callbacks": [handler]}
        )
        validate(result)
        handler.check(schema)
        chunks = list(model.with_structured_output(schema).stream("Tell me a joke about cats."))
        validate(chunks[-1])

    @pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
    async def test_structured_output_async_top_level(self, model: Any, schema_type: str) -> None:
        schema, validate = _get_joke_class(schema_type)
        handler = _ChatRuns()
        result = await model.with_structured_output(schema).ainvoke(
            "Tell me a joke about cats.", config={"callbacks": [handler]}
        )
        validate(result)
        handler.check(schema)

    def test_call_time_model_override_is_refused(self, model: Any) -> None:
        with pytest.raises(ValueError, match="model="):
            model.invoke("Hello", model="sandbox/smart")


class _ChatRuns(BaseCallbackHandler):
    """Chat-model runs by id, with parents, to tell ours from the nested candidate runs."""

    def __init__(self) -> None:
        self.runs: dict[Any, tuple[Any, dict[str, Any]]] = {}
        self.parents: dict[Any, Any] = {}

    def on_chain_start(
        self, serialized: Any, inputs: Any, *, run_id: Any, parent_run_id: Any = None, **kwargs: Any
    ) -> None:
        self.parents[run_id] = parent_run_id

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: Any, parent_run_id: Any = None, **kwargs: Any
    ) -> None:
        self.parents[run_id] = parent_run_id
        self.runs[run_id] = (parent_run_id, kwargs.get("options") or {})

    def _under_chat_model(self, run_id: Any) -> bool:
        parent = self.parents.get(run_id)
        while parent is not None:
            if parent in self.runs:
                return True
            parent = self.parents.get(parent)
        return False

    def check(self, schema: Any) -> None:
        top = [opts for rid, (_, opts) in self.runs.items() if not self._under_chat_model(rid)]
        nested = [opts for rid, (_, opts) in self.runs.items() if self._under_chat_model(rid)]
        assert len(top) == 1, "expected one top-level chat model run"
        assert len(nested) >= 1, "expected the candidate's run nested under ours"
        fmt = top[0]["ls_structured_output_format"]
        assert isinstance(fmt["schema"], dict) and fmt["schema"] == convert_to_json_schema(schema)
