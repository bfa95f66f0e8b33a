"""The documentation cannot drift: the settings page is what the settings classes say, every link resolves."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target), the target up to a space (a title may follow) or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def _generator():
    spec = importlib.util.spec_from_file_location("settings_table", ROOT / "docs" / "settings_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings."""
    text = FENCE.sub("", page.read_text())
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        base, n = slug, 1
        while slug in found:
            slug, n = f"{base}-{n}", n + 1
        found.add(slug)
    return found


def test_settings_page_is_generated_from_the_settings_classes():
    page = ROOT / "docs" / "settings.md"
    assert page.read_text() == _generator().render(), "docs/settings.md is out of date: run make docs"


def test_every_setting_has_a_description():
    from contract.settings import CommonSettings
    from service.settings import Settings
    from worker.settings import WorkerSettings

    for cls in (CommonSettings, Settings, WorkerSettings):
        for name, field in cls.model_fields.items():
            assert (field.description or "").strip(), f"{cls.__name__}.{name} has no description"


def test_an_undocumented_setting_fails_the_generator():
    from pydantic import Field

    from contract.settings import CommonSettings

    generator = _generator()

    class Undocumented(CommonSettings):
        surprise: int = Field(1)

    with pytest.raises(generator.UndocumentedSetting, match="surprise"):
        generator._process("Undocumented", Undocumented)


def test_every_variable_the_start_scripts_and_compose_read_is_documented():
    """docker/bin/* and compose.yaml read only settings and the variables of the hand-written section."""
    generator = _generator()
    from contract.settings import CommonSettings
    from service.settings import Settings
    from worker.settings import WorkerSettings

    settings = {name.upper() for cls in (CommonSettings, Settings, WorkerSettings) for name in cls.model_fields}
    documented = settings | {row[0] for row in generator.SCRIPTS}
    shell = {"PATH", "PWD", "TMPDIR"}
    read: dict[str, set[str]] = {}
    for source in [*sorted((ROOT / "docker" / "bin").iterdir()), ROOT / "compose.yaml"]:
        text = "\n".join(line for line in source.read_text().splitlines() if not line.lstrip().startswith("#"))
        for variable in re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text):
            read.setdefault(variable, set()).add(source.name)
    missing = {v: sorted(files) for v, files in read.items() if v not in documented | shell}
    assert not missing, f"read but not documented in docs/settings.md (SCRIPTS in docs/settings_table.py): {missing}"
    unread = {row[0] for row in generator.SCRIPTS} - set(read)
    assert not unread, f"documented but read by no start script nor compose.yaml: {sorted(unread)}"


def broken_links(page: Path) -> list[str]:
    """The relative links of a Markdown page whose file, or heading, does not exist."""
    text = FENCE.sub("", page.read_text())
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked)):
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(page: Path):
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(ROOT)} links to what does not exist: {broken}"


def test_the_link_check_sees_broken_links(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text(
        "# A heading\n[ok](#a-heading) [self](page.md#a-heading) [web](https://example.com/x)\n"
        "[no anchor](#nope) [no file](missing.md) ![no image](img.png)\n```\n[fenced](fenced.md)\n```\n"
    )
    assert broken_links(page) == ["#nope", "missing.md", "img.png"]
