"""Money stays money in Jupyter: ``$`` amounts shown literally, real math still typeset.

JupyterLab typesets ``$...$`` as TeX in markdown *and* HTML outputs (MathJax runs over the rendered
page), so "costs $5 per month and plan B costs $12" comes out as math italics. ``\\$`` alone does not
help there: the markdown renderer turns it back into a bare ``$`` before MathJax runs. What works in
every front end: markdown gets ``<span class="mathjax_ignore">\\$</span>`` (the source-side math scan
skips ``\\$``, MathJax skips the span; GitHub and nbconvert show ``$``), and HTML we build is wrapped
in an element with the ignore classes (:data:`NO_MATH`).

Real math in an answer is kept: ``$$...$$``, ``\\[...\\]`` and ``\\(...\\)`` (rewritten as ``$$``/``$``,
which JupyterLab's markdown understands), and inline ``$x^2$`` by pandoc's rule (an opening ``$`` not
followed by a space or a digit, a closing one not preceded by a space nor followed by a digit), so an
amount never opens math. Code spans and fenced blocks are left exactly as written.
"""

from __future__ import annotations

import re

__all__ = ["LITERAL_DOLLAR", "NO_MATH", "literal_dollars", "markdown_safe"]

# MathJax 2 and 3 skip elements with these classes (and their children)
NO_MATH = "tex2jax_ignore mathjax_ignore"
LITERAL_DOLLAR = '<span class="mathjax_ignore">\\$</span>'

_TOKENS = re.compile(
    r"""
    (?P<fence>^[ \t]{0,3}(?P<fc>`{3,}|~{3,})[^\n]*\n.*?(?:^[ \t]{0,3}(?P=fc)[ \t]*$|\Z))  # fenced code
    |(?P<code>(?P<bt>`+)(?:(?!\n[ \t]*\n).)+?(?<!`)(?P=bt)(?!`))                     # code span
    |(?P<display>\$\$(?:(?!\$\$).)+?\$\$)                                             # $$ display $$
    |\\\[(?P<bracket>.+?)\\\]                                                         # \[ display \]
    |\\\((?P<paren>.+?)\\\)                                                           # \( inline \)
    |(?P<inline>\$(?=[^\s\d$])(?:[^$\\\n]|\\.)*?(?<=\S)\$(?!\d))                      # $inline$ (pandoc)
    |(?P<dollar>\\?\$)                                                                # an amount's $ (or \$)
    """,
    re.MULTILINE | re.DOTALL | re.VERBOSE,
)


def _token(m: re.Match[str]) -> str:
    kind = m.lastgroup
    if kind == "dollar":
        return LITERAL_DOLLAR
    if kind == "bracket":
        return f"$${m.group('bracket')}$$"
    if kind == "paren":
        return f"${m.group('paren')}$"
    return m.group(0)  # code, fences and math as written


def markdown_safe(text: str) -> str:
    """``text`` (markdown) with every ``$`` that isn't math shown literally; math and code untouched."""
    if "$" not in text and "\\(" not in text and "\\[" not in text:
        return text
    return _TOKENS.sub(_token, text)


def literal_dollars(text: str) -> str:
    """Plain text (a footer, a notice) for a markdown output: every ``$`` literal, nothing else read."""
    return text.replace("$", LITERAL_DOLLAR)
