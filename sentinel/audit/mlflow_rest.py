"""Reconstructing what an MLflow access-log line does not say, from the tracking server's REST API.

MLflow's access log shows ``POST /api/2.0/mlflow/model-versions/create`` but not which model
(the name is in the request body; DESIGN.md "Known traps"). ``ReconstructingParser`` wraps the
``mlflow-access`` parser and, for a successful request that does not name its model, asks the
tracking server (MLflow REST API 2.0, ``mlflow/server/handlers.py``; searches as in
``mlflow/store/model_registry/sqlalchemy_store.py``) what changed at the line's time:

==========================================  =================================================
line                                        lookup
==========================================  =================================================
POST model-versions/create                  versions with ``creation_timestamp`` in the window
                                            (and ``user_id`` = the line's user when both known)
POST registered-models/create               models with ``creation_timestamp`` in the window
POST model-versions/transition-stage        versions with ``last_updated_timestamp`` in it,
                                            updated after their creation
DELETE model-versions/delete                models with ``last_updated_timestamp`` in it; the
                                            version is the one gone since Sentinel last listed
                                            that model's versions
DELETE registered-models/delete             a model named by the same client just before, or
                                            seen before, that no longer exists
GET/PUT mlflow-artifacts/artifacts/<path>   versions whose source is that run's or logged
                                            model's artifact directory; when several share it,
                                            the one the same client named just before
==========================================  =================================================

The window is the line's second ± ``window`` seconds (uvicorn and gunicorn log whole seconds).
Each version or model is attributed to one line at most (several creates in one second are
matched in creation order). A reconstructed event carries ``reconstructed_from =
"mlflow-rest"`` and says in ``detail`` what matched; one that could not be reconstructed keeps
``artifact``/``reference`` as the line had them and says why in ``detail``. The lookup is done
when the line is read: a version deleted since, or a line read long after, cannot be matched.

The API being down never blocks or drops an event: every request has a ``timeout``, and after a
failure no request is made for ``retry_after`` seconds (events say the API was unavailable).
Credentials (basic auth or a bearer token) live only in the client's request headers: never
logged, never in an event, never sent on a redirect (redirects are refused) nor through a proxy
from the environment. Responses are capped at ``max_response_bytes`` and JSON depth; caches are
bounded (``cache_size`` entries, lookups kept ``cache_ttl`` seconds).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from cachetools import LRUCache, TTLCache

from sentinel.audit.parsers.interface import Parser, ParseResult, loads_limited
from sentinel.audit.parsers.mlflow_access import api_route, request_of
from sentinel.errors import SentinelError
from sentinel.records import AuditEvent
from sentinel.timefmt import format_ts

log = logging.getLogger(__name__)

REST_SOURCE = "mlflow-rest"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")
#: seconds a model named by a client is remembered to disambiguate its next requests
RECENT_SECONDS = 120.0


class MlflowRestError(SentinelError):
    """The tracking server could not be asked (refused, timed out, non-2xx, bad response)."""


@dataclass(frozen=True, slots=True)
class RestOptions:
    """Tuning of ``MlflowReconstructor``: seconds for ``timeout``, ``window``, ``cache_ttl``,
    ``retry_after``; entries for ``cache_size``; bytes for ``max_response_bytes``."""

    timeout: float = 2.0
    window: float = 2.0
    cache_size: int = 1024
    cache_ttl: float = 60.0
    retry_after: float = 30.0
    max_response_bytes: int = 8 << 20
    #: pages of ``page_size`` results read at most per search
    max_pages: int = 5
    page_size: int = 200


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx becomes an HTTPError: credentials never follow a redirect


class MlflowRestClient:
    """GET requests to one tracking server's REST API 2.0, JSON in and out.

    ``base_url`` is ``http(s)://host[:port][/prefix]`` without credentials; ``authorization``
    the whole ``Authorization`` header value (``Basic …`` or ``Bearer …``) or ``None``.
    Raises ``ValueError`` for a bad URL.
    """

    def __init__(
        self,
        base_url: str,
        *,
        authorization: str | None = None,
        timeout: float = 2.0,
        max_response_bytes: int = 8 << 20,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials do not belong in the URL (use a file or variable)")
        if parts.query or parts.fragment:
            raise ValueError("the base URL takes no query or fragment")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._authorization = authorization
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)

    def __repr__(self) -> str:
        return f"MlflowRestClient({self.base_url!r})"

    def get(self, route: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        """``GET <base>/api/2.0/<route>?<params>`` → the JSON object. Raises ``MlflowRestError``
        (the message names the route and the problem, never a header)."""
        url = f"{self.base_url}/api/2.0/{route}?{urlencode(params)}"
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
        if self._authorization is not None:
            request.add_unredirected_header("Authorization", self._authorization)
        try:
            with self._opener.open(request, timeout=self.timeout) as resp:
                body = resp.read(self.max_response_bytes + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise MlflowRestError(f"{route}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise MlflowRestError(f"{route}: {reason}") from None
        if len(body) > self.max_response_bytes:
            raise MlflowRestError(f"{route}: response over {self.max_response_bytes} bytes")
        try:
            data = loads_limited(body)
        except ValueError as exc:
            raise MlflowRestError(f"{route}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise MlflowRestError(f"{route}: not a JSON object")
        return data


@dataclass(frozen=True, slots=True)
class _Match:
    artifact: str
    reference: str | None
    how: str


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _iso(ms: int) -> str:
    return format_ts(datetime.fromtimestamp(ms / 1000, UTC))


def _str(d: dict[str, Any], key: str) -> str:
    v = d.get(key)
    return v if isinstance(v, str) else ""


def _int(d: dict[str, Any], key: str) -> int:
    v = d.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else -1


def _names(items: list[dict[str, Any]]) -> str:
    return ", ".join(f"{_str(i, 'name')}/{_str(i, 'version')}" for i in items)


class MlflowReconstructor:
    """Fills in model and version of MLflow access events (see the module docstring).

    ``apply(event, method, uri)`` returns the event unchanged, reconstructed, or annotated
    with why it was not; it never raises and makes no request while the API is marked down.
    ``clock`` (monotonic seconds) is injectable; ``on_result`` is called with
    ``"reconstructed"``, ``"unmatched"`` or ``"unavailable"`` for each event that needed the
    API (metrics). Thread-safe (one lock).
    """

    def __init__(
        self,
        client: MlflowRestClient,
        options: RestOptions = RestOptions(),
        *,
        clock: Callable[[], float] = time.monotonic,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self._on_result = on_result or (lambda _result: None)
        self.options = options
        self._clock = clock
        size = options.cache_size
        self._versions_of: LRUCache[str, frozenset[str]] = LRUCache(size)
        self._models: LRUCache[str, bool] = LRUCache(size)
        self._claimed: LRUCache[tuple[str, ...], bool] = LRUCache(size)
        self._recent: LRUCache[str, tuple[str, str | None, float]] = LRUCache(size)
        self._lookups: TTLCache[str, list[dict[str, Any]]] = TTLCache(
            size, options.cache_ttl, timer=clock
        )
        self._down_until = 0.0
        self._down_reason = ""
        self._lock = threading.Lock()
        #: counters: reconstructed, not matched, API unavailable, requests made
        self.reconstructed = 0
        self.unmatched = 0
        self.unavailable = 0
        self.requests = 0

    # -- entry point -------------------------------------------------------------------------

    def apply(self, event: AuditEvent, method: str, uri: str) -> AuditEvent:
        """``event`` (from the line ``method uri``), reconstructed where needed."""
        with self._lock:
            self._remember(event)
            op = self._operation(event, method, uri)
            if op is None:
                return event
            now = self._clock()
            if now < self._down_until:
                self.unavailable += 1
                self._on_result("unavailable")
                return self._annotate(
                    event, f"MLflow REST API unavailable ({self._down_reason}); not asked"
                )
            try:
                result = op(event)
            except MlflowRestError as exc:
                self.unavailable += 1
                self._on_result("unavailable")
                self._down_until = now + self.options.retry_after
                self._down_reason = str(exc)
                log.warning(
                    "MLflow REST API %s unavailable (%s); not asked again for %.0f s",
                    self.client.base_url,
                    exc,
                    self.options.retry_after,
                )
                return self._annotate(event, f"MLflow REST API unavailable ({exc})")
            if isinstance(result, str):
                self.unmatched += 1
                self._on_result("unmatched")
                return self._annotate(event, result)
            self.reconstructed += 1
            self._on_result("reconstructed")
            art_file = ""
            if event.artifact and event.artifact.startswith("mlflow-artifacts:"):
                art_file = f"artifact file {event.artifact}; "
            return replace(
                event,
                artifact=result.artifact,
                reference=result.reference,
                reconstructed_from=REST_SOURCE,
                detail=f"{art_file}model not named in the access log; reconstructed from the "
                f"MLflow REST API: {result.how}",
            )

    @staticmethod
    def _annotate(event: AuditEvent, why: str) -> AuditEvent:
        base = event.detail or "model name/version not in the access log"
        return replace(event, detail=f"{base}; not reconstructed: {why}")

    def _remember(self, event: AuditEvent) -> None:
        """Models a line names itself (``?name=…&version=…``): later lines of the same client
        that do not name theirs are most likely about it."""
        art = event.artifact
        if art and not art.startswith("mlflow-artifacts:") and event.outcome == "success":
            self._models[art] = True
            self._recent[self._client_key(event)] = (art, event.reference, self._clock())

    @staticmethod
    def _client_key(event: AuditEvent) -> str:
        return f"{event.client_ip}|{event.actor}"

    def _recent_for(self, event: AuditEvent) -> tuple[str, str | None] | None:
        hit = self._recent.get(self._client_key(event))
        if hit is None or self._clock() - hit[2] > RECENT_SECONDS:
            return None
        return hit[0], hit[1]

    def _operation(
        self, event: AuditEvent, method: str, uri: str
    ) -> Callable[[AuditEvent], _Match | str] | None:
        if event.outcome != "success" or event.reconstructed_from is not None:
            return None
        route = api_route(uri)
        if route is None:
            return None
        if route.startswith("mlflow-artifacts/artifacts/") and method in ("GET", "PUT"):
            return self._artifact if event.artifact else None
        if event.artifact is not None:
            return None  # the line named its model
        ops: dict[tuple[str, str], Callable[[AuditEvent], _Match | str]] = {
            ("POST", "mlflow/model-versions/create"): self._created_version,
            ("POST", "mlflow/registered-models/create"): self._created_model,
            ("POST", "mlflow/model-versions/transition-stage"): self._stage_change,
            ("DELETE", "mlflow/model-versions/delete"): self._deleted_version,
            ("DELETE", "mlflow/registered-models/delete"): self._deleted_model,
        }
        return ops.get((method, route))

    # -- REST helpers ------------------------------------------------------------------------

    def _get(self, route: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        self.requests += 1
        return self.client.get(route, params)

    def _search(
        self,
        route: str,
        key: str,
        params: list[tuple[str, str]],
        *,
        stop_below: int | None = None,
        field: str = "",
    ) -> list[dict[str, Any]]:
        """Every item of a paged search (``key`` holds the list); with ``stop_below`` stop
        once an item's ``field`` is below it (results ordered by ``field`` descending)."""
        out: list[dict[str, Any]] = []
        token = ""
        for _ in range(self.options.max_pages):
            page = [*params, ("max_results", str(self.options.page_size))]
            if token:
                page.append(("page_token", token))
            data = self._get(route, page)
            items = [i for i in data.get(key) or [] if isinstance(i, dict)]
            out += items
            token = _str(data, "next_page_token")
            if not token or not items:
                break
            if stop_below is not None and _int(items[-1], field) < stop_below:
                break
        return out

    def _window(self, event: AuditEvent) -> tuple[int, int]:
        t = _ms(event.ts.replace(microsecond=0))
        w = int(self.options.window * 1000)
        return t - w, t + 1000 + w

    def _by_time(
        self, route: str, key: str, field: str, order: str, event: AuditEvent
    ) -> list[dict[str, Any]]:
        lo, hi = self._window(event)
        items = self._search(
            route, key, [("order_by", f"{order} DESC")], stop_below=lo, field=field
        )
        return sorted((i for i in items if lo <= _int(i, field) < hi), key=lambda i: _int(i, field))

    def _versions(self, name: str) -> list[dict[str, Any]]:
        escaped = name.replace("\\", "\\\\").replace("'", "\\'")
        items = self._search(
            "mlflow/model-versions/search", "model_versions", [("filter", f"name='{escaped}'")]
        )
        items = [i for i in items if _str(i, "name") == name]
        self._versions_of[name] = frozenset(_str(i, "version") for i in items)
        self._models[name] = True
        return items

    def _about(self, n: int, claimed: int) -> str:
        text = (
            f"{n} unattributed candidate{'s' if n != 1 else ''} within ±{self.options.window:g} s"
        )
        return text + (f", {claimed} already attributed" if claimed else "")

    # -- operations --------------------------------------------------------------------------

    def _created_version(self, event: AuditEvent) -> _Match | str:
        cands = self._by_time(
            "mlflow/model-versions/search",
            "model_versions",
            "creation_timestamp",
            "creation_timestamp",
            event,
        )
        if event.actor:
            cands = [c for c in cands if _str(c, "user_id") in ("", event.actor)]
        free = [c for c in cands if ("v", _str(c, "name"), _str(c, "version")) not in self._claimed]
        if not free:
            return f"no model version created within ±{self.options.window:g} s of the line" + (
                f" ({len(cands)} already attributed)" if cands else ""
            )
        pick = free[0]  # lines arrive in order: the earliest unattributed version
        name, version = _str(pick, "name"), _str(pick, "version")
        self._claimed[("v", name, version)] = True
        self._versions(name)  # what the model holds now (a later delete is diffed against it)
        return _Match(
            name,
            version,
            f"model version {name}/{version} created {_iso(_int(pick, 'creation_timestamp'))}"
            f" ({self._about(len(free), len(cands) - len(free))}"
            + (f"; others: {_names(free[1:])}" if len(free) > 1 else "")
            + ")",
        )

    def _created_model(self, event: AuditEvent) -> _Match | str:
        cands = self._by_time(
            "mlflow/registered-models/search",
            "registered_models",
            "creation_timestamp",
            "timestamp",
            event,
        )
        free = [c for c in cands if ("m", _str(c, "name")) not in self._claimed]
        if not free:
            return f"no registered model created within ±{self.options.window:g} s of the line"
        pick = free[0]
        name = _str(pick, "name")
        self._claimed[("m", name)] = True
        self._models[name] = True
        self._versions_of[name] = frozenset()
        others = ", ".join(_str(c, "name") for c in free[1:])
        return _Match(
            name,
            None,
            f"registered model {name} created {_iso(_int(pick, 'creation_timestamp'))}"
            f" ({self._about(len(free), len(cands) - len(free))}"
            + (f"; others: {others}" if others else "")
            + ")",
        )

    def _stage_change(self, event: AuditEvent) -> _Match | str:
        cands = self._by_time(
            "mlflow/model-versions/search",
            "model_versions",
            "last_updated_timestamp",
            "last_updated_timestamp",
            event,
        )
        # a transition updates a version after its creation (a new version is not a candidate)
        cands = [
            c for c in cands if _int(c, "last_updated_timestamp") > _int(c, "creation_timestamp")
        ]
        keyed = [
            (("s", _str(c, "name"), _str(c, "version"), str(_int(c, "last_updated_timestamp"))), c)
            for c in cands
        ]
        free = [(k, c) for k, c in keyed if k not in self._claimed]
        if not free:
            return f"no model version changed within ±{self.options.window:g} s of the line"
        key, pick = free[0]
        self._claimed[key] = True
        name, version = _str(pick, "name"), _str(pick, "version")
        return _Match(
            name,
            version,
            f"model version {name}/{version} updated {_iso(_int(pick, 'last_updated_timestamp'))}"
            f", now in stage {_str(pick, 'current_stage') or '?'}"
            f" ({self._about(len(free), len(cands) - len(free))})",
        )

    def _deleted_version(self, event: AuditEvent) -> _Match | str:
        models = self._by_time(
            "mlflow/registered-models/search",
            "registered_models",
            "last_updated_timestamp",
            "last_updated_timestamp",
            event,
        )
        recent = self._recent_for(event)
        gone: dict[str, list[str]] = {}
        unknown: list[str] = []
        for m in models[:5]:
            name = _str(m, "name")
            known = self._versions_of.get(name)
            now = {_str(i, "version") for i in self._versions(name)}
            if known is None:
                unknown.append(name)
            elif missing := sorted(known - now, key=lambda v: (len(v), v)):
                gone[name] = missing
        if recent and recent[0] in gone and recent[1] in gone[recent[0]]:
            name, version = recent[0], recent[1]
            how = "named by the same client just before"
        elif len(gone) == 1 and len(next(iter(gone.values()))) == 1:
            name, [version] = next(iter(gone.items()))
            how = "the one version gone since Sentinel last listed the model"
        elif len(gone) == 1:
            name, versions = next(iter(gone.items()))
            return _Match(
                name,
                None,
                f"registered model {name} updated within ±{self.options.window:g} s; versions "
                f"{', '.join(versions)} are gone since last listed (which one: not known)",
            )
        elif not gone and len(unknown) == 1:
            name = unknown[0]
            return _Match(
                name,
                None,
                f"registered model {name} updated within ±{self.options.window:g} s; its "
                "versions were not listed before the delete, so the version is not known",
            )
        elif not models:
            return (
                f"no registered model updated within ±{self.options.window:g} s of the line "
                "(deleted since?)"
            )
        else:
            names = ", ".join(_str(m, "name") for m in models)
            return f"ambiguous: models updated in the window: {names}"
        return _Match(
            name,
            version,
            f"model version {name}/{version} deleted: its model was updated within "
            f"±{self.options.window:g} s of the line; version {how}",
        )

    def _deleted_model(self, event: AuditEvent) -> _Match | str:
        items = self._search(
            "mlflow/registered-models/search", "registered_models", [("order_by", "name ASC")]
        )
        now = {_str(i, "name") for i in items}
        for name in now:
            self._models[name] = True
        gone = sorted(n for n in list(self._models) if n not in now)
        recent = self._recent_for(event)
        if recent and recent[0] in gone:
            name, how = recent[0], "named by the same client just before, and gone now"
        elif len(gone) == 1:
            name, how = gone[0], "the one model seen before that is gone now"
        elif not gone:
            return "no model Sentinel had seen before is gone"
        else:
            return f"ambiguous: models gone since last seen: {', '.join(gone)}"
        for n in gone:
            self._models.pop(n, None)
        self._versions_of.pop(name, None)
        return _Match(name, None, f"registered model {name} deleted ({how})")

    def _artifact(self, event: AuditEvent) -> _Match | str:
        assert event.artifact is not None
        path = event.artifact.removeprefix("mlflow-artifacts:/")
        parts = path.split("/")
        if len(parts) >= 4 and parts[1] == "models" and _MODEL_ID.match(parts[2]):
            owner, sub = parts[2], "/".join(parts[4:])
            flt = f"source_path LIKE '%{owner}%'"
        elif len(parts) >= 3 and _RUN_ID.match(parts[1]) and parts[2] == "artifacts":
            owner, sub = parts[1], "/".join(parts[3:])
            flt = f"run_id='{owner}'"
        else:
            return "the artifact path names no run or logged model"
        versions = self._lookups.get(owner)
        if versions is None:
            versions = self._search(
                "mlflow/model-versions/search", "model_versions", [("filter", flt)]
            )
            self._lookups[owner] = versions
        cands = [v for v in versions if _covers(_str(v, "source"), owner, sub)]
        if not cands:
            return f"no model version has its source at {owner}"
        recent = self._recent_for(event)
        for c in cands:
            if recent and (_str(c, "name"), _str(c, "version")) == recent:
                return _Match(
                    recent[0],
                    recent[1],
                    f"source of model version {_names([c])}, named by the same client just "
                    f"before (versions with this source: {_names(cands)})",
                )
        if len(cands) == 1:
            c = cands[0]
            return _Match(
                _str(c, "name"), _str(c, "version"), f"source of model version {_names([c])}"
            )
        names = {_str(c, "name") for c in cands}
        if len(names) == 1:
            return _Match(
                names.pop(),
                None,
                f"versions {_names(cands)} share this source (which one: not known)",
            )
        return f"ambiguous: versions {_names(cands)} share this source"


def _covers(source: str, owner: str, sub: str) -> bool:
    """Whether a version's ``source`` URI is the directory (under run or logged model
    ``owner``) holding artifact file ``sub``."""
    if owner not in source:
        return False
    if source.startswith(("runs:/", "models:/")):
        rest = source.split(":/", 1)[1].lstrip("/").split("/", 1)
        inner = rest[1] if len(rest) > 1 else ""
    else:
        inner = source.split(owner, 1)[1].strip("/").removeprefix("artifacts").strip("/")
    return not inner or sub == inner or sub.startswith(inner + "/")


class ReconstructingParser:
    """``mlflow-access`` with ``MlflowReconstructor`` applied to every event (a ``Parser``)."""

    source_kind = "mlflow"

    def __init__(self, inner: Parser, reconstructor: MlflowReconstructor) -> None:
        self.inner = inner
        self.name = inner.name
        self.reconstructor = reconstructor

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        """The inner parser's records, events reconstructed. Never raises for bad input."""
        out = self.inner.parse(raw, source=source, src_pos=src_pos)
        request = request_of(raw) if any(isinstance(r, AuditEvent) for r in out) else None
        if request is None:
            return out
        return [
            self.reconstructor.apply(r, *request) if isinstance(r, AuditEvent) else r for r in out
        ]
