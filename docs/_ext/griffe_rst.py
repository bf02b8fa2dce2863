"""Griffe extension for the API reference: equigraph's docstrings follow PyG's style
(reStructuredText roles, ``.. math::`` blocks, simple tables, Google sections), which
mkdocstrings renders as Markdown. This rewrites the reStructuredText parts of every
docstring into the Markdown the site's extensions understand, before griffe parses the
sections, so the docstrings stay as they are for ``help()`` and the doctests.

Conversions:

- ``:math:`x``` -> ``$x$`` and ``.. math::`` blocks -> ``$$ ... $$`` (pymdownx.arithmatex);
  several equations or ``&`` alignment become one ``aligned`` environment, as Sphinx does;
- ``:class:`~a.b.C``` (and ``func``, ``meth``, ``attr``, ``data``, ``mod``, ``obj``) ->
  an optional mkdocs-autorefs cross-reference: a link where the API reference renders the
  target, plain code otherwise (a target outside equigraph never fails the strict build);
- ```text <url>`_`` -> ``[text](url)``;
- simple tables (``====  ====`` borders) -> Markdown tables;
- a paragraph ending in ``::`` -> ``:`` (the indented block after it is already code);
- doctest blocks (``>>>`` lines and their output, up to a blank line) -> fenced ``pycon``
  code, wherever they are (Markdown would read ``[16, 2, 2]`` as a link).
"""
from __future__ import annotations

import html
import re
import textwrap

from griffe import Extension, Object

__all__ = ["RstToMarkdown", "rst_to_markdown"]

_ROLE = re.compile(r":(class|func|meth|attr|data|mod|obj|exc):`([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_LINK = re.compile(r"`([^`<]+?)\s*<([^>`]+)>`__?")
_BORDER = re.compile(r"^(\s*)(=+)(\s+=+)+\s*$")


def _role(match: re.Match) -> str:
    kind, target = match.group(1), match.group(2).strip()
    short = target.startswith("~")
    target = target.lstrip("~.!")
    title = target.rsplit(".", 1)[-1] if short else target
    if kind in ("func", "meth") and not title.endswith(")"):
        title += "()"
    code = f"<code>{html.escape(title)}</code>"
    # A dotted path may be documented on the site: link it when it is; a bare name
    # (``None``, ``message``) or a literal is just code.
    if "." in target and re.fullmatch(r"[A-Za-z_][\w.]*", target):
        return f'<autoref identifier="{target}" optional>{code}</autoref>'
    return f"``{match.group(2).lstrip('~')}``" if kind == "obj" else code


def _math_block(lines: list[str]) -> list[str]:
    body = textwrap.dedent("\n".join(lines)).strip("\n")
    parts = [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]
    if len(parts) > 1 or "&" in body or "\\\\" in body:
        inner = " \\\\\n".join(parts)
        body = "\\begin{aligned}\n" + inner + "\n\\end{aligned}"
    else:
        body = parts[0] if parts else ""
    return ["$$", *body.splitlines(), "$$"]


def _table(rows: list[str], indent: str) -> list[str]:
    """A reStructuredText simple table (border, header, border, rows, border) as Markdown."""
    border = rows[0]
    spans = [(m.start(), m.end()) for m in re.finditer(r"=+", border)]

    def cells(line: str) -> list[str]:
        out = []
        for k, (start, end) in enumerate(spans):
            stop = spans[k + 1][0] if k + 1 < len(spans) else len(line)
            out.append(line[start:stop].strip())
        return out

    header: list[str] | None = None
    body: list[list[str]] = []
    for line in rows[1:]:
        if _BORDER.match(line):
            if header is None and body:
                header, body = body[0], body[1:]
            continue
        if not line.strip():
            continue
        values = cells(line)
        if body and not values[0]:  # continuation line of the row above
            body[-1] = [f"{a} {b}".strip() for a, b in zip(body[-1], values)]
        else:
            body.append(values)
    if header is None:  # a table without a header row
        header, body = [""] * len(spans), body

    def fmt(values: list[str]) -> str:
        return indent + "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    return ["", fmt(header), indent + "|" + "---|" * len(spans), *(fmt(r) for r in body), ""]


def rst_to_markdown(text: str) -> str:
    """The Markdown form of one docstring (see the module docstring)."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith(".. math::"):
            indent = line[: len(line) - len(line.lstrip())]
            first = stripped[len(".. math::"):].strip()
            block = [first] if first else []
            i += 1
            while i < len(lines) and (not lines[i].strip() or
                                      len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
                block.append(lines[i])
                i += 1
            out += [""] + [indent + m for m in _math_block(block)] + [""]
            continue
        border = _BORDER.match(line)
        if border:
            indent = border.group(1)
            rows = [line]
            i += 1
            borders = 1
            while i < len(lines) and borders < 3:
                rows.append(lines[i])
                if _BORDER.match(lines[i]):
                    borders += 1
                i += 1
            out += _table(rows, indent)
            continue
        if stripped.startswith(">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            block = []
            while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
                block.append(lines[i])
                i += 1
            out += [indent + "```pycon", *block, indent + "```"]
            continue
        if stripped.endswith("::") and not stripped.startswith(".."):
            line = line[:-1]
        out.append(line)
        i += 1
    text = "\n".join(out)
    text = _MATH_ROLE.sub(lambda m: f"${m.group(1)}$", text)
    text = _ROLE.sub(_role, text)
    text = _LINK.sub(lambda m: f"[{m.group(1).strip()}]({m.group(2).strip()})", text)
    return text


class RstToMarkdown(Extension):
    """Rewrites every loaded object's docstring with :func:`rst_to_markdown`."""

    def on_instance(self, *, obj: Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
