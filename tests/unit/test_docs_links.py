"""Every relative link in the documentation points at an existing file (and heading).

Checked: README.md, docs/**/*.md and results/**/README.md. A link's target is resolved against
the file's folder; a ``#fragment`` must match a heading of the target markdown file, slugged as
GitHub does. External links (http, mailto) are not checked: tests never use the network.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted(
    [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "results").rglob("README.md")]
)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"`[^`\n]*`")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The heading anchors of a markdown file (a repeated heading gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    text = FENCE.sub("", path.read_text())
    for line in text.splitlines():
        match = re.match(r"^#{1,6}\s+(.*)$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


def links(path: Path) -> list[str]:
    """The link targets of a markdown file, outside code blocks and code spans."""
    text = CODE.sub("", FENCE.sub("", path.read_text()))
    return [a or b for a, b in LINK.findall(text)]


def broken(path: Path) -> list[str]:
    problems = []
    for target in links(path):
        if re.match(r"^[a-z]+:", target):
            continue  # http:, https:, mailto:
        file, _, fragment = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists():
            problems.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            problems.append(f"{target}: no heading #{fragment} in {resolved.name}")
    return problems


def test_the_documents_exist():
    names = {p.relative_to(ROOT).as_posix() for p in DOCUMENTS}
    assert {"README.md", "docs/design.md", "docs/suites.md"} <= names


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path):
    assert broken(path) == []


def test_the_checker_catches_a_broken_link_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# A `code` heading (SPEC §7.1)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-code-heading-spec-71) [gone](missing.md) [bad](other.md#nope)\n"
        "`[in code](missing.md)` [web](https://example.org)\n"
    )
    assert broken(page) == [
        "missing.md: no such file",
        "other.md#nope: no heading #nope in other.md",
    ]
