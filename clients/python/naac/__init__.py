"""A typed client for a naac node's HTTP API.

    from naac import Client

    client = Client()                      # the local node, with its admin token
    job = client.submit("examples/pi/job.toml")
    job = client.wait(job.id, progress=lambda j: print(j.state, j.progress))
    print(client.reduce_stdout(job.id).decode())

Errors are :class:`NaacError`: :class:`ProblemError` when the node answered with RFC 9457
problem details (``status``, ``title``, ``detail``, ``field``), :class:`UnreachableError`
when nothing answers.
"""

from ._client import (
    DEFAULT_ADDR,
    Client,
    Event,
    Holder,
    Job,
    JobPage,
    NaacError,
    ProblemError,
    UnreachableError,
    WaitTimeout,
    holder_header,
    job_files,
)

__all__ = [
    "DEFAULT_ADDR",
    "Client",
    "Event",
    "Holder",
    "Job",
    "JobPage",
    "NaacError",
    "ProblemError",
    "UnreachableError",
    "WaitTimeout",
    "holder_header",
    "job_files",
]
__version__ = "0.1.0"
