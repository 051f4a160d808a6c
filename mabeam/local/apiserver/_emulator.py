"""The emulator: kmock's HTTP plumbing with real API-server semantics for resource requests.

:class:`LocalApiEmulator` stacks the layers (store, admission, writes, watches, authorization)
and serves HTTP: it parses resource URLs, authorizes and audits each request, and dispatches it
by verb; discovery goes through kmock as is.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import math
import re
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml

from ._apply import REQUEST_MANAGER
from ._auth import Authorization
from ._logs import LogFiles, choose_container, stream_log
from ._openapi import group_version_document, openapi_root
from ._tables import table, table_version
from ._types import (
    BUILTIN_TYPES,
    REQUEST_USER,
    ResourceType,
    UserInfo,
    _ApiError,
    _json_response,
    _meta,
    _not_found,
)

logger = logging.getLogger("mabeam.local.apiserver")


_FLOAT64_MAX = 1.7976931348623157e308


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def _float64(text: str) -> float:
    value = float(text)
    if math.isinf(value) or math.isnan(value):
        raise ValueError(f"cannot unmarshal number {text} into a float64 (out of range)")
    return value


def _int_or_float64(text: str) -> int:
    value = int(text)
    if abs(value) > _FLOAT64_MAX:
        raise ValueError(f"cannot unmarshal number {text[:40]} into a float64 (out of range)")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(value: Any) -> Any:
    """Strings with every lone UTF-16 surrogate replaced by U+FFFD, as Go's decoder does."""
    if isinstance(value, str):
        if not _SURROGATE.search(value):
            return value
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_lone_surrogates(v) for v in value]
    return value


#: The deepest nesting of a JSON body the local API server decodes (the real one: 10 000). It
#: walks objects recursively, so its limit must not depend on the process's recursion limit
#: (which the operator raises, and tests run both in one process).
MAX_NESTING = 500
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]")


def nested_too_deeply(body: bytes) -> bool:
    """Whether a JSON text nests arrays and objects deeper than ``MAX_NESTING`` (brackets in
    strings do not count), found without recursion."""
    if body.count(b"[") + body.count(b"{") <= MAX_NESTING:
        return False  # not even that many in all
    brackets = _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", body))
    return max(itertools.accumulate((1 if b in b"[{" else -1 for b in brackets), initial=0)) > MAX_NESTING


def decode_json(body: bytes) -> Any:
    """A request body decoded as the API server's JSON decoder (Go's) does: invalid UTF-8 and
    lone surrogate escapes become U+FFFD, ``NaN`` and ``Infinity`` are not JSON, and a number
    beyond a float64 is refused (ValueError); never a value that cannot be written back as JSON.
    Nested deeper than ``MAX_NESTING``: RecursionError."""
    if nested_too_deeply(body):
        raise RecursionError(f"nested deeper than {MAX_NESTING} levels")
    value = json.loads(
        body.decode("utf-8", errors="replace"),
        parse_constant=_refuse_constant,
        parse_float=_float64,
        parse_int=_int_or_float64,
    )
    if b"\\u" in body or b"\\U" in body:  # only an escape can make a lone surrogate
        value = _without_lone_surrogates(value)
    return value


def _looks_like_json(body: bytes) -> bool:
    return body.lstrip()[:1] in (b"{", b"[")


@attrs.define(kw_only=True)
class LocalApiEmulator(Authorization):
    """kmock's emulator with real API-server semantics for resource requests (see the package doc)."""

    #: Where pods' logs are (given by whoever runs the kubelet); None: no logs are served.
    log_files: LogFiles | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for rtype in BUILTIN_TYPES:
            self.declare(rtype)
        self.create_object(BUILTIN_TYPES[0], None, {"metadata": {"name": "default"}})

    # ---- HTTP ----

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock's URL parser mistakes /api/v1/namespaces[/name] for a namespace scope (and fails on
        # the bare list), so resource URLs are parsed here; discovery goes through kmock as is.
        parsed = parse_resource_path(raw_request.path)
        if parsed is None:
            try:
                user = self.impersonate(self.authenticate(raw_request.headers), raw_request.headers)
                self._authorize_path(user, raw_request.path)
            except _ApiError as exc:
                return _json_response(exc.status(), exc.code)
            if raw_request.path.startswith("/openapi/"):
                return self._serve_openapi(raw_request.path)
            return await super().__call__(raw_request)
        group, version, namespace, plural, name, subresource = parsed
        body = await raw_request.read()
        try:
            data = decode_json(body) if body else None
        except (ValueError, RecursionError):
            data = None  # refused (400) when the verb reads it
        request = kmock.Request(
            id=len(self._requests),
            raw_request=raw_request,
            url=raw_request.url,
            method=raw_request.method,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            body=body,
            text=body.decode("utf-8", errors="replace"),
            data=data,
            resource=kmock.resource(group, version, plural),
            namespace=namespace,
            name=name,
            subresource=subresource,
        )
        self._requests.append(request)
        if len(self._requests) > self.keep_requests:
            del self._requests[: len(self._requests) - self.keep_requests // 2]
        return await self._handle(request)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.resource is None or not request.resource.plural:
            self.counts["discovery"] += 1
            return await kmock.KubernetesScaffold._handle(self, request)
        verb = self._verb(request)
        self.counts[verb] += 1
        user = UserInfo("")  # until authenticated (an audit record of a 401 names nobody)
        code = 200
        audited = False
        try:
            user = self.authenticate(request.headers)
            user = self.impersonate(
                user, request._raw_request.headers if request._raw_request else request.headers
            )
            self._authorize(user, verb, request)
            if request.subresource == "log":
                return await self._serve_log(request, verb)
            if verb == "watch":
                # A watch is audited when it starts: a stream may outlive whoever reads the log.
                self.audit.append(self._audit_record(request, verb, user.name, 200))
                audited = True
                return await self._stream_watch(request)
            reset = REQUEST_USER.set(user)
            # The field manager of a write: named, or the client's user agent up to its first "/".
            agent = str(request.headers.get("User-Agent") or "").split("/")[0][:128]
            reset_manager = REQUEST_MANAGER.set(request.params.get("fieldManager") or agent)
            try:
                payload, code = self._serve(request, verb)
            finally:
                REQUEST_USER.reset(reset)
                REQUEST_MANAGER.reset(reset_manager)
            if verb in ("get", "list") and not request.subresource:
                payload = self._as_table(request, payload)
            return _json_response(payload, code)
        except _ApiError as exc:
            code = exc.code
            return _json_response(exc.status(), exc.code)
        except Exception as exc:
            code = 500
            logger.exception("The local API server failed on %s %s", request.method, request.url)
            self.server_errors.append(exc)
            error = _ApiError(500, "InternalError", f"Internal error occurred: {exc!r}")
            return _json_response(error.status(), 500)
        finally:
            if not audited:
                self.audit.append(self._audit_record(request, verb, user.name, code))

    def _serve_openapi(self, path: str) -> aiohttp.web.Response:
        """``/openapi/v3`` and its group-version documents (no v2: see :mod:`._openapi`)."""
        self.counts["discovery"] += 1
        parts = [part for part in path.strip("/").split("/") if part]
        document: dict[str, Any] | None = None
        if parts == ["openapi", "v3"]:
            document = openapi_root(self.types.values())
        elif len(parts) == 4 and parts[:3] == ["openapi", "v3", "api"]:
            document = group_version_document(self.types.values(), "", parts[3])
        elif len(parts) == 5 and parts[:3] == ["openapi", "v3", "apis"]:
            document = group_version_document(self.types.values(), parts[3], parts[4])
        if document is None:
            error = _ApiError(404, "NotFound", "the server could not find the requested resource")
            return _json_response(error.status(), 404)
        return _json_response(document, 200)

    async def _serve_log(self, request: kmock.Request, verb: str) -> aiohttp.web.StreamResponse:
        """``GET pods/<name>/log``: the container's output, from the file its kubelet writes."""
        rtype = self._request_type(request)
        if verb != "get":
            raise _ApiError(
                405, "MethodNotAllowed", f"the server does not allow this method on pods/log ({verb})"
            )
        namespace, name = request.namespace, request.name
        assert namespace is not None and name is not None  # a namespaced, named subresource
        pod = self.load(rtype, namespace, name)
        if pod is None:
            raise _not_found(rtype, name)
        container = choose_container(pod, request.params.get("container"))
        if not (pod.get("spec") or {}).get("nodeName") or self.log_files is None:
            raise _ApiError(
                400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: no node'
            )
        path = self.log_files(namespace, name, container)
        if not path.is_file():
            raise _ApiError(
                400,
                "BadRequest",
                f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating',
            )

        def running() -> bool:
            now = self.load(rtype, namespace, name)
            phase = ((now or {}).get("status") or {}).get("phase")
            return now is not None and phase not in ("Succeeded", "Failed") and not self._closing

        assert request._raw_request is not None
        return await stream_log(request._raw_request, path, request.params, running=running)

    def _as_table(self, request: kmock.Request, payload: Any) -> Any:
        """The payload of a get or list as the Table the client asked for (kubectl get), if it did."""
        version = table_version(request.headers.get("Accept", ""))
        if version is None:
            return payload
        rtype = self._request_type(request)
        single = payload.get("kind") != f"{rtype.kind}List"
        return table(
            rtype,
            [payload] if single else payload["items"],
            version=version,
            list_meta=None if single else payload.get("metadata"),
            include_object=request.params.get("includeObject", "Metadata"),
            headers=request.params.get("noHeaders") != "true",
        )

    @staticmethod
    def _verb(request: kmock.Request) -> str:
        method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
        if method == "GET":
            if request.params.get("watch") in ("true", "1"):
                return "watch"
            return "get" if request.name else "list"
        if method == "DELETE":
            return "delete" if request.name else "deletecollection"
        return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())

    @staticmethod
    def _body(request: kmock.Request) -> Any:
        if not request.body:
            return None
        try:
            return decode_json(request.body)
        except RecursionError:
            raise _ApiError(400, "BadRequest", "the request body is nested too deeply to decode") from None
        except ValueError as exc:
            if "yaml" not in str(request.headers.get("Content-Type", "")).lower() and _looks_like_json(
                request.body
            ):
                # A JSON body is decoded as JSON only, as the API server does: what Go's decoder
                # refuses (NaN, 1e400) is a 400, not a string that YAML made of it.
                raise _ApiError(400, "BadRequest", f"the request body is not valid JSON: {exc}") from None
            try:
                return yaml.safe_load(request.body)
            except yaml.YAMLError:
                raise _ApiError(400, "BadRequest", "the request body is neither JSON nor YAML") from None

    def _serve(self, request: kmock.Request, verb: str) -> tuple[Any, int]:
        rtype = self._request_type(request)
        params = request.params
        strict = params.get("fieldValidation") == "Strict"
        dry_run = params.get("dryRun") == "All"
        ns, name = request.namespace, request.name
        if request.subresource == "binding" and verb != "create":
            raise _ApiError(
                405, "MethodNotAllowed", f"the server does not allow this method on pods/binding ({verb})"
            )
        if verb == "get":
            assert name is not None
            obj = self.load(rtype, ns, name)
            if obj is None:
                raise _not_found(rtype, name)
            return self.present(rtype, obj), 200
        if verb == "list":
            return self._list(rtype, ns, params), 200
        if verb == "create":
            if name and ns is not None and rtype.group_version == "v1" and request.subresource:
                # The subresources created by a POST: TokenRequest, and a scheduler's Binding.
                if (rtype.plural, request.subresource) == ("serviceaccounts", "token"):
                    return self.request_token(ns, name, self._body(request)), 201
                if (rtype.plural, request.subresource) == ("pods", "binding"):
                    return self.bind_pod(ns, name, self._body(request), dry_run=dry_run), 201
            if name:
                raise _ApiError(405, "MethodNotAllowed", "POST to a named object is not allowed")
            return self.present(
                rtype, self.create_object(rtype, ns, self._body(request), strict=strict, dry_run=dry_run)
            ), 201
        assert name is not None or verb == "deletecollection"
        if verb == "update":
            assert name is not None
            obj = self.replace_object(
                rtype,
                ns,
                name,
                self._body(request),
                subresource=request.subresource,
                strict=strict,
                dry_run=dry_run,
                require_rv=rtype.custom,
            )
            return self.present(rtype, obj), 200
        if verb == "patch":
            assert name is not None
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type == "application/apply-patch+yaml":
                existed = self.load(rtype, ns, name) is not None
                obj = self.apply_object(
                    rtype,
                    ns,
                    name,
                    self._body(request),
                    manager=params.get("fieldManager", ""),
                    force=params.get("force") == "true",
                    subresource=request.subresource,
                    strict=strict,
                    dry_run=dry_run,
                )
                return self.present(rtype, obj), 200 if existed else 201
            obj = self.patch_object(
                rtype,
                ns,
                name,
                content_type,
                self._body(request),
                subresource=request.subresource,
                strict=strict,
                dry_run=dry_run,
            )
            return self.present(rtype, obj), 200
        options = self._body(request)
        options = options if isinstance(options, dict) else {}
        if "propagationPolicy" in params:
            options.setdefault("propagationPolicy", params["propagationPolicy"])
        if verb == "delete":
            assert name is not None
            return self.present(rtype, self.delete_object(rtype, ns, name, options, dry_run=dry_run)), 200
        if verb == "deletecollection":
            selector = self._selector(rtype, ns, params)
            deleted = [
                self.delete_object(
                    rtype, _meta(obj).get("namespace"), _meta(obj)["name"], options, dry_run=dry_run
                )
                for obj in list(self.live(rtype, ns))
                if selector(obj)
            ]
            return self._list_payload(rtype, [self.present(rtype, o) for o in deleted]), 200
        raise _ApiError(405, "MethodNotAllowed", f"the server does not allow this method ({request.method})")

    def _list_payload(self, rtype: ResourceType, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "apiVersion": rtype.group_version,
            "kind": f"{rtype.kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def _list(self, rtype: ResourceType, namespace: str | None, params: Any) -> dict[str, Any]:
        selector = self._selector(rtype, namespace, params)
        items = [self.present(rtype, obj) for obj in self.live(rtype, namespace) if selector(obj)]
        start = 0
        if params.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(params["continue"].encode()))
                start = int(token["start"])
            except (ValueError, KeyError, TypeError):
                raise _ApiError(400, "BadRequest", "invalid continue token") from None
        payload = self._list_payload(rtype, items[start:])
        limit = int(params.get("limit") or 0)
        if limit > 0 and len(items) - start > limit:
            payload["items"] = items[start : start + limit]
            token = json.dumps({"start": start + limit}).encode()
            payload["metadata"]["continue"] = base64.urlsafe_b64encode(token).decode()
            payload["metadata"]["remainingItemCount"] = len(items) - start - limit
        return payload

    async def _serve_version(self, request: kmock.Request) -> Any:
        payload = await super()._serve_version(request)
        if isinstance(payload, dict) and request.resource is not None and request.resource.group == "":
            payload["groupVersion"] = request.resource.version  # "v1", not kmock's "/v1"
        for entry in payload.get("resources", []) if isinstance(payload, dict) else []:
            if "/" in entry["name"]:  # a subresource: no short names of its own, as in a real server
                verbs = {"binding": ["create"], "log": ["get"]}.get(
                    entry["name"].rpartition("/")[2], ["get", "patch", "update"]
                )
                entry.update(shortNames=[], categories=[], verbs=verbs)
        return payload

    async def _serve_server_version(self, request: kmock.Request) -> Any:
        return {
            "major": "1",
            "minor": "31",
            "gitVersion": "v1.31.0-mabeam-local",
            "gitCommit": "",
            "gitTreeState": "clean",
            "buildDate": "2024-08-13T00:00:00Z",
            "goVersion": "",
            "compiler": "python",
            "platform": "linux/amd64",
        }


def parse_resource_path(path: str) -> tuple[str, str, str | None, str, str | None, str | None] | None:
    """Split a resource URL into (group, version, namespace, plural, name, subresource).

    None for anything that is not a resource URL (discovery, /version, /openapi, ...).
    """
    parts = [part for part in path.strip("/").split("/") if part]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace: str | None = None
    namespace_subresource = group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")
    if rest[0] == "namespaces" and len(rest) >= 3 and not namespace_subresource:
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    return group, version, namespace, plural, name, subresource
