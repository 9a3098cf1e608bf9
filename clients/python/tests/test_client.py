"""The client against a real `naac node` (see conftest.py)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import time
import types
import typing
from pathlib import Path

import pytest

import naac
from naac import (
    Client,
    Event,
    Holder,
    Job,
    JobPage,
    NaacError,
    ProblemError,
    UnreachableError,
    WaitTimeout,
)

from conftest import Node, pi_job

# Every route of the OpenAPI document, and the method that calls it.
ROUTES = {
    ("get", "/v1/node"): "node",
    ("get", "/v1/jobs"): "jobs_page",
    ("post", "/v1/jobs"): "submit",
    ("get", "/v1/jobs/{id}"): "job",
    ("delete", "/v1/jobs/{id}"): "cancel",
    ("get", "/v1/jobs/{id}/events"): "events",
    ("get", "/v1/jobs/{id}/tasks"): "tasks",
    ("get", "/v1/jobs/{id}/tasks/{index}/stdout"): "task_stdout",
    ("get", "/v1/jobs/{id}/tasks/{index}/stderr"): "task_stderr",
    ("get", "/v1/jobs/{id}/tasks/{index}/out/{path}"): "task_file",
    ("get", "/v1/jobs/{id}/reduce/{file}"): "reduce_stdout",
    ("get", "/v1/jobs/{id}/archive"): "results",
    ("get", "/v1/pool"): "pool",
    ("get", "/v1/market"): "market",
    ("get", "/v1/wallet"): "wallet",
    ("get", "/v1/policy"): "policy",
    ("put", "/v1/policy"): "set_policy",
    ("get", "/metrics"): "metrics",
    ("get", "/v1/store/{id}/{path}"): "read_data",
    ("put", "/v1/store"): "write_data",
}

JSON_TYPES = {"string": str, "integer": int, "object": dict, "array": list, "boolean": bool}


def _types(annotation: object) -> set[object]:
    """The runtime types a field's annotation allows (`None` for null)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return set().union(*(_types(a) for a in typing.get_args(annotation)))
    if annotation is type(None):
        return {None}
    return {typing.get_origin(annotation) or annotation}


def _check_schema(cls: type, schema: dict[str, typing.Any]) -> None:
    hints = typing.get_type_hints(cls)
    props = schema["properties"]
    assert set(hints) == set(props), f"{cls.__name__} fields differ from the API's schema"
    required = set(schema.get("required", []))
    defaults = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }
    assert required == set(hints) - defaults, f"{cls.__name__}: required fields differ"
    for name, prop in props.items():
        kinds = prop.get("type", "object")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        expected = {None if k == "null" else JSON_TYPES[k] for k in kinds}
        assert _types(hints[name]) == expected, f"{cls.__name__}.{name}: {hints[name]} vs {kinds}"


def test_types_follow_the_openapi_document(node: Node) -> None:
    doc = node.client.openapi()
    schemas = doc["components"]["schemas"]
    _check_schema(Job, schemas["JobView"])
    page = schemas["JobPage"]
    assert set(page["properties"]) == {f.name for f in dataclasses.fields(JobPage)}
    assert page["properties"]["jobs"]["items"]["$ref"].endswith("/JobView")
    # A problem's every field is an attribute of the error.
    err = ProblemError(400, "t", "d")
    for name in schemas["ProblemBody"]["properties"]:
        assert hasattr(err, name), name
    routes = {(m, p) for p, ops in doc["paths"].items() for m in ops if m != "parameters"}
    assert routes == set(ROUTES), f"routes without a method: {routes - set(ROUTES)}"
    for method in ROUTES.values():
        assert callable(getattr(Client, method)), method


def test_submit_wait_and_fetch_results(node: Node, tmp_path: Path) -> None:
    c = node.client
    job_file = pi_job(tmp_path / "pi")
    seen: list[Job] = []
    job = c.submit(job_file)
    assert job.name == "pi" and job.state in {"queued", "running"}
    assert job.id in {j.id for j in c.jobs()}
    done = c.wait(job.id, progress=seen.append, timeout=120)
    assert done.state == "done", done.error
    assert done.finished and done.summary is not None
    assert done.summary["tasks"]["succeeded"] == 4
    assert seen and seen[-1].state == "done"
    answer = c.reduce_stdout(job.id).decode()
    assert answer.startswith("pi = 3.1"), answer
    assert c.task_stdout(job.id, 0).strip()
    assert c.task_stderr(job.id, 0) == b""
    tasks = c.tasks(job.id, start=1, limit=2)
    assert tasks["total"] == 4 and [t["index"] for t in tasks["tasks"]] == [1, 2]
    assert all(t["state"] == "accepted" for t in tasks["tasks"])
    out = c.results(job.id, tmp_path / "results")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"]["total"] == 4
    assert (out / "reduce" / "stdout").read_text() == answer
    # The job directory's other files (sources, builds) stay home: only what it names goes.
    (tmp_path / "pi" / "notes.txt").write_text("not named by the job")
    assert naac.job_files(job_file) == ["pi.wasm"]


def test_events_begin_with_the_state_and_end_with_the_job(node: Node, tmp_path: Path) -> None:
    c = node.client
    job = c.submit(pi_job(tmp_path / "pi", tasks=2))
    events: list[Event] = list(c.events(job.id))
    assert events[0].kind == "state"
    assert events[-1].kind == "state" and events[-1].job.finished
    assert all(e.job.id == job.id for e in events)
    assert all(e.kind in {"state", "progress"} for e in events)


def test_cancel_a_running_job(node: Node, tmp_path: Path) -> None:
    c = node.client
    job = c.submit(pi_job(tmp_path / "long", tasks=400, samples=50_000_000, name="long"))
    # Cancelled once it runs, `wait` returns only when the run has wound down: its summary
    # written, the results kept so far complete.
    for ev in c.events(job.id):
        if ev.job.progress and ev.job.progress.get("succeeded", 0) > 0:
            break
    else:
        pytest.fail("the long job ended before any task of it was accepted")
    assert c.cancel(job.id).state == "cancelled"
    ended = c.wait(job.id, timeout=60)
    assert ended.state == "cancelled" and ended.finished, ended
    assert ended.summary is not None and ended.summary["interrupted"], ended.summary
    assert 0 < ended.summary["tasks"]["succeeded"] < 400
    # A finished job is left as it is.
    assert c.cancel(job.id).state == "cancelled"


def test_wait_gives_up_at_its_timeout(node: Node, tmp_path: Path) -> None:
    c = node.client
    job = c.submit(pi_job(tmp_path / "long", tasks=400, samples=50_000_000, name="slow"))
    started = time.monotonic()
    with pytest.raises(WaitTimeout):
        c.wait(job.id, timeout=1.5)
    assert time.monotonic() - started < 10
    c.cancel(job.id)
    c.wait(job.id, timeout=60)


def test_idempotent_submits_return_one_job(node: Node, tmp_path: Path) -> None:
    c = node.client
    job_file = pi_job(tmp_path / "pi", tasks=1)
    a = c.submit(job_file, idempotency_key="py-once")
    b = c.submit(job_file, idempotency_key="py-once")
    assert a.id == b.id
    c.wait(a.id, timeout=60)


def test_files_can_be_given_explicitly(node: Node, tmp_path: Path) -> None:
    c = node.client
    job_file = pi_job(tmp_path / "pi", tasks=1)
    wasm = (tmp_path / "pi" / "pi.wasm").read_bytes()
    job = c.submit(job_file, files={"pi.wasm": wasm})
    assert c.wait(job.id, timeout=60).state == "done"
    job = c.submit(tmp_path / "pi", files=["pi.wasm"])
    assert c.wait(job.id, timeout=60).state == "done"
    with pytest.raises(NaacError, match="inside its directory"):
        c.submit(job_file, files=["../elsewhere.wasm"])


def test_errors_carry_the_problem_details(node: Node, tmp_path: Path) -> None:
    c = node.client
    with pytest.raises(ProblemError) as e:
        c.job("no-such-job")
    assert e.value.status == 404 and e.value.detail
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "job.toml").write_text('name = "bad"\nmodule = "pi.wasm"\nretries = "three"\n')
    (bad / "pi.wasm").write_bytes(b"\0asm\1\0\0\0")
    with pytest.raises(ProblemError) as e:
        c.submit(bad)
    assert e.value.status == 400
    assert "line 3: retries:" in e.value.detail and "three" in e.value.detail, e.value.detail
    with pytest.raises(ProblemError) as e:
        c.submit(pi_job(tmp_path / "pi", tasks=1), pool_token="x" * 20_000)
    assert e.value.status == 400 and "pool token" in e.value.detail, e.value
    with pytest.raises(ProblemError) as e:
        c.set_policy({"max_cpu_percent": "lots"})
    assert e.value.status == 400 and e.value.field == "max_cpu_percent", e.value
    with pytest.raises(ProblemError) as e:
        Client(node.addr, token="not-a-token").node()
    assert e.value.status == 401
    # A narrower token may read but not submit.
    read_only = _api_token(node, "read")
    assert Client(node.addr, token=read_only).node()["id"] == c.node()["id"]
    with pytest.raises(ProblemError) as e:
        Client(node.addr, token=read_only).submit(pi_job(tmp_path / "pi", tasks=1))
    assert e.value.status == 403


def _api_token(node: Node, scope: str) -> str:
    import os
    import subprocess

    from conftest import naac_bin

    out = subprocess.run(
        [naac_bin(), "api", "token", "--scope", scope],
        env=dict(os.environ, NAAC_HOME=str(node.home)),
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def _naac(node_home: Path, *args: str) -> str:
    import os
    import subprocess

    from conftest import naac_bin

    out = subprocess.run(
        [naac_bin(), *args],
        env=dict(os.environ, NAAC_HOME=str(node_home)),
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def test_stored_data_takes_a_data_token_and_its_holders_proof(
    node: Node, tmp_path: Path
) -> None:
    c = node.client
    api_token = (node.home / "api.token").read_text().strip()
    # The node's API token is no data token of its user.
    with pytest.raises(ProblemError) as e:
        c.read_data("ab" * 32, "x.txt", token=api_token)
    assert e.value.status == 401, e.value
    # A data token of the node's user for bob, shown without bob's proof, or with a proof
    # by another key.
    bob = _naac(tmp_path / "bob", "key", "show", "--user")
    token = _naac(node.home, "token", "mint", "data", "--to", bob, "--write")
    with pytest.raises(ProblemError) as e:
        c.write_data("inbox/a.txt", b"hi", token=token)
    assert e.value.status == 403 and "held by another key" in e.value.detail, e.value
    not_bob: Holder = (bytes(32), lambda m: bytes(64))
    with pytest.raises(ProblemError) as e:
        c.read_data("ab" * 32, "x.txt", token=token, holder=not_bob)
    assert e.value.status == 401 and "naac-holder" in e.value.detail, e.value


def test_nothing_answering_is_unreachable() -> None:
    with pytest.raises(UnreachableError, match="no node answers at 127.0.0.1:9"):
        Client("127.0.0.1:9", token="x", timeout=2).node()
    with pytest.raises(NaacError, match="API token"):
        Client("127.0.0.1:9", home="/nonexistent/naac")


def test_the_node_and_its_pool(node: Node) -> None:
    c = node.client
    me = c.node()
    assert me["roles"] == ["requester"]
    pool = c.pool()
    assert isinstance(pool, dict)
    policy = c.policy()
    assert isinstance(policy, dict)
    assert "naac_api_answers_total" in c.metrics()


def test_job_files_follow_templates(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    for i in range(5):
        (tmp_path / "data" / f"{i}.txt").write_text(str(i))
    (tmp_path / "shard7").write_text("")
    (tmp_path / "m.wasm").write_bytes(b"")
    (tmp_path / "v.wasm").write_bytes(b"")
    (tmp_path / "{lit}.txt").write_text("")
    (tmp_path / "job.toml").write_text(
        'name = "t"\nmodule = "m.wasm"\nargs = ["{i}", "m.wasm-not"]\n'
        'inputs = ["data/{i}.txt", "shard{s}", "{{lit}}.txt", "naac://abc/x", "/etc/passwd", "../outside"]\n'
        "[sweep]\ni = { from = 1, to = 4, step = 2 }\ns = [7, 8]\n"
        '[[stage]]\nname = "v"\nmodule = "v.wasm"\nstdin = "data/{j}.txt"\n[stage.sweep]\nj = [4]\n'
    )
    # Exactly the files the sweep names: not data/0, 2 or 4 for the first, which takes 1
    # and 3; data/4 for the stage, whose sweep is its own.
    assert naac.job_files(tmp_path / "job.toml") == [
        "m.wasm",
        "data/1.txt",
        "data/3.txt",
        "shard7",
        "{lit}.txt",
        "v.wasm",
        "data/4.txt",
    ]
    # A sweep too large to list is matched against the files that are there.
    (tmp_path / "big.toml").write_text(
        'name = "b"\nmodule = "m.wasm"\ninputs = ["data/{i}.txt"]\n'
        "[sweep]\ni = { from = 0, to = 1_000_000_000 }\n"
    )
    assert sorted(naac.job_files(tmp_path / "big.toml")) == sorted(
        ["m.wasm"] + [f"data/{i}.txt" for i in range(5)]
    )
    (tmp_path / "broken.toml").write_text("name = \n")
    with pytest.raises(NaacError, match="broken.toml"):
        naac.job_files(tmp_path / "broken.toml")


def test_names_that_would_break_the_form_are_refused(node: Node, tmp_path: Path) -> None:
    job_file = pi_job(tmp_path / "pi", tasks=1)
    with pytest.raises(NaacError, match="backslash or a line break"):
        node.client.submit(job_file, files={"a\r\nb": b"x"})


def test_the_package_is_typed() -> None:
    assert (Path(naac.__file__).parent / "py.typed").exists()
    sig = inspect.signature(Client.wait)
    assert sig.return_annotation in ("Job", Job)
