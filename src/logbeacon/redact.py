"""Redaction: secrets and personal data are scrubbed before an event leaves a process.

The SDK runs this on every event before any sink sees it, and the server runs it again before
anything is stored (browsers and foreign shippers never run our SDK), so the rules live in one
module and both sides produce identical output.

**Keys.** A value under a sensitive key is replaced wholesale by ``[REDACTED]``. Keys are split
into *segments* — on ``_ - .``, spaces, camelCase and letter/digit boundaries — and compared
case-insensitively. A key is sensitive when

- a segment is a sensitive word: ``password passwd pwd passphrase secret(s) token(s) auth
  authn authz authorization authentication authenticated authenticator cookie(s)
  credential(s) creds otp totp ssn cvv cvc csrf xsrf bearer phpsessid jsessionid``;
- a segment *contains* ``password``/``passwd``/``passphrase`` (``PGPASSWORD``, ``passwords``)
  or is longer than the word and *ends* in ``secret(s)``/``token(s)`` (``clientsecret``,
  ``csrftoken``);
- adjacent segments form a phrase — ``api key``, ``private key``, ``session key``,
  ``access key``, ``signing key``, ``encryption key``, ``master key``, ``ingest key``,
  ``credit card``, ``card number|num|no``, ``cc number|num``, ``security code``,
  ``social security``, ``two factor``, ``mfa code``, ``connect sid``, ``log signature``,
  ``pass phrase`` — or the phrase written as one word (``apikey``, ``X-APIKey``);
- a user's ``extra_keys`` entry matches the same way (one word, or a phrase of segments).

So ``db_password``, ``X-Api-Key``, ``refreshToken``, ``AWS_SECRET_ACCESS_KEY``,
``set-cookie``, ``client_secret`` and ``is_authenticated`` match, while ``author``,
``authored_by``, ``tokenizer``, ``key``, ``monkey`` and the correlation ids (``session_id``,
``trace_id``, ``request_id``, ``user_id``, ``run_id`` — ``session`` alone is no secret) do
not. LLM usage counters (``prompt_tokens``, ``completion_tokens``, ``total_tokens``,
``max_tokens``, ``tokens_used``, ``input_tokens``, ``output_tokens``, ``cached_tokens``,
``reasoning_tokens`` and their OpenAI/Anthropic/Gemini/LangChain relatives) and the user's
``allow_keys`` are never sensitive; allow-list entries compare case-insensitively, exactly or
after segment normalisation (``promptTokens`` is ``prompt_tokens``). Booleans and ``None``
under a sensitive key are kept (``is_authenticated: true`` tells nothing); every other value —
string, number, list, dict — becomes ``[REDACTED]``.

**Values.** Patterns are replaced *inside* strings — only the matching span, so a log line
stays readable — by ``[REDACTED:<kind>]`` with a kind from `MARKER_KINDS`: emails, phone
numbers (``+CC…`` and national groupings with separators), ``Bearer``/``Basic`` credentials
(the scheme word stays), JWTs, AWS access key ids, GitHub/GitLab/Slack/Stripe/OpenAI/
Anthropic/Google/Hugging Face/npm/PyPI/SendGrid keys, Slack webhooks, PEM private-key
blocks, Luhn-valid card numbers, IBANs and US SSNs. Two rules keep the surrounding syntax
and use the plain marker: the password in a URL (``postgres://bob:[REDACTED]@db``) and
``key=value``/``key: value``/``"key": "value"``/``--key value`` assignments whose key is
sensitive (``password=[REDACTED]``; an AWS secret key is caught this way). A bare word is not
an assignment: ``"User password is secret123"`` stays as it is. Keys are redacted like
values (a secret used as a key is replaced inside the key). Under keys whose last segment is
``url``, ``uri``, ``route``, ``path`` or ``href`` (``http.route``, ``request_url``) the query
string and fragment are dropped.

A marker never contains any part of what it replaced, and no marker matches any rule, so
redaction is idempotent. Ids and numbers that only resemble secrets are left alone: card
numbers need an issuer prefix *and* a valid Luhn checksum, IBANs a known country length
*and* a valid mod-97 checksum, phone numbers a ``+`` or a national grouping with
separators; UUIDs, trace/span ids, ISO timestamps, epoch numbers, versions, git shas and
order numbers never match. Bare IPv4 addresses are deliberately *not* redacted (an address is
often the first clue when troubleshooting, and ``Chrome/124.0.0.0`` looks like one); add an
``extra_patterns`` entry to scrub them.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Final

from logbeacon._redaction import Redaction
from logbeacon.exceptions import ConfigError

__all__ = [
    "MARKER",
    "MARKER_KINDS",
    "Redaction",
    "Redactor",
    "default_redactor",
]

MARKER: Final = "[REDACTED]"

#: Every ``[REDACTED:<kind>]`` a value pattern can leave behind.
MARKER_KINDS: Final = (
    "anthropic_key",
    "aws_access_key",
    "basic_auth",
    "bearer",
    "card",
    "custom",
    "depth",
    "email",
    "github_token",
    "gitlab_token",
    "google_api_key",
    "huggingface_token",
    "iban",
    "jwt",
    "npm_token",
    "openai_key",
    "phone",
    "private_key",
    "pypi_token",
    "sendgrid_key",
    "slack_token",
    "slack_webhook",
    "ssn",
    "stripe_key",
)

_REDACTED_KEY: Final = "_redacted"
# Unquoted literals kept after a sensitive key, as booleans and None are in trees.
_LITERALS: Final = frozenset({"null", "true", "false", "None", "True", "False"})
_MAX_DEPTH: Final = 128
_KEY_CACHE_MAX: Final = 10_000
_BENIGN_CACHE_MAX: Final = 4_096
_BENIGN_MAX_LEN: Final = 256
_MIN_SECRET_LEN: Final = 5
_MAX_PASSES: Final = 8


def _marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


# A value that is already exactly a marker is left alone (this is what makes rules idempotent).
_MARKER_RE: Final = re.compile(r"\[REDACTED(?::[a-z_]+)?\]")

# --------------------------------------------------------------------------- keys

_SENSITIVE_WORDS: Final = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "tokens",
        "auth",
        "authn",
        "authz",
        "authorization",
        "authorisation",
        "authentication",
        "authenticated",
        "authenticator",
        "cookie",
        "cookies",
        "credential",
        "credentials",
        "creds",
        "otp",
        "totp",
        "ssn",
        "cvv",
        "cvc",
        "csrf",
        "xsrf",
        "bearer",
        "phpsessid",
        "jsessionid",
        "apikey",
        "privatekey",
        "accesskey",
        "secretkey",
        "sessionkey",
        "signingkey",
        "encryptionkey",
        "masterkey",
        "ingestkey",
        "creditcard",
        "cardnumber",
        "setcookie",
        "mysqlpwd",
    }
)

# Adjacent segments that are sensitive together though neither is alone.
_SENSITIVE_PHRASES: Final = frozenset(
    {
        ("api", "key"),
        ("private", "key"),
        ("session", "key"),
        ("access", "key"),
        ("signing", "key"),
        ("encryption", "key"),
        ("master", "key"),
        ("ingest", "key"),
        ("credit", "card"),
        ("card", "number"),
        ("card", "num"),
        ("card", "no"),
        ("cc", "number"),
        ("cc", "num"),
        ("security", "code"),
        ("social", "security"),
        ("two", "factor"),
        ("mfa", "code"),
        ("connect", "sid"),
        ("log", "signature"),
        ("logbeacon", "signature"),
        ("pass", "phrase"),
    }
)

# LLM usage counters contain the segment "token(s)" but are numbers, not credentials.
_DEFAULT_ALLOW: Final = frozenset(
    {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "max_new_tokens",
        "min_tokens",
        "tokens_used",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "audio_tokens",
        "accepted_prediction_tokens",
        "rejected_prediction_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
        "input_token_details",
        "output_token_details",
        "token_usage",
        "token_count",
        "num_tokens",
        "prompt_token_count",
        "candidates_token_count",
        "total_token_count",
        "cached_content_token_count",
        "thoughts_token_count",
        "tool_use_prompt_token_count",
        "llm_tokens_total",
    }
)

# Keys whose string values are URLs or routes: their query string and fragment are dropped.
_URL_SEGMENTS: Final = frozenset({"url", "uri", "route", "path", "href"})

_SEGMENT_RE: Final = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")

# Key classification codes kept in the per-redactor cache.
_PLAIN: Final = 0
_SENSITIVE: Final = 1
_URLISH: Final = 2
_KEY_TEXT: Final = 3  # the key itself contains a secret: never cached


def _segments(key: str) -> list[str]:
    return [s.lower() for s in _SEGMENT_RE.findall(key)]


def _segment_hit(
    segments: list[str], words: frozenset[str], phrases: frozenset[tuple[str, ...]]
) -> bool:
    for i, seg in enumerate(segments):
        if seg in words:
            return True
        if "password" in seg or "passwd" in seg or "passphrase" in seg:
            return True
        if len(seg) > 6 and (seg.endswith(("secret", "token", "secrets", "tokens"))):
            return True
        for phrase in phrases:
            n = len(phrase)
            if tuple(segments[i : i + n]) == phrase:
                return True
    return False


# --------------------------------------------------------------------------- value rules

_PEM_RE: Final = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:.*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s\\:,\-]*)",
    re.DOTALL,
)

# `key=value`, `key: value`, `"key": "value"`, `key => value`, also JSON escaped inside JSON.
# The scan matches only `key=`: its first character comes before the lookbehind so the engine
# skips quickly to candidates, and the possessive run keeps a failed attempt linear. The
# value is read (with `_ASSIGN_VALUE_RE`) only after a key proved sensitive, so scanning
# stays linear, and keys inside another key's value (`url=…?api_key=…`, `said: password=…`)
# are still found.
_ASSIGN_KEY_RE: Final = re.compile(
    r"(?P<key>[A-Za-z_](?<![A-Za-z0-9_.\[\-][A-Za-z_])[A-Za-z0-9_.\-]{0,63}+)"
    r"\\*[\"']?[ \t]*+(?::=|=>|[:=])[ \t]*+"
)
_ASSIGN_VALUE_RE: Final = re.compile(
    r"\\+\"(?P<esc>.*?)(?:\\+\"|$)"
    r"|\"(?P<dq>(?:[^\"\\]|\\.)*)(?:\"|$)"
    r"|'(?P<sq>[^'\r\n]*)(?:'|$)"
    r"|(?P<bare>(?:(?i:bearer|basic|token|digest|negotiate)[ \t]+)?"
    r"(?:\[REDACTED(?::[a-z_]+)?\](?![^\s,;&\"'<>{}()])|[^\s,;&\"'<>{}()]+))"
)

# Header-like keys whose value runs to the end of the line (cookies carry `;` and `=`).
_HEADER_VALUE_RE: Final = re.compile(
    r"(?<![A-Za-z0-9_\-])(?P<key>(?i:(?:set-)?cookie|(?:proxy-)?authorization))"
    r"(?P<sep>[ \t]*:[ \t]*)(?P<val>[^\r\n\"]+)"
)

# Command-line flags: `--password hunter2`, `--password=hunter2`, `--token "a b"`.
_FLAG_RE: Final = re.compile(
    r"(?<![A-Za-z0-9_\-])--(?P<key>[A-Za-z][A-Za-z0-9_\-]{0,63})(?P<sep>[ \t]+|=)"
    r"(?P<val>\"[^\"]*\"?|'[^']*'?|[^\s\-][^\s]*)"
)

_URL_AUTH_RE: Final = re.compile(
    r"(?P<pre>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@\[\]\"']*:)"
    r"(?P<pw>[^\s/?#\"']+)@(?=[A-Za-z0-9\[._\-])"
)

_SLACK_WEBHOOK_RE: Final = re.compile(
    r"https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_\-]+"
)

_JWT_RE: Final = re.compile(
    r"(?<![A-Za-z0-9_\-])ey[A-Za-z0-9_\-]{8,}\.ey[A-Za-z0-9_\-]{8,}"
    r"(?:\.[A-Za-z0-9_\-]*){1,3}"
)

_AUTH_SCHEME_RE: Final = re.compile(
    r"\b(?P<scheme>(?i:bearer))(?P<sp>\s+)(?P<tok>[A-Za-z0-9\-._~+/]{8,}=*)"
    r"|\b(?P<bscheme>(?i:basic))(?P<bsp>\s+)(?P<btok>[A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])"
)

# Literal-first alternatives let the regex engine skip quickly to candidate positions; the
# left word boundary and the kind are checked in `_vendor_repl`.
_VENDOR_RE: Final = re.compile(
    r"(?:gh[pousr]_[A-Za-z0-9]{30,255}"
    r"|github_pat_[A-Za-z0-9_]{22,255}"
    r"|glpat-[A-Za-z0-9_\-]{20,}"
    r"|xox[abposre]-[A-Za-z0-9\-]{10,}"
    r"|xapp-[0-9]-[A-Za-z0-9\-]{10,}"
    r"|sk_(?:live|test|prod)_[A-Za-z0-9]{10,}"
    r"|rk_(?:live|test|prod)_[A-Za-z0-9]{10,}"
    r"|whsec_[A-Za-z0-9]{20,}"
    r"|sk-[A-Za-z0-9_\-]{20,}"
    r"|AIza[0-9A-Za-z_\-]{35}"
    r"|A(?:KIA|SIA|BIA|CCA|3T[A-Z0-9])[A-Z0-9]{16}"
    r"|hf_[A-Za-z0-9]{30,}"
    r"|npm_[A-Za-z0-9]{36}"
    r"|pypi-AgE[A-Za-z0-9_\-]{50,}"
    r"|SG\.[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{16,64})"
    r"(?![A-Za-z0-9_])"
)

_VENDOR_KINDS: Final = (
    ("github_pat_", "github_token"),
    ("gh", "github_token"),
    ("glpat-", "gitlab_token"),
    ("xox", "slack_token"),
    ("xapp-", "slack_token"),
    ("sk_", "stripe_key"),
    ("rk_", "stripe_key"),
    ("whsec_", "stripe_key"),
    ("sk-ant-", "anthropic_key"),
    ("sk-", "openai_key"),
    ("AIza", "google_api_key"),
    ("A", "aws_access_key"),
    ("hf_", "huggingface_token"),
    ("npm_", "npm_token"),
    ("pypi-", "pypi_token"),
    ("SG.", "sendgrid_key"),
)

# Not after `//`: `https://user@host` is URL userinfo (a user name), and the host stays.
_EMAIL_RE: Final = re.compile(
    r"(?<![A-Za-z0-9._%+\-])(?<!//)[A-Za-z0-9._%+\-]{1,64}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
    r"(?![A-Za-z0-9\-])"
)

# 13-19 digits with optional single space/dash separators, not glued to a word or a decimal.
# 13-19 digits with optional single space/dash separators, not glued to a word or a decimal.
# The lookbehinds sit after the first digit so the engine can scan for `[2-6]` quickly.
_CARD_RE: Final = re.compile(
    r"[2-6](?<![A-Za-z0-9_./+][2-6])(?<![A-Za-z0-9]-[2-6])[0-9](?:[ \-]?[0-9]){11,17}"
    r"(?![A-Za-z0-9_]|[.,\-][0-9])"
)

# The digit rules below open with a character class and check the left boundary in a
# lookbehind just after it: the engine then skips quickly to candidate characters.
_IBAN_RE: Final = re.compile(
    r"[A-Z](?<![A-Za-z0-9_][A-Z])[A-Z][0-9]{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9_])"
)

_SSN_RE: Final = re.compile(
    r"[0-9](?<![A-Za-z0-9_\-.][0-9])[0-9]{2}-[0-9]{2}-[0-9]{4}(?![A-Za-z0-9_\-]|\.[0-9])"
)

_NOT_BEFORE_PHONE: Final = r"[A-Za-z0-9_.\-/:+]"
_PHONE_RE: Final = re.compile(
    r"[+(0-9](?:"
    # international: +CC and groups
    r"(?<=\+)(?<![A-Za-z0-9_+]\+)[1-9][0-9]{0,2}(?:[ .\-]?\(?[0-9]{1,5}\)?){2,6}(?![0-9])"
    # North American: (415) 555-2671
    rf"|(?<=\()(?<!{_NOT_BEFORE_PHONE}\()[0-9]{{3}}\)[ ]?[0-9]{{3}}[ .\-][0-9]{{4}}"
    r"(?![A-Za-z0-9_]|[.\-][0-9])"
    # North American: 415-555-2671, 415.555.2671, 415 555 2671
    rf"|(?<=[0-9])(?<!{_NOT_BEFORE_PHONE}[0-9])[0-9]{{2}}(?P<s>[ .\-])[0-9]{{3}}(?P=s)[0-9]{{4}}"
    r"(?![A-Za-z0-9_]|[.\-][0-9])"
    # national trunk prefix 0: 020 7946 0958, 030 12345678, 01 23 45 67 89, 06-12345678
    rf"|(?<=0)(?<!{_NOT_BEFORE_PHONE}0)[0-9]{{1,4}}(?:[ \-/][0-9]{{2,8}}){{1,4}}"
    r"(?![A-Za-z0-9_]|[.\-/][0-9])"
    r")"
)

_IBAN_LENGTHS: Final = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip

# Gate for the digit rules (card, IBAN, SSN, phone): a run of 8+ digits/separators, or an
# IBAN's "two capitals, two digits" start. Text without either cannot match them.
_DIGIT_GATE: Final = re.compile(
    r"[0-9+(](?:"
    r"(?:[ .\-()/]{0,2}[0-9]){8}"  # 9+ digits in one run (a date has 8, a card 13+)
    r"|(?<=\+)[0-9](?:[ .\-()/]{0,2}[0-9]){6}"  # +CC and 6 more digits
    r"|(?<=[A-Z]{2}[0-9])[0-9]"  # IBAN start
    r")"
)

_ISO_TIMESTAMP: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?"
    r"(?:[Zz]|[+\-][0-9]{2}(?::?[0-9]{2})?)?)?"
)
_UUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def _is_safe_shape(text: str, n: int) -> bool:
    """Ids and times that appear once per event: recognised without running the rules.

    Each shape is one no rule can match inside: lowercase letters+digits (hex ids, trace
    ids, git shas, words), digit strings too short or long to be a card, UUIDs, ISO-8601
    timestamps.
    """
    if text.isalnum():
        if text.isdigit():
            return not 13 <= n <= 19
        return text.islower() and text.isascii()
    if n == 36 and text[8] == "-":
        return _UUID.fullmatch(text) is not None
    if n >= 10 and text[4] == "-":
        return _ISO_TIMESTAMP.fullmatch(text) is not None
    return False


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_brand_ok(digits: str) -> bool:
    """A known issuer prefix with a length that issuer uses (Visa, Mastercard, Amex, …)."""
    n = len(digits)
    p2 = int(digits[:2])
    p3 = int(digits[:3])
    p4 = int(digits[:4])
    if digits[0] == "4":
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return n == 16
    if p2 in (34, 37):
        return n == 15
    if p4 == 6011 or p2 == 65 or 644 <= p3 <= 649:
        return 16 <= n <= 19
    if 3528 <= p4 <= 3589:
        return 16 <= n <= 19
    if 300 <= p3 <= 305 or p2 in (36, 38, 39):
        return 14 <= n <= 19
    if p2 == 62:
        return 16 <= n <= 19
    return False


def _is_card_number(digits: str) -> bool:
    """True for a 13-19 digit string with an issuer prefix and a valid Luhn checksum."""
    return 13 <= len(digits) <= 19 and _card_brand_ok(digits) and _luhn_ok(digits)


def _iban_ok(compact: str) -> bool:
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97 == 1


# --------------------------------------------------------------------------- configuration


# --------------------------------------------------------------------------- the redactor

_CONTAINERS: Final = (dict, list, tuple, set, frozenset)
_CARD_MIN_INT: Final = 10**12  # the smallest 13-digit number


class Redactor:
    """Applies the key rules and value rules to JSON-like trees and free text.

    Build one per configuration (regexes compile at import, key phrases here) and reuse it:
    it keeps bounded caches of key decisions and of recently seen benign strings, so the
    common event — known keys, a handful of short ordinary values — costs one set call for
    its keys, a type test and a set look-up per value, and a dict copy (none for the SDK
    pipeline, see `event_redactor`). The caches never hold a string that was redacted. Safe
    to share between threads: the caches' worst race is a duplicate computation.
    """

    __slots__ = (
        "_allow_exact",
        "_allow_norm",
        "_benign",
        "_extra",
        "_key_cache",
        "_phrases",
        "_plain_keys",
        "_redact_event_copy",
        "_redact_event_owned",
        "_words",
        "config",
    )

    # `object`: a wrong type gets the ConfigError below, also when this module is compiled.
    def __init__(self, config: object = None) -> None:
        if config is not None and not isinstance(config, Redaction):
            raise ConfigError(
                f"redaction must be a logbeacon.Redaction, got {type(config).__name__}"
            )
        self.config = config or Redaction()
        extra_words: set[str] = set()
        extra_phrases: set[tuple[str, ...]] = set()
        for key in self.config.extra_keys:
            segs = _segments(key)
            if len(segs) == 1:
                extra_words.add(segs[0])
            elif segs:
                extra_phrases.add(tuple(segs))
            extra_words.add(key.lower())
            extra_words.add("".join(segs))
        self._words = _SENSITIVE_WORDS | extra_words
        self._phrases = frozenset(_SENSITIVE_PHRASES | extra_phrases)
        self._allow_exact = _DEFAULT_ALLOW | {k.lower() for k in self.config.allow_keys}
        self._allow_norm = frozenset(
            "_".join(_segments(k)) for k in (*_DEFAULT_ALLOW, *self.config.allow_keys)
        )
        self._extra = tuple(_compile_extra(p) for p in self.config.extra_patterns)
        self._key_cache: dict[Any, int] = {}
        # The keys cached as plain, as a set so a whole event's keys are checked in one call
        # (`event_redactor`). Never holds `_redacted`, which redact_event treats specially.
        self._plain_keys: set[Any] = set()
        self._benign: set[str] = set()
        self._redact_event_copy = self._event_redactor(copy=True)
        self._redact_event_owned = self._event_redactor(copy=False)

    # ----------------------------------------------------------------- keys

    def is_sensitive_key(self, key: str) -> bool:
        """Whether values under this key are replaced by ``[REDACTED]``."""
        if not isinstance(key, str):
            return False
        return self._key_kind(key) == _SENSITIVE

    def _key_kind(self, key: str) -> int:
        kind = self._key_cache.get(key)
        if kind is None:
            kind = self._classify(key)
            # The walker trusts a cached key's text, so keys holding a secret stay uncached.
            if self.redact_text(key) is key:
                self._remember_key(key, kind)
        return kind

    def _remember_key(self, key: Any, kind: int) -> None:
        cache = self._key_cache
        if len(cache) >= _KEY_CACHE_MAX:
            cache.clear()
            self._plain_keys.clear()
        cache[key] = kind
        if kind == _PLAIN and key != _REDACTED_KEY:
            self._plain_keys.add(key)

    def _classify(self, key: str) -> int:
        if "[REDACTED" in key:
            # Marker names ("github_token", "ssn") say what was removed, not what remains.
            key = _MARKER_RE.sub(" ", key)
        lowered = key.lower().strip()
        segments = _segments(key)
        normalised = "_".join(segments)
        if lowered in self._allow_exact or normalised in self._allow_norm:
            return _PLAIN
        if (
            lowered in self._words
            or "".join(segments) in self._words
            or _segment_hit(segments, self._words, self._phrases)
        ):
            return _SENSITIVE
        if segments and segments[-1] in _URL_SEGMENTS:
            return _URLISH
        return _PLAIN

    # ----------------------------------------------------------------- text

    def redact_text(self, text: str) -> str:
        """Replace value patterns inside free text (messages, exception text, console lines).

        Returns the very same object when nothing matched, so callers can test with ``is``.
        """
        if type(text) is not str:
            if not isinstance(text, str):
                return text
            text = str(text)  # a str subclass (enum.StrEnum …): judge its plain text
        if len(text) < _MIN_SECRET_LEN or text in self._benign:
            return text
        return self._text(text)

    def _text(self, text: str) -> str:
        """The slow path of `redact_text`: shapes, prefilters, rules, until nothing changes."""
        n = len(text)
        if not self._extra and _is_safe_shape(text, n):
            # Ids repeat too: a request's trace_id is on every one of its events.
            self._remember_benign(text, n)
            return text
        current = text
        for _ in range(_MAX_PASSES):
            before = current
            current = self._one_pass(current)
            if current == before:
                break
        if current == text:
            self._remember_benign(text, n)
            return text
        return current

    def _remember_benign(self, text: str, n: int) -> None:
        # Unique ids pass through too; clearing when full keeps the hot values cheap anyway.
        if n <= _BENIGN_MAX_LEN:
            benign = self._benign
            if len(benign) >= _BENIGN_CACHE_MAX:
                benign.clear()
            benign.add(text)

    def _one_pass(self, s: str) -> str:
        # Each rule runs only when a cheap substring test says it could match.
        low = s.lower()
        has_colon = ":" in s
        if "-----BEGIN" in s:
            s = _PEM_RE.sub(_PRIVATE_KEY_MARKER, s)
        if has_colon and ("cookie" in low or "authorization" in low):
            s = _HEADER_VALUE_RE.sub(_header_repl, s)
        if has_colon or "=" in s:
            s = self._sub_assign(s)
        if "--" in s:
            s = _FLAG_RE.sub(self._flag_repl, s)
        has_at = "@" in s
        if has_at and has_colon and "://" in s:
            s = _URL_AUTH_RE.sub(_url_auth_repl, s)
        if "hooks.slack.com" in low:
            s = _SLACK_WEBHOOK_RE.sub(_SLACK_WEBHOOK_MARKER, s)
        if "eyJ" in s:
            s = _JWT_RE.sub(_JWT_MARKER, s)
        if "bearer" in low or "basic" in low:
            s = _AUTH_SCHEME_RE.sub(_auth_repl, s)
        if "_" in s or "-" in s or "A" in s or "SG." in s:
            s = _VENDOR_RE.sub(_vendor_repl, s)
        if has_at:
            s = _EMAIL_RE.sub(_EMAIL_MARKER, s)
        if _DIGIT_GATE.search(s) is not None:
            s = _CARD_RE.sub(_card_repl, s)
            s = _IBAN_RE.sub(_iban_repl, s)
            if "-" in s:
                s = _SSN_RE.sub(_ssn_repl, s)
            s = _PHONE_RE.sub(_phone_repl, s)
        for pattern in self._extra:
            s = pattern.sub(_CUSTOM_MARKER, s)
        return s

    def _sub_assign(self, s: str) -> str:
        parts: list[str] = []
        pos = 0
        key_kind = self._key_kind
        for m in _ASSIGN_KEY_RE.finditer(s):
            if m.start() < pos:
                continue  # inside a value that was just replaced
            if key_kind(m.group("key").rstrip(".-")) != _SENSITIVE:
                continue
            v = _ASSIGN_VALUE_RE.match(s, m.end())
            if v is None or v.lastgroup is None:
                continue
            value = v.group(v.lastgroup)
            if value == "" or _MARKER_RE.fullmatch(value):
                continue
            if v.lastgroup == "bare" and value in _LITERALS:
                continue  # `"token": null` in a JSON string, like None under a key
            parts.append(s[pos : v.start(v.lastgroup)])
            parts.append(MARKER)
            pos = v.end(v.lastgroup)
        if not parts:
            return s
        parts.append(s[pos:])
        return "".join(parts)

    def _flag_repl(self, m: re.Match[str]) -> str:
        if self._key_kind(m.group("key")) != _SENSITIVE or _MARKER_RE.fullmatch(m.group("val")):
            return m.group(0)
        return f"--{m.group('key')}{m.group('sep')}{MARKER}"

    # ----------------------------------------------------------------- trees

    def redact(self, value: Any) -> Any:
        """Return a redacted copy of a JSON-like tree; the input is never modified.

        Dicts, lists, tuples and sets are copied at every depth (a tuple stays a tuple);
        other leaf objects are returned as they are. Keys are redacted like values, and
        two keys that redact to the same text are kept apart with a ``#2`` suffix.
        """
        if type(value) is dict:
            return self._walk_dict(value, 0, None)
        return self._walk(value, 0, None)

    def redact_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Redact an event and list the scrubbed paths in ``_redacted`` (never the values).

        Paths are dotted (``attrs.db.password``; list items by index: ``items.0.email``),
        merged with any list already present (the server re-redacts what the SDK sent) and
        sorted; the key is absent when nothing was ever scrubbed.
        """
        return self._redact_event_copy(event)

    def event_redactor(self) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """`redact_event` for a caller that owns each event dict and hands it over.

        The SDK pipeline builds a fresh dict per log call, so when nothing in it needs
        scrubbing the returned function gives back that dict itself instead of a copy. In
        every other case it returns what `redact_event` returns (a new dict).
        """
        return self._redact_event_owned

    def _event_redactor(self, *, copy: bool) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """The event walk behind a check for the usual event, which it leaves unchanged.

        Usual means: every key already cached as plain, every value a short or known-benign
        string, a small number, a boolean or None. Deciding that costs one set call for all
        the keys and a few type tests per value, where the walk pays a lookup, a call and a
        comparison per key and copies the dict first. Anything else — a new or sensitive key,
        a container, a string that changes, a big integer, an existing ``_redacted`` (never
        in `_plain_keys`) — goes through the walk, so the result always equals the walk's;
        with ``copy=False`` a usual event is returned as the same object.
        """
        plain_keys = self._plain_keys
        benign = self._benign
        text = self._text
        walk = self._walk_event
        min_len = _MIN_SECRET_LEN
        card_min = _CARD_MIN_INT
        is_card = _is_card_number

        def redact_event(event: dict[str, Any]) -> dict[str, Any]:
            if type(event) is not dict or not plain_keys.issuperset(event):
                return walk(event)
            # The tests `_walk_dict` makes of a value under a plain key that it leaves alone.
            for item in event.values():
                item_type = type(item)
                if item_type is str:
                    if len(item) < min_len or item in benign or text(item) is item:
                        continue
                elif item_type is int:
                    if item < card_min or not is_card(str(item)):
                        continue
                elif item is None or item_type is float or item_type is bool:
                    continue
                return walk(event)
            return dict(event) if copy else event

        return redact_event

    def _walk_event(self, event: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(event, dict):
            result: dict[str, Any] = self._walk(event, 0, None)
            return result
        paths: list[str] = []
        previous = event.get(_REDACTED_KEY)
        body = event if previous is None else {k: v for k, v in event.items() if k != _REDACTED_KEY}
        out: dict[str, Any] = self._walk_dict(body, 0, paths)
        if not paths and previous is None:
            return out
        merged = set(paths)
        if isinstance(previous, list | tuple):
            merged.update(self.redact_text(p) for p in previous if isinstance(p, str))
        if merged:
            out[_REDACTED_KEY] = sorted(merged)
        return out

    def _walk(self, value: Any, depth: int, paths: list[str] | None) -> Any:
        kind = type(value)
        if kind is str:
            if len(value) < _MIN_SECRET_LEN or value in self._benign:
                return value
            return self._text(value)
        if kind is dict:
            return self._walk_dict(value, depth, paths)
        if kind is int:
            if value >= _CARD_MIN_INT and _is_card_number(str(value)):
                return _CARD_MARKER
            return value
        if isinstance(value, _CONTAINERS):
            if isinstance(value, dict):
                return self._walk_dict(value, depth, paths)
            return self._walk_seq(value, depth, paths)
        if isinstance(value, str):  # a str subclass (enum.StrEnum …): judge its text
            return self.redact_text(str(value))
        return value

    def _walk_dict(self, value: dict[Any, Any], depth: int, paths: list[str] | None) -> Any:
        if depth >= _MAX_DEPTH:
            if paths is not None:
                paths.append(_DEPTH_PATH)
            return _DEPTH_MARKER
        # Hot path: copy in C, then touch only what changes. Locals beat globals here.
        out = dict(value)
        mark = 0 if paths is None else len(paths)
        get_kind = self._key_cache.get
        benign = self._benign
        plain = _PLAIN
        min_len = _MIN_SECRET_LEN
        card_min = _CARD_MIN_INT
        for key, item in value.items():
            kind = get_kind(key)
            if kind == plain:
                item_type = type(item)
                if item_type is str:
                    if item in benign or len(item) < min_len:
                        continue
                    new = self._text(item)
                    if new is not item:
                        out[key] = new
                        if paths is not None:
                            paths.append(str(key))
                    continue
                if item_type is int:
                    if item < card_min:
                        continue
                elif item is None or item_type is bool or item_type is float:
                    continue
                out[key] = self._child(item, depth, paths, key)
                continue
            if kind is None:
                kind = self._new_key_kind(key)
            if kind == _KEY_TEXT:
                # A key holds a secret and will be renamed: rebuild in order, slowly.
                if paths is not None:
                    del paths[mark:]  # the slow walk records this dict's paths afresh
                return self._walk_dict_renaming(value, depth, paths)
            if kind == plain:
                out[key] = self._child(item, depth, paths, key)
            else:
                self._slow_item(out, key, item, kind, depth=depth, paths=paths, source=value)
        return out

    def _walk_dict_renaming(
        self, value: dict[Any, Any], depth: int, paths: list[str] | None
    ) -> dict[Any, Any]:
        """The general walk, for dicts where some key itself must be redacted."""
        out: dict[Any, Any] = {}
        for key, item in value.items():
            kind = self._key_cache.get(key)
            if kind is None:
                kind = self._new_key_kind(key)
            if kind == _PLAIN:
                out[key] = self._child(item, depth, paths, key)
            else:
                self._slow_item(out, key, item, kind, depth=depth, paths=paths, source=value)
        return out

    def _new_key_kind(self, key: Any) -> int:
        """Classify a key seen for the first time; keys that hold a secret are not cached."""
        if type(key) is not str:
            if isinstance(key, str):
                return _KEY_TEXT
            self._remember_key(key, _PLAIN)
            return _PLAIN
        if self.redact_text(key) is not key:
            return _KEY_TEXT
        kind = self._classify(key)
        self._remember_key(key, kind)
        return kind

    def _slow_item(
        self,
        out: dict[Any, Any],
        key: Any,
        item: Any,
        kind: int,
        *,
        depth: int,
        paths: list[str] | None,
        source: dict[Any, Any],
    ) -> None:
        new_key = key
        if kind == _KEY_TEXT:
            text = str(key)
            redacted = self.redact_text(text)
            new_key = key if redacted == text else _unique(redacted, out, source)
            # Judge the redacted name too, so a second pass decides the same way.
            kind = self._classify(redacted)
            if self._classify(text) == _SENSITIVE:
                kind = _SENSITIVE
        if kind == _SENSITIVE:
            if (
                item is None
                or item is True
                or item is False
                or (type(item) is str and item == MARKER)
            ):
                out[new_key] = item
                if new_key is not key and paths is not None:
                    paths.append(str(new_key))
                return
            out[new_key] = MARKER
            if paths is not None:
                paths.append(str(new_key))
            return
        if kind == _URLISH and isinstance(item, str):
            cleaned = _drop_query(self.redact_text(item))
            if (cleaned is not item or new_key is not key) and paths is not None:
                paths.append(str(new_key))
            out[new_key] = cleaned
            return
        mark = 0 if paths is None else len(paths)
        new = self._child(item, depth, paths, new_key)
        if (
            paths is not None
            and len(paths) == mark
            and (new_key is not key or (new is not item and not isinstance(item, _CONTAINERS)))
        ):
            paths.append(str(new_key))
        out[new_key] = new

    def _child(self, item: Any, depth: int, paths: list[str] | None, label: Any) -> Any:
        """Walk one child; paths found below it are prefixed with its label."""
        if paths is None:
            return self._walk(item, depth + 1, None)
        mark = len(paths)
        new = self._walk(item, depth + 1, paths)
        if len(paths) > mark:
            prefix = f"{label}."
            paths[mark:] = [prefix + p for p in paths[mark:]]
        elif new is not item and not isinstance(item, _CONTAINERS):
            paths.append(str(label))
        return new

    def _walk_seq(self, value: Any, depth: int, paths: list[str] | None) -> Any:
        if depth >= _MAX_DEPTH:
            if paths is not None:
                paths.append(_DEPTH_PATH)
            return _DEPTH_MARKER
        items = [self._child(item, depth, paths, index) for index, item in enumerate(value)]
        if type(value) is list:
            return items
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return tuple(items)
        if isinstance(value, set | frozenset):
            try:
                return type(value)(items)
            except TypeError:
                return items
        return items


# --------------------------------------------------------------------------- helpers

_PRIVATE_KEY_MARKER: Final = _marker("private_key")
_SLACK_WEBHOOK_MARKER: Final = _marker("slack_webhook")
_JWT_MARKER: Final = _marker("jwt")
_EMAIL_MARKER: Final = _marker("email")
_SSN_MARKER: Final = _marker("ssn")
_CARD_MARKER: Final = _marker("card")
_PHONE_MARKER: Final = _marker("phone")
_CUSTOM_MARKER: Final = _marker("custom")
_DEPTH_MARKER: Final = _marker("depth")
_DEPTH_PATH: Final = "(depth)"


def _compile_extra(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    try:
        compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
    except re.error as exc:
        raise ConfigError(
            f"Redaction.extra_patterns entry {pattern!r} is not a valid regex: {exc}"
        ) from None
    if not isinstance(compiled.pattern, str):
        raise ConfigError(
            f"Redaction.extra_patterns entry {pattern!r} is a bytes pattern; compile a str one"
        )
    if compiled.search("") is not None:
        raise ConfigError(
            f"Redaction.extra_patterns entry {compiled.pattern!r} matches the empty string; "
            "make it require at least one character"
        )
    for probe in (MARKER, *(_marker(kind) for kind in MARKER_KINDS)):
        if compiled.search(probe) is not None:
            raise ConfigError(
                f"Redaction.extra_patterns entry {compiled.pattern!r} matches the redaction "
                f"marker {probe!r}; anchor it so that markers are left alone"
            )
    return compiled


def _unique(key: str, taken: dict[Any, Any], source: dict[Any, Any]) -> str:
    """Keys that redact to the same text are kept apart instead of overwriting each other.

    The name is also kept clear of the input's own keys, so a later, unchanged key can never
    land on it either.
    """
    if key not in taken and key not in source:
        return key
    n = 2
    while f"{key}#{n}" in taken or f"{key}#{n}" in source:
        n += 1
    return f"{key}#{n}"


def _drop_query(value: str) -> str:
    cut = len(value)
    for ch in "?#":
        i = value.find(ch)
        if i != -1 and i < cut:
            cut = i
    return value if cut == len(value) else value[:cut]


def _url_auth_repl(m: re.Match[str]) -> str:
    if _MARKER_RE.fullmatch(m.group("pw")):
        return m.group(0)
    return f"{m.group('pre')}{MARKER}@"


def _header_repl(m: re.Match[str]) -> str:
    value = m.group("val").rstrip()
    if not value or _MARKER_RE.fullmatch(value):
        return m.group(0)
    return f"{m.group('key')}{m.group('sep')}{MARKER}"


def _auth_repl(m: re.Match[str]) -> str:
    token = m.group("tok")
    if token is not None:
        if len(token) < 16 and token.isalpha():
            return m.group(0)  # "Bearer authentication": a word, not a credential
        return f"{m.group('scheme')}{m.group('sp')}{_marker('bearer')}"
    btoken = m.group("btok")
    try:
        decoded = base64.b64decode(btoken + "=" * (-len(btoken) % 4), validate=True)
    except (binascii.Error, ValueError):
        return m.group(0)
    if b":" not in decoded:
        return m.group(0)  # not `user:password`, just the word "basic" and another word
    return f"{m.group('bscheme')}{m.group('bsp')}{_marker('basic_auth')}"


def _vendor_repl(m: re.Match[str]) -> str:
    start = m.start()
    if start > 0:
        before = m.string[start - 1]
        if before.isalnum() or before == "_":
            return m.group(0)  # glued to a longer word: not a token boundary
    token = m.group(0)
    kind = next(k for prefix, k in _VENDOR_KINDS if token.startswith(prefix))
    if kind == "openai_key" and not any(c.isdigit() for c in token):
        return token  # "sk-learn-style-names" are words; real keys carry digits
    return _marker(kind)


def _card_repl(m: re.Match[str]) -> str:
    raw = m.group(0)
    if _is_card_number(raw.replace(" ", "").replace("-", "")):
        return _CARD_MARKER
    # The run may have swallowed neighbouring digit groups ("qty 42 4111 1111 1111 1111"):
    # look for a card between group boundaries; the remainder is judged on the next pass.
    return _shrink(raw, _CARD_MARKER, _is_card_number, trim_start=True)


def _shrink(raw: str, marker: str, valid: Callable[[str], bool], *, trim_start: bool) -> str:
    """Redact the longest valid span of `raw` that starts and ends at digit-group edges."""
    starts = [0]
    ends = [len(raw)]
    for i in range(1, len(raw)):
        if raw[i].isdigit() and not raw[i - 1].isdigit():
            starts.append(i)
        if raw[i - 1].isdigit() and not raw[i].isdigit():
            ends.append(i)
    ends.sort(reverse=True)
    for start in starts if trim_start else starts[:1]:
        for end in ends:
            if end <= start:
                break
            digits = "".join(c for c in raw[start:end] if c.isdigit())
            if valid(digits):
                return raw[:start] + marker + raw[end:]
    return raw


def _iban_repl(m: re.Match[str]) -> str:
    raw = m.group(0)
    compact = raw.replace(" ", "")
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is None or len(compact) < expected:
        return raw
    # A printed IBAN may be followed by more groups: keep only the IBAN's own characters.
    count = 0
    cut = 0
    for index, ch in enumerate(raw):
        if ch != " ":
            count += 1
            if count == expected:
                cut = index + 1
                break
    if cut < len(raw) and raw[cut] != " ":
        return raw
    if not _iban_ok(compact[:expected]):
        return raw
    return _marker("iban") + raw[cut:]


def _ssn_repl(m: re.Match[str]) -> str:
    raw = m.group(0)
    # Never issued: area 000 or 666, group 00, serial 0000.
    if raw[:3] in ("000", "666") or raw[4:6] == "00" or raw[7:] == "0000":
        return raw
    return _SSN_MARKER


def _phone_repl(m: re.Match[str]) -> str:
    raw = m.group(0)
    low, high = (8, 15) if raw.startswith("+") else (9, 13)
    if low <= sum(c.isdigit() for c in raw) <= high:
        return _PHONE_MARKER
    # Trailing digit groups may belong to the next number ("+44 20 7946 0958 12 34 56").
    return _shrink(raw, _PHONE_MARKER, lambda d: low <= len(d) <= high, trim_start=False)


@lru_cache(maxsize=1)
def default_redactor() -> Redactor:
    """The shared redactor with the default rules (one per process; caches warm up once)."""
    return Redactor()
