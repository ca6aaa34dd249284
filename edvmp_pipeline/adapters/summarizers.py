"""Summarizers: the deterministic offline one (default) and Amazon Bedrock through Converse.

Both are Dagster resources with the same method, ``summarize(record, object_key) -> Summary``,
so an asset takes a :class:`SummarizerResource` and does not care which one it got.

Error handling of :class:`BedrockSummarizer` (every error is a :class:`PipelineError`):

- Throttling (``ThrottlingException``, ``ServiceQuotaExceededException``,
  ``ModelNotReadyException``, ``ModelTimeoutException``): retried with exponential backoff and
  full jitter, at most ``max_attempts`` calls; then :class:`SummarizerThrottled`,
  ``error_class="throttled"``, retryable (the run-failure sensor may redrive it later).
- Endpoint unreachable (connection refused, DNS, connect/read timeout, connection reset) and
  5xx service errors (``InternalServerException``, ``ServiceUnavailableException``): also
  transient, retried the same way; then :class:`SummarizerUnavailable`,
  ``error_class="summarizer_unavailable"``, retryable, with "endpoint unreachable" (or the AWS
  code) in the message. It is not ``store_unreachable``: that class means the *object store* is
  down and its runbook says so; the model endpoint is a different dependency.
- Anything else (``ValidationException``, ``AccessDeniedException``,
  ``ResourceNotFoundException``, missing credentials, an empty answer ...): raised at once,
  no retry, as :class:`SummarizerError`, ``error_class="summarizer_error"``, not retryable,
  with the model id and the AWS error code in the message.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import dagster as dg
from pydantic import PrivateAttr

from edvmp_pipeline.domain.backoff import backoff_delay
from edvmp_pipeline.domain.errors import ConfigError, PipelineError
from edvmp_pipeline.domain.offline_summary import offline_summary
from edvmp_pipeline.domain.records import VideoRecord
from edvmp_pipeline.domain.summary_prompt import build_converse_request

# Names the template of the offline summary, so catalog rows say which text generator wrote
# them; bump it when offline_summary's wording changes.
OFFLINE_MODEL_ID = "edvmp-offline-v1"

THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "ServiceQuotaExceededException",
        "ModelNotReadyException",
        "ModelTimeoutException",
        "TooManyRequestsException",
    }
)
# Server-side failures that say nothing about the request itself: worth another try.
TRANSIENT_SERVER_CODES = frozenset({"InternalServerException", "ServiceUnavailableException"})

# Seconds; a model may take a while to write, but a connection should open quickly.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 120.0


class SummarizerError(PipelineError):
    """The summarizer failed in a way that another identical call will not fix."""

    error_class = "summarizer_error"


class SummarizerUnavailable(SummarizerError):
    """The model endpoint was unreachable or failing on every attempt (transient)."""

    # Its own class (not summarizer_error) so incidents redrive it: see failure_classes.
    error_class = "summarizer_unavailable"


class SummarizerThrottled(PipelineError):
    """Bedrock kept throttling after every retry (transient)."""

    error_class = "throttled"


@dataclass(frozen=True)
class Summary:
    """One summary and what it cost (the ``summaries`` view)."""

    summarizer: Literal["offline", "bedrock"]
    model_id: str
    summary: str
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: int | None
    stop_reason: str | None

    def as_row(self) -> dict[str, Any]:
        """The catalog columns."""
        return asdict(self)


class SummarizerResource(dg.ConfigurableResource):
    """The interface both summarizers implement; annotate asset parameters with it."""

    def summarize(self, record: VideoRecord, object_key: str | None = None) -> Summary:
        """Summarise one video record."""
        raise NotImplementedError


class OfflineSummarizer(SummarizerResource):
    """The deterministic template summary: no network, no credentials, same text every time."""

    def summarize(self, record: VideoRecord, object_key: str | None = None) -> Summary:
        """Summarise ``record`` with :func:`offline_summary`."""
        started = time.perf_counter()
        text = offline_summary(record, object_key)
        return Summary(
            summarizer="offline",
            model_id=OFFLINE_MODEL_ID,
            summary=text,
            input_tokens=None,
            output_tokens=None,
            latency_ms=round((time.perf_counter() - started) * 1000),
            stop_reason=None,
        )


class BedrockSummarizer(SummarizerResource):
    """Summaries from a Bedrock model through the Converse API.

    Credentials come from the usual boto3 chain. ``endpoint_url`` overrides the regional
    endpoint (VPC endpoint, or a local stand-in in tests). botocore's own retries are off:
    retries happen here, where they are bounded, jittered and turned into a failure class.
    """

    model_id: str
    region: str = "us-east-1"
    max_tokens: int = 300
    temperature: float = 0.2
    endpoint_url: str | None = None
    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 20

    # Not configuration: the client is created on first use, and the sleep and random
    # functions are replaceable so tests can record delays instead of waiting.
    _client: Any = PrivateAttr(default=None)
    _sleep: Callable[[float], None] = PrivateAttr(default=time.sleep)
    _rand: Callable[[], float] = PrivateAttr(default=random.random)

    def with_retry_hooks(
        self,
        *,
        sleep: Callable[[float], None] | None = None,
        rand: Callable[[], float] | None = None,
    ) -> BedrockSummarizer:
        """Replace the sleep function and/or the [0, 1) random source; returns ``self``."""
        if sleep is not None:
            self._sleep = sleep
        if rand is not None:
            self._rand = rand
        return self

    def bedrock_client(self) -> Any:
        """The ``bedrock-runtime`` client this resource calls (created once)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "bedrock-runtime",
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                config=Config(
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    connect_timeout=CONNECT_TIMEOUT_S,
                    read_timeout=READ_TIMEOUT_S,
                ),
            )
        return self._client

    def converse_arguments(
        self, record: VideoRecord, object_key: str | None = None
    ) -> dict[str, Any]:
        """The keyword arguments of the ``converse`` call for ``record``."""
        return {
            "modelId": self.model_id,
            **build_converse_request(record, object_key),
            "inferenceConfig": {"maxTokens": self.max_tokens, "temperature": self.temperature},
        }

    def summarize(self, record: VideoRecord, object_key: str | None = None) -> Summary:
        """Summarise ``record`` with the model, retrying transient failures (see module doc)."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        client = self.bedrock_client()
        arguments = self.converse_arguments(record, object_key)
        attempts = max(1, self.max_attempts)
        last_problem = ""
        throttled = False
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self._sleep(
                    backoff_delay(attempt - 1, self.base_delay_s, self.max_delay_s, self._rand)
                )
            started = time.perf_counter()
            try:
                response = client.converse(**arguments)
            except ClientError as exc:
                error = exc.response.get("Error", {})
                code = error.get("Code") or "Unknown"
                message = error.get("Message") or str(exc)
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code in THROTTLING_CODES:
                    throttled, last_problem = True, f"{code}: {message}"
                    continue
                if code in TRANSIENT_SERVER_CODES or (status is not None and status >= 500):
                    throttled, last_problem = False, f"{code} (HTTP {status}): {message}"
                    continue
                raise SummarizerError(
                    f"Bedrock Converse call for model {self.model_id!r} failed with AWS error "
                    f"{code} (HTTP {status}): {message}"
                ) from exc
            except (
                EndpointConnectionError,
                ConnectTimeoutError,
                ReadTimeoutError,
                ConnectionClosedError,
            ) as exc:
                throttled, last_problem = False, f"endpoint unreachable: {exc}"
                continue
            except NoCredentialsError as exc:
                raise SummarizerError(
                    f"Bedrock Converse call for model {self.model_id!r}: no AWS credentials "
                    "found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
                ) from exc
            except BotoCoreError as exc:
                raise SummarizerError(
                    f"Bedrock Converse call for model {self.model_id!r} failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            measured_ms = round((time.perf_counter() - started) * 1000)
            return self._summary_from_response(response, measured_ms)

        if throttled:
            raise SummarizerThrottled(
                f"Bedrock throttled model {self.model_id!r} on all {attempts} attempts; "
                f"last error {last_problem}"
            )
        where = self.endpoint_url or f"the {self.region} endpoint"
        raise SummarizerUnavailable(
            f"Bedrock model {self.model_id!r} at {where} failed on all {attempts} attempts; "
            f"last error {last_problem}"
        )

    def _summary_from_response(self, response: dict[str, Any], measured_ms: int) -> Summary:
        content = response.get("output", {}).get("message", {}).get("content", [])
        text = "\n".join(block["text"] for block in content if "text" in block).strip()
        stop_reason = response.get("stopReason")
        if not text:
            # e.g. guardrail_intervened or content_filtered: an empty summary is not a summary.
            raise SummarizerError(
                f"Bedrock model {self.model_id!r} returned no text (stopReason {stop_reason!r})"
            )
        usage = response.get("usage", {})
        latency = response.get("metrics", {}).get("latencyMs")
        return Summary(
            summarizer="bedrock",
            model_id=self.model_id,
            summary=text,
            input_tokens=usage.get("inputTokens"),
            output_tokens=usage.get("outputTokens"),
            latency_ms=int(latency) if latency is not None else measured_ms,
            stop_reason=stop_reason,
        )


def _env_number(name: str, kind: type[int] | type[float], env: dict[str, str]) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from None
    if not math.isfinite(value) or value < 0 or (kind is int and value == 0):
        raise ConfigError(f"{name} must be a positive number, got {raw!r}")
    return value


def summarizer_from_env(
    environ: dict[str, str] | None = None,
) -> OfflineSummarizer | BedrockSummarizer:
    """The summarizer chosen by ``EDVMP_SUMMARIZER`` (``offline`` by default, or ``bedrock``).

    For bedrock: ``EDVMP_BEDROCK_MODEL_ID`` (required), ``EDVMP_BEDROCK_REGION`` (else
    ``AWS_REGION``, ``AWS_DEFAULT_REGION``, ``us-east-1``), ``EDVMP_BEDROCK_MAX_TOKENS``,
    ``EDVMP_BEDROCK_TEMPERATURE``, ``EDVMP_BEDROCK_ENDPOINT_URL``. Raises :class:`ConfigError`
    naming the variable for an unknown summarizer, a missing model id or a bad number.
    """
    env = dict(os.environ if environ is None else environ)
    kind = env.get("EDVMP_SUMMARIZER", "").strip().lower() or "offline"
    if kind == "offline":
        return OfflineSummarizer()
    if kind != "bedrock":
        raise ConfigError(
            f"EDVMP_SUMMARIZER must be 'offline' or 'bedrock', got {env['EDVMP_SUMMARIZER']!r}"
        )
    model_id = env.get("EDVMP_BEDROCK_MODEL_ID", "").strip()
    if not model_id:
        raise ConfigError(
            "EDVMP_SUMMARIZER=bedrock needs EDVMP_BEDROCK_MODEL_ID (a Bedrock model or "
            "inference profile id, e.g. anthropic.claude-3-haiku-20240307-v1:0)"
        )
    region = next(
        (
            env[name].strip()
            for name in ("EDVMP_BEDROCK_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")
            if env.get(name, "").strip()
        ),
        "us-east-1",
    )
    options: dict[str, Any] = {"model_id": model_id, "region": region}
    max_tokens = _env_number("EDVMP_BEDROCK_MAX_TOKENS", int, env)
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    temperature = _env_number("EDVMP_BEDROCK_TEMPERATURE", float, env)
    if temperature is not None:
        # The upper bound depends on the model; Bedrock's ValidationException will say so.
        options["temperature"] = temperature
    endpoint_url = env.get("EDVMP_BEDROCK_ENDPOINT_URL", "").strip()
    if endpoint_url:
        options["endpoint_url"] = endpoint_url
    return BedrockSummarizer(**options)
