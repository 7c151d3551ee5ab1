"""MkDocs hook: one API reference page per public module of `installer`, and the nav.

The module list is discovered at build time from the package's folder (no
module is imported to find it), so a module added to `src/installer/` gets its
page and its nav entry without anyone editing `mkdocs.yml`, and a module that
does not exist yet simply has no page. A module is public when no part of its
dotted name starts with an underscore (`installer.__main__` is left out).

The pages are virtual (`File.generated`): each holds one mkdocstrings
directive, `::: installer.NAME`, and mkdocstrings renders it from the
docstrings. The nav entry `API reference` in `mkdocs.yml` is filled here:
an overview page (every module with the first line of its docstring) and the
module pages, `installer.steps.*` nested under `steps`.

Pages listed in `OPTIONAL_PAGES` (written by other people, possibly not yet)
are dropped from the nav while their file is missing, so `--strict` passes
before and after they land.
"""

from __future__ import annotations

import ast
import logging
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

import installer

log = logging.getLogger("mkdocs.hooks.api_pages")

API_SECTION = "API reference"
API_DIR = "api"
OPTIONAL_PAGES = ("benchmark-example.md", "reliability.md")


@dataclass(frozen=True)
class ApiModule:
    """One public module of the package and its page."""

    name: str
    path: Path
    is_package: bool

    @property
    def short(self) -> str:
        """The name without the `installer.` prefix (`steps.context`)."""
        return self.name.removeprefix("installer.")

    @property
    def page(self) -> str:
        """The page's path in the docs (`api/steps/context.md`)."""
        parts = self.short.split(".")
        if self.is_package:
            return "/".join([API_DIR, *parts, "index.md"])
        return "/".join([API_DIR, *parts]) + ".md"

    def summary(self) -> str:
        """The first line of the module docstring, read without importing the module."""
        try:
            tree = ast.parse(self.path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            return ""
        doc = ast.get_docstring(tree) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


def _walk(path: list[str], prefix: str) -> list[ApiModule]:
    found: list[ApiModule] = []
    for info in pkgutil.iter_modules(path, prefix):
        leaf = info.name.rsplit(".", 1)[-1]
        if leaf.startswith("_"):
            continue
        folder = Path(info.module_finder.path)  # type: ignore[union-attr]
        if info.ispkg:
            found.append(ApiModule(info.name, folder / leaf / "__init__.py", True))
            found.extend(_walk([str(folder / leaf)], info.name + "."))
        else:
            found.append(ApiModule(info.name, folder / f"{leaf}.py", False))
    return found


def public_modules() -> list[ApiModule]:
    """Return every public module of `installer`, sorted by dotted name."""
    return sorted(_walk(list(installer.__path__), "installer."), key=lambda m: m.name)


def module_page(module: ApiModule) -> str:
    """Return the Markdown of a module's API page."""
    return f"---\ntitle: {module.name}\n---\n\n::: {module.name}\n"


def overview_page(modules: list[ApiModule]) -> str:
    """Return the Markdown of the API overview: every module and its one-line summary."""
    lines = [
        "# API reference",
        "",
        "One page per public module of `installer`, generated from the docstrings "
        "(Google style) when the site is built; a new module gets its page automatically. "
        "Each function and class shows its signature, parameters and source.",
        "",
        "| module | what it is |",
        "|---|---|",
    ]
    for module in modules:
        link = Path(module.page).relative_to(API_DIR).as_posix()
        summary = module.summary().replace("|", "\\|")
        lines.append(f"| [`{module.name}`]({link}) | {summary} |")
    return "\n".join(lines) + "\n"


def api_nav(modules: list[ApiModule]) -> list[Any]:
    """Return the nav entries of the API section (packages become sub-sections)."""
    nav: list[Any] = [{"Overview": f"{API_DIR}/index.md"}]
    sections: dict[str, list[Any]] = {}
    for module in modules:
        parent = module.short.rsplit(".", 1)[0] if "." in module.short else None
        entry = {module.short: module.page}
        if module.is_package:
            sections[module.short] = [{"Overview": module.page}]
            nav.append({module.short: sections[module.short]})
        elif parent is not None and parent in sections:
            sections[parent].append({module.short.rsplit(".", 1)[-1]: module.page})
        else:
            nav.append(entry)
    return nav


def _prune_missing(nav: list[Any], docs_dir: Path) -> list[Any]:
    """Return ``nav`` without the optional pages whose file does not exist yet."""
    kept: list[Any] = []
    for item in nav:
        title, value = next(iter(item.items())) if isinstance(item, dict) else (None, item)
        if isinstance(value, list):
            kept.append({title: _prune_missing(value, docs_dir)})
            continue
        if value in OPTIONAL_PAGES and not (docs_dir / value).is_file():
            log.info("nav: %s is not written yet; left out", value)
            continue
        kept.append(item)
    return kept


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Fill the `API reference` nav section and drop optional pages not written yet."""
    nav = config.nav or []
    modules = public_modules()
    for index, item in enumerate(nav):
        if isinstance(item, dict) and API_SECTION in item:
            nav[index] = {API_SECTION: api_nav(modules)}
            break
    else:
        nav.append({API_SECTION: api_nav(modules)})
    config.nav = _prune_missing(nav, Path(config.docs_dir))
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated API pages to the site."""
    modules = public_modules()
    files.append(File.generated(config, f"{API_DIR}/index.md", content=overview_page(modules)))
    for module in modules:
        files.append(File.generated(config, module.page, content=module_page(module)))
    return files
