"""The one client of OpenAI-compatible ``/chat/completions`` endpoints (standard library only),
shared by the LLM judge (:mod:`inboxrl.email.judge`) and the API policy
(:mod:`inboxrl.policy.openai_api`): the URL rule, the API-key header, one JSON POST with its
failures classified as worth another attempt or not, and the retry loop with backoff.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Callable, TypeVar

T = TypeVar("T")
RETRY_STATUSES = frozenset({408, 409, 429})  # and every 5xx


class EndpointError(RuntimeError):
    """A failed request: ``status`` is the HTTP code (None without one); ``retryable`` says
    whether another attempt may succeed (timeout, connection error, 5xx/408/409/429, bad body)."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = True):
        super().__init__(message)
        self.status, self.retryable = status, retryable


def chat_completions_url(base_url: str) -> str:
    """``{base_url}/chat/completions`` (as OpenAI clients do: the base includes ``/v1``); a URL
    that already ends with ``/chat/completions`` is used as it is."""
    url = base_url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


def headers(api_key_env: str | None) -> dict[str, str]:
    """JSON headers, plus ``Authorization: Bearer <key>`` when ``$api_key_env`` is set (read at each
    request; no header for local servers without a key)."""
    out = {"Content-Type": "application/json", "Accept": "application/json"}
    key = os.environ.get(api_key_env) if api_key_env else None
    if key:
        out["Authorization"] = f"Bearer {key}"
    return out


def _http_error(url: str, exc: urllib.error.HTTPError, api_key_env: str | None) -> EndpointError:
    try:
        detail = exc.read().decode("utf-8", "replace")[:500]
    except Exception:  # the body is best-effort context only
        detail = ""
    hint = f" (check the API key in ${api_key_env})" if exc.code in (401, 403) and api_key_env else ""
    retryable = exc.code >= 500 or exc.code in RETRY_STATUSES
    return EndpointError(f"{url} returned HTTP {exc.code}{hint}: {detail}", exc.code, retryable)


def post_json(url: str, body: dict[str, Any], api_key_env: str | None, timeout: float) -> Any:
    """One POST of ``body`` as JSON; the decoded JSON reply. Raises :class:`EndpointError`."""
    request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), headers=headers(api_key_env),
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise _http_error(url, exc, api_key_env) from exc
    except (TimeoutError, socket.timeout) as exc:
        raise EndpointError(f"{url} timed out after {timeout} s") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (TimeoutError, socket.timeout)):
            raise EndpointError(f"{url} timed out after {timeout} s") from exc
        raise EndpointError(f"cannot reach {url}: {exc.reason}") from exc
    except (ConnectionError, http.client.HTTPException, OSError) as exc:
        raise EndpointError(f"connection to {url} failed: {exc!r}") from exc
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EndpointError(f"{url} returned non-JSON: {raw[:200]!r}") from exc


def with_retries(attempt: Callable[[], T], retries: int, backoff: float) -> T:
    """``attempt()``, again after a retryable :class:`EndpointError` up to ``retries`` more times,
    waiting ``backoff * 2**k`` seconds before retry k+1; a non-retryable error is raised at once,
    the last retryable one with ``(gave up after N attempts)``."""
    last: EndpointError | None = None
    for n in range(max(0, retries) + 1):
        if n:
            time.sleep(backoff * 2 ** (n - 1))
        try:
            return attempt()
        except EndpointError as exc:
            if not exc.retryable:
                raise
            last = exc
    assert last is not None
    raise EndpointError(f"{last} (gave up after {max(0, retries) + 1} attempts)", last.status, retryable=False)
