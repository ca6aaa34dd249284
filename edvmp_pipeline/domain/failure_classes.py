"""Failure classification: from an error's type, message and stack to a failure class.

Pure and table-driven. The run-failure sensor calls :func:`classify_failure` with what Dagster
recorded about a failed step (exception type name, message, stack) plus, when present, the
``error_class`` a :class:`~edvmp_pipeline.domain.errors.PipelineError` carried. The result
says whether the failure is worth redriving and which runbook to follow; :func:`fingerprint`
groups the same failure across many objects so one incident covers them all.

Rules live in :data:`RULES`, an ordered table of ``(class, pattern, context)``; the first
rule that matches wins, so specific rules sit before generic ones. The type name and message
are tried against every rule before the stack is, because the message says what went wrong
while a stack mostly says where, and its source lines can mention anything.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "ALL_CLASSES",
    "CLASSES_BY_NAME",
    "IN_STEP_RETRYABLE",
    "RULES",
    "UNKNOWN",
    "FailureClass",
    "Rule",
    "classify_failure",
    "fingerprint",
    "get_failure_class",
    "is_known_class",
    "is_retryable_class",
    "normalize_message",
]


@dataclass(frozen=True, slots=True)
class FailureClass:
    """One kind of failure and what to do about it.

    ``runbook`` is a path relative to the repository root. ``max_redrives`` bounds how many
    times the failure sensor may re-launch a run that failed this way (0 for permanent ones).
    ``retry_in_step``: cheap to retry and likely to heal within seconds, so the step itself
    retries it with backoff before the version counts as failed.
    """

    name: str
    retryable: bool
    runbook: str
    action: str
    summary: str
    max_redrives: int = 0
    retry_in_step: bool = False


def _cls(
    name: str,
    retryable: bool,
    max_redrives: int,
    summary: str,
    action: str,
    *,
    retry_in_step: bool = False,
) -> FailureClass:
    return FailureClass(
        name=name,
        retryable=retryable,
        runbook=f"runbooks/{name}.md",
        action=action,
        summary=summary,
        max_redrives=max_redrives,
        retry_in_step=retry_in_step,
    )


ALL_CLASSES: tuple[FailureClass, ...] = (
    _cls(
        "corrupt_media",
        False,
        0,
        "The object's bytes are not a readable media file (truncated, damaged, missing index).",
        "Confirm with ffprobe; ask the uploader to re-upload a good copy (a new version reruns).",
    ),
    _cls(
        "unsupported_media",
        False,
        0,
        "The object is readable but not a video we handle (no video stream, still image,"
        " unknown container).",
        "Confirm the streams with ffprobe; move it out of the video prefix or extend the policy.",
    ),
    _cls(
        "empty_object",
        False,
        0,
        "The object has zero bytes.",
        "Check the size with head-object; fix the uploader and upload the file again.",
    ),
    _cls(
        "probe_timeout",
        True,
        2,
        "ffprobe did not finish within the configured probe timeout.",
        "Redrive once the store is healthy; if it recurs, raise EDVMP_PROBE_TIMEOUT_S.",
    ),
    _cls(
        "object_missing",
        False,
        0,
        "The object (or that version of it) was deleted or replaced before it was processed.",
        "Confirm with head-object; nothing to do if the delete was intended.",
    ),
    _cls(
        "access_denied",
        False,
        0,
        "The store refused the credentials or the request (403, bad key, bad signature).",
        "Fix the access key, secret or bucket policy, then redrive.",
    ),
    _cls(
        "throttled",
        True,
        5,
        "The store or Bedrock asked us to slow down (SlowDown, throttling, 429/503).",
        "Let the bounded redrive handle it; lower concurrency if it persists.",
        retry_in_step=True,
    ),
    _cls(
        "store_unreachable",
        True,
        3,
        "The object store could not be reached (connection refused/reset, DNS, timeout, 5xx).",
        "Check the store endpoint is up and reachable; redrive once it answers.",
        retry_in_step=True,
    ),
    _cls(
        "summarizer_unavailable",
        True,
        3,
        "The Bedrock endpoint was unreachable or failing (5xx) on every attempt.",
        "Check the Bedrock endpoint/region is reachable; redrive once it answers.",
    ),
    _cls(
        "summarizer_error",
        False,
        0,
        "Bedrock rejected the request (bad model id, no model access, empty answer).",
        "Fix EDVMP_BEDROCK_MODEL_ID, region or model access, then redrive.",
    ),
    _cls(
        "resource_exhausted",
        True,
        1,
        "The run or step process ran out of memory or disk, or was killed.",
        "Redrive once; if it fails again, give the run more memory/disk or less concurrency.",
    ),
    _cls(
        "config_error",
        False,
        0,
        "Bad configuration: missing tool, bucket, region or an invalid setting.",
        "Fix the EDVMP_* setting or deployment named in the message, then redrive.",
    ),
    _cls(
        "unknown",
        False,
        0,
        "No rule matched this failure.",
        "Read the message and stack; add a rule to the classifier once it is understood.",
    ),
)

CLASSES_BY_NAME: Mapping[str, FailureClass] = MappingProxyType({c.name: c for c in ALL_CLASSES})

UNKNOWN: FailureClass = CLASSES_BY_NAME["unknown"]


# A probe timeout is retryable but not in the step (each try costs the whole timeout): it is
# redriven later instead.
IN_STEP_RETRYABLE = frozenset(c.name for c in ALL_CLASSES if c.retry_in_step)


def is_retryable_class(name: str) -> bool:
    """Whether a failure of class ``name`` is worth running again (unknown names: no)."""
    cls = CLASSES_BY_NAME.get(name)
    return cls is not None and cls.retryable


def get_failure_class(name: str) -> FailureClass:
    """Return the failure class called ``name``; raise ``KeyError`` if there is none."""
    try:
        return CLASSES_BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(CLASSES_BY_NAME))
        raise KeyError(f"unknown failure class {name!r}; known: {known}") from None


def is_known_class(name: str | None) -> bool:
    """Whether ``name`` is one of :data:`ALL_CLASSES`."""
    return name is not None and name in CLASSES_BY_NAME


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the classification table.

    ``pattern`` is searched in the error's text; ``context``, when set, must also be found
    somewhere in type, message or stack (e.g. "this came from Bedrock").
    """

    failure_class: str
    pattern: re.Pattern[str]
    context: re.Pattern[str] | None = None


def _any(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE)


# Errors from the Bedrock runtime client name the operation in botocore's message ("when
# calling the Converse operation") or its URL (".../model/ID/converse"); the summarizer's own
# messages say "Bedrock".
_BEDROCK = _any(
    r"when calling the (?:Converse|ConverseStream|InvokeModel\w*|ApplyGuardrail) operation",
    r"/model/[^/\s]+/(?:converse|invoke)",
    r"bedrock",
)

# Shared by the object store and the model endpoint: which one it was decides the class.
_UNREACHABLE = (
    r"\bEndpointConnectionError\b",
    r"\bConnect(?:ion)?TimeoutError\b",
    r"\bReadTimeoutError\b",
    r"\bConnectionClosedError\b",
    r"\bNewConnectionError\b",
    r"\bConnection(?:Refused|Reset|Aborted)?Error\b",
    r"Could not connect to the endpoint URL",
    r"(?:Connect|Read) timeout on endpoint URL",
    r"Connection was closed before we received a valid response",
    r"Failed to establish a new connection",
    r"Connection (?:refused|reset|aborted|timed out)",
    r"Name or service not known",
    r"Temporary failure in name resolution",
    r"failed to resolve",
    r"Network is unreachable",
    r"No route to host",
    r"endpoint unreachable",
    r"store unreachable",
    # ffprobe reading a presigned URL reports any 5xx as "Server returned 5XX ...".
    r"Server returned 5XX",
    r"\b5xx\b",
    r"\((?:500|502|504)\)",
    r"\bInternalError\b",
    r"\bInternalServerError\b",
    r"\bInternalServerException\b",
    # S3's 503 ServiceUnavailable is an outage like 500/502/504 (its SlowDown is throttling):
    # the S3 adapter raises store_unreachable for it, and both must say the same.
    r"\bServiceUnavailable(?:Exception)?\b",
    r"\bBadGateway\b",
    r"\bGatewayTimeout\b",
    r"\bProtocolError\b",
    r"\bResponseStreamingError\b",
    r"\bIncompleteRead(?:Error)?\b",
)

_THROTTLING = (
    r"\bSlowDown\b",
    r"\bThrottling(?:Exception)?\b",
    r"\bRequestLimitExceeded\b",
    r"\bRequestThrottled\b",
    r"\bTooManyRequests(?:Exception)?\b",
    r"\bServiceQuotaExceededException\b",
    r"\bProvisionedThroughputExceededException\b",
    r"\bthrottled\b",
    r"reduce your request rate",
    r"Rate exceeded",
    r"too many requests",
    r"\((?:429|503)\)",
)

# Bedrock says "not now" in two more ways than S3 does.
_BEDROCK_THROTTLING = (*_THROTTLING, r"\bModelNotReadyException\b", r"\bModelTimeoutException\b")

RULES: tuple[Rule, ...] = (
    # Configuration first: a missing ffprobe binary is a FileNotFoundError that would
    # otherwise read as a missing object, and a missing bucket is a 404 of another kind.
    Rule(
        "config_error",
        _any(
            r"\bConfigError\b",
            r"\bPolicyError\b",
            r"\bInvalidObjectKey\b",
            r"\bDagsterInvalidConfigError\b",
            r"No such file or directory: '(?:[^']*/)?ff(?:probe|mpeg)'",
            r"cannot run ffprobe",
            r"\bNoSuchBucket\b",
            r"no such bucket",
            r"specified bucket does not exist",
            r"\bInvalidBucketName\b",
            r"\bPermanentRedirect\b",
            r"\bAuthorizationHeaderMalformed\b",
            r"\bNoRegionError\b",
            r"You must specify a region",
            r"Invalid endpoint:",
            r"\binvalid (?:configuration|setting)\b",
        ),
    ),
    # The summarizer's exception types name their class, whatever their message says.
    Rule("summarizer_unavailable", _any(r"\bSummarizerUnavailable\b")),
    Rule("throttled", _any(r"\bSummarizerThrottled\b")),
    Rule("summarizer_error", _any(r"\bSummarizerError\b")),
    # Bedrock before the generic rules: an unreachable model endpoint is not the object
    # store, and its AccessDeniedException needs the summarizer runbook, not the store's.
    Rule("summarizer_unavailable", _any(*_UNREACHABLE), context=_BEDROCK),
    Rule("throttled", _any(*_BEDROCK_THROTTLING), context=_BEDROCK),
    Rule(
        "summarizer_error",
        _any(
            r"\bSummarizerError\b",
            r"\bValidationException\b",
            r"\bAccessDeniedException\b",
            r"\bResourceNotFoundException\b",
            r"\bModel(?:Stream)?ErrorException\b",
            r"\bUnrecognizedClientException\b",
        ),
        context=_BEDROCK,
    ),
    Rule(
        "resource_exhausted",
        _any(
            r"\bMemoryError\b",
            r"Cannot allocate memory",
            r"out of memory",
            r"\bOOMKilled\b",
            r"No space left on device",
            r"Disk quota exceeded",
            r"\bKilled\b",
            r"\bSIGKILL\b",
            r"\bsignal 9\b",
            r"exit (?:code|status) (?:-9|137)\b",
            # Dagster: dagster._utils.get_run_crash_explanation, used for a step's child
            # process (multiprocess executor) and for a run's execution process (gRPC server).
            r"was terminated by signal \d+",
            r"unexpectedly exited with code",
            # Dagster: gRPC server, run monitoring daemon and execute_run_iterator.
            r"terminated unexpectedly with exit code",
            r"Execution was interrupted unexpectedly",
            r"run worker unexpectedly stops",
            r"Detected run worker status",
            r"\bChildProcessCrashException\b",
        ),
    ),
    Rule(
        "probe_timeout",
        _any(
            r"\bProbeTimeout\b",
            r"\bprobe timeout\b",
            r"\bTimeoutExpired\b",
            r"Command '.*' timed out after",
            r"ffprobe did not finish",
        ),
    ),
    Rule("throttled", _any(*_THROTTLING)),
    Rule("store_unreachable", _any(r"\bStoreUnreachable\b", *_UNREACHABLE)),
    Rule(
        "access_denied",
        _any(
            r"\bAccessDenied\b",
            r"\baccess denied\b",
            r"\bInvalidAccessKeyId\b",
            r"\bSignatureDoesNotMatch\b",
            r"\bInvalidClientTokenId\b",
            r"\bExpiredToken(?:Exception)?\b",
            r"\bInvalidToken\b",
            r"\bAllAccessDisabled\b",
            # The store modules report missing credentials as access denied; so do we.
            r"\bNoCredentialsError\b",
            r"\bPartialCredentialsError\b",
            r"Unable to locate credentials",
            r"\((?:401|403)\)",
            r"\b40[13] (?:Forbidden|Unauthorized)\b",
            r"Server returned 40[13]",
            r"\bForbidden\b",
            r"\bPermissionError\b",
            r"Permission denied",
            r"Operation not permitted",
        ),
    ),
    Rule(
        "object_missing",
        _any(
            r"\bObjectMissing\b",
            r"\bobject missing\b",
            r"\bNoSuchKey\b",
            r"\bNoSuchVersion\b",
            r"\bNotFound\b",
            # An If-Match on the listed ETag failing means the version was replaced.
            r"\bPreconditionFailed\b",
            r"\((?:404|412)\)",
            r"\b404 Not Found\b",
            r"operation(?: \(reached max retries: \d+\))?: Not Found",
            r"specified key does not exist",
            r"\bFileNotFoundError\b",
            r"No such file or directory",
        ),
    ),
    # The media rules come last among the specific ones: ffprobe gives the same stderr for a
    # zero-byte file as for a damaged one, so empty_object needs its own wording (or a hint).
    Rule(
        "empty_object",
        _any(
            r"\bEmptyObject\b",
            r"\bempty (?:object|file)\b",
            r"\bzero[- ]byte",
            r"\b(?:size(?:_bytes)?\s*[=:]?\s*|is |has )0 bytes\b",
            r"\bsize(?:_bytes)?\s*[=:]\s*0\b",
        ),
    ),
    Rule(
        "unsupported_media",
        _any(
            r"\bUnsupportedMedia\b",
            r"\bno video streams?\b",
            r"\b(?:has|with) no video\b",
            r"\bstill image\b",
            r"\bUnknown input format\b",
            r"\bunknown container\b",
            r"\bunsupported (?:container|format|media|codec)\b",
            r"\bnot a video\b",
            r"\baudio[- ]only\b",
        ),
    ),
    Rule(
        "corrupt_media",
        _any(
            r"\bMediaRejected\b",
            r"moov atom not found",
            r"Invalid data found when processing input",
            r"unrecognised or corrupt",
            r"\btruncat",
            r"\bcorrupt",
            r"partial file",
            r"Invalid NAL unit",
            r"error reading header",
            r"EBML header parsing failed",
            r"detected only with low score",
            r"\binvalid (?:atom|box|stsd|frame|packet)",
            r"Failed to read frame size",
            r"Could not seek to \d+",
            r"Header missing",
            r"Error while decoding",
        ),
    ),
    # Anything else from the Bedrock client is the summarizer's, not unknown.
    Rule("summarizer_error", re.compile(r"."), context=_BEDROCK),
)

# A generic hint the message can narrow to a more specific class: the summarizer raises
# summarizer_error both for a bad request and (retryable) for an endpoint that stayed down.
_HINT_REFINEMENTS: Mapping[str, tuple[Rule, ...]] = MappingProxyType(
    {
        "summarizer_error": (
            Rule("summarizer_unavailable", _any(*_UNREACHABLE)),
            Rule("throttled", _any(*_BEDROCK_THROTTLING)),
        )
    }
)

# PipelineError's default error_class: it carries no information, so rules decide.
_UNINFORMATIVE_HINTS = frozenset({"unknown"})

# Enough to see the error; a huge stderr or stack should not make classification slow.
_MAX_TEXT = 64_000


def _first_match(rules: Iterable[Rule], text: str, everything: str) -> FailureClass | None:
    for rule in rules:
        if rule.pattern.search(text) and (rule.context is None or rule.context.search(everything)):
            return CLASSES_BY_NAME[rule.failure_class]
    return None


def classify_failure(
    error_type: str | None,
    message: str,
    stack: str = "",
    *,
    error_class_hint: str | None = None,
) -> FailureClass:
    """Classify one failure.

    ``error_type`` is the exception's class name, bare or qualified
    (``botocore.exceptions.ClientError``); ``message`` its text (``str(exc)``, a Dagster
    error message or a tool's stderr); ``stack`` the traceback text, consulted only when
    type and message match no rule. ``error_class_hint`` is the class a
    :class:`~edvmp_pipeline.domain.errors.PipelineError` carried: a known class wins, except
    that ``summarizer_error`` is narrowed to ``summarizer_unavailable`` or ``throttled``
    when the message shows the endpoint down or throttling (both retryable), and
    ``unknown`` (the default) is ignored. Never raises; returns the
    ``unknown`` class when nothing matches.
    """
    message = (message or "")[:_MAX_TEXT]
    stack = (stack or "")[:_MAX_TEXT]
    head = "\n".join(filter(None, (error_type, message)))
    everything = f"{head}\n{stack}"

    hinted = CLASSES_BY_NAME.get(error_class_hint or "")
    if hinted is not None and hinted.name not in _UNINFORMATIVE_HINTS:
        refined = _first_match(_HINT_REFINEMENTS.get(hinted.name, ()), head, everything)
        return refined or hinted

    # Type names are matched inside the text too: Dagster serialises an exception as
    # "module.Type: message", so the message alone often names the type.
    return (
        _first_match(RULES, head, everything) or _first_match(RULES, stack, everything) or UNKNOWN
    )


# --- fingerprint ------------------------------------------------------------------------------

_MEDIA_EXTENSIONS = (
    "mp4|m4v|m4a|mov|qt|mkv|webm|avi|wmv|flv|mpg|mpeg|ts|mts|m2ts|3gp|3g2|mxf|ogv|ogg|"
    "wav|mp3|aac|flac|png|jpe?g|gif|webp|heic|tiff?|bmp|bin|dat|json|parquet|part|tmp|txt"
)

# Order matters: whole URLs and timestamps go before the paths and numbers inside them.
# URLs, paths, keys and file names all become "<path>": the same failure reads a local path
# in one deployment and a presigned URL in another, and both name the object, not the kind.
_NORMALISERS: tuple[tuple[re.Pattern[str], str], ...] = (
    # botocore adds the retry count it gave up at; the same failure may give up at any.
    (re.compile(r"\s*\(reached max retries: \d+\)"), ""),
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?\b"
        ),
        "<time>",
    ),
    (
        re.compile(
            r"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} [A-Z][a-z]{2} \d{4} "
            r"\d{2}:\d{2}:\d{2} GMT\b"
        ),
        "<time>",
    ),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE), "<path>"),
    (
        re.compile(
            r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE
        ),
        "<id>",
    ),
    # A quoted string that looks like a path or file name is an object key, whatever it holds
    # (spaces included); other quoted words (a parameter name, "Key") are kept.
    (re.compile(r"'[^'\n]*[/\\.][^'\n]*'|\"[^\"\n]*[/\\.][^\"\n]*\""), "<path>"),
    (re.compile(r"(?<![\w<])(?:~|\.{1,2})?/[^\s'\",;:()\[\]<>]+"), "<path>"),
    (re.compile(r"\b[\w.@%+=-]+(?:/[\w.@%+=-]+)+/?"), "<path>"),
    (re.compile(r"\btmp[\w-]{4,}\b"), "<path>"),
    (re.compile(rf"\b[\w@%+=-][\w.@%+=-]*\.(?:{_MEDIA_EXTENSIONS})\b", re.IGNORECASE), "<path>"),
    # A key with spaces ("videos/my clip.mp4") leaves several placeholders in a row.
    (re.compile(r"<path>(?:\s+<path>)+"), "<path>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.IGNORECASE), "<hex>"),
    # A dump of leading bytes ("first bytes ac 36 c0 25 ...") differs for every object.
    (re.compile(r"\b[0-9a-f]{2}(?: [0-9a-f]{2}){3,}\b", re.IGNORECASE), "<hex>"),
    # ETags (plain or multipart "-N"), request ids, hashes: long tokens with a digit in them.
    (re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{8,}(?:-\d+)?\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"\b(?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{16,}\b"), "<id>"),
)

# Numbers that name the kind of failure stay: an HTTP status in botocore's "(404)", an errno,
# a signal, an exit status. Every other number (sizes, pids, ports, counts, durations) goes.
_NUMBERS = re.compile(
    r"(?P<keep>\(\d{3}\)|\b(?:errno|signal|exit code|exit status|SIG[A-Z]+:)\s*-?\d+)"
    r"|(?P<num>-?\b\d+(?:\.\d+)?\b)",
    re.IGNORECASE,
)


def normalize_message(message: str, *, redact: Iterable[str] = ()) -> str:
    """Reduce a failure message to its kind: the text :func:`fingerprint` hashes.

    Literal ``redact`` strings (the object key, bucket, ETag, local path the caller knows)
    are removed first; then URLs, paths, file names, temp names, hex ids, UUIDs,
    timestamps and numbers are replaced by placeholders, and whitespace and case folded.
    """
    text = message or ""
    # Longest first, so a key is removed whole before a bucket name inside it.
    for literal in sorted({r for r in redact if r}, key=len, reverse=True):
        text = text.replace(literal, "<path>")
    for pattern, placeholder in _NORMALISERS:
        text = pattern.sub(placeholder, text)
    text = _NUMBERS.sub(lambda m: m.group("keep") or "<n>", text)
    return " ".join(text.split()).lower()


def fingerprint(failure_class: str, message: str, *, redact: Iterable[str] = ()) -> str:
    """A stable 16-hex-digit hash of the failure class and the normalised message.

    The same failure on different objects (keys, paths, ETags, sizes, times differ) gets the
    same fingerprint; a different class or a different kind of message gets another.
    """
    basis = f"{failure_class}\n{normalize_message(message, redact=redact)}"
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()[:16]
