"""The docs hold together: README.md and every docs/*.md.

- every relative Markdown link points at a file or folder that exists (relative to the page);
- every `make <target>` they name is a target the Makefile defines;
- README.md stays short (at most 220 lines), opens with `make demo` and `make test`, and holds
  a Mermaid diagram.

Pure Python: no Spark, no JVM, no network; well under a second.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 220


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


# --- extraction -------------------------------------------------------------------------------

FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})[^\n]*\n.*?^\1?\2[`~]*[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
# [text](target "title") and ![alt](target); the target may be wrapped in <...>.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+[\"'(][^)]*)?\)")
# [label]: target
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)
EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")  # http:, https:, mailto:, ftp:, //host


def without_code(text: str) -> str:
    """The text with fenced blocks and code spans blanked: a link in code is not a link."""
    text = FENCE.sub("", text)
    return CODE_SPAN.sub("", text)


def code_parts(text: str) -> list[str]:
    """Fenced blocks and code spans, where commands are written."""
    blocks = [m.group(0) for m in FENCE.finditer(text)]
    rest = FENCE.sub("", text)
    return blocks + [m.group(2) for m in CODE_SPAN.finditer(rest)]


def link_targets(text: str) -> list[str]:
    """Every link target of a Markdown text (inline and reference definitions), outside code."""
    prose = without_code(text)
    targets = [m.group(1) for m in INLINE_LINK.finditer(prose)]
    targets += [m.group(1) for m in REFERENCE_DEF.finditer(prose)]
    return [t[1:-1] if t.startswith("<") and t.endswith(">") else t for t in targets]


def relative_path(target: str) -> str | None:
    """The file part of a relative link; None for external links and pure #anchors."""
    if EXTERNAL.match(target) or target.startswith("#"):
        return None
    path = target.split("#", 1)[0].split("?", 1)[0]
    return path or None


def broken_links(page: Path) -> list[str]:
    """The relative link targets of ``page`` that do not exist, relative to it."""
    broken = []
    for target in link_targets(page.read_text(encoding="utf-8")):
        path = relative_path(target)
        if path is None:
            continue
        base = ROOT if path.startswith("/") else page.parent
        if not (base / path.lstrip("/")).exists():
            broken.append(target)
    return broken


TARGET = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
# In code: `make demo`, `make -j2 test`, `... && make test-quick` (the first target named).
MAKE_IN_CODE = re.compile(rf"(?:^|[\s;&|(`])make(?:[ \t]+(?:-\S+|[A-Za-z_]\w*=\S*))*[ \t]+({TARGET})(?![\w=/])", re.M)
# In prose "make" is also an English verb ("make sure"); a hyphenated word after it is a target.
MAKE_IN_PROSE = re.compile(r"\bmake\s+([a-z0-9]+(?:-[a-z0-9]+)+)\b")


def make_targets_named(text: str) -> set[str]:
    named: set[str] = set()
    for part in code_parts(text):
        for m in MAKE_IN_CODE.finditer(part):
            named.add(m.group(1))
    named.update(MAKE_IN_PROSE.findall(without_code(text)))
    return {t.rstrip(".,:;") for t in named if t.rstrip(".,:;")}


MAKE_RULE = re.compile(r"^([^\s:=#$][^:=#]*?)\s*::?(?!=)", re.M)


def makefile_targets(makefile: Path) -> set[str]:
    """Targets of the Makefile: the names before a rule's colon, and every .PHONY name."""
    text = makefile.read_text(encoding="utf-8").replace("\\\n", " ")
    targets: set[str] = set()
    for m in MAKE_RULE.finditer(text):
        names = m.group(1).split()
        if names == [".PHONY"]:
            rest = text[m.end():].split("\n", 1)[0]
            targets.update(rest.split())
        elif not any(name.startswith(".") or "$" in name or "%" in name for name in names):
            targets.update(names)
    return targets


# --- the extractors themselves (so the checks below can fail) -------------------------------


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("x\n")
    (tmp_path / "sub").mkdir()
    page = tmp_path / "page.md"
    page.write_text(
        "See [there](there.md), [a section](there.md#part), [a folder](sub/), [web](https://example.org/x),\n"
        "[mail](mailto:a@example.org), [an anchor](#top), ![a picture](missing.png) and\n"
        "[gone](docs/gone.md#why \"title\").\n"
        "`[in a span](nope.md)`\n"
        "```\n[in a block](nope2.md)\n```\n"
        "[ref]: ../nowhere.md\n"
    )
    assert broken_links(page) == ["missing.png", "docs/gone.md#why", "../nowhere.md"]


def test_make_targets_are_found_in_code_and_prose(tmp_path: Path) -> None:
    text = (
        "Run `make demo`, then:\n\n```bash\nmake test   # all\ncd x && make -j2 VERBOSE=1 bench\n```\n"
        "Make sure to make test-quick first; we make sense of it.\n"
    )
    assert make_targets_named(text) == {"demo", "test", "bench", "test-quick"}


def test_makefile_targets_are_parsed(tmp_path: Path) -> None:
    makefile = tmp_path / "Makefile"
    makefile.write_text(
        "VENV := .venv\n.PHONY: demo \\\n  test\ndemo: setup\n\techo\nsetup: $(VENV)/.installed\n"
        "$(VENV)/.installed: setup.py\n\ttouch $@\nX ?= 1\nlint:\n"
    )
    assert makefile_targets(makefile) == {"demo", "test", "setup", "lint"}


# --- the project's docs ----------------------------------------------------------------------


def test_there_are_docs_pages() -> None:
    assert list(DOCS.glob("*.md")), "docs/ holds no page"


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page) == [], f"{page.relative_to(ROOT)}: links to paths that do not exist"


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_make_targets_exist(page: Path) -> None:
    defined = makefile_targets(ROOT / "Makefile")
    missing = sorted(make_targets_named(page.read_text(encoding="utf-8")) - defined)
    assert missing == [], f"{page.relative_to(ROOT)} names make targets the Makefile lacks: {missing}"


def test_readme_is_short_and_has_a_diagram() -> None:
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines (at most {MAX_README_LINES})"
    assert re.search(r"^```mermaid\s*$", text, re.M), "README.md has no ```mermaid block"


def test_readme_opens_with_the_two_commands() -> None:
    """CI runs the README's test command; both commands sit in the README's first code block."""
    first_block = FENCE.search(README.read_text(encoding="utf-8"))
    assert first_block is not None
    head = README.read_text(encoding="utf-8")[: first_block.end()]
    assert len(head.splitlines()) <= 30, "the first code block is not near the top"
    assert re.search(r"^make demo\b", first_block.group(0), re.M)
    assert re.search(r"^make test\b", first_block.group(0), re.M)
