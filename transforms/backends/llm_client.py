"""LLM backends for the annotation stage: an OpenAI-compatible chat-completions client
over HTTP (aiohttp), and what every backend shares (errors, ``Completion``, stats);
the in-process CTranslate2 backend is ``xlcorpus.transforms.backends.llm_ct2``.

Both expose ``async complete(messages, ...) -> Completion`` and ``model_id`` (the
identity that goes into the answer cache). The annotation stage runs one event loop
per DoFn instance and gathers a batch's requests on it.

HTTP client behaviour (every number comes from ``HTTPSettings``):
- at most ``concurrency`` requests in flight (a semaphore; the connection pool has
  as many connections), a token bucket for requests/s and one for tokens/min
  (a request reserves its prompt estimate + ``max_tokens`` and the reservation is
  settled against the usage the server reports);
- a per-request timeout; retries on 429 (waiting what ``Retry-After`` says), 408,
  5xx, timeouts, connection resets and truncated or malformed bodies, with
  exponential backoff and full jitter, at most ``max_retries`` retries; then
  ``LLMUnavailable`` naming the attempts and the last error;
- other 4xx answers are not retried (``LLMRequestRejected``), except a 400 to a
  request carrying ``response_format``: the server does not support JSON schemas,
  so the client drops it for good and asks again (not counted as a retry);
- the API key is read from the environment variable named in the settings, sent
  only in the ``Authorization`` header and scrubbed from every error message.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

log = logging.getLogger(__name__)


# --- errors ------------------------------------------------------------------------
class LLMError(RuntimeError):
    """A server fault the annotation stage turns into a dead letter."""


class LLMUnavailable(LLMError):
    """Retryable failures outlasted the retry budget."""

    def __init__(self, message: str, attempts: int):
        super().__init__(message)
        self.attempts = attempts


class LLMRequestRejected(LLMError):
    """The server refused the request itself (4xx other than 408/429): retrying is pointless."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _SchemaUnsupported(Exception):
    pass


@dataclass
class Completion:
    content: str
    raw: str | None  # the response body (HTTP) or the decoded tokens (in-process), for audit
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False


@dataclass
class ClientStats:
    """Plain counters; the Beam DoFn turns their deltas into metrics."""

    requests: int = 0  # HTTP requests sent (every attempt) or generations run
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    schema_fallbacks: int = 0

    def snapshot(self) -> dict[str, int]:
        return dict(self.__dict__)


# --- rate limiting -------------------------------------------------------------------
class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` saved up. ``acquire`` waits
    (FIFO, behind a lock) until the tokens are there; ``settle`` corrects a
    reservation afterwards (negative levels are debt the next caller waits out)."""

    def __init__(self, rate: float, capacity: float):
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"token bucket needs a positive rate and capacity, got {rate}, {capacity}")
        self.rate, self.capacity = rate, capacity
        self.level = capacity
        self._t = time.monotonic()
        self._lock: asyncio.Lock | None = None

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self._t) * self.rate)
        self._t = now

    async def acquire(self, n: float = 1.0) -> None:
        n = min(n, self.capacity)  # a request larger than the bucket would never pass
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while True:
                self._refill()
                if self.level >= n:
                    self.level -= n
                    return
                await asyncio.sleep((n - self.level) / self.rate)

    def settle(self, delta: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level - delta)


def estimate_tokens(messages: Sequence[dict]) -> int:
    """A cheap upper-ish estimate (4 characters a token) for the tokens/min bucket."""
    return sum(len(m.get("content") or "") for m in messages) // 4 + 4 * len(messages)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds (fractions tolerated) or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# --- OpenAI-compatible HTTP ----------------------------------------------------------
@dataclass(frozen=True)
class HTTPSettings:
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = ""
    api_key_env: str | None = None  # the NAME of the environment variable holding the key
    concurrency: int = 8
    requests_per_s: float | None = None
    tokens_per_min: float | None = None
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 300.0  # a longer Retry-After is waited only this long

    def __post_init__(self):
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")


def content_of(body: bytes) -> tuple[str, int, int]:
    """(message content, prompt tokens, completion tokens) of a chat-completions body;
    ``_Retryable`` when the body is not one (truncated, not JSON, no choices)."""
    try:
        data = orjson.loads(body)
        content = data["choices"][0]["message"]["content"]
    except (orjson.JSONDecodeError, ValueError, KeyError, IndexError, TypeError) as e:
        raise _Retryable(f"malformed response body ({type(e).__name__}: {e}): {body[:200]!r}") from None
    if not isinstance(content, str):
        raise _Retryable(f"malformed response body: message content is {type(content).__name__}")
    usage = data.get("usage") or {}
    return content, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


class OpenAIChatBackend:
    """``POST {base_url}/chat/completions`` with retries, limits and a timeout."""

    kind = "openai"

    def __init__(self, settings: HTTPSettings, rng: random.Random | None = None):
        self.settings = settings
        self.stats = ClientStats()
        self.schema_ok = True  # until the server answers 400 to a response_format
        self._rng = rng or random.Random()
        self._loop = None
        self._session = None
        self._key: str | None = None

    @property
    def model_id(self) -> str:
        return f"{self.kind}:{self.settings.model}"

    @property
    def supports_json_schema(self) -> bool:
        return self.schema_ok

    def _scrub(self, message: str) -> str:
        return message.replace(self._key, "***") if self._key else message

    def _bind(self) -> None:
        """Session, semaphore and buckets belong to the running loop: (re)made on a new one."""
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        s = self.settings
        self._loop = loop
        headers = {"Content-Type": "application/json"}
        self._key = os.environ.get(s.api_key_env) if s.api_key_env else None
        if s.api_key_env and not self._key:
            log.warning("environment variable %s is not set: requests go without an API key", s.api_key_env)
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        self._session = aiohttp.ClientSession(
            headers=headers, connector=aiohttp.TCPConnector(limit=s.concurrency),
            timeout=aiohttp.ClientTimeout(total=s.timeout_s))
        self._sem = asyncio.Semaphore(s.concurrency)
        self._requests = TokenBucket(s.requests_per_s, max(1.0, s.requests_per_s)) if s.requests_per_s else None
        self._tokens = TokenBucket(s.tokens_per_min / 60.0, s.tokens_per_min) if s.tokens_per_min else None

    def backoff(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**retry)]."""
        s = self.settings
        return self._rng.uniform(0.0, min(s.backoff_max_s, s.backoff_base_s * (2 ** retry)))

    async def complete(self, messages: list[dict], *, temperature: float = 0.0, max_tokens: int = 512,
                       seed: int | None = None, json_schema: dict | None = None,
                       schema_name: str = "answer") -> Completion:
        self._bind()
        s = self.settings
        payload = {"model": s.model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens}
        if seed is not None:
            payload["seed"] = seed
        estimate = estimate_tokens(messages) + max_tokens if self._tokens is not None else 0
        last = "no attempt"
        attempt = 0
        while attempt <= s.max_retries:
            delay = None
            async with self._sem:
                # decided inside the slot: another request may just have learnt it is unsupported
                use_schema = json_schema is not None and self.schema_ok
                if use_schema:
                    payload["response_format"] = {"type": "json_schema", "json_schema": {
                        "name": schema_name, "schema": json_schema, "strict": False}}
                else:
                    payload.pop("response_format", None)
                if self._requests is not None:
                    await self._requests.acquire(1)
                if self._tokens is not None:
                    await self._tokens.acquire(estimate)
                try:
                    content, p_tok, c_tok, raw = await self._post(payload, use_schema)
                except _SchemaUnsupported:
                    # not a fault of the request's content: drop response_format and ask again
                    self.schema_ok = False
                    self.stats.schema_fallbacks += 1
                    log.warning("%s answered 400 to response_format: falling back to plain JSON prompting",
                                s.base_url)
                    continue
                except _Retryable as e:
                    last = self._scrub(str(e))
                    delay = e.retry_after
                else:
                    if self._tokens is not None:
                        self._tokens.settle((p_tok + c_tok or estimate) - estimate)
                    self.stats.prompt_tokens += p_tok
                    self.stats.completion_tokens += c_tok
                    return Completion(content, raw, p_tok, c_tok)
            if attempt == s.max_retries:
                break
            # the slot is free while we wait; Retry-After wins over our own backoff
            wait = min(delay, s.max_retry_after_s) if delay is not None else self.backoff(attempt)
            self.stats.retries += 1
            attempt += 1
            await asyncio.sleep(wait)
        raise LLMUnavailable(f"{s.base_url}: gave up after {attempt + 1} attempt(s); last error: {last}",
                             attempt + 1)

    async def _post(self, payload: dict, use_schema: bool) -> tuple[str, int, int, str]:
        import aiohttp

        url = self.settings.base_url.rstrip("/") + "/chat/completions"
        self.stats.requests += 1
        try:
            async with self._session.post(url, data=orjson.dumps(payload)) as resp:  # orjson: cheaper at 1000s/s
                body = await resp.read()
                status, retry_after = resp.status, resp.headers.get("Retry-After")
        except TimeoutError:
            raise _Retryable(f"timed out after {self.settings.timeout_s} s") from None
        except aiohttp.InvalidURL as e:
            raise LLMRequestRejected(f"invalid URL {url}: {e}") from None
        except (aiohttp.ClientError, OSError) as e:  # resets, disconnects, truncated payloads
            raise _Retryable(f"{type(e).__name__}: {e}") from None
        if status == 200:
            content, p_tok, c_tok = content_of(body)
            return content, p_tok, c_tok, body.decode("utf-8", "replace")
        text = body[:300].decode("utf-8", "replace")
        if status == 429:
            raise _Retryable(f"HTTP 429 (rate limited): {text}", parse_retry_after(retry_after))
        if status == 408 or status >= 500:
            raise _Retryable(f"HTTP {status}: {text}", parse_retry_after(retry_after) if status == 503 else None)
        if status == 400 and use_schema:
            raise _SchemaUnsupported(text)
        raise LLMRequestRejected(self._scrub(f"{url}: HTTP {status}: {text}"))

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session, self._loop = None, None
