"""A generated corpus of malformed and hostile manifests for every kind of mabeam.io.

Each manifest is a valid one (:func:`base_specs`) with one field replaced by a hostile value:
the fields are read from the CRDs that the models generate (so a new field is covered without
a change here), the values are chosen by the field's type: wrong types, null, huge and deep
values, numbers beyond 64 bits, NaN and infinities, negative and tiny numbers, long, empty,
control and unicode strings (a lone surrogate, a right-to-left override, NUL), regular
expressions that backtrack catastrophically or do not parse, 10 000 items (participants,
labels), unknown fields. Hostile metadata (long and malformed names, labels and annotations) and
bodies nested too deeply to decode complete it.

A manifest is JSON *text*: some of these values (``1e400``, ``NaN``, a lone surrogate, 5 000
levels of nesting) cannot be written by ``json.dumps`` but can be sent by any client.

The corpus is the same for every control plane: ``tests/integration/test_hostile.py`` applies it
to ``mabeam local``, ``tests/e2e/test_hostile.py`` to a real API server, with one difference:
the lists of *objects* each invalid (``[{}, {}, ...]``) have 1 000 items there, not 10 000
(``REAL_API_OBJECT_ITEMS``). ``python -m
tests.hostile.corpus DIR`` writes it to files, one manifest each.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mabeam.kube import crdgen

__all__ = ["ANSWER_SESSION", "HEAVY", "SESSIONS", "Hostile", "base_specs", "corpus", "raw", "reduced"]

#: The session each answer kind answers (created, valid, before the corpus is applied).
ANSWER_SESSION = {
    "Vote": ("Coordination", "target-vote"),
    "Bid": ("Auction", "target-bid"),
    "Order": ("Market", "target-order"),
}
#: The field of an answer naming its session.
SESSION_FIELD = {"Vote": "session", "Bid": "auction", "Order": "market"}
SESSIONS = {session: kind for kind, session in ANSWER_SESSION.values()}

_RAW = "\x00raw:"  # marks a value whose JSON text is given as is (see raw())


def raw(text: str) -> str:
    """A value sent as the JSON text ``text`` (for what json.dumps cannot write)."""
    return _RAW + text


def _dumps(body: Any) -> str:
    """JSON text of ``body``, with every raw() value spliced in as its text."""
    out: list[str] = []
    texts: list[str] = []

    def mark(value: Any) -> Any:
        if isinstance(value, str) and value.startswith(_RAW):
            texts.append(value[len(_RAW) :])
            return f"\x01{len(texts) - 1}\x01"
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(body))
    for index, piece in enumerate(text.split('"\\u0001')):
        if index == 0:
            out.append(piece)
            continue
        number, rest = piece.split('\\u0001"', 1)
        out.append(texts[int(number)] + rest)
    return "".join(out)


@dataclass(frozen=True)
class Hostile:
    """One manifest of the corpus."""

    #: A readable id: kind, the field changed, what was put there.
    id: str
    kind: str
    plural: str
    name: str
    #: The path of the field changed ("spec.options", "metadata.name", "" for the whole body).
    path: str
    text: str

    @property
    def answers(self) -> str | None:
        """The session this manifest answers, for a Vote, Bid or Order."""
        return ANSWER_SESSION[self.kind][1] if self.kind in ANSWER_SESSION else None


def _container() -> dict[str, Any]:
    return {"name": "agent", "image": "example/agent:1", "command": ["sleep", "3600"]}


def base_specs() -> dict[str, dict[str, Any]]:
    """A valid spec of every kind (Agents suspended: no process runs for them)."""
    sealed = {"keyId": "sha256:" + "0" * 32, "ciphertext": "A" * 64}
    return {
        "Agent": {
            "template": {"spec": {"containers": [_container()]}},
            "suspend": True,
            "capabilities": ["vote"],
            "weight": 1,
            "priority": 0,
        },
        "Variable": {
            "type": "string",
            "value": "v",
            "constraints": {"maxLength": 10},
            "description": "d",
        },
        "Coordination": {
            "protocol": "majority",
            "participants": {"agents": ["ann", "ben"]},
            "options": ["a", "b"],
            "answerSeconds": 30,
        },
        "Vote": {"session": "target-vote", "agent": "x", "choice": "a"},
        "Auction": {
            "mechanism": "second-price",
            "participants": {"agents": ["ann", "ben"]},
            "items": ["slot"],
            "bidSeconds": 30,
        },
        "Bid": {"auction": "target-bid", "agent": "x", "sealed": sealed},
        "Market": {
            "mechanism": "double-auction",
            "participants": {"agents": ["ann", "ben"]},
            "good": "cpu",
            "orderSeconds": 30,
        },
        "Order": {"market": "target-order", "agent": "x", "sealed": sealed},
    }


# --- the hostile values, by the type of the field they replace ----------------------------------

_DEEP = raw("[" * 300 + "1" + "]" * 300)
_EXTREME_NUMBERS = {
    "2^70": raw(str(2**70)),
    "-2^70": raw(str(-(2**70))),
    "2^63": raw(str(2**63)),
    "1e308": raw("1e308"),
    "1e400": raw("1e400"),
    "-1e400": raw("-1e400"),
    "NaN": raw("NaN"),
    "Infinity": raw("Infinity"),
    "negative": -1,
    "zero": 0,
    "tiny": raw("5e-324"),
    "fraction": 0.5,
    "numeric-string": "12",
}
_STRINGS = {
    "empty": "",
    "long": "a" * 1_000,
    "huge": "a" * 70_000,
    "unicode": "ünï\u202ecodé\u200b🙂",
    "lone-surrogate": raw('"a\\ud800b"'),
    "nul": "a\u0000b",
    "control": "a\nb\u001b[31m",
    "shell": "$(reboot); DROP TABLE x; --",
    "evil-regex": "^(a+)+$",
    "bad-regex": "([",
}
_ANY = {"null": None, "deep": _DEEP}
_WRONG_TYPE = {
    "string": {"number-for-string": 12345, "object-for-string": {"a": 1}},
    "number": {"string-for-number": "many", "bool-for-number": True},
    "integer": {"string-for-integer": "many", "list-for-integer": [1]},
    "boolean": {"string-for-bool": "yes", "number-for-bool": 1},
    "array": {"object-for-array": {"a": 1}, "string-for-array": "a,b"},
    "object": {"list-for-object": ["x"], "string-for-object": "x"},
}
_FREE = {  # x-kubernetes-preserve-unknown-fields (a Variable's value, prices): anything JSON
    "deep-60": raw("[" * 60 + '"x"' + "]" * 60),
    "deep-900": raw("[" * 900 + '"x"' + "]" * 900),
    "100k-items": raw("[" + ",".join(["1"] * 100_000) + "]"),
    "huge-text": "a" * 300_000,
    "object": {"a": {"b": [1, 2, {"c": None}]}},
}
TEN_THOUSAND = 10_000
#: The length of a list of invalid objects sent to a real kube-apiserver. Its schema validator
#: (kube-openapi's ``Result.AddErrors``) compares each new error's text with every error found so
#: far: quadratic in the number of errors, and a list of N empty objects has 2N (two required
#: fields each), whatever ``maxItems`` says (the validator walks every item). Measured on the
#: 2-core test machine: 0.4 s for 1 000 items, 1.5 s for 2 000, 20 to 40 s for 10 000, where a
#: write is answered 504 after 34 s and the validation goes on in the background, starving the
#: API server for minutes. That is Kubernetes' own exposure (any CRD with a list of objects has
#: it; Kubernetes' defence is that only RBAC-authorised users may write), not something a schema
#: can bound; 1 000 items test the same refusal (far beyond ``maxItems``, every item invalid).
REAL_API_OBJECT_ITEMS = 1_000


def _values(node: dict[str, Any], path: str, object_items: int) -> Iterator[tuple[str, Any]]:
    """The hostile values for the field at ``path`` whose schema is ``node`` (a list of objects
    with ``object_items`` empty items)."""
    yield from _ANY.items()
    if node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string"):
        yield from _FREE.items()
        yield from _EXTREME_NUMBERS.items()
        return
    type_ = node.get("type")
    yield from _WRONG_TYPE.get(str(type_), {}).items()
    if type_ == "string":
        yield from _STRINGS.items()
    elif type_ in ("number", "integer"):
        yield from _EXTREME_NUMBERS.items()
    elif type_ == "array":
        item = node.get("items") or {}
        if item.get("type") == "string":
            yield f"{TEN_THOUSAND}-names", [f"agent-{i}" for i in range(TEN_THOUSAND)]
            yield "duplicates", ["ann", "ann"]
        else:
            yield f"{object_items}-items", [{}] * object_items
        yield "null-item", [None]
        yield "nested", [[[]]]
    elif type_ == "object":
        yield "unknown-field", {"zzzUnknown": 1}
        if isinstance(node.get("additionalProperties"), dict):
            yield f"{TEN_THOUSAND}-keys", {f"k{i}": "v" for i in range(TEN_THOUSAND)}


def _fields(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every field under ``node`` (not list items: a list is replaced whole), with its schema."""
    for key, child in (node.get("properties") or {}).items():
        here = f"{path}.{key}"
        yield here, child
        if child.get("type") == "object":
            yield from _fields(child, here)


def _set(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``spec`` (the object at "spec") with the field at ``path`` set to ``value``."""
    out = json.loads(json.dumps(spec))
    keys = path.split(".")[1:]
    node = out
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value
    return out


def _metadata_values() -> Iterator[tuple[str, str, Any]]:
    """(field, id, value) of hostile metadata (the name is set apart: see corpus())."""
    yield "metadata.labels", "label-value-long", {"a": "v" * 64}
    yield "metadata.labels", "label-key-bad", {"a/b/c": "v"}
    yield "metadata.labels", "label-unicode", {"ünï": "🙂"}
    yield "metadata.labels", f"{TEN_THOUSAND}-labels", {f"k{i}": "v" for i in range(TEN_THOUSAND)}
    yield "metadata.labels", "session-label-hostile", {"mabeam.io/session": "a" * 63}
    yield "metadata.annotations", "annotation-300k", {"a": "x" * 300_000}
    yield "metadata.annotations", "annotation-not-string", {"a": 1}
    yield "metadata", "unknown-field", {"zzzUnknown": 1}


def _names(kind: str) -> Iterator[tuple[str, str]]:
    """(id, name) of hostile names."""
    yield "name-253", "n" * 253
    yield "name-254", "n" * 254
    yield "name-upper", "Bad_Name"
    yield "name-unicode", "ünï-🙂"
    yield "name-dots", "a..b"
    yield "name-empty", ""


#: Values that are costly to send and check (megabytes, 10 000 items): in the reduced corpus,
#: once in all (on the first field that takes them).
HEAVY = frozenset(
    {
        "huge",
        "huge-text",
        "100k-items",
        "deep-900",
        f"{TEN_THOUSAND}-names",
        f"{TEN_THOUSAND}-items",
        f"{TEN_THOUSAND}-keys",
        f"{TEN_THOUSAND}-labels",
        "annotation-300k",
    }
)


def reduced(items: list[Hostile], *, every_field: bool = False) -> list[Hostile]:
    """A covering part of the corpus, for ``make test``: every hostile value at least once per
    kind (with ``every_field``, also every field of every kind at least once), and each heavy
    value once in all (but 10 000 names once per kind: a session's participants)."""
    out: list[Hostile] = []
    used: set[tuple[str, str]] = set()
    heavy_used: set[str] = set()
    fields: set[tuple[str, str]] = set()
    for item in items:
        what = item.id.rsplit("/", 1)[1]
        if what in HEAVY:
            # 10 000 names once per kind: the first list of names is a session's participants.
            key = f"{item.kind}:{what}" if what == f"{TEN_THOUSAND}-names" else what
            if key in heavy_used:
                continue
            heavy_used.add(key)
        elif (item.kind, what) in used and ((item.kind, item.path) in fields or not every_field):
            continue
        used.add((item.kind, what))
        fields.add((item.kind, item.path))
        out.append(item)
    return out


class _Builder:
    """The manifests of one kind: each a valid body with one hostile change, uniquely named."""

    def __init__(self, crd: dict[str, Any], out: list[Hostile]) -> None:
        self.kind: str = crd["spec"]["names"]["kind"]
        self.plural: str = crd["spec"]["names"]["plural"]
        self.api_version = f"{crd['spec']['group']}/{crd['spec']['versions'][0]['name']}"
        self.schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
            "spec"
        ]
        self.out = out
        self.count = 0

    def add(
        self,
        what: str,
        path: str,
        spec: Any,
        *,
        name: str | None = None,
        meta: dict[str, Any] | None = None,
        text: str | None = None,
    ) -> None:
        kind = self.kind
        if name is None:
            name = f"h{self.count}"
            if kind in ANSWER_SESSION:  # an answer is named <session>-<agent> (admission)
                if isinstance(spec, dict) and path != "spec.agent":
                    spec = dict(spec, agent=name)
                name = f"{ANSWER_SESSION[kind][1]}-{name}"
        self.count += 1
        metadata: dict[str, Any] = {"name": name, **(meta or {})}
        if kind in ANSWER_SESSION and isinstance(metadata.get("labels", {}), dict):
            metadata.setdefault("labels", {}).setdefault("mabeam.io/session", ANSWER_SESSION[kind][1])
        if text is None:
            text = _dumps({"apiVersion": self.api_version, "kind": kind, "metadata": metadata, "spec": spec})
        self.out.append(Hostile(f"{kind}/{path or 'body'}/{what}", kind, self.plural, name, path, text))


def corpus(*, object_items: int = TEN_THOUSAND) -> list[Hostile]:
    """Every manifest of the corpus, in a fixed order, each with a unique name; lists of objects
    have ``object_items`` items (``REAL_API_OBJECT_ITEMS`` for a real API server)."""
    out: list[Hostile] = []
    crds = {c["spec"]["names"]["kind"]: c for c in crdgen.generate_crds()}
    for kind, base in base_specs().items():
        build = _Builder(crds[kind], out)
        for path, node in _fields(build.schema, "spec"):
            for what, value in _values(node, path, object_items):
                build.add(what, path, _set(base, path, value))
        for what, value in _ANY.items():
            build.add(what, "spec", value)
        for path, what, value in _metadata_values():
            key = path.split(".", 1)[1] if "." in path else None
            build.add(what, path, base, meta=value if key is None else {key: value})
        for what, name in _names(kind):
            spec = base
            if kind in ANSWER_SESSION:
                session = ANSWER_SESSION[kind][1]
                spec = dict(base, agent=name.removeprefix(session + "-"))
            build.add(what, "metadata.name", spec, name=name)
        # A body nested too deeply for any decoder, and one that is not JSON at all.
        head = json.dumps({"apiVersion": build.api_version, "kind": kind, "metadata": {"name": "abyss"}})
        abyss = head[:-1] + ', "spec": ' + "[" * 5_000 + "]" * 5_000 + "}"
        build.add("abyss", "spec", None, name="abyss", text=abyss)
        build.add("not-json", "", None, name="not-json", text='{"apiVersion": ' + "\x00" * 4)
    return out


def main(argv: list[str]) -> None:
    target = Path(argv[0] if argv else "hostile-corpus")
    target.mkdir(parents=True, exist_ok=True)
    manifests = corpus()
    for index, item in enumerate(manifests):
        slug = item.id.replace("/", "_").replace(".", "-")
        (target / f"{index:05d}-{slug}.json").write_text(item.text)
    print(f"{len(manifests)} manifests in {target}")


if __name__ == "__main__":
    main(sys.argv[1:])
