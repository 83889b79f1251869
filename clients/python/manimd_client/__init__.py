"""A client of manimd, the Manim render service, and the `%%manimd` Jupyter
magic (`%load_ext manimd_client`).

    from manimd_client import Client

    with Client("http://127.0.0.1:8080") as client:
        job = client.render(path="scene.py", quality="medium")
        for event in job.follow():
            print(event.name, event.data)
        job.download("scene.mp4")
"""

from __future__ import annotations

from typing import Any

from . import _types as types
from ._client import AsyncClient, AsyncJob, Client, Event, Frame, Job, Preview
from .errors import (
    ApiError,
    InvalidRequest,
    JobCanceled,
    JobFailed,
    ManimdError,
    NotFound,
    NotReady,
    PayloadTooLarge,
    ServerError,
    TooManyRequests,
    TransportError,
    Unauthorized,
    Unavailable,
    UnexpectedResponse,
    Unprocessable,
    UpstreamError,
)

__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext manimd_client`: registers `%%manimd`."""
    from .magic import load

    load(ipython)


__all__ = [
    "ApiError", "AsyncClient", "AsyncJob", "Client", "Event", "Frame", "InvalidRequest", "Job",
    "JobCanceled", "JobFailed", "ManimdError", "NotFound", "NotReady", "PayloadTooLarge",
    "Preview", "ServerError", "TooManyRequests", "TransportError", "Unauthorized", "Unavailable",
    "UnexpectedResponse", "Unprocessable", "UpstreamError", "load_ipython_extension", "types",
]
