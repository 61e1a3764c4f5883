"""MkDocs hook: the repository files the guide links to become pages of the site.

The guide links to a few files outside ``docs/`` (the front-page ``README.md``,
``benchmarks/README.md``, the plugin packages' READMEs) with ordinary relative links, so
the links work when reading the repository. This hook adds those files to the site under
``repo/<path>`` and rewrites the links to them (and theirs, among themselves and back
into the guide), so the built site has them too. A link to any other file outside
``docs/`` is left alone, and ``mkdocs build --strict`` fails on it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

#: Repository files published as pages (globs, relative to the repository root).
REPO_PAGES = ("README.md", "benchmarks/README.md", "plugins/*/README.md")
PREFIX = "repo/"
_LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _published(config: MkDocsConfig) -> list[str]:
    root = _root(config)
    return sorted(
        path.relative_to(root).as_posix() for pattern in REPO_PAGES for path in root.glob(pattern)
    )


def on_files(files: Files, *, config: MkDocsConfig) -> Files:
    root = _root(config)
    for rel in _published(config):
        files.append(File.generated(config, PREFIX + rel, abs_src_path=str(root / rel)))
    return files


def on_page_markdown(
    markdown: str, *, page: Page, config: MkDocsConfig, files: Files, **_: Any
) -> str:
    root, docs = _root(config), Path(config.docs_dir).resolve()
    src = page.file.src_uri
    # Where the text really lives (links in it are relative to that) and where the page
    # sits in the site (rewritten links must be relative to this).
    real = root / src[len(PREFIX):] if src.startswith(PREFIX) else docs / src
    virtual = docs / src
    published = set(_published(config))

    def rewrite(match: re.Match[str]) -> str:
        target = match.group(2)
        if "://" in target or target.startswith(("#", "/", "mailto:")):
            return match.group(0)
        path, _, anchor = target.partition("#")
        resolved = Path(os.path.normpath(real.parent / path))
        if resolved.is_relative_to(docs):
            dest = resolved
        else:
            rel = resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else ""
            if rel in published:
                dest = docs / (PREFIX + rel)
            else:
                return match.group(0)  # left for --strict to report
        new = Path(os.path.relpath(dest, virtual.parent)).as_posix()
        return f"{match.group(1)}{new}{'#' + anchor if anchor else ''}{match.group(3)}"

    out, fenced = [], False
    for line in markdown.splitlines(keepends=True):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        out.append(line if fenced else _LINK.sub(rewrite, line))
    return "".join(out)
