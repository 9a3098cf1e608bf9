"""The client: one HTTP call per method, over the standard library only."""

from __future__ import annotations

import glob
import hashlib
import http.client
import itertools
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
import tomllib
import urllib.parse
import uuid
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

#: Where a node's API listens unless told otherwise (loopback only).
DEFAULT_ADDR = "127.0.0.1:7878"

#: What a path may be given as.
PathLike = Union[str, "os.PathLike[str]"]

#: A data token's holder proving itself: its ed25519 public key (32 bytes) and a function
#: that signs bytes with its secret key (e.g. PyNaCl's ``lambda m: key.sign(m).signature``).
Holder = tuple[bytes, Callable[[bytes], bytes]]


def holder_header(holder: Holder, method: str, path: str, body: bytes = b"") -> str:
    """The ``Naac-Holder`` header that proves ``holder`` holds the data token of one
    request: its key, the time and its signature over the method, the path
    (``/v1/store/ID/PATH``, or ``/v1/store?path=P`` unencoded for a write), the time and the
    body's SHA-256."""
    key, sign = holder
    secs = int(time.time())
    msg = (
        b"naac data request v1\0"
        + method.encode()
        + b" "
        + path.encode()
        + b"\0"
        + secs.to_bytes(8, "little")
        + hashlib.sha256(body).digest()
    )
    return f"{key.hex()} {secs} {sign(msg).hex()}"


class NaacError(Exception):
    """Any failure of a call."""


class UnreachableError(NaacError):
    """Nothing answers at the node's address (no node running there)."""

    def __init__(self, addr: str, why: str) -> None:
        super().__init__(
            f"no node answers at {addr}: {why} "
            f"(start one with `naac node`; its API listens on {DEFAULT_ADDR} unless --api says otherwise)"
        )
        self.addr = addr
        self.why = why


class ProblemError(NaacError):
    """The node refused the call with RFC 9457 problem details (the API's ``ProblemBody``)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        type: str = "about:blank",
        field: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        #: The field of the input at fault, when one is (a policy key).
        self.field = field
        #: Seconds to wait before trying again (``429``).
        self.retry_after = retry_after


class WaitTimeout(NaacError):
    """:meth:`Client.wait` gave up before the job finished."""

    def __init__(self, job: Job, seconds: float) -> None:
        super().__init__(f"job {job.id} is still {job.state} after {seconds:g} s")
        self.job = job


@dataclass(frozen=True)
class Job:
    """One job as the API shows it (its ``JobView`` schema)."""

    id: str
    name: str
    #: ``queued``, ``running``, ``done``, ``failed`` or ``cancelled``.
    state: str
    #: Milliseconds since the Unix epoch.
    submitted_ms: int
    #: Where its results go on the node.
    out_dir: str
    started_ms: int | None = None
    finished_ms: int | None = None
    #: Why it failed or was refused.
    error: str | None = None
    #: Its ``summary.json`` once it ran.
    summary: dict[str, Any] | None = None
    #: While it runs: tasks ``total``, ``succeeded``, ``failed``, ``running``,
    #: ``providers``, and ``waiting`` (why no host may run it now, when none may).
    progress: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, v: Mapping[str, Any]) -> Job:
        """A job from the API's JSON; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v[k] for k in v if k in known})
        except TypeError as e:
            raise NaacError(f"the node's answer is not a job: {e}") from None

    @property
    def finished(self) -> bool:
        """Whether the job is over for good: done or failed, or cancelled and (if it had
        started) its run wound down, its summary or error written, so its results are
        complete. The event stream ends after such a view of the job."""
        if self.state in ("done", "failed"):
            return True
        if self.state == "cancelled":
            return self.started_ms is None or self.summary is not None or self.error is not None
        return False


@dataclass(frozen=True)
class JobPage:
    """A page of jobs, newest first (the API's ``JobPage`` schema)."""

    jobs: list[Job]
    #: The cursor of the next page; ``None`` on the last.
    next: str | None = None


@dataclass(frozen=True)
class Event:
    """One event of a job's stream: ``kind`` is ``state`` when its state changed (the first
    event is one), ``progress`` while it runs."""

    kind: str
    job: Job


def data_dir() -> Path:
    """The node's data dir as ``naac`` finds it: ``$NAAC_HOME``, else
    ``$XDG_DATA_HOME/naac``, else ``~/.local/share/naac``."""
    if os.environ.get("NAAC_HOME"):
        return Path(os.environ["NAAC_HOME"])
    if os.environ.get("XDG_DATA_HOME"):
        return Path(os.environ["XDG_DATA_HOME"]) / "naac"
    return Path.home() / ".local" / "share" / "naac"


#: Most paths one template expands to before it is matched as a pattern instead.
_MAX_EXPANSION = 100_000


def _template(s: str) -> list[tuple[bool, str]]:
    """``s`` as parts ``(is_key, text)``: ``{key}`` placeholders and literal text, with
    ``{{`` and ``}}`` standing for braces (the job file's template syntax)."""
    parts: list[tuple[bool, str]] = []
    lit = ""
    i = 0
    while i < len(s):
        c = s[i]
        if c in "{}" and s[i + 1 : i + 2] == c:
            lit += c
            i += 2
        elif c == "{":
            end = s.find("}", i)
            if end < 0:
                return [(False, s)]
            if lit:
                parts.append((False, lit))
                lit = ""
            parts.append((True, s[i + 1 : end].strip()))
            i = end + 1
        else:
            lit += c
            i += 1
    if lit:
        parts.append((False, lit))
    return parts


def _axis(v: object) -> list[str] | None:
    """The values of one sweep key, as text, or ``None`` when there are too many to list."""
    if isinstance(v, list):
        return [str(x) for x in v]
    if isinstance(v, dict) and isinstance(v.get("from"), int) and isinstance(v.get("to"), int):
        step = v.get("step", 1)
        if not isinstance(step, int) or step <= 0:
            return None
        r = range(v["from"], v["to"], step)
        return [str(x) for x in r] if len(r) <= _MAX_EXPANSION else None
    return None


def job_files(job_file: PathLike) -> list[str]:
    """The files a job file names, as paths relative to its directory: every string in it
    that is the path of a file beside it (or below). A ``{key}`` template is filled with
    each value its sweep gives the key (``data/{i}.txt`` with ``i = [0, 1]`` names
    ``data/0.txt`` and ``data/1.txt``). Stored data (``naac://``), absolute paths and paths
    outside the job's directory are left out. Pass ``files=`` to :meth:`Client.submit` for
    anything this misses."""
    path = Path(job_file)
    base = path.parent.resolve()
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise NaacError(f"read the job file {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise NaacError(f"{path}: {e}") from None
    found: dict[str, None] = {}
    me = path.resolve()

    def take(p: Path) -> None:
        try:
            full = p.resolve()
            rel = full.relative_to(base)
        except (ValueError, OSError):
            return
        if full != me and full.is_file():
            found[rel.as_posix()] = None

    def expand(parts: list[tuple[bool, str]], sweep: dict[str, object]) -> None:
        axes = [_axis(sweep.get(t)) if k else [t] for k, t in parts]
        count = 1
        for a in axes:
            count *= len(a) if a is not None else _MAX_EXPANSION + 1
        if count <= _MAX_EXPANSION:
            for combo in itertools.product(*(a or [] for a in axes)):
                take(base / "".join(combo))
            return
        # Too many (or unknown) values: match the pattern against the files that are there.
        pattern = "".join("*" if k else glob.escape(t) for k, t in parts)
        regex = re.compile(
            "".join(
                ("(" + "|".join(map(re.escape, a)) + ")") if k and a is not None
                else "[^/]*" if k
                else re.escape(t)
                for (k, t), a in zip(parts, axes)
            )
        )
        for c in sorted(base.glob(pattern)):
            try:
                rel = c.relative_to(base).as_posix()
            except ValueError:
                continue
            if regex.fullmatch(rel):
                take(c)

    def visit(v: object, sweep: dict[str, object]) -> None:
        if isinstance(v, dict):
            inner = v.get("sweep")
            if isinstance(inner, dict):
                sweep = {**sweep, **inner}
            for k, x in v.items():
                if k != "sweep":
                    visit(x, sweep)
        elif isinstance(v, list):
            for x in v:
                visit(x, sweep)
        elif isinstance(v, str) and v and "://" not in v and not os.path.isabs(v):
            parts = _template(v)
            if not any(k for k, _ in parts):
                take(base / "".join(t for _, t in parts))
            elif any(t.strip() for k, t in parts if not k):
                # `{seed}` alone is an argument, not a file.
                expand(parts, sweep)

    visit(doc, {})
    return list(found)


def _multipart(parts: Sequence[tuple[str, str, bytes]]) -> tuple[str, bytes]:
    """A ``multipart/form-data`` body of ``(name, filename, bytes)`` parts, and its type."""
    boundary = "naac-" + uuid.uuid4().hex
    out = bytearray()
    for name, filename, data in parts:
        if any(c in name + filename for c in "\\\r\n"):
            raise NaacError(f"{name!r}: a file's name may not hold a backslash or a line break")
        quoted = name.replace('"', '\\"')
        fquoted = filename.replace('"', '\\"')
        out += f"--{boundary}\r\n".encode()
        out += (
            f'Content-Disposition: form-data; name="{quoted}"; filename="{fquoted}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        out += data
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", bytes(out)


class Client:
    """A naac node's HTTP API.

    ``addr`` is ``host:port`` (default ``$NAAC_API``, else ``127.0.0.1:7878``); ``token`` the
    bearer token (default ``$NAAC_TOKEN``, else the node's admin token from ``api.token`` in
    its data dir, ``home``). ``timeout`` bounds each call's wait for an answer, in seconds.
    """

    def __init__(
        self,
        addr: str | None = None,
        token: str | None = None,
        *,
        home: PathLike | None = None,
        timeout: float = 30.0,
    ) -> None:
        addr = addr or os.environ.get("NAAC_API") or DEFAULT_ADDR
        addr = addr.removeprefix("http://").rstrip("/")
        host, sep, port = addr.rpartition(":")
        if not sep or not port.isdigit():
            raise NaacError(f"the node's address {addr!r} is not HOST:PORT")
        self.addr = addr
        self._host = host.strip("[]")
        self._port = int(port)
        self.timeout = timeout
        if token is None:
            token = os.environ.get("NAAC_TOKEN")
        if token is None:
            path = (Path(home) if home is not None else data_dir()) / "api.token"
            try:
                token = path.read_text()
            except OSError as e:
                raise NaacError(
                    f"read the node's API token {path}: {e.strerror} "
                    "(start the node first, `naac node`; it writes the token there)"
                ) from None
        self._token = token.strip()

    # --- transport ---------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = http.client.HTTPConnection(
            self._host, self._port, timeout=timeout or self.timeout
        )
        h = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        h.update(headers or {})
        try:
            try:
                conn.request(method, path, body=body, headers=h)
            except (BrokenPipeError, ConnectionResetError):
                # The node may have answered before it read the whole body (413): its
                # answer says why.
                if conn.sock is None:
                    raise
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise UnreachableError(self.addr, str(e) or type(e).__name__) from None
        if resp.status >= 400:
            try:
                raw = resp.read()
            finally:
                conn.close()
            raise self._problem(resp, raw)
        return conn, resp

    @staticmethod
    def _problem(resp: http.client.HTTPResponse, raw: bytes) -> ProblemError:
        try:
            v = json.loads(raw)
        except ValueError:
            v = None
        if not isinstance(v, dict):
            v = {}
        retry = resp.getheader("Retry-After")
        detail = v.get("detail")
        return ProblemError(
            status=resp.status,
            title=str(v.get("title") or resp.reason),
            detail=str(detail) if detail is not None else raw.decode("utf-8", "replace"),
            type=str(v.get("type") or "about:blank"),
            field=v.get("field") if isinstance(v.get("field"), str) else None,
            retry_after=int(retry) if retry and retry.isdigit() else None,
        )

    def _bytes(self, method: str, path: str, **kw: Any) -> bytes:
        conn, resp = self._send(method, path, **kw)
        try:
            return resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise NaacError(f"the node's answer to {method} {path} broke off: {e}") from None
        finally:
            conn.close()

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        raw = self._bytes(method, path, **kw)
        try:
            return json.loads(raw)
        except ValueError as e:
            raise NaacError(f"the node's answer to {method} {path} is not JSON: {e}") from None

    def _obj(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        v = self._json(method, path, **kw)
        if not isinstance(v, dict):
            raise NaacError(f"the node's answer to {method} {path} is not a JSON object")
        return v

    @staticmethod
    def _q(segment: str) -> str:
        return urllib.parse.quote(segment, safe="")

    # --- jobs ----------------------------------------------------------------------------

    def submit(
        self,
        job: PathLike,
        *,
        files: Mapping[str, bytes] | Sequence[PathLike] | None = None,
        idempotency_key: str | None = None,
        pool_token: str | None = None,
    ) -> Job:
        """Queues a job: ``job`` is a job file or a directory holding ``job.toml``. The files
        it names go with it (:func:`job_files`), or ``files``: paths relative to the job
        file's directory, or a mapping of such paths to their bytes. With
        ``idempotency_key``, a retried submit returns the same job. ``pool_token`` (from
        ``naac token mint pool``) is shown to providers by the job's runs: those that trust
        its root run the job even when its user is not on their allow list."""
        path = Path(job)
        if path.is_dir():
            path = path / "job.toml"
        try:
            text = path.read_bytes()
        except OSError as e:
            raise NaacError(f"read the job file {path}: {e.strerror}") from None
        base = path.parent
        parts: list[tuple[str, str, bytes]] = [("job", "job.toml", text)]
        if files is None:
            files = list(job_files(path))
        if isinstance(files, Mapping):
            for name, data in files.items():
                parts.append((str(PurePosixPath(name)), str(name), bytes(data)))
        else:
            for f in files:
                p = Path(f)
                full = p if p.is_absolute() else base / p
                try:
                    rel = full.resolve().relative_to(base.resolve()).as_posix()
                except ValueError:
                    raise NaacError(
                        f"{f}: a job's files must be inside its directory {base}"
                    ) from None
                try:
                    parts.append((rel, rel, full.read_bytes()))
                except OSError as e:
                    raise NaacError(f"read {full}: {e.strerror}") from None
        ctype, body = _multipart(parts)
        headers = {"Content-Type": ctype}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if pool_token is not None:
            headers["Naac-Pool-Token"] = pool_token.strip()
        return Job.from_json(self._json("POST", "/v1/jobs", body=body, headers=headers))

    def job(self, job_id: str) -> Job:
        """One job: its state and, once it ran, its summary."""
        return Job.from_json(self._json("GET", f"/v1/jobs/{self._q(job_id)}"))

    def jobs_page(self, limit: int = 100, cursor: str | None = None) -> JobPage:
        """One page of the node's jobs, newest first (``limit`` at most 1000)."""
        q = {"limit": str(limit)}
        if cursor is not None:
            q["cursor"] = cursor
        v = self._json("GET", "/v1/jobs?" + urllib.parse.urlencode(q))
        return JobPage([Job.from_json(j) for j in v["jobs"]], v.get("next"))

    def jobs(self) -> list[Job]:
        """Every job on the node, newest first (every page)."""
        out: list[Job] = []
        cursor: str | None = None
        while True:
            page = self.jobs_page(1000, cursor)
            out.extend(page.jobs)
            if page.next is None:
                return out
            cursor = page.next

    def cancel(self, job_id: str) -> Job:
        """Cancels a queued or running job (a finished one is left as it is)."""
        return Job.from_json(self._json("DELETE", f"/v1/jobs/{self._q(job_id)}"))

    def events(self, job_id: str, timeout: float | None = None) -> Iterator[Event]:
        """The job's Server-Sent Events, each with the job as :meth:`job` shows it. The
        iterator ends after the job does, when the node goes away, or when nothing (not
        even a keep-alive, sent every 15 s) arrives for ``timeout`` seconds (default 60)."""
        conn, resp = self._send(
            "GET",
            f"/v1/jobs/{self._q(job_id)}/events",
            headers={"Accept": "text/event-stream"},
            timeout=timeout if timeout is not None else max(self.timeout, 60.0),
        )
        try:
            kind, data = "message", list[str]()
            while True:
                try:
                    raw = resp.readline()
                except (OSError, http.client.HTTPException):
                    return
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line == "":
                    if data:
                        try:
                            v = json.loads("\n".join(data))
                        except ValueError as e:
                            raise NaacError(f"an event of job {job_id} is not JSON: {e}") from None
                        yield Event(kind, Job.from_json(v))
                    kind, data = "message", []
                elif line.startswith(":"):
                    continue
                else:
                    key, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if key == "event":
                        kind = value
                    elif key == "data":
                        data.append(value)
        finally:
            conn.close()

    def wait(
        self,
        job_id: str,
        progress: Callable[[Job], None] | None = None,
        timeout: float | None = None,
    ) -> Job:
        """Follows the job until it ends and returns it as it ended (a cancelled job once
        its run has wound down, so its results are complete); ``progress`` is called with
        the job at each change, the last time with the job as it ended. A dropped stream
        (the node restarting) is picked up again. Raises :class:`WaitTimeout` after
        ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: Job | None = None

        def seen(j: Job) -> Job:
            nonlocal last
            if progress is not None and j != last:
                progress(j)
            last = j
            return j

        def left() -> float | None:
            if deadline is None:
                return None
            rest = deadline - time.monotonic()
            if rest <= 0:
                raise WaitTimeout(last or job, timeout or 0.0)
            return rest

        job = seen(self.job(job_id))
        while not job.finished:
            rest = left()
            try:
                for ev in self.events(job_id, timeout=min(rest, 60.0) if rest else None):
                    job = seen(ev.job)
                    if job.finished:
                        return job
                    left()
            except UnreachableError:
                pass
            left()
            time.sleep(0.2)
            try:
                job = seen(self.job(job_id))
            except UnreachableError:
                continue
        return job

    def run(
        self,
        job: PathLike,
        progress: Callable[[Job], None] | None = None,
        timeout: float | None = None,
    ) -> Job:
        """:meth:`submit` then :meth:`wait`."""
        return self.wait(self.submit(job).id, progress, timeout)

    # --- results -------------------------------------------------------------------------

    def tasks(self, job_id: str, start: int = 0, limit: int = 100) -> dict[str, Any]:
        """Tasks ``start..start+limit`` of the job: each one's state, its accepted result's
        record (provider, fuel, verification, price) and its ``/out`` files."""
        q = urllib.parse.urlencode({"from": start, "limit": limit})
        return self._obj("GET", f"/v1/jobs/{self._q(job_id)}/tasks?{q}")

    def task_stdout(self, job_id: str, index: int) -> bytes:
        """Task ``index``'s standard output, once its result is accepted."""
        return self._bytes("GET", f"/v1/jobs/{self._q(job_id)}/tasks/{int(index)}/stdout")

    def task_stderr(self, job_id: str, index: int) -> bytes:
        """Task ``index``'s standard error, once its result is accepted."""
        return self._bytes("GET", f"/v1/jobs/{self._q(job_id)}/tasks/{int(index)}/stderr")

    def task_file(self, job_id: str, index: int, path: str) -> bytes:
        """A file task ``index`` left in ``/out`` (``path`` relative to it)."""
        quoted = "/".join(self._q(s) for s in PurePosixPath(path).parts)
        return self._bytes("GET", f"/v1/jobs/{self._q(job_id)}/tasks/{int(index)}/out/{quoted}")

    def reduce_stdout(self, job_id: str) -> bytes:
        """The reduce step's standard output: the job's combined answer."""
        return self._bytes("GET", f"/v1/jobs/{self._q(job_id)}/reduce/stdout")

    def reduce_stderr(self, job_id: str) -> bytes:
        """The reduce step's standard error."""
        return self._bytes("GET", f"/v1/jobs/{self._q(job_id)}/reduce/stderr")

    def results(self, job_id: str, dest: PathLike) -> Path:
        """Downloads the job's results (the layout of ``naac run``'s) into ``dest`` and
        returns it. Nothing in the archive lands outside ``dest``."""
        out = Path(dest)
        out.mkdir(parents=True, exist_ok=True)
        conn, resp = self._send(
            "GET", f"/v1/jobs/{self._q(job_id)}/archive", timeout=max(self.timeout, 60.0)
        )
        with tempfile.TemporaryFile() as tmp:
            try:
                shutil.copyfileobj(resp, tmp)
            except (OSError, http.client.HTTPException) as e:
                raise NaacError(f"the archive of job {job_id} broke off: {e}") from None
            finally:
                conn.close()
            tmp.seek(0)
            try:
                with tarfile.open(fileobj=tmp, mode="r:") as tar:
                    # Regular files and directories only, never outside `dest`.
                    tar.extractall(out, filter="data")
            except (tarfile.TarError, OSError) as e:
                raise NaacError(f"unpack the results of job {job_id} into {out}: {e}") from None
        return out

    # --- the node and the pool -----------------------------------------------------------

    def node(self) -> dict[str, Any]:
        """The node: its peer id, roles, version and the peers it joined."""
        return self._obj("GET", "/v1/node")

    def pool(self) -> dict[str, Any]:
        """Every host in view, its resources, state, price and reputation, and the totals
        (the node listens a few seconds for them)."""
        return self._obj("GET", "/v1/pool", timeout=max(self.timeout, 60.0))

    def market(self) -> dict[str, Any]:
        """The live offers: each provider's asking price and free slots."""
        return self._obj("GET", "/v1/market", timeout=max(self.timeout, 60.0))

    def wallet(self, verify: bool = False) -> dict[str, Any]:
        """The user's account: balance and history; with ``verify``, the bank's whole ledger
        checked."""
        path = "/v1/wallet?verify=true" if verify else "/v1/wallet"
        return self._obj("GET", path, timeout=max(self.timeout, 60.0))

    def policy(self) -> dict[str, Any]:
        """The owner's policy, every key with its value (defaults included)."""
        return self._obj("GET", "/v1/policy")

    def set_policy(self, changes: Mapping[str, str | int | float | bool]) -> dict[str, Any]:
        """Sets policy keys, all or none (each as ``naac policy set KEY VALUE`` takes it);
        the policy as it now is. A refused key is the error's ``field``."""
        body = json.dumps(dict(changes)).encode()
        return self._obj(
            "PUT", "/v1/policy", body=body, headers={"Content-Type": "application/json"}
        )

    def metrics(self) -> str:
        """The node's figures in Prometheus' text format."""
        return self._bytes("GET", "/metrics").decode()

    # --- stored data ---------------------------------------------------------------------

    def read_data(
        self, data_id: str, path: str, *, token: str, holder: Holder | None = None
    ) -> bytes:
        """File ``path`` of stored data ``data_id`` (``naac://ID`` or 64 hex) through its
        owner's node, with ``token``: a data token of the node's user (``naac token mint
        data``), instead of the API token. ``holder`` proves you hold it (a bound token
        needs it)."""
        data_id = data_id.removeprefix("naac://")
        at = f"/v1/store/{data_id}/{path}"
        headers = {"Authorization": f"Bearer {token.strip()}"}
        if holder is not None:
            headers["Naac-Holder"] = holder_header(holder, "GET", at)
        quoted = f"/v1/store/{self._q(data_id)}/" + "/".join(
            self._q(p) for p in path.split("/")
        )
        return self._bytes("GET", quoted, headers=headers, timeout=max(self.timeout, 60.0))

    def write_data(
        self, path: str, data: bytes, *, token: str, holder: Holder | None = None
    ) -> dict[str, Any]:
        """Stores ``data`` as file ``path``, private, in the name of the node's user, with a
        data token of theirs that lets you write there; its ``id`` (``naac://…``)."""
        headers = {
            "Authorization": f"Bearer {token.strip()}",
            "Content-Type": "application/octet-stream",
        }
        if holder is not None:
            headers["Naac-Holder"] = holder_header(holder, "PUT", f"/v1/store?path={path}", data)
        q = urllib.parse.urlencode({"path": path})
        return self._obj(
            "PUT", f"/v1/store?{q}", body=data, headers=headers, timeout=max(self.timeout, 120.0)
        )

    def openapi(self) -> dict[str, Any]:
        """The API's OpenAPI document."""
        return self._obj("GET", "/v1/openapi.json")
