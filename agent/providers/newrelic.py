"""New Relic: the user's NRQL over the period, through NerdGraph.

I/O edge: turns NerdGraph answers into `Observation`s; no judging here.

The user writes NRQL without `SINCE`/`UNTIL`; the agent appends
`SINCE <start ms> UNTIL <end ms>` (epoch milliseconds): the baseline is
`[T0 - lookback, T0)`, the current period `[T0, now)`. New Relic has no default
release attribute, so periods, not releases, separate before from after.

Reading a result row (one row: FACET and TIMESERIES queries are refused, because a
rule needs one number):
- one column: its value (`count`, `average.duration`, `percentage`, a `rate`
  alias); a percentile object `{"95": 0.2}` gives its (first) value; a column named
  `count` also gives the count behind it;
- a column aliased `total` plus one other column: the other is a count and the
  value is their ratio, e.g. `SELECT filter(count(*), WHERE error IS true) AS
  'errors', count(*) AS 'total' FROM Transaction`: counts for the judge's tests;
- a column aliased `value`: the value, with `count`/`errors` and `total` as counts;
- otherwise the first column. Units are the query's own (percentage is 0-100).

Failures: GraphQL `errors` inside an HTTP 200 are a bad query ("NRQL rejected: …",
not retried) unless their `errorClass` is TIMEOUT, INTERNAL_SERVER_ERROR,
SERVER_ERROR or TOO_MANY_REQUESTS (retried, as New Relic's own Go client does), or
they deny the account ("Access denied.": the account id or the key's user, said so).
An HTTP 404 is a wrong `api_url` (NerdGraph answers errors with 200), said so.
Deprecation notices ("This field is deprecated! …") that come with data are
warnings, logged, and the data is used (the Go client's `IsDeprecated`,
internal/http/graphql.go). At most 25 requests are in flight: NerdGraph's per-user
concurrency limit.

Markers: `changeTrackingCreateEvent` (the docs call `changeTrackingCreateDeployment`
legacy) on the entity `baseline.newrelic.entity_guid`, else the APM app named
`baseline.newrelic.app_name` in the configured account (`accountId` is part of the
entity search: the same app name in two accounts would match two entities, and the
mutation would fail). That mutation takes no time (none is shown for it), so a deploy
registered late was marked at its registration: on an entity GUID the deploy marker is
`changeTrackingCreateDeployment` with `timestamp` = `deployed_at` (epoch ms, accepted
within 24 h of now); by app name its description says when the deploy was. A failure is
one message for an alert.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlencode, urlsplit

from pydantic import BaseModel, ConfigDict

from agent.analysis.types import Observation, Rule
from agent.providers.base import DeployScope, Period
from agent.providers.client import (
    Answer,
    HttpProvider,
    Plan,
    ProviderError,
    ProviderUnreachable,
    Redact,
    Retry,
    parse_model,
    period_seconds,
    retry_after_seconds,
)
from agent.providers.provider_settings import NewRelicSettings
from common.times import rfc3339

if TYPE_CHECKING:  # prometheus_client: the daemon's metrics, not the settings' (which load
    # this plugin for its config model alone: validate-config, schema)
    from agent.metrics import Metrics

log = logging.getLogger(__name__)

DEPRECATION_PREFIX = "This field is deprecated!"
"""How NerdGraph words a deprecation warning (newrelic-client-go IsDeprecated)."""
RETRIED_ERROR_CLASSES = frozenset(
    {"TIMEOUT", "INTERNAL_SERVER_ERROR", "SERVER_ERROR", "TOO_MANY_REQUESTS"}
)
ROW_META_KEYS = frozenset({"beginTimeSeconds", "endTimeSeconds", "facet", "comparison"})

NRQL_QUERY = (
    "query($accountId: Int!, $nrql: Nrql!) { actor { account(id: $accountId) {"
    " nrql(query: $nrql, timeout: %d) { results } } } }"
)


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class KeyRejected(ProviderError):
    """The API key was refused (401/403 or BAD_API_KEY): a permission, not a query."""


class GraphQLError(_Loose):
    message: str = ""
    extensions: dict[str, Any] = {}
    path: list[Any] | None = None

    @property
    def error_class(self) -> str | None:
        return error_class_of(self.extensions)

    @property
    def access_denied(self) -> bool:
        """NerdGraph's "Access denied." (HTTP 200, no class) for an `account(id:)` the
        key's user cannot read, or any error at the account itself: credentials or
        account id to fix, not the NRQL (it said "NRQL rejected: Access denied.")."""
        return self.message.strip().lower().startswith("access denied") or self.path == [
            "actor",
            "account",
        ]


def error_class_of(extensions: Any) -> str | None:
    """A GraphQL error's class: `extensions.errorClass`, else `error_code`, else `code`
    (NerdGraph uses each). Whether to retry and how to word the failure read the same."""
    if not isinstance(extensions, dict):
        return None
    for key in ("errorClass", "error_code", "code"):
        if isinstance(extensions.get(key), str):
            return str(extensions[key])
    return None


class GraphQLAnswer(_Loose):
    data: dict[str, Any] | None = None
    errors: list[GraphQLError] | None = None


def nrql_for(nrql: str, period: Period) -> str:
    """The user's NRQL with the period appended in epoch milliseconds, both rounded down
    (`SINCE` inclusive, `UNTIL` exclusive), so that the baseline, which ends at the deploy,
    and the period since it meet and never share a millisecond."""
    start_ms = math.floor(period.start * 1000)
    end_ms = max(math.floor(period.end * 1000), start_ms + 1)
    text = nrql.strip().rstrip(";").strip()
    # NRQL ignores `--` and `//` to the end of the line: on a line of its own, the period
    # is never read as part of a trailing comment (New Relic would answer its default,
    # the last hour, for every period)
    last_line = text.rpartition("\n")[2]
    joint = "\n" if "--" in last_line or "//" in last_line else " "
    return f"{text}{joint}SINCE {start_ms} UNTIL {end_ms}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):  # percentile(duration, 95) → {"95": 0.2}
        for inner in value.values():
            number = _number(inner)
            if number is not None:
                return number
        return None
    raise ProviderError(f"unexpected value in NRQL result ({type(value).__name__})")


def _count(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else round(number)


def observation_from_rows(rows: list[Any], query: str) -> Observation:
    """One NRQL result row → an Observation (see the module docstring)."""
    if not rows:
        return Observation(value=None, query=query)
    if len(rows) > 1:
        raise ProviderError(
            f"NRQL returned {len(rows)} rows; a rule needs one (drop FACET or TIMESERIES)"
        )
    row = rows[0]
    if not isinstance(row, dict):
        raise ProviderError("unexpected answer from New Relic (result row is not an object)")
    columns = [k for k in row if k not in ROW_META_KEYS]
    if not columns:
        return Observation(value=None, query=query)
    lower = {k.lower(): k for k in columns}
    if "value" in lower:
        count_key = lower.get("errors") or lower.get("count")
        total_key = lower.get("total")
        return Observation(
            value=_number(row[lower["value"]]),
            count=_count(row[count_key]) if count_key else None,
            total=_count(row[total_key]) if total_key else None,
            query=query,
        )
    if "total" in lower and len(columns) == 2:
        total_key = lower["total"]
        other = next(k for k in columns if k != total_key)
        count, total = _count(row[other]), _count(row[total_key])
        if count is None or not total:
            return Observation(value=None, count=count, total=total, query=query)
        return Observation(value=count / total, count=count, total=total, query=query)
    first = columns[0]
    value = _number(row[first])
    count = _count(row[first]) if first.lower() == "count" else None
    return Observation(value=value, count=count, quantile=_quantile(row[first]), query=query)


def _quantile(value: Any) -> float | None:
    """`{"95": 0.2}` (a percentile column) → 0.95."""
    if not isinstance(value, dict) or not value:
        return None
    try:
        q = float(next(iter(value))) / 100
    except ValueError:
        return None
    return q if 0 < q < 1 else None


class NewRelicProvider(HttpProvider):
    """New Relic over NerdGraph (US, EU or JP)."""

    name = "newrelic"
    title: ClassVar[str] = "New Relic"
    config_model: ClassVar[type[BaseModel]] = NewRelicSettings

    def __init__(
        self, config: NewRelicSettings, *, metrics: Metrics, redact: Redact | None = None
    ) -> None:
        super().__init__(config, metrics=metrics, redact=redact)
        self.config = config
        self.marks = config.markers
        # NerdGraph's own query timeout, 5-120 s: a little under our attempt budget,
        # so New Relic gives up (and says so) before we stop listening.
        self._nrql_timeout = max(5, min(120, int(self.attempt_timeout)))
        self._warned: set[str] = set()
        """NerdGraph's deprecation notices already logged: each once, not at every fetch."""

    def default_headers(self) -> dict[str, str]:
        return {
            "API-Key": self.config.api_key.get_secret_value(),
            "Content-Type": "application/json",
        }

    def retry_for(self, answer: Answer) -> Retry | None:
        if answer.status == 200:
            try:
                body = json.loads(answer.body)
            except ValueError:
                return None
            errors = body.get("errors") if isinstance(body, dict) else None
            for error in errors if isinstance(errors, list) else []:
                cls = error_class_of(error.get("extensions")) if isinstance(error, dict) else None
                if cls in RETRIED_ERROR_CLASSES:
                    return Retry(f"New Relic answered {cls}", retry_after_seconds(answer.headers))
            return None
        if answer.status == 429:
            return Retry("New Relic is rate limiting (429)", retry_after_seconds(answer.headers))
        return super().retry_for(answer)

    # -- fetching ---------------------------------------------------------------------

    def plan(self, rule: Rule, scope: DeployScope, period: Period, release: str | None) -> Plan:
        if not rule.query:
            raise ProviderError(f"rule {rule.name!r} has no nrql")
        nrql = nrql_for(rule.query, period)

        async def run(deadline: float) -> Observation:
            data = await self._graphql(
                NRQL_QUERY % self._nrql_timeout,
                {"accountId": self.config.account_id, "nrql": nrql},
                deadline,
            )
            results = _dig(data, ("actor", "account", "nrql", "results"))
            if not isinstance(results, list):
                raise ProviderError("unexpected answer from New Relic (no nrql results)")
            return observation_from_rows(results, nrql)

        return Plan(key=("nrql", nrql), query=nrql, run=run, seconds=period_seconds(period))

    def _key_rejected(self, why: str) -> KeyRejected:
        """Which setting to fix, by name: the key (never shown) and the account it must reach."""
        return KeyRejected(
            f"New Relic API key rejected ({why}): providers.newrelic.api_key must be a User"
            f" key (NRAK-…) with access to account {self.config.account_id}"
            " (providers.newrelic.account_id)"
        )

    def _access_denied(self, said: str) -> KeyRejected:
        """The account the key cannot read, by its id (the key never shown)."""
        return KeyRejected(
            f"New Relic denied access to account {self.config.account_id} ({said}):"
            " check providers.newrelic.account_id, and that providers.newrelic.api_key is"
            " a User key (NRAK-…) of a user with access to that account"
        )

    async def _graphql(
        self, query: str, variables: dict[str, Any], deadline: float, *, what: str = "NRQL"
    ) -> Any:
        answer = await self.send(
            "POST",
            self.config.api_url,
            deadline=deadline,
            json_body={"query": query, "variables": variables},
        )
        if answer.status in (401, 403):
            raise self._key_rejected(str(answer.status))
        self.refuse_redirect(answer, "providers.newrelic.api_url")
        if answer.status == 404:  # NerdGraph answers 200 even for errors: a wrong path
            raise ProviderError(
                "New Relic answered 404: check providers.newrelic.api_url (NerdGraph's"
                " endpoint ends in /graphql: https://api.newrelic.com/graphql, or the"
                " region's)"
            )
        body = answer.json(self.title)
        if not 200 <= answer.status < 300:
            first = self.quoted(_first_error(body))
            raise ProviderError(
                f"New Relic answered {answer.status}" + (f": {first}" if first else "")
            )
        parsed = parse_model(GraphQLAnswer, body, self.title)
        errors = parsed.errors or []
        warnings = [e for e in errors if e.message.startswith(DEPRECATION_PREFIX)]
        if warnings and len(warnings) == len(errors) and parsed.data is not None:
            for warning in warnings:
                said = self.quoted(warning.message)
                if said not in self._warned:
                    self._warned.add(said)
                    log.warning("newrelic: NerdGraph warns (logged once): %s", said)
            errors = []
        if errors:
            error = errors[0]
            if error.error_class in ("BAD_API_KEY", "UNAUTHENTICATED", "FORBIDDEN"):
                raise self._key_rejected(error.error_class)
            if error.error_class in RETRIED_ERROR_CLASSES:
                raise ProviderUnreachable(f"New Relic answered {error.error_class}")
            message = self.quoted(error.message) or "no message"
            if error.access_denied:
                raise self._access_denied(message)
            raise ProviderError(f"{what} rejected: {message}")
        if parsed.data is None:
            raise ProviderError("unexpected answer from New Relic (no data)")
        return parsed.data

    # -- evidence -----------------------------------------------------------------------

    def web_root(self) -> str | None:
        if self.config.web_url:
            return self.config.web_url.rstrip("/")
        host = urlsplit(self.config.api_url).hostname or ""
        if host == "api.newrelic.com":
            return "https://one.newrelic.com"
        if host.startswith("api.") and host.endswith(".newrelic.com"):
            return f"https://one.{host.removeprefix('api.')}"
        return None

    def link(
        self,
        rule: Rule,
        scope: DeployScope,
        period: Period,
        *,
        release: str | None = None,
    ) -> str | None:
        """The query builder with the exact NRQL and period the rule used."""
        root = self.web_root()
        if root is None or not rule.query:
            return None
        params = {"account": str(self.config.account_id), "query": nrql_for(rule.query, period)}
        return f"{root}/data-exploration/query-builder?{urlencode(params)}"

    # -- markers ------------------------------------------------------------------------

    async def mark(self, scope: DeployScope, event: Literal["deploy", "rollback"]) -> str | None:
        """A change-tracking deployment event on the app; never raises (a failure is
        returned as one message for an alert)."""
        if not self.config.markers:
            return None
        target = scope.baseline.newrelic
        if target is None or not (target.entity_guid or target.app_name):
            message = (
                f"New Relic {event} marker not recorded: environments.{scope.environment}"
                ".baseline.newrelic has neither entity_guid nor app_name"
            )
            log.warning("newrelic: %s", message)
            return message
        search = entity_search(target.entity_guid, target.app_name, self.config.account_id)
        if event == "deploy":
            version = scope.version
            description = f"Postflight is watching {scope.version} ({scope.deploy_id})"
        else:
            version = scope.previous_version or f"rollback of {scope.version}"
            description = (
                f"Postflight rolled back {scope.version}"
                f" to {scope.previous_version or 'the previous version'} ({scope.deploy_id})"
            )
        kind = "canary" if scope.canary else "basic"  # deploymentType CANARY | BASIC
        if event == "deploy" and target.entity_guid and _within_a_day(scope.deployed_at):
            # the one marker mutation shown taking a time: at the deploy, not at its
            # registration (the docs call it legacy; changeTrackingCreateEvent takes none)
            deployment = (
                f"entityGuid: {json.dumps(target.entity_guid)}, version: {json.dumps(version)},"
                f" timestamp: {round(scope.deployed_at * 1000)}, deploymentType: {kind.upper()},"
                f' description: {json.dumps(description)}, user: "postflight"'
            )
            mutation = (
                f"mutation {{ changeTrackingCreateDeployment(deployment: {{ {deployment} }})"
                " { deploymentId } }"
            )
        else:
            if event == "deploy":  # recorded now: the description says when the deploy was
                description += f", deployed at {rfc3339(scope.deployed_at, millis=False)}"
            fields = f"{{deployment: {{version: {json.dumps(version)}}}}}"
            event_input = (
                f"categoryAndTypeData: {{categoryFields: {fields},"
                f' kind: {{category: "deployment", type: "{kind}"}}}},'
                f" entitySearch: {{query: {json.dumps(search)}}},"
                f' description: {json.dumps(description)}, user: "postflight"'
            )
            mutation = (
                f"mutation {{ changeTrackingCreateEvent(changeTrackingEvent: {{ {event_input} }})"
                " { changeTrackingEvent { changeTrackingId } messages } }"
            )

        async def work(deadline: float) -> None:
            try:
                await self._graphql(mutation, {}, deadline, what="change-tracking event")
            except KeyRejected as exc:
                raise ProviderError(
                    f"{exc}: markers need a User key (NRAK-…) allowed to write change"
                    f" tracking in account {self.config.account_id}"
                ) from None
            except ProviderError as exc:
                raise ProviderError(f"{exc} (entity search: {search})") from None

        return await self._guarded_mark(event, work)


MARKER_TIME_LIMIT_S = 86_400 - 60
"""`changeTrackingCreateDeployment` rejects a `timestamp` more than 24 h from now (a
minute's margin for the two clocks)."""


def _within_a_day(deployed_at: float) -> bool:
    return abs(time.time() - deployed_at) < MARKER_TIME_LIMIT_S


def entity_search(entity_guid: str | None, app_name: str | None, account_id: int) -> str:
    """The marker's entity search: the GUID, else the APM app of that name in this
    account (one entity, never the same name in another account)."""
    if entity_guid:
        return f"id = '{_nrql_quote(entity_guid)}'"
    return (
        f"name = '{_nrql_quote(app_name or '')}' AND domain = 'APM'"
        f" AND accountId = {int(account_id)}"
    )


def _nrql_quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _first_error(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        if isinstance(first, dict) and isinstance(first.get("message"), str):
            return str(first["message"])
    return ""
