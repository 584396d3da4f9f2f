"""A running Label Studio, through ``label-studio-sdk``: the client, the project, and every
failure as one line that names the server's URL and never the token.

``push`` (``train/label/push.py``) and ``pull`` (``train/label/pull.py``) share this. The
SDK is optional (``pip install 'topictone[label]'``) and is imported here only when a
command runs: nothing in ``topictone.infer`` reaches it. Tested with label-studio-sdk 2.1.2
against Label Studio 1.23.2 (community edition), with a personal access token (a JWT
refresh token, which the SDK trades for short-lived access tokens) and a legacy token.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit
from xml.etree import ElementTree

from omegaconf import DictConfig

from topictone.infer.errors import TopictoneError

_INSTALL = "pip install 'topictone[label]'"
T = TypeVar("T")


def sdk() -> tuple[Any, type[Exception]]:
    """The SDK's client class and its error for an HTTP error answer, or one line saying
    how to install it."""
    try:
        from label_studio_sdk import LabelStudio
        from label_studio_sdk.core.api_error import ApiError
    except ImportError:
        needs = f"talking to Label Studio needs label-studio-sdk: {_INSTALL}"
        raise TopictoneError(needs) from None
    return LabelStudio, ApiError


def _shown_url(url: str) -> str:
    """The URL as messages show it: no user:password part, no query, no trailing slash."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/")


def _checked_url(url: Any) -> str:
    if not isinstance(url, str) or not url.strip():
        raise TopictoneError("url: set it to the Label Studio server, e.g. http://localhost:8080")
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TopictoneError(
            f"url={_shown_url(url)!r}: not an http(s) URL of a Label Studio server "
            "(e.g. http://localhost:8080)"
        )
    if "@" in parts.netloc:  # the SDK's token header would lose to its Basic auth
        raise TopictoneError(
            f"url={_shown_url(url)!r}: leave out the user:password part (the token logs in)"
        )
    return url.rstrip("/")


def _checked_token(cfg: DictConfig) -> str:
    """``token``, else the environment variable ``token_env``; never printed."""
    token = cfg.get("token")
    env = cfg.get("token_env") or "LABEL_STUDIO_API_KEY"
    if token is None:
        token = os.environ.get(env)
    if not isinstance(token, str) or not token.strip():
        raise TopictoneError(
            f"no Label Studio token: set the environment variable {env} to your access token "
            "(Label Studio: Account & Settings -> Personal Access Token)"
        )
    return token.strip()


def detail(body: Any) -> str:
    """What an error answer says, in a few words on one line."""
    if isinstance(body, dict):
        body = body.get("detail") or body.get("message") or body.get("validation_errors") or body
    text = " ".join(str(body).split())
    if text.lstrip().lower().startswith(("<!doctype", "<html")):
        return "an HTML page"
    return text[:200] + ("..." if len(text) > 200 else "")


@dataclass(frozen=True)
class Project:
    id: int
    title: str
    label_config: str
    model_version: str

    def __str__(self) -> str:
        return f"project {self.title!r} (id {self.id})"


class Server:
    """One Label Studio server: SDK calls with one-line errors."""

    def __init__(
        self, url: str, token: str, timeout: float, token_env: str, retries: int = 2
    ) -> None:
        self.url = _checked_url(url)
        self.shown = _shown_url(self.url)
        self.token = token
        self.timeout = float(timeout)
        if self.timeout <= 0:
            raise TopictoneError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.token_env = token_env
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise TopictoneError(f"retries must be a whole number, 0 or more, got {retries!r}")
        client, self.api_error = sdk()
        self.client = self.call(
            "connect",
            lambda: client(
                base_url=self.url, api_key=token, timeout=self.timeout, max_retries=retries
            ),
        )

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> Server:
        env = cfg.get("token_env") or "LABEL_STUDIO_API_KEY"
        return cls(cfg.url, _checked_token(cfg), cfg.timeout, env, cfg.retries)

    # --- errors ---------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        """``text`` on one line, with the token (and its parts) blotted out."""
        text = " ".join(str(text).split())
        for secret in {self.token, *self.token.split(".")}:
            if len(secret) >= 8:
                text = text.replace(secret, "<token>")
        return text

    def error(self, doing: str, err: BaseException) -> TopictoneError:
        """One line for what went wrong while ``doing``."""
        import httpx

        where = self.shown
        if isinstance(err, TopictoneError):
            return err
        if isinstance(err, httpx.TimeoutException):
            why = f"no answer within {self.timeout:g} s while trying to {doing} (raise timeout=?)"
        elif isinstance(err, httpx.ConnectError):
            why = f"cannot connect ({err or type(err).__name__}); is Label Studio running there?"
        elif isinstance(err, httpx.HTTPError):
            why = f"the connection failed while trying to {doing} ({type(err).__name__}: {err})"
        elif isinstance(err, self.api_error):
            status = getattr(err, "status_code", None)
            said = detail(getattr(err, "body", None))
            if status is not None and status < 400:  # a success that is not JSON
                why = f"the answer to {doing} is not Label Studio's API ({said})"
            elif status == 401:
                why = (
                    f"the token was refused (401: {said}); set {self.token_env} to a valid "
                    "access token (Account & Settings -> Personal Access Token)"
                )
            elif status == 403:
                why = f"the token's user may not {doing} (403: {said})"
            else:
                why = f"Label Studio answered {status} while trying to {doing}: {said}"
        elif isinstance(err, ValueError):  # JSON or schema: not Label Studio's API answering
            why = f"the answer to {doing} is not Label Studio's API ({type(err).__name__})"
        else:
            raise err
        return TopictoneError(self.scrub(f"{where}: {why}"))

    def call(self, doing: str, func: Callable[[], T]) -> T:
        try:
            return func()
        except TopictoneError:
            raise
        except Exception as err:
            raise self.error(doing, err) from None

    # --- projects -------------------------------------------------------------------------

    def project(self, ref: Any) -> Project | None:
        """The project ``ref`` names: an integer is an id (unknown: an error), a text a
        title (none such: None; several: an error)."""
        if isinstance(ref, bool) or ref is None or (isinstance(ref, str) and not ref.strip()):
            raise TopictoneError("project: name it by its title or its id (an integer)")
        if isinstance(ref, int):
            return self.project_by_id(ref)
        title = str(ref).strip()
        found = self.call(
            f"list the projects titled {title!r}",
            lambda: [p for p in self.client.projects.list(title=title) if p.title == title],
        )
        if len(found) > 1:
            ids = ", ".join(str(p.id) for p in found)
            raise TopictoneError(
                f"{self.shown}: {len(found)} projects are titled {title!r} (ids {ids}); "
                f"name one by its id, e.g. project={found[0].id}"
            )
        return self.project_by_id(found[0].id) if found else None

    def project_by_id(self, ident: int) -> Project:
        try:
            found = self.client.projects.get(id=ident)
        except Exception as err:
            if isinstance(err, self.api_error) and getattr(err, "status_code", None) == 404:
                raise TopictoneError(
                    f"{self.shown}: no project with id {ident} (name a new one by its title)"
                ) from None
            raise self.error(f"read project {ident}", err) from None
        return Project(
            int(found.id),
            str(found.title or ""),
            str(found.label_config or ""),
            str(found.model_version or ""),
        )

    # --- tasks ----------------------------------------------------------------------------

    def task_data(self, project: Project) -> Iterator[dict]:
        """Every task's data in the project (only ids and data travel)."""

        def pages() -> list[dict]:
            tasks = self.client.tasks.list(
                project=project.id, fields="task_only", include="id,data", page_size=1000
            )
            return [dict(task.data or {}) for task in tasks]

        yield from self.call(f"list the tasks of {project}", pages)

    def export(self, project: Project, sink: Any, limit: int, all_tasks: bool) -> int:
        """Stream the project's JSON export into ``sink``; refuse more than ``limit`` bytes."""
        total = 0

        def download() -> None:
            nonlocal total
            chunks = self.client.projects.exports.download_sync(
                project.id, export_type="JSON", download_all_tasks=all_tasks
            )
            with contextlib.closing(chunks):
                for chunk in chunks:
                    total += len(chunk)
                    if total > limit:
                        raise TopictoneError(
                            f"{self.shown}: the export of {project} is larger than {limit} bytes"
                            " (pull reads it whole); export it in parts from Label Studio"
                        )
                    sink.write(chunk)

        self.call(f"export {project}", download)
        return total


def same_config(a: str, b: str) -> bool:
    """Two labelling configs alike once whitespace between tags is set aside."""

    def canonical(xml: str) -> str | None:
        try:
            return ElementTree.canonicalize(xml, strip_text=True)
        except ElementTree.ParseError:
            return None

    left, right = canonical(a), canonical(b)
    return left is not None and left == right
