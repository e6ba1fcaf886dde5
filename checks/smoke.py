"""The `smoke` check: a short scripted user journey (log in, then use the token), step by step.

Each step is one request with its own expectations and timeout; values
captured by JSONPath feed later steps as `{name}`; cookies carry over within a
run (never between runs or checks). The run stops at the first failing step and
says which step, expected vs got, and the start of the body with secrets hidden.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self

from jsonpath_ng import JSONPath
from pydantic import Field, field_validator, model_validator
from yarl import URL

from checks.base import Check, CheckConfig, CheckContext, CheckResult, Sample
from checks.expect import Body, Expect, Expectation, Mismatch, compile_path
from checks.lag import AGENT_HELD, UNANSWERED
from checks.request import ClientOptions, RequestSpec, join_url, sent_with
from common.durations import PositiveDuration
from common.redaction import SENSITIVE_KEY, Redactor, sensitive_values, snippet
from common.words import counted

if TYPE_CHECKING:  # aiohttp's client (checks.exchange) is imported where a check runs: the
    # settings import this module for its Config alone (validate-config, schema)
    import aiohttp

    from checks.exchange import Reply

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PLACEHOLDER = re.compile(r"\{\{(" + _NAME + r")\}\}|\{(" + _NAME + r")\}")
"""`{token}` is replaced by a captured value; `{{token}}` stands for a literal `{token}`."""
_VAR = re.compile(f"^{_NAME}$")
_SNIPPET = 200
_LIKELY_TOKEN_LEN = 16
"""Captured strings at least this long are treated as secrets even under a plain name."""


class SmokeStep(RequestSpec):
    """One request of the journey."""

    name: str = Field(min_length=1, max_length=64)
    expect: Expect = Field(default_factory=Expect)
    capture: dict[str, str] = Field(
        default_factory=dict,
        description="Variables for later steps: name → JSONPath (`$.token`) or top-level key.",
    )
    timeout: PositiveDuration | None = Field(
        None, description="This step's timeout; default the check's."
    )

    @field_validator("capture")
    @classmethod
    def _valid_capture(cls, value: dict[str, str]) -> dict[str, str]:
        for var, path in value.items():
            if not _VAR.match(var):
                raise ValueError(f"{var!r} is not a variable name (letters, digits, _)")
            compile_path(path)
        return value

    def placeholders(self) -> set[str]:
        """Variables this step's path, URL, headers and body refer to."""
        texts = [self.path, self.url or "", self.body or "", *self.headers.values()]
        texts.extend(_strings(self.json_body))
        return {m.group(2) for t in texts for m in _PLACEHOLDER.finditer(t) if m.group(2)}


class SmokeCheckConfig(ClientOptions, CheckConfig):
    """A `smoke` check as configured under an environment's `checks:`."""

    type: Literal["smoke"] = "smoke"
    steps: list[SmokeStep] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _steps_fit_together(self) -> Self:
        seen: set[str] = set()
        captured: set[str] = set()
        for step in self.steps:
            if step.name in seen:
                raise ValueError(f"two steps are named {step.name!r}")
            seen.add(step.name)
            missing = sorted(step.placeholders() - captured)
            if missing:
                names = ", ".join("{" + m + "}" for m in missing)
                raise ValueError(
                    f"step {step.name!r} uses {names}, which no earlier step captures "
                    "(write {{name}} for literal braces)"
                )
            captured.update(step.capture)
        return self


@dataclass(frozen=True, slots=True)
class _CompiledStep:
    step: SmokeStep
    expectation: Expectation
    captures: tuple[tuple[str, JSONPath, bool], ...]
    """(variable, path, whether its value is a secret)."""
    timeout: aiohttp.ClientTimeout
    label: str


class _StepFailed(Exception):
    """A step got an answer, but not the expected one."""

    def __init__(self, *mismatches: Mismatch, reply: Reply | None = None) -> None:
        super().__init__("; ".join(str(m) for m in mismatches))
        self.mismatches = mismatches
        self.reply = reply


class SmokeCheck(Check):
    """Runs the steps in order over one cookie jar; one sample per step that ran."""

    type = "smoke"
    Config = SmokeCheckConfig
    fits_deadline = True
    config: SmokeCheckConfig

    def __init__(self, config: SmokeCheckConfig) -> None:
        # aiohttp's client only for a check built to run (see the imports), all of it loaded
        # here, before a run: the first probe's clock or the loop-lag count must not see it
        import aiohttp

        import checks.exchange  # noqa: F401

        super().__init__(config)
        self._steps = tuple(
            _CompiledStep(
                step=step,
                expectation=Expectation(step.expect),
                captures=tuple(
                    (var, compile_path(path), bool(SENSITIVE_KEY.search(f"{var} {path}")))
                    for var, path in step.capture.items()
                ),
                timeout=aiohttp.ClientTimeout(
                    total=step.timeout if step.timeout is not None else config.timeout
                ),
                label=f"{step.method} {step.url or step.path}",
            )
            for step in config.steps
        )
        self._body_secrets = tuple(
            value
            for step in config.steps
            for value in (
                *sensitive_values(step.json_body),
                *(v for k, v in step.headers.items() if SENSITIVE_KEY.search(k)),
            )
            if not _PLACEHOLDER.search(value)
        )

    def budget_s(self) -> float:
        return sum(s.timeout.total or 0.0 for s in self._steps)

    async def run(self, ctx: CheckContext) -> CheckResult:
        import aiohttp  # the client only where a check runs: see the imports

        from checks.exchange import ProbeFailed, exchange  # (the same)
        from checks.written import TRACE  # (the same)

        cfg = self.config
        connector = ctx.session.connector
        if connector is None:
            raise RuntimeError("the session lent to this check is closed")
        redactor = Redactor((*ctx.secrets, *self._body_secrets))
        values: dict[str, Any] = {}
        samples: list[Sample] = []
        done: list[dict[str, Any]] = []
        # A session of its own for the cookie jar, over the shared pool's connections.
        async with aiohttp.ClientSession(
            connector=connector,
            connector_owner=False,
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            headers=ctx.session.headers,
            trust_env=False,
            # as the shared pool's: a stall before a step's write, a target's silence at its
            # deadline (`checks.written`, `checks.silence`), judged on a one-step run
            trace_configs=[TRACE],
        ) as session:
            for index, compiled in enumerate(self._steps):
                step = compiled.step
                timeout: aiohttp.ClientTimeout | float = compiled.timeout
                if ctx.deadline is not None:  # the round ends first: no step waits past it
                    left = ctx.deadline - asyncio.get_running_loop().time()
                    if compiled.timeout.total is None or left < compiled.timeout.total:
                        timeout = max(round(left, 3), 0.001)
                try:
                    url, headers, data = _render(step, ctx.base_url, values)
                    request = sent_with(step.method, headers, data, cfg, keep_body=True)
                    reply = await exchange(session, request, url, client_timeout=timeout)
                    body = Body(reply.body)
                    mismatches = compiled.expectation.check(
                        reply.status, reply.headers, body, reply.latency_s, redactor
                    )
                    if mismatches:
                        raise _StepFailed(*mismatches, reply=reply)
                    for var, path, secret in compiled.captures:
                        value = _capture(body, path, var, reply)
                        values[var] = value
                        if secret or (isinstance(value, str) and len(value) >= _LIKELY_TOKEN_LEN):
                            redactor = redactor.with_secrets([_text(value)])
                except ProbeFailed as failed:
                    samples.append(failed.sample(cfg.name, ctx.target))
                    return self._failed(
                        index,
                        failed.kind,
                        failed.message,
                        None,
                        samples,
                        done,
                        redactor,
                        silent_s=failed.silent_s,
                    )
                except _StepFailed as failed:
                    first = failed.mismatches[0]
                    samples.append(
                        failed.reply.sample(cfg.name, first.kind, ctx.target)
                        if failed.reply is not None
                        else Sample(check=cfg.name, ok=False, error=first.kind, target=ctx.target)
                    )
                    return self._failed(
                        index,
                        first.kind,
                        str(failed),
                        failed.reply,
                        samples,
                        done,
                        redactor,
                        expected=first.expected,
                        got=first.got,
                    )
                samples.append(reply.sample(cfg.name, None, ctx.target))
                done.append(_step_summary(step.name, reply))
        total_ms = sum(s["latency_ms"] for s in done)
        return CheckResult(
            check=cfg.name,
            type=self.type,
            ok=True,
            samples=tuple(samples),
            message=f"{counted(len(done), 'step')} passed in {total_ms:.0f}ms",
            details=_lag({"steps": done}, reply),
        )

    def _failed(
        self,
        index: int,
        kind: str,
        what: str,
        reply: Reply | None,
        samples: list[Sample],
        done: list[dict[str, Any]],
        redactor: Redactor,
        silent_s: float | None = None,
        **extra: str,
    ) -> CheckResult:
        """The result of a run stopped at step `index`: which step, what went wrong, the body."""
        compiled = self._steps[index]
        step = compiled.step
        where = f"step {step.name!r} ({index + 1}/{len(self._steps)}) {compiled.label}"
        message = f"{where}: {what}"
        details: dict[str, Any] = {
            "step": step.name,
            "step_index": index,
            "error": kind,
            **extra,
            "steps": done + ([_step_summary(step.name, reply)] if reply is not None else []),
        }
        if reply is not None:
            body = snippet(reply.body, redactor, _SNIPPET)
            details["status"] = reply.status
            details["body"] = body
            if body:
                message += f"; body: {body}"
        _lag(details, reply, silent_s)
        return CheckResult(
            check=self.config.name,
            type=self.type,
            ok=False,
            samples=tuple(samples),
            message=redactor.text(message),
            details=redactor.value(details),
        )


def _lag(
    details: dict[str, Any], reply: Reply | None, silent_s: float | None = None
) -> dict[str, Any]:
    """`details` with what the agent's lag is judged by (`checks.lag.attributed`, on a run
    of one sample: its last step's), as an http check keeps them: how long a stall held
    the step's request back, the target's silence at its timeout."""
    if reply is not None and reply.agent_held_s:  # rounded up, as `checks.http`
        details[AGENT_HELD] = math.ceil(reply.agent_held_s * 1e4) / 1e4
    if silent_s is not None:  # rounded down
        details[UNANSWERED] = math.floor(silent_s * 1e4) / 1e4
    return details


def _step_summary(name: str, reply: Reply) -> dict[str, Any]:
    return {"name": name, "status": reply.status, "latency_ms": round(reply.latency_s * 1000, 3)}


def _capture(body: Body, path: JSONPath, var: str, reply: Reply) -> Any:
    """The first value `path` finds in the body; a failed step when there is none."""
    try:
        doc = body.json()
    except ValueError:
        fail = Mismatch("assertion", f"capture {var}", "a JSON body", "another body")
        raise _StepFailed(fail, reply=reply) from None
    found = path.find(doc)
    if not found:
        fail = Mismatch("assertion", f"capture {var}", f"{path}", "no such field")
        raise _StepFailed(fail, reply=reply)
    return found[0].value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _substitute(text: str, values: dict[str, Any]) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(1):
            return "{" + m.group(1) + "}"
        return _text(values[m.group(2)])

    return _PLACEHOLDER.sub(one, text)


def _substitute_json(value: Any, values: dict[str, Any]) -> Any:
    """Placeholders in JSON strings; a string that is only `{name}` takes the value's own type."""
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole is not None and whole.group(2):
            return values[whole.group(2)]
        return _substitute(value, values)
    if isinstance(value, dict):
        return {k: _substitute_json(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_json(v, values) for v in value]
    return value


def _render(
    step: SmokeStep, base_url: str, values: dict[str, Any]
) -> tuple[URL, dict[str, str], bytes | None]:
    """The URL, headers and body of a step with captured values filled in."""
    url = (
        URL(_substitute(step.url, values))
        if step.url is not None
        else join_url(base_url, _substitute(step.path, values))
    )
    headers = {}
    for name, template in step.headers.items():
        value = _substitute(template, values)
        if "\r" in value or "\n" in value:
            raise _StepFailed(
                Mismatch("assertion", f"header {name}", "a value on one line", "a line break")
            )
        headers[name] = value
    data: bytes | None = None
    if step.json_body is not None:
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        data = json.dumps(_substitute_json(step.json_body, values), separators=(",", ":")).encode()
    elif step.body is not None:
        data = _substitute(step.body, values).encode()
    return url, headers, data


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
