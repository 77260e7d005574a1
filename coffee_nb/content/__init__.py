"""What is on screen, as a prompt carries it: figures and images as image content blocks, DataFrames,
Series and arrays as compact tables cut to a token limit.

May import: ``coffee_nb._shared``, ``coffee_nb.errors``, ``coffee_nb.pricing`` (to count what it renders).
Must never import the invoker or anything above it, nor a notebook library: a matplotlib figure or an
IPython image is read through its own methods, never by importing matplotlib or IPython.
"""
