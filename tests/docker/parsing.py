"""Readers for the deployment files, for the static checks of tests/docker (no Docker engine).

Dockerfiles, Compose files (with Compose's interpolation and its !reset tag), the Procfile, the
docker/bin scripts, .env files, requirement locks and .dockerignore patterns.
"""

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import yaml

from tests.support import ROOT

DOCKER = ROOT / "docker"
DOCKERFILES = {role: DOCKER / f"{role}.Dockerfile" for role in ("api", "worker", "mlflow")}
COMPOSE = ROOT / "compose.yaml"
COMPOSE_CPU = ROOT / "compose.cpu.yaml"
COMPOSE_GPU = ROOT / "compose.gpu.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA = Path(__file__).with_name("compose-spec.json")


# --- Dockerfiles ------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str  # upper case
    args: str  # continuation lines joined, comment lines inside dropped
    line: int  # where it starts


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(path: Path) -> tuple[list[Instruction], list[Stage]]:
    """The instructions of a Dockerfile, and the same split into build stages."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comments (also inside a continued instruction) and blank lines
        if not pending:
            start = number
        continued = stripped.endswith("\\")
        pending.append(stripped[:-1].strip() if continued else stripped)
        if not continued:
            text = " ".join(part for part in pending if part)
            keyword, _, args = text.partition(" ")
            instructions.append(Instruction(keyword.upper(), args.strip(), start))
            pending = []
    assert not pending, f"{path}: the last instruction ends in a continuation"
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append(instruction)
    return instructions, stages


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD (fails on shell form)."""
    import json

    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def copy_sources(instruction: Instruction) -> list[str]:
    """The context paths a COPY takes (none when it copies from another stage)."""
    words = shlex.split(instruction.args)
    if any(w.startswith("--from") for w in words):
        return []
    words = [w for w in words if not w.startswith("--")]
    return words[:-1]


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    """ARG NAME=default of a Dockerfile (the last one wins)."""
    defaults = {}
    for instruction in instructions:
        if instruction.keyword == "ARG" and "=" in instruction.args:
            name, _, value = instruction.args.partition("=")
            defaults[name.strip()] = value.strip().strip('"')
    return defaults


def env_keys(instruction: Instruction) -> list[str]:
    """The variable names an ENV instruction sets."""
    return [word.split("=", 1)[0] for word in shlex.split(instruction.args) if "=" in word]


# --- Compose files ----------------------------------------------------------------------------


class Reset:
    """Compose's !reset tag: in an override file, drop what the files before it set here."""

    def __init__(self, value):
        self.value = value


class ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's !reset and !override tags."""


ComposeLoader.add_constructor(
    "!reset",
    lambda loader, node: Reset(
        loader.construct_sequence(node)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_mapping(node)
        if isinstance(node, yaml.MappingNode)
        else loader.construct_scalar(cast(yaml.ScalarNode, node))
    ),
)


def load_compose(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=ComposeLoader)


def strip_tags(value):
    """The document as the schema sees it: each !reset replaced by its (empty) value."""
    if isinstance(value, Reset):
        return strip_tags(value.value)
    if isinstance(value, dict):
        return {k: strip_tags(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_tags(v) for v in value]
    return value


def merge(base, override):
    """Apply a Compose override file to a model (mappings merge, other values replace)."""
    if isinstance(override, Reset):
        return strip_tags(override.value)
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else strip_tags(value)
        return merged
    return strip_tags(override)


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<word>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(KeyError):
    """A ${VAR:?message} whose variable is unset or empty."""


def referenced_variables(value) -> set[str]:
    """Names of the variables a Compose document interpolates."""
    if isinstance(value, dict):
        return set().union(*(referenced_variables(v) for v in value.values()), set())
    if isinstance(value, list):
        return set().union(*(referenced_variables(v) for v in value), set())
    if isinstance(value, Reset):
        return referenced_variables(value.value)
    if isinstance(value, str):
        return {m["braced"] or m["named"] for m in _VARIABLE.finditer(value) if not m["escaped"]}
    return set()


def required_variables(value) -> set[str]:
    """Names interpolated as ${VAR:?...} or ${VAR?...}: compose refuses to start without them."""
    text = yaml.safe_dump(strip_tags(value))
    return {m["braced"] for m in _VARIABLE.finditer(text) if m["op"] in (":?", "?")}


def interpolate(value, env: dict[str, str]):
    """Compose's interpolation of every string of a document with env (as .env would give it)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, Reset):
        return Reset(interpolate(value.value, env))
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, word = match["op"], match["word"] or ""
        present = name in env
        nonempty = present and env[name] != ""
        if op in (":-", "-"):
            return env[name] if (nonempty if op == ":-" else present) else word
        if op in (":?", "?"):
            if not (nonempty if op == ":?" else present):
                raise MissingVariable(f"{name}: {word}")
            return env[name]
        if op in (":+", "+"):
            return word if (nonempty if op == ":+" else present) else ""
        return env.get(name, "")

    return _VARIABLE.sub(substitute, value)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments and blank lines skipped)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path}: not KEY=VALUE: {line!r}"
            env[key.strip()] = value.strip()
    return env


def env_names(service: dict) -> set[str]:
    """Names of the variables a Compose service sets in its containers."""
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return {item.partition("=")[0] for item in environment}
    return set(environment)


def env_value(service: dict, name: str) -> str:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return str(environment[name])


def command_words(command) -> list[str]:
    """A Compose command as the words it runs (a string is split as Compose splits it)."""
    return shlex.split(command) if isinstance(command, str) else list(command)


# --- Procfile and docker/bin ------------------------------------------------------------------


def procfile() -> dict[str, str]:
    """role: command of the Procfile (what make run starts)."""
    roles = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            role, _, command = line.partition(":")
            roles[role.strip()] = command.strip()
    return roles


_SCRIPT_VARIABLE = re.compile(r"\$\{(?P<braced>[A-Z_][A-Z0-9_]*)(?P<op>:?[-=?+])?|\$(?P<named>[A-Z_][A-Z0-9_]*)")
_ASSIGNED = re.compile(r"(?:^|\s|export\s+)([A-Z_][A-Z0-9_]*)=")


@dataclass
class ScriptVariables:
    read: set[str]  # every variable the script reads
    required: set[str]  # read with no default and never set by the script itself
    exported: set[str]  # set and exported by the script


def script_variables(path: Path) -> ScriptVariables:
    """The environment a docker/bin script reads (comments ignored)."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    read, bare = set(), set()
    for match in _SCRIPT_VARIABLE.finditer(text):
        name = match["braced"] or match["named"]
        read.add(name)
        if match["named"] or not match["op"]:
            bare.add(name)
    assigned = set(_ASSIGNED.findall(text))
    exported = set()
    for line in text.splitlines():
        words = line.strip().split()
        if words[:1] == ["export"]:
            exported |= {w.split("=", 1)[0] for w in words[1:] if re.match(r"[A-Z_][A-Z0-9_]*(=|$)", w)}
    return ScriptVariables(read, bare - assigned, exported)


# --- Requirement locks ------------------------------------------------------------------------


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """name: version of a uv pip compile output."""
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if match:
            pins[normalize(match[1])] = match[2]
    return pins


def requirement_name(requirement: str) -> str:
    return normalize(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)[1])


# --- .dockerignore ----------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out, i = out[:-2] + "(?:.*/)?", i + 1
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignore_rules(path: Path) -> list[tuple[bool, re.Pattern, str]]:
    """(exclude?, regex, pattern) of a .dockerignore, in order."""
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:] if negated else line
        pattern = pattern.strip().strip("/")
        rules.append((not negated, _pattern_regex(pattern), line))
    return rules


def is_ignored(rules, relative: str) -> bool:
    """Whether the build context leaves out a path: the last rule matching it or a parent wins."""
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for exclude, regex, _ in rules:
        if any(regex.match(candidate) for candidate in candidates):
            ignored = exclude
    return ignored
