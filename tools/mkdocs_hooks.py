"""MkDocs hooks (mkdocs.yml, ``hooks:``): the docstrings' Sphinx roles, e.g. :class:`~recmodels.data.RecData`, shown
as code (``RecData``) in the API reference instead of as the raw role."""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):<code>(~?)([^<]+)</code>")


def _code(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **kwargs) -> str:
    return ROLE.sub(_code, html)
