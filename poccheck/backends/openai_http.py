"""A model behind an OpenAI-compatible HTTP API (vLLM, TGI, llama.cpp's server, Ollama, cloud APIs).

Requests run concurrently (asyncio and httpx, at most ``Endpoint.concurrency`` items in flight) in a worker
thread; :meth:`OpenAIBackend.run_many` hands each result back the moment it arrives, so the runner commits it
at once. Failed requests are retried with exponential backoff and full jitter on connection errors, timeouts,
429 and 5xx. A server that stays unreachable ends the model's run with :class:`EndpointUnreachable`; what was
saved stays saved, and a rerun resumes.

Multiple choice is scored by log-likelihood where the server returns prompt log-probs (``/completions`` with
``echo`` and ``logprobs``: vLLM, llama-cpp-python's server); elsewhere (chat APIs, servers without ``echo``) the
choices are listed with letters, the model is asked for one, and its letter is read: such an answer has no
choice scores (none are invented), so it has no margin, no length-normalised answer and no cascade confidence.
``settings()`` records which method was used; the report shows it. ``multiple_choice: auto`` probes the server at
load; the runner records the probed method in the output folder and passes it back in (as the endpoint's
``multiple_choice``) on later runs, so a busy server cannot flip it.

Stored error messages say what happened (HTTP status and reason, the length of a reply without a letter), never
the model's reply or the server's error body: those can quote task text, and ``--redact`` reports must not.

Prompt formats: ``/chat/completions`` applies the server's chat template to every request, so prompts there are
``chat`` whatever was asked for (requests with turns are sent as those messages; a raw prompt as one user message).
``/completions`` applies none, so prompts there are ``raw`` text, and ``chat`` is refused.

The API key is read from the environment, sent only in the ``Authorization`` header, and removed from any
error text.
"""

from __future__ import annotations

import asyncio
import json
import queue
import random
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx

from poccheck.backends.base import ChoiceRequest, GenerationRequest
from poccheck.endpoints import Endpoint
from poccheck.errors import BackendError, ModelError
from poccheck.records import (
    LETTERS,
    ChoiceScores,
    Completion,
    EffectiveFormat,
    FinishReason,
    ModelInfo,
    PromptFormat,
    Turn,
)
from poccheck.tasks.prompts import read_letter, transcript

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
BACKOFF_BASE = 0.5  # seconds before the first retry (full jitter: a random wait up to the exponential bound)
BACKOFF_CAP = 20.0
MC_REPLY_TOKENS = 4
# Prompt log-probs slower than this for a 3-token prompt are too slow to score with: llama-cpp-python's server
# (with --logits_all) takes 15-25 s per echo request on a 262k-vocabulary model, as it log-softmaxes its whole
# logits buffer and sorts the vocabulary for every prompt token. Generation with letters is used instead.
ECHO_PROBE_SECONDS = 5.0
Result = ChoiceScores | Completion | BackendError


class EndpointUnreachable(BackendError):
    """The server could not be reached after every retry; the model's run stops (finished items are kept)."""


def backoff_delay(attempt: int, retry_after: str | None = None, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): full jitter up to ``base * 2**attempt``,
    capped; a server's ``Retry-After`` (seconds) is honoured up to the cap."""
    if retry_after:
        try:
            return min(BACKOFF_CAP, max(0.0, float(retry_after)))
        except ValueError:
            pass
    bound = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
    return (rng or random).uniform(0, bound)


class OpenAIBackend:
    """One model on an OpenAI-compatible server."""

    choice_batch = 1  # the runner sends a server's items through run_many, each saved as it arrives

    def __init__(self, info: ModelInfo, endpoint: Endpoint) -> None:
        self.info = info
        self.endpoint = endpoint
        self._key = endpoint.api_key()
        self._url = endpoint.base_url.rstrip("/")
        self._counter: Any = None
        self._counter_name: str | None = None
        self._remote: tuple[str, str] | None = None  # the server's tokenize route (url, text field)
        self._remote_base = 0  # tokens the route adds to any text (a BOS)
        if endpoint.tokenizer:
            self._counter, self._counter_name = _load_counter(endpoint.tokenizer)
        probe = self._probe()
        self.mc_method: str = probe["mc"]
        self._stream_usage: bool = probe["usage"]

    @property
    def concurrency(self) -> int:
        """Requests in flight at once: the endpoint's ``concurrency``."""
        return self.endpoint.concurrency

    # ------------------------------------------------------------------ set-up

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _probe(self) -> dict[str, Any]:
        """Check the server answers, then what it supports: prompt log-probs, usage in streams."""
        timeout = httpx.Timeout(self.endpoint.timeout_seconds)
        with httpx.Client(timeout=timeout, headers=self._headers(), trust_env=False) as client:
            try:
                answer = client.get(f"{self._url}/models")
            except httpx.HTTPError as exc:
                raise ModelError(
                    f"cannot reach {self._url}: {self._redact(_describe(exc))}",
                    "start the server, or fix base_url in the plan's endpoints (or --endpoint)",
                ) from None
            if answer.status_code in (401, 403):
                raise ModelError(
                    f"{self._url} refused the API key (HTTP {answer.status_code})",
                    f"check the key in ${self.endpoint.api_key_env}"
                    if self.endpoint.api_key_env
                    else "set api_key_env",
                )
            mc = self.endpoint.multiple_choice
            if mc == "auto":
                mc = "generation"
                if self.endpoint.api == "completions":
                    started = time.perf_counter()
                    try:
                        reply = client.post(f"{self._url}/completions", json=self._echo_body("Yes", "."))
                        fast = time.perf_counter() - started < ECHO_PROBE_SECONDS
                        if reply.status_code == 200 and fast and _echo_logprobs(reply.json(), 3, 4) is not None:
                            mc = "logprobs"
                    except (httpx.HTTPError, ValueError):
                        pass
            usage = False
            body = {**self._body("Hi", 1, ()), "stream": True, "stream_options": {"include_usage": True}}
            try:
                with client.stream("POST", self._path(), json=body) as reply:
                    if reply.status_code != 200:  # the error body is not shown: it may quote what was sent
                        raise ModelError(
                            f"{self._url} answered {_status(reply)} to a test request",
                            "check the endpoint's model name and api (completions or chat)",
                        )
                    for event in _events_sync(reply.iter_lines()):
                        usage = usage or bool(event.get("usage"))
            except httpx.HTTPError as exc:
                raise ModelError(f"{self._url} failed a test request: {self._redact(_describe(exc))}") from None
            if not usage and self._counter is None:
                self._remote = self._find_tokenize(client)
                if self._remote is None:
                    raise ModelError(
                        f"{self._url} reports no token usage in streamed replies and has no tokenize route, "
                        "so tokens cannot be counted",
                        "set tokenizer: to the model's .gguf file or Hugging Face folder in the endpoint's settings",
                    )
                self._remote_base = self._tokens_remote_sync(client, "")
        return {"mc": mc, "usage": usage}

    def _find_tokenize(self, client: httpx.Client) -> tuple[str, str] | None:
        """The server's own tokenizer route, for servers that stream no usage: llama-cpp-python's
        ``/extras/tokenize``, llama.cpp's ``/tokenize`` (``content``) or vLLM's ``/tokenize`` (``prompt``)."""
        root = re.sub(r"/v1$", "", self._url)
        for url, field in (
            (f"{root}/extras/tokenize", "input"),
            (f"{root}/tokenize", "content"),
            (f"{root}/tokenize", "prompt"),
        ):
            self._remote = (url, field)
            try:
                self._tokens_remote_sync(client, "Hi")
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                continue
            return url, field
        return None

    def _tokenize_body(self, text: str) -> dict[str, Any]:
        assert self._remote is not None
        return {self._remote[1]: text, "model": self.endpoint.model}

    def _tokens_remote_sync(self, client: httpx.Client, text: str) -> int:
        assert self._remote is not None
        reply = client.post(self._remote[0], json=self._tokenize_body(text))
        reply.raise_for_status()
        return len(reply.json()["tokens"])

    def _path(self) -> str:
        return f"{self._url}/{'chat/completions' if self.endpoint.api == 'chat' else 'completions'}"

    def _body(self, prompt: str, max_tokens: int, stop: Sequence[str], turns: tuple[Turn, ...] = ()) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.endpoint.model, "max_tokens": max_tokens, "temperature": 0}
        if stop:
            body["stop"] = list(stop)[:4]  # OpenAI's limit; the rest are applied here
        if self.endpoint.api == "chat":
            chat = turns or (Turn("user", prompt),)
            body["messages"] = [{"role": turn.role, "content": turn.content} for turn in chat]
        else:
            body["prompt"] = prompt
        return {**body, **self.endpoint.extra_body}

    def _echo_body(self, prompt: str, continuation: str) -> dict[str, Any]:
        body = {"model": self.endpoint.model, "prompt": prompt + continuation, "echo": True, "logprobs": 0}
        return {**body, "max_tokens": 1, "temperature": 0, **self.endpoint.extra_body}

    # ------------------------------------------------------------------ Backend protocol

    def prompt_format(self, requested: PromptFormat) -> EffectiveFormat:
        """``chat`` through ``/chat/completions`` (the server applies its template), ``raw`` through
        ``/completions``, where ``chat`` is refused: the server applies no template there."""
        if self.endpoint.api == "chat":
            return "chat"
        if requested == "chat":
            raise ModelError(
                f"{self.info.name} is served through /completions, where the server applies no chat template",
                "set api: chat for this endpoint (the server applies its template), or use --prompt-format auto",
            )
        return "raw"

    def chat_text(self, turns: tuple[Turn, ...]) -> str:
        """The server's template is not known here: a plain transcript of the messages sent."""
        return transcript(turns)

    def settings(self) -> dict[str, object]:
        """What changes outputs: the API, multiple-choice method and extra request fields (not retries, timeouts,
        concurrency or the key)."""
        method = "log-likelihood (echo + logprobs)" if self.mc_method == "logprobs" else "generation + letter"
        return {"backend": "openai", "api": self.endpoint.api, "multiple_choice": method, **self.endpoint.extra_body}

    def score_choices(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceScores]:
        return [_raise(result) for _, result in sorted(self.run_many(requests), key=lambda pair: pair[0])]  # type: ignore[misc]

    def generate(self, request: GenerationRequest) -> Completion:
        result = next(iter(self.run_many([request])))[1]
        return _raise(result)  # type: ignore[return-value]

    def peak_vram(self) -> int | None:
        return None

    def close(self) -> None:
        self._counter = None

    # ------------------------------------------------------------------ concurrent path

    def run_many(self, requests: Sequence[ChoiceRequest | GenerationRequest]) -> Iterator[tuple[int, Result]]:
        """Yield ``(index, result)`` as each request finishes; a failed item yields its BackendError.

        Raises :class:`EndpointUnreachable` when the server stays unreachable; closing the iterator early
        (an interrupt) cancels what is in flight.
        """
        results: queue.Queue[tuple[int, Result] | BaseException | None] = queue.Queue()
        loop = asyncio.new_event_loop()
        main = loop.create_task(self._drive(requests, results))

        def worker() -> None:
            try:
                loop.run_until_complete(main)
            except asyncio.CancelledError:
                pass
            except BaseException as exc:  # handed to the consuming thread
                results.put(exc)
            finally:
                results.put(None)

        thread = threading.Thread(target=worker, name="poccheck-http", daemon=True)
        thread.start()
        try:
            while True:
                try:
                    entry = results.get(timeout=0.2)  # a timeout keeps Ctrl-C responsive
                except queue.Empty:
                    continue
                if entry is None:
                    return
                if isinstance(entry, BaseException):
                    raise entry
                yield entry
        finally:
            if not main.done():
                loop.call_soon_threadsafe(main.cancel)
            thread.join()
            loop.close()

    async def _drive(self, requests: Sequence[ChoiceRequest | GenerationRequest], results: queue.Queue[Any]) -> None:
        pending = iter(enumerate(requests))

        async def work(client: httpx.AsyncClient) -> None:
            for index, request in pending:  # shared by the workers: each takes the next request
                result: Result
                try:
                    if isinstance(request, ChoiceRequest):
                        result = await self._score(client, request)
                    else:
                        result = await self._generate(client, request)
                except EndpointUnreachable:
                    raise
                except BackendError as exc:
                    result = exc
                results.put((index, result))

        async with self._client() as client:
            workers = [
                asyncio.ensure_future(work(client)) for _ in range(min(self.endpoint.concurrency, len(requests)))
            ]
            try:
                await asyncio.gather(*workers)
            finally:
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[httpx.AsyncClient]:
        limits = httpx.Limits(
            max_connections=self.endpoint.concurrency, max_keepalive_connections=self.endpoint.concurrency
        )
        timeout = httpx.Timeout(self.endpoint.timeout_seconds)
        async with httpx.AsyncClient(
            headers=self._headers(), timeout=timeout, limits=limits, trust_env=False
        ) as client:
            yield client

    async def _retrying(self, send: Any) -> Any:
        """Run ``send()`` (a coroutine factory) with retries; returns its value."""
        attempts = self.endpoint.max_retries + 1
        for attempt in range(attempts):
            try:
                return await send()
            except _Retryable as exc:
                if attempt + 1 >= attempts:
                    if exc.unreachable:
                        raise EndpointUnreachable(
                            f"{self._url} stopped answering ({exc.reason}) after {attempts} attempts",
                            "restart the server (or check the network), then run the same command again: "
                            "finished items are saved and are not sent again",
                        ) from None
                    raise BackendError(f"{self._url}: {exc.reason} after {attempts} attempts") from None
                await asyncio.sleep(backoff_delay(attempt, exc.retry_after))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post_json(self, client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, Any]:
        async def send() -> dict[str, Any]:
            try:
                reply = await client.post(url, json=body)
            except httpx.TransportError as exc:
                raise _Retryable(self._redact(_describe(exc)), unreachable=True) from None
            self._check(reply)
            try:
                data: dict[str, Any] = reply.json()
            except ValueError:
                raise BackendError(f"{url} answered with something other than JSON") from None
            return data

        data: dict[str, Any] = await self._retrying(send)
        return data

    def _check(self, reply: httpx.Response) -> None:
        """Raise for a reply other than 200: its status code and reason only. The body is dropped (poccheck keeps no
        debug log): a server's error text may quote the prompt or the model's reply, and errors are stored."""
        if reply.status_code == 200:
            return
        if reply.status_code in RETRY_STATUS:
            raise _Retryable(_status(reply), retry_after=reply.headers.get("retry-after"))
        raise BackendError(f"{self._url} answered {_status(reply)}")

    # ------------------------------------------------------------------ multiple choice

    async def _score(self, client: httpx.AsyncClient, request: ChoiceRequest) -> ChoiceScores:
        start = time.perf_counter()
        if self.mc_method != "logprobs":
            return await self._choose(client, request, start)
        logprobs, counts = [], []
        prompt_tokens = generated = 0
        for continuation in request.continuations:  # one after the other: the server reuses the prompt's cache
            data = await self._post_json(
                client, f"{self._url}/completions", self._echo_body(request.prompt, continuation)
            )
            scored = _echo_logprobs(data, len(request.prompt), len(request.prompt) + len(continuation))
            if scored is None:
                raise BackendError(f"{self._url} returned no prompt log-probs for an echo request")
            total, count = scored
            logprobs.append(total)
            counts.append(count)
            usage = data.get("usage") or {}
            read = int(usage.get("prompt_tokens") or 0) or _echoed_tokens(data, len(request.prompt) + len(continuation))
            prompt_tokens = max(prompt_tokens, read - count)
            generated += int(usage.get("completion_tokens") or 0)
        # counted like the in-process backends (the prompt once, every choice), however often it was sent
        seconds = time.perf_counter() - start
        return ChoiceScores(tuple(logprobs), tuple(counts), prompt_tokens, seconds, completion_tokens=generated)

    async def _choose(self, client: httpx.AsyncClient, request: ChoiceRequest, start: float) -> ChoiceScores:
        """No prompt log-probs: list the choices with letters, ask for one, read the letter (or the choice text).

        The answer carries no choice scores (empty): grading reads the letter from the reply text. A reply without
        one is an item error that says how long the reply was, never what it said."""
        completion = await self._generate(client, letter_request(request, self.endpoint.api))
        if read_letter(completion.text, request.continuations) is None:
            raise BackendError(f"no option letter in the reply ({len(completion.text.strip())} characters)")
        seconds = time.perf_counter() - start
        return ChoiceScores(
            (), (), completion.prompt_tokens, seconds, text=completion.text,
            completion_tokens=completion.completion_tokens,
        )  # fmt: skip

    # ------------------------------------------------------------------ generation

    async def _generate(self, client: httpx.AsyncClient, request: GenerationRequest) -> Completion:
        if request.repetition_penalty != 1.0:  # servers name and apply it differently: no silent other decoding
            raise BackendError(
                f"a repetition penalty ({request.repetition_penalty:g}) is applied only by the in-process engines "
                "(llama.cpp, transformers), not by a served model",
                "run the suite on a .gguf or @transformers model, or remove its repetition_penalty",
            )
        body = self._body(request.prompt, request.max_tokens, request.stop, request.turns)
        body["stream"] = True
        if self._stream_usage:
            body["stream_options"] = {"include_usage": True}
        if self.endpoint.api == "completions" and self.mc_method == "logprobs":
            body.setdefault("logprobs", 1)

        async def send() -> Completion:
            start = time.perf_counter()
            try:
                async with client.stream("POST", self._path(), json=body) as reply:
                    if reply.status_code != 200:
                        await reply.aread()
                        self._check(reply)
                    return await self._read_stream(client, reply, request, start)
            except httpx.TransportError as exc:
                raise _Retryable(self._redact(_describe(exc)), unreachable=True) from None

        completion: Completion = await self._retrying(send)
        return completion

    async def _read_stream(
        self, client: httpx.AsyncClient, reply: httpx.Response, request: GenerationRequest, start: float
    ) -> Completion:
        text = ""
        ttft: float | None = None
        finish = "length"  # the server's word for it
        usage: dict[str, Any] = {}
        logprobs: list[float] = []
        chunks = 0
        finished = False
        async for line in reply.aiter_lines():
            event = _event(line)
            if event is None:
                continue
            if event is _DONE:
                break
            usage = event.get("usage") or usage
            for choice in event.get("choices") or []:
                piece = _piece(choice, self.endpoint.api)
                if piece:
                    chunks += 1
                    if ttft is None:
                        ttft = time.perf_counter() - start
                    text += piece
                logprobs += _chunk_logprobs(choice)
                if choice.get("finish_reason"):
                    finish, finished = str(choice["finish_reason"]), True
            stop_at = _find_stop(text, request.stop)
            if stop_at is not None:
                text, finish, finished = text[:stop_at], "stop", True
                break
        if not finished:  # e.g. llama-cpp-python's server cuts a stream short when another request arrives
            raise _Retryable(
                "the reply stream ended without a finish_reason (llama-cpp-python's server: start it with "
                "--interrupt_requests false, or use concurrency 1)"
            )
        seconds = time.perf_counter() - start
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        if not usage:  # the server reports none (or the stream was cut at a stop): count with the model's tokenizer
            sent = "\n".join(turn.content for turn in request.turns) if request.turns else request.prompt
            prompt_tokens = await self._count(client, sent, bos=True)
            completion_tokens = await self._count(client, text, bos=False) if text else chunks
        reason: FinishReason = "stop"
        if finish == "length":
            # servers say "length" for the context too; stopping short of the budget asked for means the context
            # (what remained of it after the prompt) ended the reply
            context = self.info.context_length
            short = 0 < completion_tokens < request.max_tokens
            full = bool(context) and prompt_tokens + completion_tokens >= (context or 0)
            reason = "context" if short or full else "length"
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            seconds=seconds,
            ttft=ttft if ttft is not None else seconds,
            finish_reason=reason,
            mean_logprob=sum(logprobs) / len(logprobs) if logprobs else None,
        )

    async def _count(self, client: httpx.AsyncClient, text: str, bos: bool) -> int:
        if self._counter_name == "gguf":
            return len(self._counter.tokenize(text.encode("utf-8"), add_bos=bos, special=False))
        if self._counter is not None:
            return len(self._counter(text, add_special_tokens=bos)["input_ids"])
        if self._remote is None:
            return 0
        try:
            reply = await client.post(self._remote[0], json=self._tokenize_body(text))
            reply.raise_for_status()
            count = len(reply.json()["tokens"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return 0  # counts are for costs; an item's answer does not depend on them
        return count if bos else max(0, count - self._remote_base)


class _Retryable(Exception):
    def __init__(self, reason: str, *, unreachable: bool = False, retry_after: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable
        self.retry_after = retry_after


_DONE: dict[str, Any] = {}


def _event(line: str) -> dict[str, Any] | None:
    """One server-sent event's JSON, ``_DONE`` at the end marker, None for other lines."""
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return _DONE
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _events_sync(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        event = _event(line)
        if event is _DONE:
            return
        if event is not None:
            yield event


def _piece(choice: dict[str, Any], api: str) -> str:
    if api == "chat":
        return str((choice.get("delta") or {}).get("content") or "")
    return str(choice.get("text") or "")


def _chunk_logprobs(choice: dict[str, Any]) -> list[float]:
    found = choice.get("logprobs") or {}
    if not isinstance(found, dict):
        return []
    if isinstance(found.get("token_logprobs"), list):
        return [float(v) for v in found["token_logprobs"] if v is not None]
    if isinstance(found.get("content"), list):  # chat format
        return [float(entry["logprob"]) for entry in found["content"] if entry.get("logprob") is not None]
    return []


def _echoed_tokens(data: dict[str, Any], end: int) -> int:
    """How many echoed tokens start before character ``end`` (the prompt as the server read it); 0 if unknown."""
    try:
        offsets = data["choices"][0]["logprobs"]["text_offset"]
    except (KeyError, IndexError, TypeError):
        return 0
    return sum(1 for offset in offsets if isinstance(offset, int) and offset < end) if isinstance(offsets, list) else 0


def _echo_logprobs(data: dict[str, Any], begin: int, end: int) -> tuple[float, int] | None:
    """Sum of the echoed prompt's token log-probs over characters ``[begin, end)``, and how many tokens that is.

    A token counts when it overlaps the range (tokens that straddle the boundary belong to the continuation, as
    no other split is possible). None when the reply carries no prompt log-probs for the range.
    """
    try:
        found = data["choices"][0]["logprobs"]
        offsets, tokens, values = found["text_offset"], found["tokens"], found["token_logprobs"]
    except (KeyError, IndexError, TypeError):
        return None
    if not (isinstance(offsets, list) and isinstance(tokens, list) and isinstance(values, list)):
        return None
    total, count = 0.0, 0
    for offset, token, value in zip(offsets, tokens, values, strict=False):
        if offset >= end:
            break  # the generated token (max_tokens is 1) and beyond
        if (offset >= begin or offset + len(token) > begin) and value is not None:
            total += float(value)
            count += 1
    return (total, count) if count else None


def _find_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [i for s in stops if (i := text.find(s)) >= 0]
    return min(found) if found else None


def letter_request(request: ChoiceRequest, api: str) -> GenerationRequest:
    """The question with its choices lettered, asking for one (multiple choice where no log-probs are given).

    Completions get the usual lettered layout before the prompt's last line (``Answer:``); chat models get the
    options after the prompt and an instruction.
    """
    letters = LETTERS[: len(request.continuations)]
    pairs = zip(letters, request.continuations, strict=False)
    options = "\n".join(f"{letter}. {choice.strip()}" for letter, choice in pairs)
    ask = f"\n\nOptions:\n{options}\n\nReply with the letter of the best option only."
    if request.turns:  # chat turns: the options and the instruction join the last user turn
        *before, final = request.turns
        turns = (*before, Turn(final.role, final.content + ask))
        return GenerationRequest(transcript(turns), ("\n",), MC_REPLY_TOKENS, turns)
    if api == "chat":
        prompt = f"{request.prompt.rstrip()}{ask}"
    else:
        head, _, last = request.prompt.rstrip().rpartition("\n")
        prompt = f"{head}\n{options}\n{last}" if head else f"{last}\n{options}\nAnswer:"
    return GenerationRequest(prompt, ("\n",), MC_REPLY_TOKENS)


def _status(reply: httpx.Response) -> str:
    """``HTTP 503 Service Unavailable``: the status code and its standard reason, nothing the server wrote (neither
    its body nor its own status line's wording)."""
    return f"HTTP {reply.status_code} {httpx.codes.get_reason_phrase(reply.status_code)}".strip()


def _describe(exc: httpx.HTTPError) -> str:
    kind = type(exc).__name__
    detail = str(exc).strip()
    return f"{kind}: {detail}" if detail else kind


def _load_counter(path: str) -> tuple[Any, str]:
    """A tokenizer to count tokens with: a GGUF file (llama.cpp, vocabulary only) or a Hugging Face folder."""
    if path.endswith(".gguf"):
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ModelError("counting tokens with a .gguf tokenizer needs llama-cpp-python") from exc
        try:
            return Llama(model_path=path, vocab_only=True, verbose=False), "gguf"
        except (ValueError, OSError) as exc:
            raise ModelError(f"cannot read the tokenizer {path}: {exc}") from exc
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise ModelError("counting tokens with a Hugging Face tokenizer needs transformers") from exc
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True), "hf"
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the tokenizer {path}: {exc}") from exc


def _raise(result: Result) -> ChoiceScores | Completion:
    if isinstance(result, BackendError):
        raise result
    return result
