"""The documentation cannot drift: the settings page is what the settings classes say, every link resolves,
the README stays short and quotes only figures the benchmarks page gives, the file map names every module."""

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


# --- the README: short, every page linked, its figures sourced -------------------------------------

README = ROOT / "README.md"
README_MAX_LINES = 200
BENCHMARKS = ROOT / "docs" / "benchmarks.md"
# A measured figure: a number (or a range of two) with a unit of time, size, rate or ratio.
_NUMBER = r"\d+(?:[.,]\d+)*"
_UNIT = r"(?:requests/s|sequences/s|steps/s|s/epoch|ms|µs|min|MiB|MB|GiB|GB|KB|x|×|%|s|h)"
FIGURE = re.compile(rf"(?<![\w.,]){_NUMBER}(?:\s*[–-]\s*{_NUMBER})?\s?{_UNIT}(?![\w/])")


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("×", "x").replace("\u00a0", " "))


def unsourced_figures(text: str, source: str) -> list[str]:
    """The figures text quotes that source does not give (as a figure of its own), as written in text."""
    given = {_normal(figure) for figure in FIGURE.findall(source)}
    return [figure for figure in FIGURE.findall(text) if _normal(figure) not in given]


def test_the_readme_reads_in_minutes():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail into docs/"
    )


def test_every_figure_the_readme_quotes_is_the_benchmarks_page():
    unsourced = unsourced_figures(README.read_text(), BENCHMARKS.read_text())
    assert not unsourced, f"README.md quotes figures docs/benchmarks.md does not give: {unsourced}"


def test_the_figure_check_sees_stale_figures():
    source = "`train speedup vs seed reference: 102.1x` (146.8x–200.4x); p50 0.78 ms; 240 MiB; 118 %; 130.2 s"
    text = (
        "about 20× faster, 102.1× or 102.1x, 146.8x–200.4x, 0.78 ms, 0.79 ms, 240\nMiB, 118 %, 96 %,\n"
        "6 h, 30.2 s, 5 seeds, port 6380, p50 ms, Python 3.11, 2 sweeps"
    )
    assert unsourced_figures(text, source) == ["20×", "0.79 ms", "96 %", "6 h", "30.2 s"]


def test_the_readme_links_every_docs_page():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in LINK.findall(FENCE.sub("", README.read_text()))}
    missing = [page.name for page in sorted((ROOT / "docs").glob("*.md")) if page.resolve() not in linked]
    assert not missing, f"README.md's 'Where the rest is' does not link {missing}"


# --- the file map -----------------------------------------------------------------------------------

ARCHITECTURE = ROOT / "docs" / "architecture.md"
PACKAGES = ("contract", "service", "worker")


def file_map(page: Path) -> set[str]:
    """The modules the page's file map names: 'dir/' lines, then indented 'name.py' lines under each."""
    text = page.read_text()
    block = re.search(r"^## The file map\n.*?^```\n(.*?)^```", text, re.M | re.S)
    assert block, f"{page.name} has no file map"
    named, folder = set(), ""
    for line in block.group(1).splitlines():
        if match := re.match(r"^(\S+/)\s", line + " "):
            folder = match.group(1)
        elif match := re.match(r"^\s+(\w+\.py)\s", line + " "):
            named.add(folder + match.group(1))
    return named


def test_the_file_map_names_every_module_and_only_those():
    modules = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py" and "__pycache__" not in path.parts
    }
    named = {path for path in file_map(ARCHITECTURE) if path.startswith(tuple(f"{p}/" for p in PACKAGES))}
    assert not modules - named, f"docs/architecture.md's file map misses {sorted(modules - named)}"
    assert not named - modules, (
        f"docs/architecture.md's file map names modules that do not exist: {sorted(named - modules)}"
    )
