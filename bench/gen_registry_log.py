"""Generate a realistic CNCF distribution 2.8.2 JSON application log (``log.formatter: json``).

Usage: .venv/bin/python bench/gen_registry_log.py OUT [-n 1000000] [--seed 1]

Modelled line for line on ../shared/corpus/registry-logs/distribution-live/registry-app-json.log
(captured from ``docker-registry serve`` 2.8.2 with skopeo 1.9.3): logrus' JSON formatter
(keys sorted, no spaces, ``&`` escaped as ``\\u0026``, RFC 3339 times with nanoseconds and
trailing zeros trimmed, ``go.version`` on every request line). Each client operation writes
the lines the registry writes for it:

* pull (HEAD/GET manifest, GET config and layer blobs), after the ``/v2/`` Basic challenge;
* push (HEAD blob 404 ``blob unknown``, POST/PATCH/PUT upload, HEAD manifest 404, PUT
  manifest 201), sometimes a cross-repository mount (POST ``?mount=…&from=…`` 201);
* failed logins (``error authenticating user "NAME"`` + the ``authentication failure``
  challenge line), anonymous requests refused (401), missing tags (404 ``manifest
  unknown``), tag listing, delete by digest (202);

each request with its ``authorized request`` line and ``response completed`` line, a unique
request id (UUID), client address and port, and a clock that advances a few milliseconds per
line. 40 users, 300 repositories, random digests. Same seed, same bytes. Writes exactly ``-n``
lines (the last operation may be cut short) and prints the size and line mix on stderr.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

GO = "go1.19.8"
HOST = "registry.eu-1.internal:5000"
INSTANCE = "39a6691c-7dbb-4f03-855d-fc1a996721bf"
USERS = [f"robot$ci-{i}" for i in range(25)] + [
    "alice",
    "bob",
    "carol",
    "dmitri",
    "eve-ops",
    "farid",
    "gunilla",
    "hana",
    "ines",
    "jonas",
    "karin",
    "lukas",
    "marta",
    "nils",
    "olga",
]
AGENTS = ["skopeo/1.9.3", "containerd/1.7.2", "docker/24.0.5 go/go1.20.6", "oras/1.1.0"]
CHALLENGE = 'error authorizing context: basic authentication challenge for realm "basic-realm": '
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def go_time(t: datetime, nanos: int) -> str:
    """RFC 3339 with nanoseconds, trailing zeros trimmed (Go ``time.RFC3339Nano``)."""
    frac = f"{t.microsecond * 1000 + nanos:09d}".rstrip("0")
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


class Generator:
    """Emits one registry operation at a time as logrus JSON lines."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = datetime(2026, 11, 29, 0, 0, 0, tzinfo=UTC)
        self.repos = [
            f"models/{team}/{name}-{i}"
            for i, (team, name) in enumerate(
                (
                    self.rng.choice(["nlp", "vision", "speech", "rec", "fraud", "med"]),
                    self.rng.choice(["llama-eu", "resnet50", "bert", "whisper", "xgb", "vit"]),
                )
                for _ in range(300)
            )
        ]
        self.tags = ["v1", "v2", "v3", "prod", "staging", "latest", "2026.11", "rc1"]
        self.mix: Counter[str] = Counter()

    def digest(self) -> str:
        return "sha256:" + self.rng.randbytes(32).hex()

    def line(self, fields: dict[str, Any]) -> str:
        self.now += timedelta(microseconds=self.rng.randint(50, 4000))
        fields["time"] = go_time(self.now, self.rng.randrange(1000))
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        msg = str(fields["msg"])
        self.mix[msg.split('"', 1)[0] + "…" if msg.startswith("error auth") else msg] += 1
        return text.replace("&", "\\u0026")

    def request(
        self, client: dict[str, str], method: str, uri: str, **vars_: str
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "go.version": GO,
            "http.request.host": HOST,
            "http.request.id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "http.request.method": method,
            "http.request.remoteaddr": f"{client['ip']}:{self.rng.randint(32768, 60999)}",
            "http.request.uri": uri,
            "http.request.useragent": client["ua"],
        }
        fields.update({f"vars.{k}": v for k, v in vars_.items()})
        return fields

    def served(
        self,
        client: dict[str, str],
        method: str,
        uri: str,
        status: int,
        written: int,
        ctype: str | None = None,
        error: tuple[str, str, str] | None = None,
        user: str | None = None,
        **vars_: str,
    ) -> Iterator[str]:
        """``authorized request`` then ``response completed [with error]``."""
        req = self.request(client, method, uri, **vars_)
        yield self.line({**req, "level": "info", "msg": "authorized request"})
        done = {k: v for k, v in req.items() if not k.startswith("vars.") or error}
        done.update(
            {
                "http.response.duration": f"{self.rng.uniform(0.4, 40):.6f}ms",
                "http.response.status": status,
                "http.response.written": written,
                "level": "error" if error else "info",
                "msg": "response completed with error" if error else "response completed",
            }
        )
        if ctype:
            done["http.response.contenttype"] = ctype
        if error:
            code, message, detail = error
            done.update({"err.code": code, "err.message": message, "err.detail": detail})
            if user:
                done["auth.user.name"] = user
        yield self.line(done)

    def challenge(self, client: dict[str, str], uri: str = "/v2/", **vars_: str) -> str:
        req = self.request(client, "GET", uri, **vars_)
        return self.line(
            {**req, "level": "warning", "msg": CHALLENGE + "invalid authorization credential"}
        )

    def operation(self) -> Iterator[str]:
        r = self.rng
        client = {
            "ip": f"10.{r.randrange(20, 24)}.{r.randrange(256)}.{r.randint(1, 254)}",
            "ua": r.choice(AGENTS),
        }
        user = r.choice(USERS)
        repo = r.choice(self.repos)
        tag = r.choice(self.tags)
        kind = r.choices(
            ["pull", "push", "badlogin", "anon", "missing", "tags", "delete"],
            weights=[62, 14, 8, 6, 5, 3, 2],
        )[0]
        yield self.challenge(client)
        if kind == "pull":
            if r.random() < 0.5:
                yield from self.served(
                    client, "HEAD", f"/v2/{repo}/manifests/{tag}", 200, 0, OCI_MANIFEST,
                    name=repo, reference=tag,
                )  # fmt: skip
            yield from self.served(
                client, "GET", f"/v2/{repo}/manifests/{tag}", 200, r.randint(400, 2000),
                OCI_MANIFEST, name=repo, reference=tag,
            )  # fmt: skip
            for _ in range(r.randint(1, 4)):
                d = self.digest()
                yield from self.served(
                    client, "GET", f"/v2/{repo}/blobs/{d}", 200, r.randint(200, 1 << 30),
                    "application/octet-stream", name=repo, digest=d,
                )  # fmt: skip
        elif kind == "push":
            for _ in range(r.randint(1, 3)):
                d = self.digest()
                if r.random() < 0.2:
                    src = r.choice(self.repos)
                    yield from self.served(
                        client, "POST",
                        f"/v2/{repo}/blobs/uploads/?from={src.replace('/', '%2F')}"
                        f"&mount={d.replace(':', '%3A')}",
                        201, 0, name=repo,
                    )  # fmt: skip
                    continue
                yield from self.served(
                    client, "HEAD", f"/v2/{repo}/blobs/{d}", 404, 157,
                    "application/json; charset=utf-8",
                    ("blob unknown", "blob unknown to registry", d), user, name=repo, digest=d,
                )  # fmt: skip
                up = str(uuid.UUID(int=r.getrandbits(128), version=4))
                yield from self.served(
                    client, "POST", f"/v2/{repo}/blobs/uploads/", 202, 0, name=repo
                )
                state = r.randbytes(120).hex()
                yield from self.served(
                    client, "PATCH", f"/v2/{repo}/blobs/uploads/{up}?_state={state}", 202, 0,
                    name=repo, uuid=up,
                )  # fmt: skip
                yield from self.served(
                    client, "PUT",
                    f"/v2/{repo}/blobs/uploads/{up}?_state={state}&digest={d.replace(':', '%3A')}",
                    201, 0, name=repo, uuid=up,
                )  # fmt: skip
            yield from self.served(
                client, "HEAD", f"/v2/{repo}/manifests/{tag}", 404, 92,
                "application/json; charset=utf-8",
                ("manifest unknown", "manifest unknown", f"unknown tag={tag}"), user,
                name=repo, reference=tag,
            )  # fmt: skip
            yield from self.served(
                client, "PUT", f"/v2/{repo}/manifests/{tag}", 201, 0, name=repo, reference=tag
            )
        elif kind == "badlogin":
            req = self.request(
                client, "GET", f"/v2/{repo}/manifests/{tag}", name=repo, reference=tag
            )
            msg = f'error authenticating user "{user}": authentication failure'
            yield self.line({**req, "level": "error", "msg": msg})
            yield self.line(
                {**req, "level": "warning", "msg": CHALLENGE + "authentication failure"}
            )
        elif kind == "anon":
            yield self.challenge(client, f"/v2/{repo}/manifests/{tag}", name=repo, reference=tag)
        elif kind == "missing":
            yield from self.served(
                client, "GET", f"/v2/{repo}/manifests/{tag}-old", 404, 92,
                "application/json; charset=utf-8",
                ("manifest unknown", "manifest unknown", f"unknown tag={tag}-old"), user,
                name=repo, reference=f"{tag}-old",
            )  # fmt: skip
        elif kind == "tags":
            yield from self.served(
                client, "GET", f"/v2/{repo}/tags/list", 200, 120, "application/json", name=repo
            )
        else:
            d = self.digest()
            yield from self.served(
                client, "DELETE", f"/v2/{repo}/manifests/{d}", 202, 0, name=repo, reference=d
            )


def generate(out: Path, lines: int, seed: int) -> Counter[str]:
    """Write exactly ``lines`` lines to ``out``; returns the count of each message kind."""
    gen = Generator(seed)
    startup = [
        "redis not configured",
        "listening on 127.0.0.1:5000",
        "Starting upload purge in 25m0s",
    ]
    written = 0
    with out.open("w", encoding="utf-8", buffering=1 << 20) as fh:
        for msg in startup[:lines]:
            fh.write(
                gen.line(
                    {
                        "environment": "bench",
                        "go.version": GO,
                        "instance.id": INSTANCE,
                        "level": "info",
                        "msg": msg,
                        "service": "registry",
                        "version": "2.8.2+ds1",
                    }
                )
                + "\n"
            )
            written += 1
        while written < lines:
            for text in gen.operation():
                fh.write(text + "\n")
                written += 1
                if written == lines:
                    break
    return gen.mix


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("-n", "--lines", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    mix = generate(args.out, args.lines, args.seed)
    size = args.out.stat().st_size
    print(f"wrote {args.lines} lines, {size / 1e6:.1f} MB to {args.out}", file=sys.stderr)
    for msg, n in mix.most_common():
        print(f"  {n:>9}  {msg}", file=sys.stderr)


if __name__ == "__main__":
    main()
