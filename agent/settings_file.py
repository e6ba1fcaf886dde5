"""Reading `postflight.yaml`: `${VAR}` expansion, and errors a person can act on.

A missing or unreadable file, bad YAML, a duplicate key, an unset variable and every validation
error become `ConfigProblem`s with a field path and, where known, the file line.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import SettingsError

from agent.settings import (
    NAME_PATTERN,
    OVERRIDE_PREFIX,
    Settings,
    cross_checks_in_document,
    environment_overrides,
    settings_from_document,
)
from agent.settings_keys import holds, suggestion
from agent.settings_units import bare_millisecond_warnings
from agent.windows.timeout_waits import latency_bound_warnings
from agent.windows.unjudged import failure_limit_warnings, min_samples_warnings
from common.words import closest, counted, name_refused

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    loc: Loc
    message: str
    line: int | None = None
    column: int | None = None
    variable: str | None = None  # the environment override the value came from

    @property
    def path(self) -> str:
        return format_loc(self.loc)

    def __str__(self) -> str:
        where = f"{self.path or '(top level)'}"
        if self.variable is not None:
            where += f" (from ${self.variable})"
        elif self.line is not None and self.column is not None:
            where += f" (line {self.line}, column {self.column})"
        elif self.line is not None:
            where += f" (line {self.line})"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; `problems` says every reason."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        # in the file's order, to be read top to bottom; those from variables last
        self.problems = sorted(problems, key=_file_order)
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        head = f"{self.source}: {counted(count, 'configuration error')}"
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


def _file_order(problem: ConfigProblem) -> tuple[bool, int]:
    return problem.line is None, problem.line or 0


def format_loc(loc: Loc) -> str:
    """`environments.production.checks[0]`; a key with a character that does not print
    (`"prod\\n"`, an escape sequence) quoted and escaped, so that an error stays one line
    and writes nothing to the terminal but text."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            key = part if part.isprintable() else repr(part)
            text += f".{key}" if text else key
    return text


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader without YAML 1.1's base-60 numbers and timestamps: `window:
    1:30` was the number 90 (seconds, where the writer may have meant 1h30m), a header
    value `10:30` the number 37800, and `expect: {json: {released: 2024-01-01}}` a date,
    which no JSON holds (every run of the check crashed, "Object of type date is not
    JSON serializable"). As in YAML 1.2, they are text: a duration written so is an error
    saying what to write, and text stays the text written."""


_NUMBERS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_DROPPED = (*_NUMBERS, "tag:yaml.org,2002:timestamp")
ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag not in _DROPPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# PyYAML's own int and float patterns (resolver.py), less their base-60 alternatives
ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(
        r"""^(?:[-+]?0b[0-1_]+
        |[-+]?0[0-7_]+
        |[-+]?(?:0|[1-9][0-9_]*)
        |[-+]?0x[0-9a-fA-F_]+)$""",
        re.X,
    ),
    list("-+0123456789"),
)
ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
        |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


class FastConfigLoader(getattr(yaml, "CSafeLoader", ConfigLoader)):  # type: ignore[misc]
    """`ConfigLoader`'s reading with libyaml's parser where PyYAML has it (`CSafeLoader`:
    the same nodes and constructor), their implicit tags resolved by `ConfigLoader`'s
    resolvers (no base 60, no dates). A file of 500 environments took 1.3 s of CPU to
    parse in Python, and it was parsed twice (`bench/validate_config_size.py`)."""

    yaml_implicit_resolvers = ConfigLoader.yaml_implicit_resolvers


def _composed(text: str) -> tuple[yaml.Node | None, ConfigLoader]:
    """The document's nodes, and the loader to build its values with: libyaml's parser,
    or PyYAML's own for a text it refuses, whose errors the hints are written for (a tab
    is "found character '\\t' that cannot start any token" there, with no character in
    libyaml's words)."""
    loader = FastConfigLoader(text)
    try:
        return loader.get_single_node(), loader
    except yaml.YAMLError as exc:
        if "nesting depth" in str(exc):  # libyaml's bound, 1000 levels: past the stack's
            raise
    finally:
        loader.dispose()
    python = ConfigLoader(text)
    try:
        return python.get_single_node(), python
    except RecursionError:  # its composer recurses a level a list or mapping
        raise yaml.YAMLError(f"nested more than {MAX_NESTING} lists or mappings deep") from None
    finally:
        python.dispose()


MAX_NESTING = 64
"""The deepest a document's lists and mappings may nest: a configuration's go about 8
deep. Each walk of the document recurses a level a list or mapping, so `[[[…]]]` 900 deep
(libyaml reads up to 1000) overflowed Python's stack in them: a traceback, exit 1."""


def _nested_too_deep(root: yaml.Node) -> ConfigProblem | None:
    """The first list or mapping nested past `MAX_NESTING`, at its line; walked with a
    stack of its own, not Python's (an alias's node is walked once)."""
    seen: set[int] = set()
    pending: list[tuple[yaml.Node, Loc, int]] = [(root, (), 1)]
    while pending:
        node, loc, depth = pending.pop()
        if id(node) in seen or not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            continue
        seen.add(id(node))
        if depth > MAX_NESTING:
            message = (
                f"nested more than {MAX_NESTING} lists or mappings deep; a configuration"
                " nests a few (write the value flatter)"
            )
            return ConfigProblem(loc[:8], message, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            children = [((*loc, str(k.value)), v) for k, v in node.value]
        else:
            children = [((*loc, i), v) for i, v in enumerate(node.value)]
        pending += [(child, at, depth + 1) for at, child in reversed(children)]
    return None


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """Valid settings and what in them is allowed but likely unmeant (alerts that reach
    no channel), each at its path and line: `validate-config` prints them, `run` logs them."""

    settings: Settings
    warnings: tuple[ConfigProblem, ...] = ()


STDIN_SOURCE = "(standard input)"
"""What a configuration read from `-` is called in messages."""


def load_settings(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Settings:
    """Read, expand and validate a configuration file; raise `ConfigError`."""
    return load_config(path, env).settings


def load_config(
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    *,
    checks_of: str | None = None,
) -> LoadedConfig:
    """`load_settings` with the configuration's warnings. A path `-` is standard input,
    as most tools read it (`envsubst < t.yaml | postflight validate-config -`).
    `checks_of`: only what `postflight check` reads of that environment (`_checks_part`)."""
    source = STDIN_SOURCE if str(path) == "-" else str(path)
    if not source.strip():  # `--config "$PF_CONFIG"` with the variable unset
        message = "the configuration's path is empty (is the variable that gives it unset?)"
        raise ConfigError("(no path)", [ConfigProblem((), message)])
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, [ConfigProblem((), f"file not found: {source}")]) from None
    except IsADirectoryError:
        raise ConfigError(source, [ConfigProblem((), f"{source} is a directory")]) from None
    except OSError as exc:
        why = (exc.strerror or str(exc)).lower()
        raise ConfigError(source, [ConfigProblem((), f"cannot read {source}: {why}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [_not_utf8(data, exc)]) from None
    return load_config_text(text, source=source, env=env, checks_of=checks_of)


def _not_utf8(data: bytes, exc: UnicodeDecodeError) -> ConfigProblem:
    """Where the first byte that is not UTF-8 is (a file saved as Latin-1 or UTF-16),
    as a line and column rather than the decoder's byte offset."""
    line_start = data.rfind(b"\n", 0, exc.start) + 1
    line = data.count(b"\n", 0, exc.start) + 1
    column = len(data[line_start : exc.start].decode("utf-8", errors="replace")) + 1
    message = (
        f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        " (a configuration is UTF-8 YAML)"
    )
    return ConfigProblem((), message, line, column)


EXTENSION_PREFIX = "x-"
"""A top-level key starting with it is the file's own (anchors to share), not a section."""


def load_settings_text(
    text: str, *, source: str = "<config>", env: Mapping[str, str] | None = None
) -> Settings:
    return load_config_text(text, source=source, env=env).settings


def load_config_text(
    text: str,
    *,
    source: str = "<config>",
    env: Mapping[str, str] | None = None,
    checks_of: str | None = None,
) -> LoadedConfig:
    environ = os.environ if env is None else env
    try:
        node, loader = _composed(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [_yaml_problem(exc, text)]) from None
    swollen = None if node is None else _nested_too_deep(node) or _swollen_by_aliases(node)
    if swollen is not None:
        raise ConfigError(source, [swollen])
    looped = _alias_inside_itself(node, text) if node is not None else None
    if looped is not None:
        raise ConfigError(source, [looped])
    lines = _line_index(node) if node is not None else {}
    # the walks of the nodes come first: building the values merges `<<` keys into them
    duplicates = _duplicate_keys(node) if node is not None else []
    try:
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [_yaml_problem(exc, text)]) from None
    if data is None:  # empty, comments only, or `---`: no line holds anything
        data, lines = {}, {}
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigProblem((), "the file must hold a mapping of sections")])
    # `1:`, `null:`, `true:` are keys YAML reads as other things than text: unknown keys,
    # said as written (as keywords of the settings they were a TypeError)
    data = {key if isinstance(key, str) else _as_written(key): v for key, v in data.items()}
    # docker-compose's extension keys: a top-level `x-…` holds what YAML anchors share
    # (`x-http: &http {type: http}`, merged in with `<<: *http`), read only through them;
    # it was an unknown key, which made a file with anchors unusable
    data = {key: v for key, v in data.items() if not key.startswith(EXTENSION_PREFIX)}
    # the YAML loader keeps the last of two equal keys; a config that says one thing
    # twice is reported, with the rest of its errors, instead of silently using one
    problems: list[ConfigProblem] = []
    if checks_of is None:
        expanded = _expand(data, (), environ, problems, lines)
        overrides, origins = _overrides(environ, problems)
    else:  # the overrides first: one may add the environment the file lacks
        from_variables: list[ConfigProblem] = []
        overrides, origins = _overrides(environ, from_variables)
        data = _checks_part(data, checks_of, overrides)
        overrides = _overridden_checks_part(overrides, checks_of)
        expanded = _expand(data, (), environ, problems, lines)
        problems += [p for p in from_variables if _read_by_checks(p.loc, checks_of)]
    _replacing_values(expanded, origins)
    # the file's `${VAR}` an override replaces is never read: its variable need not be set
    problems = [p for p in problems if p.variable is not None or origins.variable(p.loc) is None]
    document = _merged(expanded, overrides)
    try:
        settings = settings_from_document(document)
    except ValidationError as exc:
        found = _problems(exc, document, lines, origins)
        said = {(p.loc, p.message) for p in found}
        found += [  # the checks of two keys a field's error kept from running
            _located(loc, message, lines, origins)
            for loc, message in cross_checks_in_document(document)
            if (loc, message) not in said
        ]
        # an unset variable or an override that cannot be read is said beside every other
        # error, not alone; what fails at its key or below is that same error
        unread = [p.loc for p in problems]
        found = [p for p in found if not any(p.loc[: len(u)] == u for u in unread)]
        found = _naming_empty_variables(found, data, document, environ)
        found = _environments_added_by_a_variable(found, expanded, overrides, origins)
        secrets = _secret_variables(data, environ)
        raise ConfigError(source, _hidden([*duplicates, *problems, *found], secrets)) from None
    if duplicates or problems:
        raise ConfigError(
            source, _hidden([*duplicates, *problems], _secret_variables(data, environ))
        )
    warnings = [
        _located(loc, message, lines, origins)
        for loc, message in [
            *settings.token_warnings(),
            *settings.link_warnings(),
            *settings.integration_warnings(),
            *settings.store_warnings(),
            *settings.alert_routing_warnings(),
            *settings.channel_warnings(),
            *settings.baseline_warnings(),
            *settings.rule_warnings(),
            *latency_bound_warnings(settings),
            *min_samples_warnings(settings),
            *failure_limit_warnings(settings),
            *bare_millisecond_warnings(document),
        ]
    ]
    settings = settings.with_variable_secrets(_secret_variables(data, environ))
    return LoadedConfig(settings, tuple(sorted(warnings, key=_file_order)))


class UnknownEnvironment(Exception):
    """`checks_of` names no environment of the file; `known`: those it has."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name, known)
        self.name = name
        self.known = known


CHECKS_UNREAD = frozenset({"rules", "baseline", "rollback", "alerts", "sources", "gate"})
"""An environment's keys `postflight check` does not read (it runs the checks alone, and
`baseline` is where the providers' baselines are read from)."""
_UNREAD_SERVER = {"api_tokens": ["postflight-check-reads-no-server"]}
"""The server section `postflight check` stands in: it serves nothing, so the file's
(its `${POSTFLIGHT_API_TOKEN}`) is not read."""


def _checks_part(document: dict[str, Any], name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """What `postflight check --env NAME` reads of the file: that environment's checks and
    what runs them, not the other environments, its rules, rollback and alerts, nor the
    server, store, providers, alerting and integrations: it demanded every `${VAR}` of the
    file be set, a CI smoke step the whole daemon's secrets. A NAME that is none of
    `run`'s environments (`_environment_names`) is `UnknownEnvironment`."""
    environments = document.get("environments", {})
    if not isinstance(environments, dict):
        return document  # an error of its own, said as the whole file's
    part: dict[str, Any] = {"server": _UNREAD_SERVER, "environments": {}}
    known = _environment_names(environments, overrides)
    if name not in known:
        raise UnknownEnvironment(name, known)
    if name in environments:
        part["environments"][name] = _checks_read(environments[name])
    return part


def _environment_names(in_file: dict[str, Any], overrides: dict[str, Any]) -> list[str]:
    """The environments' names as `run` has them (`_merged`): the file's, then those the
    `POSTFLIGHT__…` variables add, each as its variable wrote it (`…__EU_WEST__…` adds
    `eu_west`); one a variable's name matches as the README says (case-blind, `_` for a
    `-`) is the file's. `check --env STAGING` for the `staging` a variable added passed
    this and then failed with a KeyError, exit 1."""
    names = [str(key) for key in in_file]
    added = overrides.get("environments")
    if isinstance(added, dict):
        blind = {_blind(n) for n in names}
        names += [str(key) for key in added if _blind(key) not in blind]
    return names


def _overridden_checks_part(overrides: dict[str, Any], name: str) -> dict[str, Any]:
    """`_checks_part` of the `POSTFLIGHT__…` variables' document (their names case-blind)."""
    environments = overrides.get("environments")
    if not isinstance(environments, dict):
        return {}
    for key, env in environments.items():
        if _blind(key) == _blind(name):
            return {"environments": {key: _checks_read(env)}}
    return {}


def _checks_read(env: Any) -> Any:
    """An environment's table less what `postflight check` does not read (`CHECKS_UNREAD`);
    a value that is no table is kept, for its own error."""
    if not isinstance(env, dict):
        return env
    return {key: value for key, value in env.items() if key not in CHECKS_UNREAD}


def _read_by_checks(loc: Loc, name: str) -> bool:
    """Whether a problem at `loc` is in what `postflight check --env NAME` reads."""
    if not loc or loc[0] not in Settings.model_fields:
        return True  # the file's as a whole, or a section that does not exist
    if loc[0] != "environments" or len(loc) < 2:
        return False
    return _blind(loc[1]) == _blind(name) and (len(loc) < 3 or loc[2] not in CHECKS_UNREAD)


def _environments_added_by_a_variable(
    found: list[ConfigProblem], expanded: Any, overrides: dict[str, Any], origins: _Origins
) -> list[ConfigProblem]:
    """The keys an environment lacks, said once at it, when the file has no such
    environment and a variable's key in it added one (`…__PROD__WINDOW` beside the file's
    `production`): "environments.prod.base_url: required, but missing" blamed the variable
    for a key it never named. An environment a variable sets whole (JSON) is meant."""
    added = overrides.get("environments")
    in_file = expanded.get("environments") if isinstance(expanded, dict) else None
    if not isinstance(added, dict) or not isinstance(in_file, dict):
        return found
    names = [str(key) for key in in_file]
    out = list(found)
    for name in added:
        loc: Loc = ("environments", name)
        variable = origins.section(loc)
        if _blind(name) in {_blind(n) for n in names} or variable is None:
            continue
        if origins.variable(loc) is not None:  # set whole, as JSON
            continue
        missing = [
            p
            for p in found
            if len(p.loc) == 3 and p.loc[:2] == loc and p.message.startswith("required, but")
        ]
        if not missing:
            continue
        meant = closest(name, names, cutoff=0.5)
        hint = f"did you mean {meant}?" if meant else f"its environments: {', '.join(names)}"
        keys = ", ".join(str(p.loc[2]) for p in missing)
        message = (
            f"the file has no environment {name!r} ({hint}), so this variable adds one,"
            f" which lacks {keys}; check the variable's spelling"
        )
        # its other errors (a rollback without its url) follow from the same slip; a
        # value a variable wrote there that is wrong in itself (`…__INTERVAL=30 sec`)
        # is its own error, said beside it (it was dropped, found only once this was fixed)
        at = next(i for i, p in enumerate(out) if p.loc[:2] == loc)  # said first
        out = [p for p in out if p.loc[:2] != loc or origins.variable(p.loc) is not None]
        out.insert(at, ConfigProblem(loc, message, variable=variable))
    return out


_ANY_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
_SECRET_NAME_PART = re.compile(r"(TOKEN|SECRET|PASS|PASSWD|PASSWORD|PASSPHRASE|KEY|CREDENTIAL)S?")
MIN_VARIABLE_SECRET = 8
"""A shorter value read from a secret-named variable is not hidden: every run of those
characters in every message would be (`smoke` in "type smoke")."""


def _hidden(problems: list[ConfigProblem], secrets: list[str]) -> list[ConfigProblem]:
    """`problems` with no value of a secret-named variable quoted (`timeout: ${API_TOKEN}`
    said "'…' is not a duration"), as a check's failure, an alert and the API hide it."""
    longest_first = sorted(set(secrets), key=len, reverse=True)
    out = []
    for problem in problems:
        message = problem.message
        for secret in longest_first:
            message = message.replace(secret, "***")
        out.append(replace(problem, message=message))
    return out


SECRET_KEYS = frozenset(
    {"api_tokens", "named_tokens", "view_secret", "token", "api_key", "secret", "webhook_secret"}
)
"""The keys whose values are secrets (`SecretStr` settings): a variable they read is one,
whatever its name."""


def _secret_variables(data: Any, environ: Mapping[str, str]) -> list[str]:
    """The values of the variables the file reads that are named as secrets
    (`HEALTH_TOKEN`, `SMOKE_PASSWORD`, `API_KEY`: a part of the name between `_`s), or
    read by a secret key (`SECRET_KEYS`): a `${HEALTH_TOKEN}` in a check's path or body is
    no SecretStr, and a failure quoted it (`GET /health?key=…`) in `check`, alerts and the
    API; a `rollback.secret` variable also read by mistake by `interval` was quoted by
    its error."""
    found: list[str] = []

    def walk(node: Any, secret: bool = False) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(key)
                walk(value, secret or (isinstance(key, str) and key in SECRET_KEYS))
        elif isinstance(node, list):
            for item in node:
                walk(item, secret)
        elif isinstance(node, str) and "${" in node:
            for name in _ANY_REFERENCE.findall(node):
                value = environ.get(name, "")
                parts = name.upper().split("_")
                if len(value) >= MIN_VARIABLE_SECRET and (
                    secret or any(_SECRET_NAME_PART.fullmatch(part) for part in parts)
                ):
                    found.append(value)

    walk(data)
    return found


_YAML_HINTS = (
    ("cannot start any token", "'\\t'", "indent with spaces; YAML does not allow tabs"),
    (
        "mapping values are not allowed",
        "",
        "quote a value that contains ': ' (\"a: b\"), or check this line's indentation",
    ),
    ("could not find expected ':'", "", "a key needs ': ' after it; check the line above too"),
    ("expected <block end>", "", "check the indentation: entries of one block line up"),
    ("expected ',' or ']'", "", "close the list with ] (or quote a value with commas)"),
    ("expected ',' or '}'", "", "close the mapping with } (or quote a value with commas)"),
    ("found unexpected end of stream", "", "a quote or bracket is never closed"),
    ("found undefined alias", "", "quote values that start with *"),
    ("cannot start any token", "", "quote values that start with @, ` or %"),
    ("nesting depth", "", "a configuration's lists and mappings are nested a few deep"),
)


def _yaml_problem(exc: yaml.YAMLError, text: str = "") -> ConfigProblem:
    """Where the YAML broke (line and column, 1-based) and a hint at the usual cause."""
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, int):
        # PyYAML says these in two lines, at a `position` in the text
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        message = (
            f"invalid YAML: a control character (#x{exc.character:04x}) YAML does not allow;"
            " remove it"
        )
        return ConfigProblem((), message, line, column)
    mark = getattr(exc, "problem_mark", None)
    problem = str(getattr(exc, "problem", None) or exc).strip()
    context = getattr(exc, "context", None)
    message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    reference = _unquoted_reference(text, mark) if mark is not None else None
    if reference is not None:  # `[${TOKEN}]`: the `{` opened a mapping
        message += (
            f"; hint: inside [ ] or {{ }} a ${{VAR}} reference must be quoted;"
            f' quote it: "{reference}"'
        )
    elif "'\\t'" in problem and mark is not None and _tab_after_text(text, mark):
        # `window:<TAB>30s`: not an indentation, so "indent with spaces" misled
        message += "; hint: replace the tab with a space; YAML does not allow tabs here"
    else:
        for needle, also, hint in _YAML_HINTS:
            if needle in problem and also in problem:
                message += f"; hint: {hint}"
                break
    if mark is None:
        return ConfigProblem((), message)
    return ConfigProblem((), message, mark.line + 1, mark.column + 1)


def _tab_after_text(text: str, mark: Any) -> bool:
    """Whether the tab the parser stopped at follows something on its line."""
    lines = text.splitlines()
    if not 0 <= mark.line < len(lines):
        return False
    return bool(lines[mark.line][: mark.column].strip())


def _unquoted_reference(text: str, mark: Any) -> str | None:
    """The `${NAME…}` reference whose `{` the YAML parser stopped at, if it did: a bare
    reference in a flow list or mapping reads as a mapping. Only a well-formed reference
    is quoted back, by its name (never its default, which may be a secret)."""
    lines = text.splitlines()
    if not 0 <= mark.line < len(lines):
        return None
    line, at = lines[mark.line], mark.column
    if at < 1 or line[at - 1 : at + 1] != "${":
        return None
    end = _closing_brace(line, at + 1)
    match = _REFERENCE.fullmatch(line[at + 1 : end]) if end is not None else None
    if match is None:
        return None
    default = ":-…" if match.group(2) is not None else ""  # a default may be a secret
    return f"${{{match.group(1)}{default}}}"


def _expand(
    node: Any,
    loc: Loc,
    environ: Mapping[str, str],
    problems: list[ConfigProblem],
    lines: dict[Loc, int],
) -> Any:
    """Expand `${VAR}` / `${VAR:-default}` in string values; `$$` is a literal `$`.

    A default may hold references itself (`${A:-${B:-x}}`, as in a shell or Compose).
    Keys are not expanded: a reference in one is an error at that key, not a name like
    `${ENV}` that then fails for a reason the user cannot see.
    """
    if isinstance(node, dict):
        out: dict[Any, Any] = {}
        for key, value in node.items():
            at = (*loc, str(key))
            if isinstance(key, str) and "$" in key:
                key = _expand_key(key, at, problems, lines)
            out[key] = _expand(value, at, environ, problems, lines)
        return out
    if isinstance(node, list):
        return [_expand(v, (*loc, i), environ, problems, lines) for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node

    def report(message: str) -> None:
        problems.append(ConfigProblem(loc, message, lines.get(loc)))

    bare = _BARE_NAME.fullmatch(node.strip())
    if bare is not None:  # `token: $SENTRY_AUTH_TOKEN`: meant as the variable, a shell's way
        name = bare.group(1)
        report(
            f"${name} is not read from the environment: write ${{{name}}}"
            f" (or $${name} for the text itself)"
        )
        return node
    return _interpolate(node, environ, report)


_BARE_NAME = re.compile(r"\$([A-Z_][A-Z0-9_]+)")
"""A whole value that is a shell's `$NAME`: never a secret as written, nearly always a
reference without its braces (a literal `$` elsewhere in a value stays text)."""


_NOT_A_REFERENCE = "`${` starts no ${NAME} reference (write $${ for a literal ${)"
_REFERENCE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_SHELL_FORM = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(:?[-=?+])")


MAX_DEFAULT_NESTING = 16
"""The deepest `${A:-${B:-…}}` defaults may nest: a fallback chain names a few variables,
and each level is read by a call of its own (3000 overflowed the stack: a traceback)."""


def _interpolate(
    text: str, environ: Mapping[str, str], report: Callable[[str], None], depth: int = 0
) -> str:
    """`text` with its references replaced; each broken one is reported (never quoted:
    the text may be a secret) and left as written."""
    if depth > MAX_DEFAULT_NESTING:
        report(
            f"its ${{NAME:-default}} defaults nest more than {MAX_DEFAULT_NESTING} deep"
            " (a default holding a reference holding …); name fewer fallbacks"
        )
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        start = text.find("$", i)
        if start < 0:
            out.append(text[i:])
            break
        out.append(text[i:start])
        after = text[start + 1 : start + 2]
        if after == "$":
            out.append("$")
            i = start + 2
            continue
        if after != "{":
            out.append("$")
            i = start + 1
            continue
        end = _closing_brace(text, start + 2)
        body = text[start + 2 : end] if end is not None else text[start + 2 :]
        match = _REFERENCE.fullmatch(body) if end is not None else None
        if match is None or end is None:
            shell = _SHELL_FORM.match(body)
            if shell is not None:  # `${NAME-x}`, `${NAME:?x}`: meant as one, not read as one
                name, operator = shell.groups()
                report(
                    f"`${{{name}{operator}…}}`: only ${{NAME}} and ${{NAME:-default}} are read;"
                    f" {_NOT_A_REFERENCE}"
                )
            else:
                report(_NOT_A_REFERENCE)
            out.append("${")
            i = start + 2
            continue
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is not None:
                out.append(_interpolate(default, environ, report, depth + 1))
            else:
                report(f"environment variable {name} is not set")
        else:
            out.append(value)
        i = end + 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int | None:
    """The index of the `}` that closes a `${` whose body starts at `start`; braces
    inside (a nested reference, a default like `{a}`) pair up first."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _expand_key(key: str, loc: Loc, problems: list[ConfigProblem], lines: dict[Loc, int]) -> str:
    """A key with `$$` unescaped; a `${` in it is an error (keys are not expanded)."""
    if "${" in key.replace("$$", ""):
        message = (
            "`${` in a key: variables are expanded only in values; write the key itself"
            " (or $${ for a literal ${)"
        )
        problems.append(ConfigProblem(loc, message, lines.get(loc)))
        return key
    return key.replace("$$", "$")


@dataclass(frozen=True, slots=True)
class _Origins:
    """Which `POSTFLIGHT__…` variable set which path, so that an error in a value from
    the environment names its variable instead of an unrelated line of the file."""

    values: dict[Loc, str]  # a value (not a section) from a variable, all of it below too
    sections: dict[Loc, str]  # a section or map a variable added keys to
    # both keyed by the variable's words, lower case: `…__PROD__…` set the file's `Prod`
    # (`_merged`), and an error there is said at `environments.Prod`

    def variable(self, loc: Loc) -> str | None:
        """The variable that set the value at `loc`, if one did."""
        blind = _case_blind(loc)
        for cut in range(1, len(blind) + 1):
            if blind[:cut] in self.values:
                return self.values[blind[:cut]]
        return None

    def section(self, loc: Loc) -> str | None:
        """The variable that added keys to the section or map at `loc`, if one did."""
        return self.sections.get(_case_blind(loc))


def _case_blind(loc: Loc) -> Loc:
    return tuple(_blind(part) if isinstance(part, str) else part for part in loc)


def _blind(key: object) -> str:
    """A key as a variable's name can write it: case-blind, and `_` for a `-` (a shell
    variable's name cannot hold a `-`: `…__EU_WEST__…` sets the file's `eu-west`)."""
    return str(key).lower().replace("-", "_")


def _origins(name: str, node: Any, loc: Loc, origins: _Origins) -> None:
    if isinstance(node, dict):
        if loc:
            origins.sections.setdefault(_case_blind(loc), name)
        for key, value in node.items():
            _origins(name, value, (*loc, str(key)), origins)
    elif len(name) > len(origins.values.get(_case_blind(loc), "")):  # the most specific wins
        origins.values[_case_blind(loc)] = name


def _overrides(
    environ: Mapping[str, str], problems: list[ConfigProblem]
) -> tuple[dict[str, Any], _Origins]:
    """What the `POSTFLIGHT__…` variables set, and which set what. Each is read alone
    first, so that a value that is not the JSON its setting needs, or an error in what
    it set, is a problem naming that variable; the others still apply."""
    variables = {k: v for k, v in environ.items() if k.upper().startswith(OVERRIDE_PREFIX)}
    readable: dict[str, str] = {}
    origins = _Origins({}, {})
    for name, value in sorted(variables.items()):
        parts = name[len(OVERRIDE_PREFIX) :].lower().split("__")
        index = next((i for i, part in enumerate(parts) if part.isdigit()), None)
        if index is not None:  # pydantic-settings cannot reach into a list
            whole = OVERRIDE_PREFIX + "__".join(parts[:index]).upper()
            message = (
                f"a list is set whole, as JSON (e.g. {whole}='[...]'), not one item by its index"
            )
            problems.append(ConfigProblem(tuple(parts[:index]), message, variable=name))
            continue
        if "" in parts[1:]:  # `POSTFLIGHT__SERVER__=…`: was an unknown key `server.`
            loc = tuple(parts[: parts.index("", 1)])
            message = "a key's name is empty (one `_` too many between two names?)"
            problems.append(ConfigProblem(loc, message, variable=name))
            continue
        section = parts[0]
        if section not in Settings.model_fields:  # pydantic-settings would skip it unsaid
            sections = ", ".join(Settings.model_fields)
            message = f"unknown section (check the variable's spelling; sections: {sections})"
            problems.append(ConfigProblem((section,), message, variable=name))
            continue
        if len(parts) == 1 and value.strip() == "null":  # pydantic-settings dropped it unsaid
            message = 'should be a JSON object ({"key": "value"}), not a single value or a list'
            problems.append(ConfigProblem(tuple(parts), message, variable=name))
            continue
        if _json_depth(value) > MAX_NESTING:  # json.loads overflowed the stack: a traceback
            loc = tuple(name[len(OVERRIDE_PREFIX) :].lower().split("__"))
            message = (
                f"its JSON nests more than {MAX_NESTING} lists or objects deep; a"
                " configuration's are nested a few deep"
            )
            problems.append(ConfigProblem(loc, message, variable=name))
            continue
        repeated = _key_given_twice(value)
        if repeated is not None:  # the file's is an error too; json.loads kept the last
            loc = tuple(name[len(OVERRIDE_PREFIX) :].lower().split("__"))
            message = f"the key {repeated!r} is given twice in one object; give it once"
            problems.append(ConfigProblem(loc, message, variable=name))
            continue
        try:
            _origins(name, environment_overrides({name: value}), (), origins)
        except SettingsError as exc:
            loc = tuple(name[len(OVERRIDE_PREFIX) :].lower().split("__"))
            cause = exc.__cause__ or exc
            message = (
                f"not valid JSON ({cause}); a section, list or map set from the environment"
                """ is written as JSON, e.g. '["a", "b"]' or '{"key": "value"}'"""
                if isinstance(cause, json.JSONDecodeError)
                else f"cannot be read: {cause}"
            )
            problems.append(ConfigProblem(loc, message, variable=name))
            continue
        readable[name] = value
    return environment_overrides(readable), origins


def _json_depth(text: str) -> int:
    """How deep the lists and objects of `text`, read as JSON, nest (brackets inside
    strings are text), counted without reading it: the reading itself recurses."""
    depth = deepest = 0
    quoted = escaped = False
    for char in text:
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


class _GivenTwice(ValueError):
    """A JSON object that gives its key `args[0]` twice."""


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _GivenTwice(key)
        seen.add(key)
    return dict(pairs)


def _key_given_twice(value: str) -> str | None:
    """The first key an object of `value`, read as JSON, gives twice (None when it is not
    JSON or gives each once): an override's `{"listen": …, "listen": …}` was read as its
    last, where the file's duplicate key is an error."""
    try:
        json.loads(value, object_pairs_hook=_once_each)
    except _GivenTwice as exc:
        return str(exc.args[0])
    except (ValueError, RecursionError):
        return None
    return None


def _replacing_values(document: dict[str, Any], origins: _Origins) -> None:
    """A map from a variable where the file has a list or a value (`…__API_TOKENS='{}'`,
    `…__LISTEN__PORT=1`) replaces it, not merges into it: an error there is the
    variable's, not the file line's."""
    for loc, name in origins.sections.items():
        node: Any = document
        for part in loc:  # variable names are case-blind, as in `_merged`
            if not isinstance(node, dict):
                break
            node = next((v for k, v in node.items() if _blind(k) == part), None)
        if node is not None and not isinstance(node, dict) and loc not in origins.values:
            origins.values[loc] = name


def _merged(document: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`document` with `overrides` on top: maps merge key by key, anything else is replaced."""
    merged = dict(document)
    for key, value in overrides.items():
        if key not in merged:  # variable names are case-blind: `…__PROD__…` sets `Prod`,
            # `…__EU_WEST__…` sets `eu-west`
            key = next((k for k in merged if str(k).lower() == key.lower()), key)
        if key not in merged:
            key = next((k for k in merged if _blind(k) == _blind(key)), key)
        below = merged.get(key)
        if isinstance(value, dict) and isinstance(below, dict):
            merged[key] = _merged(below, value)
        else:
            merged[key] = value
    return merged


def _duplicate_keys(root: yaml.Node) -> list[ConfigProblem]:
    """Every key that repeats one before it in the same mapping, at the repeat's line."""
    problems: list[ConfigProblem] = []
    seen_nodes: set[int] = set()  # an anchored node reached again through an alias

    def walk(node: yaml.Node, loc: Loc) -> None:
        if id(node) in seen_nodes:
            return
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                key = (*loc, str(key_node.value))
                line = key_node.start_mark.line + 1
                same = (key_node.tag, str(key_node.value))
                if same in first:
                    message = f"duplicate key; first at line {first[same]}"
                    problems.append(ConfigProblem(key, message, line))
                else:
                    first[same] = line
                walk(value_node, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*loc, i))

    walk(root, ())
    return problems


def _as_written(key: Any) -> str:
    """A key YAML read as a number, a boolean or null, as it is written (`null`, `true`)."""
    try:
        return json.dumps(key)
    except TypeError:  # a date
        return str(key)


MAX_EXPANDED_VALUES = 100_000
"""The most values a document may hold once its aliases are expanded: a configuration of
hundreds of environments holds tens of thousands. An alias of an alias of … (the "billion
laughs" YAML) multiplies a dozen lines into millions, which every walk of the document
expanded (9**6 values: 10 s and 139 MB; 9**8: more memory than the machine had)."""


def _swollen_by_aliases(root: yaml.Node) -> ConfigProblem | None:
    """The first value, in the file's order, that its aliases expand past
    `MAX_EXPANDED_VALUES`, at its line: counted once a node (an anchored node reached
    again is counted from memory), so the count costs what the file's nodes do."""
    counted: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = counted.get(id(node))
        if known is not None:
            return known
        counted[id(node)] = 0  # within itself: `_alias_inside_itself` says so, after this
        if isinstance(node, yaml.MappingNode):
            total = sum(size(key) + size(value) for key, value in node.value) or 1
        elif isinstance(node, yaml.SequenceNode):
            total = sum(size(item) for item in node.value) or 1
        else:
            total = 1
        counted[id(node)] = total
        return total

    if size(root) <= MAX_EXPANDED_VALUES:
        return None
    node, line = root, root.start_mark.line + 1
    loc: Loc = ()
    parts: list[tuple[Loc, yaml.Node, int]]
    while True:  # down to the first part past the bound whose parts are each within it
        if isinstance(node, yaml.MappingNode):
            parts = [((*loc, str(k.value)), v, k.start_mark.line + 1) for k, v in node.value]
        elif isinstance(node, yaml.SequenceNode):
            parts = [((*loc, i), v, v.start_mark.line + 1) for i, v in enumerate(node.value)]
        else:
            parts = []
        past = next((part for part in parts if size(part[1]) > MAX_EXPANDED_VALUES), None)
        if past is None:
            break
        loc, node, line = past
    message = (
        f"with its aliases this value expands to {size(node):,} values, more than a"
        f" configuration holds (at most {MAX_EXPANDED_VALUES:,}): an alias of an alias of"
        " … multiplies what it names; write out what is meant"
    )
    return ConfigProblem(loc, message, line)


def _alias_inside_itself(root: yaml.Node, text: str) -> ConfigProblem | None:
    """The first alias within the anchor it names (`server: &s {x: *s}`): a value that
    contains itself, which every walk of the document followed for ever (RecursionError)."""
    inside: set[int] = set()
    lines = text.splitlines()

    def walk(node: yaml.Node, loc: Loc, mark: Any) -> ConfigProblem | None:
        if id(node) in inside:
            line = lines[mark.line] if 0 <= mark.line < len(lines) else ""
            alias = re.search(r"\*([^\s,\]}]+)", line[mark.column :])
            said = (
                f"*{alias.group(1)} is inside the &{alias.group(1)} it names"
                if alias
                else ("an alias is inside the anchor it names")
            )
            message = (
                f"{said}: a value that contains itself never ends (copy what is meant instead)"
            )
            return ConfigProblem(loc, message, mark.line + 1)
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            return None
        inside.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    found = walk(value_node, (*loc, str(key_node.value)), key_node.end_mark)
                    if found is not None:
                        return found
            else:
                for i, item in enumerate(node.value):
                    found = walk(item, (*loc, i), node.start_mark)
                    if found is not None:
                        return found
        finally:
            inside.discard(id(node))
        return None

    return walk(root, (), root.start_mark)


def _line_index(root: yaml.Node) -> dict[Loc, int]:
    """Map each key path to the 1-based line where its value starts."""
    index: dict[Loc, int] = {}

    def walk(node: yaml.Node, loc: Loc) -> None:
        index.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = (*loc, str(key_node.value))
                index[key] = key_node.start_mark.line + 1
                walk(value_node, key)
                index[key] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*loc, i))

    walk(root, ())
    return index


def _problems(
    exc: ValidationError, document: Any, lines: dict[Loc, int], origins: _Origins
) -> list[ConfigProblem]:
    problems = []
    # keys a misspelt one was taken for (`projekt` → `project`): their own "required, but
    # missing" is that same slip, said once by the misspelt key's "did you mean"
    misspelt: set[Loc] = set()
    for error in exc.errors(include_url=False, include_input=False):
        loc = _document_loc(error["loc"], document)
        message = error["msg"]
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        pattern = str((error.get("ctx") or {}).get("pattern", ""))
        if error["type"] == "extra_forbidden":
            meant = suggestion(Settings, loc, document)
            hint = f"did you mean {meant}?" if meant else "check its spelling and indentation"
            message = f"unknown key ({hint})"
            if meant:
                misspelt.add((*loc[:-1], meant))
        elif error["type"] == "string_type" and _is_yaml_scalar(_value_at(document, loc)):
            # `org: 1234`, `tags: [on]`: YAML read a number or true/false, not text; the
            # value is not quoted back (it may be a secret)
            what = "true/false" if isinstance(_value_at(document, loc), bool) else "a number"
            message = f"should be text, but YAML reads this unquoted value as {what}: quote it"
        elif (
            error["type"] == "string_type"
            and error["loc"][-1:] != ("[key]",)  # a name YAML read as a number: its own words
            and isinstance(_value_at(document, loc), list | dict)
        ):
            # `secret: [x]`, `api_tokens: [{ci: …}]`: "Input should be a valid string"
            shape = "a list" if isinstance(_value_at(document, loc), list) else "a mapping"
            message = f"should be text, not {shape}"
        elif error["type"] == "float_parsing" and _is_percent_bound(loc, document):
            message = _percent_bound(str(loc[-1]), str(_value_at(document, loc)))
        elif error["type"] == "union_tag_invalid":  # a check's `type` that no plugin has
            ctx = error.get("ctx") or {}
            key = str(ctx.get("discriminator", "")).strip("'")
            loc = (*loc, key)
            message = f"unknown check type {ctx.get('tag')!r} (one of: {_check_types()})"
        elif error["type"] == "missing":
            message = "required, but missing"
            if len(loc) == 1:  # no line holds it: say where it goes
                # no line at all: an empty file (or comments only), not one lacking a section
                message += (
                    f" (the file has no top-level `{loc[0]}:`)" if lines else " (the file is empty)"
                )
        elif error["type"] == "union_tag_not_found":  # a check without its `type`
            key = str((error.get("ctx") or {}).get("discriminator", "")).strip("'")
            loc = (*loc, key)
            message = f"required, but missing (one of: {_check_types()})"
        elif error["type"] == "string_pattern_mismatch" and pattern == NAME_PATTERN:
            # an environment's, a check's or a rule's name: said in words, not as a regex
            keyed = error["loc"][-1:] == ("[key]",)
            message = name_refused(str(loc[-1] if keyed else _value_at(document, loc)))
        elif (
            error["type"] == "string_too_short" and (error.get("ctx") or {}).get("min_length") == 1
        ):
            message = "must not be empty"
        elif error["type"] == "too_short" and (error.get("ctx") or {}).get("min_length") == 1:
            # `environments: {}`: "Dictionary should have at least 1 item after validation,
            # not 0" (`api_tokens: []` is `ServerSettings._some_token`'s, named_tokens too)
            message = "is empty; at least one is needed"
        elif error["type"] == "string_pattern_mismatch" and pattern.startswith("^https?://"):
            message = "not a URL: write it with http:// or https:// and a host"
            scheme = _SCHEME.match(str(_value_at(document, loc) or ""))
            named = scheme.group(1) if scheme is not None else ""
            if named.lower() in ("http", "https"):  # `HTTPS://…`
                message = f"not a URL to call: write its scheme in lower case, {named.lower()}://"
            elif named:  # `ftp://…` is a URL, of a kind not called here; only the scheme
                # is said back (the rest may hold a token)
                message = f"not a URL to call: {named}:// is not http:// or https://"
        elif error["type"] in _PYDANTIC_WORDS and _value_at(document, loc) is not None:
            # "Input should be a valid boolean, …": in words, with the value
            message = _PYDANTIC_WORDS[error["type"]](_value_at(document, loc), error.get("ctx"))
        elif error["type"] == "list_type":  # `tags: oncall` ("Input should be a valid list")
            message = "should be a list: [a, b], or one `- item` a line"
        elif (
            error["type"] == "model_type"
            and loc[:2] == ("alerting", "channels")
            and len(loc) == 3
            and isinstance(_value_at(document, loc), str)
        ):  # `- json://…`, as apprise's own configs list them; never quoted (tokens)
            message = (
                "a channel is written `- url: <apprise URL>` with its `tags: [...]` on the"
                " next line, not the URL alone"
            )
        elif error["type"] in ("model_type", "model_attributes_type", "dict_type"):
            message = "should be a mapping (key: value pairs), not a single value or a list"
        for part_loc, part_message in _split_cross_section(loc, message):
            problems.append(_located(part_loc, part_message, lines, origins))
    return [
        p
        for p in problems
        if not (p.message.startswith("required, but missing") and p.loc in misspelt)
    ]


def _said(value: Any) -> str:
    """A value as the file wrote it: text quoted, a number as is."""
    return repr(value) if isinstance(value, str) else f"{value}"


def _limit(ctx: Any, key: str) -> str:
    return f"{(ctx or {}).get(key)}"


_PYDANTIC_WORDS: dict[str, Callable[[Any, Any], str]] = {
    # pydantic's own words ("Input should be a valid boolean, unable to interpret input")
    # said with the value, for a yes/no or a number written wrong
    "bool_parsing": lambda value, _: f"{_said(value)} is not true or false",
    "bool_type": lambda value, _: f"{_said(value)} is not true or false",
    "int_parsing": lambda value, _: f"{_said(value)} is not a whole number",
    "int_from_float": lambda value, _: f"{_said(value)} is not a whole number",
    "int_type": lambda value, _: f"{_said(value)} is not a whole number",
    "float_parsing": lambda value, _: f"{_said(value)} is not a number",
    "float_type": lambda value, _: f"{_said(value)} is not a number",
    "greater_than_equal": lambda v, ctx: f"must be at least {_limit(ctx, 'ge')} (got {v})",
    "greater_than": lambda v, ctx: f"must be more than {_limit(ctx, 'gt')} (got {v})",
    "less_than_equal": lambda v, ctx: f"must be at most {_limit(ctx, 'le')} (got {v})",
    "less_than": lambda v, ctx: f"must be less than {_limit(ctx, 'lt')} (got {v})",
}


def _located(loc: Loc, message: str, lines: dict[Loc, int], origins: _Origins) -> ConfigProblem:
    """The problem at `loc` with where its value came from: the environment variable
    that set it, else the line of the nearest enclosing key the file has, else the
    variable that added the nearest enclosing section the file lacks."""
    variable = origins.variable(loc)
    if variable is None:
        # the nearest enclosing key's line (a missing key: its mapping's), never the
        # document's first line for a top-level key the file does not have
        for cut in range(len(loc), 0 if loc else -1, -1):
            if loc[:cut] in lines:
                return ConfigProblem(loc, message, lines[loc[:cut]])
            variable = origins.section(loc[:cut])
            if variable is not None:
                break
    if variable is not None:
        message = _in_json_words(message)
    return ConfigProblem(loc, message, variable=variable)


_JSON_WORDS = {  # a value from a variable is JSON: YAML's advice would mislead
    "unknown key (check its spelling and indentation)": (
        "unknown key (check the variable's spelling)"
    ),
    "should be a list: [a, b], or one `- item` a line": 'should be a JSON list (["a", "b"])',
    "should be a mapping (key: value pairs), not a single value or a list": (
        'should be a JSON object ({"key": "value"}), not a single value or a list'
    ),
}
_YAML_SCALAR = re.compile(r"should be text, but YAML reads this unquoted value as (.+): quote it")


def _in_json_words(message: str) -> str:
    """A message about a value from a `POSTFLIGHT__…` variable, in JSON's words."""
    scalar = _YAML_SCALAR.fullmatch(message)
    if scalar is not None:
        return f"should be text, but the JSON has {scalar.group(1)} here: quote it"
    return _JSON_WORDS.get(message, message)


def _split_cross_section(loc: Loc, message: str) -> list[tuple[Loc, str]]:
    """A top-level check that found several errors reports one per line as
    `dotted.path: message`; each becomes its own problem at its own path."""
    if loc or "\n" not in message:
        return [(loc, message)]
    out: list[tuple[Loc, str]] = []
    for item in filter(str.strip, message.splitlines()):
        path, sep, text = item.partition(": ")
        if not sep or " " in path:
            out.append(((), item))
            continue
        parts: list[str | int] = [int(p) if p.isdigit() else p for p in path.split(".")]
        out.append((tuple(parts), text))
    return out


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")

_WHOLE_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^${}]*)?\}")


def _naming_empty_variables(
    found: list[ConfigProblem], data: Any, document: Any, environ: Mapping[str, str]
) -> list[ConfigProblem]:
    """`must not be empty` of a value that is one `${VAR}` the environment sets to "":
    which variable, since the file shows a reference, not an empty value (an exported
    `POSTFLIGHT_API_TOKEN=` read as "must not be empty" of `["${POSTFLIGHT_API_TOKEN}"]`);
    any other error of a value one set variable gave names that variable too."""
    out = []
    for problem in found:
        written = _value_at(data, problem.loc)
        match = _WHOLE_REFERENCE.fullmatch(written) if isinstance(written, str) else None
        if (
            match is not None
            and problem.message == "must not be empty"
            and _value_at(document, problem.loc) == ""
            and problem.variable is None
        ):
            name = match.group(1)
            why = (
                "is set, to nothing" if name in environ else "is not set, and its default is empty"
            )
            message = f"must not be empty (${name} {why})"
            problem = ConfigProblem(problem.loc, message, problem.line, problem.column)
        elif match is not None and environ.get(match.group(1)) and problem.variable is None:
            # the file shows `${PF_WINDOW}`, the message a value it does not
            message = f"{problem.message} (from ${match.group(1)})"
            problem = ConfigProblem(problem.loc, message, problem.line, problem.column)
        out.append(problem)
    return out


def _value_at(document: Any, loc: Loc) -> Any:
    """The document's value at `loc`, None when it has none."""
    node = document
    for part in loc:
        if not holds(node, part):
            return None
        node = node[part]
    return node


def _is_percent_bound(loc: Loc, document: Any) -> bool:
    """`rules[i].max: 5%` (or `min`): a percentage where an absolute bound goes."""
    value = _value_at(document, loc)
    return (
        len(loc) >= 2
        and loc[-1] in ("max", "min")
        and isinstance(loc[-2], int)
        and "rules" in loc
        and isinstance(value, str)
        and value.strip().endswith("%")
    )


def _percent_bound(key: str, text: str) -> str:
    """What to write instead of `max: 5%`: a rate's bound is a fraction."""
    try:
        fraction = f"{float(text.strip()[:-1]) / 100:g}"
    except ValueError:
        fraction = "a fraction"
    return (
        f"{key} is a bound in the metric's own units, not a percentage (a rate is a"
        f" fraction from 0 to 1: write {fraction} for {text.strip()}); % is for max_increase"
    )


def _is_yaml_scalar(value: Any) -> bool:
    """A number or boolean YAML made of an unquoted value."""
    return isinstance(value, bool | int | float)


def _document_loc(raw: tuple[Any, ...], document: Any) -> Loc:
    """Drop the parts of a pydantic loc that are not keys of the file (union tags,
    validator names), so the path reads as the user wrote it."""
    loc: list[str | int] = []
    node = document
    for part in raw:
        if holds(node, part):
            loc.append(part)
            node = node[part]
        elif isinstance(node, dict | list):
            if isinstance(part, str) and ("[" in part or part in _TAG_LIKE or _is_tag(node, part)):
                continue
            loc.append(part)
            node = None
        else:
            loc.append(part)
            node = None
    return tuple(loc)


def _check_types() -> str:
    """The installed check types: the one discriminated union of the settings."""
    from checks.registry import check_types

    return ", ".join(sorted(check_types()))


_TAG_LIKE = frozenset({"function-after", "function-before", "function-wrap"})


def _is_tag(node: Any, part: str) -> bool:
    return isinstance(node, dict) and node.get("type") == part
