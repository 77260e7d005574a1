"""What a call costs and how many tokens it carries: prices (genai-prices' bundled data, registered prices,
resolved once per model), token counts (offline tokenizers, estimates labelled as such).

May import: ``coffee_nb._shared``, ``coffee_nb.errors``. Must never import the invoker or anything above it.
"""
