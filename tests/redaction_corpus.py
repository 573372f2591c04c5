"""The redactor's test corpus: secrets that must vanish and look-alikes that must survive.

Every value is fake: documentation number ranges (555-01xx phones, example.com mail), the
card networks' published test numbers, the IBAN registry's example accounts, and vendor
tokens of the right shape filled with random characters. Vendor tokens are assembled from
their prefix and body at import so that secret scanners do not flag this file.

Shared by `test_redact.py` (every placement, parametrised) and `test_redact_properties.py`
(inserted at random paths by Hypothesis).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Secret:
    """A sensitive value as it shows up in a log, and the part that must never be stored."""

    id: str
    text: str  # what gets logged (may carry context such as "password=")
    secret: str  # the substring that must be gone after redaction
    expect: str  # found in the redacted `text` (the marker and the syntax kept around it)


@dataclass(frozen=True, slots=True)
class LookAlike:
    """A value that resembles a secret but is not one; it must survive byte for byte."""

    id: str
    text: str


_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
_PEM_RSA = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
    "KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQJAIJLixBy2qpFoS4DSmoEm\n"
    "-----END RSA PRIVATE KEY-----"
)
_PEM_OPENSSH = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDx4Xh0cGxhY2Vob2xkZXJrZXlub3RyZWFsYXRhbGwAAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----"
)

_GHP = "ghp_" + "fSImSuhUEoE8bf4d6DrpF5gU6wv50aaqsZnf"
_GHO = "gho_" + "iXDYepdUj0zBV5Rs6VP2KKlRZXXH512DjDDS"
_GHS = "ghs_" + "bG4eprEcMwcr3DJ7l35Ck72FMYp8QpeceLql"
_GITHUB_PAT = (
    "github_pat_"
    + "aOSLZPTnDT0G8L5EpbbV3J_OqVnmkpCQJ7NCQ6nJRAlaLgi2NBU1oF3wwZErlKBMYOlI8y6vK2NLXjUtcE"
)
_SLACK_BOT = "xoxb-" + "757761093302-7758660138416-4UJKuH6SWGHAlTndbziiaNfh"
_SLACK_USER = "xoxp-" + "872214647629-201219623461-5128463268114-07ae078cea499aa86e367a29c7b47258"
_SLACK_APP = "xapp-" + "1-AN4FM8NZGUZ-0475448621882-6e05f6104e2319bd4986e4cf45e8b7ab"
_SLACK_HOOK_PATH = "T00000000/B00000000/" + "XXXXXXXXXXXXXXXXXXXXXXXX"
_STRIPE_LIVE = "sk_" + "live_" + "ptaaPK8MDxvUNv6QnPK95uuA"
_STRIPE_RESTRICTED = "rk_" + "live_" + "pDsleyqarspSDNpjt0jK4IFb"
_STRIPE_WEBHOOK = "whsec_" + "ec5blPF1a7I6nDAuBiT2FWsayDb3g5s6"
_OPENAI_PROJECT = (
    "sk-" + "proj-" + "uDnyCx9UtnzM-K3bG6Uc3cfREoHyJAEAI9COL6q4Jnrqav-tQgoexnTRktl9rFWnrV0dYoK9gv"
    "T3BlbkFJ" + "EJEzZFkOtS4f5dlJNWP6yqM5UqfeH1ltymI5Yx_LP8SwdIQ9MXPCiaCQokj-01769Gt96dowtG"
)
_OPENAI_LEGACY = "sk-" + "HeH9O5RAee3EEUbVvwuiT3BlbkFJy4vASlF8OU978UPxTR7h"
_ANTHROPIC = (
    "sk-" + "ant-api03-" + "e3Ew1p9kXN0gMOSAg-IX983NY6MP1gDErtnLTBoUv-uESNj1vJYGPOetxzwoTpGyRPgCB"
    "FQqUAW_kaX35N8n_sOhyolUEAA"
)
_GOOGLE = "AIza" + "RZMa0JoXgJySiFtm3RrQHfk5S8voa-zxkVy"
_AWS_KEY_ID = "AKIA" + "IOSFODNN7EXAMPLE"
_AWS_SESSION_KEY_ID = "ASIA" + "6BAHGIDXE6KMQB4X"
_AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
_GITLAB = "glpat-" + "N3FUvBtgwd2XU1AAMEP7"
_HUGGINGFACE = "hf_" + "VwPun6KGQvswosnF9ICZZfdePahTTLaYhV"
_NPM = "npm_" + "dvPc6wvjCJrSZdbCAXZHNllhqUX7PZcIRaHr"
_SENDGRID = "SG." + "lBzDm6zGTxmK5jLvm96PbM.kuW4azDtvhM1tVkOGh0u6aiv2mlOOTqUvF25YuZpdWU"

SECRETS: tuple[Secret, ...] = (
    # --- personal data
    Secret("email", "jane.doe@example.com", "jane.doe@example.com", "[REDACTED:email]"),
    Secret("email_plus_tag", "ops+alerts@mail.example.org", "ops+alerts@mail", "[REDACTED:email]"),
    Secret("email_mixed_case", "J.Smith_99@Corp.Example.co.uk", "J.Smith_99@", "[REDACTED:email]"),
    Secret("phone_us_intl", "+1 (415) 555-0132", "555-0132", "[REDACTED:phone]"),
    Secret("phone_uk_intl", "+44 20 7946 0958", "7946 0958", "[REDACTED:phone]"),
    Secret("phone_de_compact", "+4915112345678", "15112345678", "[REDACTED:phone]"),
    Secret("phone_us_dashes", "415-555-0143", "555-0143", "[REDACTED:phone]"),
    Secret("phone_us_dots", "202.555.0173", "555.0173", "[REDACTED:phone]"),
    Secret("phone_us_parens", "(212) 555-0199", "555-0199", "[REDACTED:phone]"),
    Secret("phone_uk_national", "020 7946 0321", "7946 0321", "[REDACTED:phone]"),
    Secret("phone_fr_national", "01 23 45 67 89", "23 45 67 89", "[REDACTED:phone]"),
    Secret("ssn", "078-05-1120", "078-05-1120", "[REDACTED:ssn]"),
    Secret("ssn_sequential", "123-45-6789", "123-45-6789", "[REDACTED:ssn]"),
    # --- payment cards (network test numbers, Luhn-valid)
    Secret("card_visa", "4111111111111111", "4111111111111111", "[REDACTED:card]"),
    Secret("card_visa_spaced", "4012 8888 8888 1881", "8888 1881", "[REDACTED:card]"),
    Secret("card_mastercard_dashed", "5555-5555-5555-4444", "5555-4444", "[REDACTED:card]"),
    Secret("card_mastercard_2series", "2223003122003222", "2223003122003222", "[REDACTED:card]"),
    Secret("card_amex", "378282246310005", "378282246310005", "[REDACTED:card]"),
    Secret("card_amex_spaced", "3782 822463 10005", "822463 10005", "[REDACTED:card]"),
    Secret("card_discover", "6011111111111117", "6011111111111117", "[REDACTED:card]"),
    Secret("card_jcb", "3530111333300000", "3530111333300000", "[REDACTED:card]"),
    Secret("card_diners", "36227206271667", "36227206271667", "[REDACTED:card]"),
    Secret("card_unionpay", "6200000000000005", "6200000000000005", "[REDACTED:card]"),
    # --- bank accounts (IBAN registry examples, mod-97 valid)
    Secret("iban_de", "DE89370400440532013000", "370400440532013000", "[REDACTED:iban]"),
    Secret("iban_gb_printed", "GB82 WEST 1234 5698 7654 32", "5698 7654", "[REDACTED:iban]"),
    Secret("iban_fr", "FR1420041010050500013M02606", "0500013M02606", "[REDACTED:iban]"),
    Secret("iban_no_short", "NO9386011117947", "86011117947", "[REDACTED:iban]"),
    # --- credentials in URLs and assignments
    Secret(
        "url_password",
        "postgres://app:s3cr3t-Pa55@db.internal:5432/app",
        "s3cr3t-Pa55",
        "postgres://app:[REDACTED]@db.internal:5432/app",
    ),
    Secret(
        "url_password_no_user",
        "redis://:authpass42@cache.local:6379/0",
        "authpass42",
        "redis://:[REDACTED]@cache.local:6379/0",
    ),
    Secret(
        "url_password_upper_special",
        "HTTPS://ADMIN:P!ss~W0rd@EXAMPLE.COM/x",
        "P!ss~W0rd",
        "HTTPS://ADMIN:[REDACTED]@EXAMPLE.COM/x",
    ),
    Secret(
        "url_query_api_key",
        "https://api.example.com/v1/items?api_key=Q9wX2vL7pR4t&page=2",
        "Q9wX2vL7pR4t",
        "api_key=[REDACTED]&page=2",
    ),
    Secret("assign_password", "password=hunter2", "hunter2", "password=[REDACTED]"),
    Secret(
        "assign_db_password_quoted",
        "db_password: 'correct horse battery'",
        "correct horse battery",
        "db_password: '[REDACTED]'",
    ),
    Secret(
        "assign_json_client_secret",
        '{"client_secret": "cs_9f8e7d6c5b4a"}',
        "cs_9f8e7d6c5b4a",
        '{"client_secret": "[REDACTED]"}',
    ),
    Secret(
        "assign_escaped_json_token",
        '{\\"refreshToken\\": \\"rt.v1.QmFzZTY0\\"}',
        "rt.v1.QmFzZTY0",
        '{\\"refreshToken\\": \\"[REDACTED]\\"}',
    ),
    Secret("assign_cli_flag", "--password Tr0ub4dor&3", "Tr0ub4dor&3", "--password [REDACTED]"),
    Secret(
        "assign_cli_flag_equals", "--api-key=k3y-0f-mine", "k3y-0f-mine", "--api-key=[REDACTED]"
    ),
    Secret(
        "assign_env_pgpassword", "PGPASSWORD=pg-Secret-77", "pg-Secret-77", "PGPASSWORD=[REDACTED]"
    ),
    Secret(
        "assign_aws_secret",
        "aws_secret_access_key=" + _AWS_SECRET,
        _AWS_SECRET,
        "aws_secret_access_key=[REDACTED]",
    ),
    Secret("assign_otp", "otp: 493817", "493817", "otp: [REDACTED]"),
    Secret(
        "header_cookie",
        "Cookie: sessionid=9a8b7c6d5e4f; csrftoken=QWERTY123456",
        "QWERTY123456",
        "Cookie: [REDACTED]",
    ),
    Secret(
        "header_set_cookie",
        "Set-Cookie: session=abc123xyz789; Path=/; HttpOnly",
        "abc123xyz789",
        "Set-Cookie: [REDACTED]",
    ),
    Secret(
        "header_authorization_basic",
        "Authorization: Basic dXNlcjpwYXNzd29yZDEyMw==",
        "dXNlcjpwYXNzd29yZDEyMw==",
        "Authorization: [REDACTED]",
    ),
    # --- bearer tokens and JWTs
    Secret(
        "bearer",
        "Bearer abcDEF123456ghiJKL789",
        "abcDEF123456ghiJKL789",
        "Bearer [REDACTED:bearer]",
    ),
    Secret(
        "bearer_lowercase",
        "bearer Zm9vYmFyYmF6cXV4MTIzNDU2",
        "Zm9vYmFyYmF6cXV4MTIzNDU2",
        "bearer [REDACTED:bearer]",
    ),
    Secret(
        "basic_auth_free_text",
        "basic YWxpY2U6czNjcjN0UGFzcw==",
        "YWxpY2U6czNjcjN0UGFzcw==",
        "basic [REDACTED:basic_auth]",
    ),
    Secret("jwt", _JWT, _JWT.split(".")[2], "[REDACTED:jwt]"),
    # --- cloud and API keys
    Secret("aws_access_key_id", _AWS_KEY_ID, _AWS_KEY_ID, "[REDACTED:aws_access_key]"),
    Secret(
        "aws_session_key_id", _AWS_SESSION_KEY_ID, _AWS_SESSION_KEY_ID, "[REDACTED:aws_access_key]"
    ),
    Secret("github_classic", _GHP, _GHP[4:], "[REDACTED:github_token]"),
    Secret("github_oauth", _GHO, _GHO[4:], "[REDACTED:github_token]"),
    Secret("github_app", _GHS, _GHS[4:], "[REDACTED:github_token]"),
    Secret("github_fine_grained", _GITHUB_PAT, _GITHUB_PAT[11:], "[REDACTED:github_token]"),
    Secret("slack_bot", _SLACK_BOT, _SLACK_BOT[5:], "[REDACTED:slack_token]"),
    Secret("slack_user", _SLACK_USER, _SLACK_USER[5:], "[REDACTED:slack_token]"),
    Secret("slack_app", _SLACK_APP, _SLACK_APP[5:], "[REDACTED:slack_token]"),
    Secret(
        "slack_webhook",
        "https://hooks.slack.com/services/" + _SLACK_HOOK_PATH,
        _SLACK_HOOK_PATH,
        "[REDACTED:slack_webhook]",
    ),
    Secret("stripe_secret", _STRIPE_LIVE, _STRIPE_LIVE[8:], "[REDACTED:stripe_key]"),
    Secret(
        "stripe_restricted", _STRIPE_RESTRICTED, _STRIPE_RESTRICTED[8:], "[REDACTED:stripe_key]"
    ),
    Secret("stripe_webhook_secret", _STRIPE_WEBHOOK, _STRIPE_WEBHOOK[6:], "[REDACTED:stripe_key]"),
    Secret("openai_project", _OPENAI_PROJECT, _OPENAI_PROJECT[8:], "[REDACTED:openai_key]"),
    Secret("openai_legacy", _OPENAI_LEGACY, _OPENAI_LEGACY[3:], "[REDACTED:openai_key]"),
    Secret("anthropic", _ANTHROPIC, _ANTHROPIC[13:], "[REDACTED:anthropic_key]"),
    Secret("google_api_key", _GOOGLE, _GOOGLE[4:], "[REDACTED:google_api_key]"),
    Secret("gitlab", _GITLAB, _GITLAB[6:], "[REDACTED:gitlab_token]"),
    Secret("huggingface", _HUGGINGFACE, _HUGGINGFACE[3:], "[REDACTED:huggingface_token]"),
    Secret("npm", _NPM, _NPM[4:], "[REDACTED:npm_token]"),
    Secret("sendgrid", _SENDGRID, _SENDGRID[3:], "[REDACTED:sendgrid_key]"),
    # --- private keys (the whole block goes)
    Secret(
        "pem_rsa", _PEM_RSA, "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1", "[REDACTED:private_key]"
    ),
    Secret("pem_openssh", _PEM_OPENSSH, "b3BlbnNzaC1rZXktdjEAAAAABG5v", "[REDACTED:private_key]"),
)

LOOKALIKES: tuple[LookAlike, ...] = (
    LookAlike("uuid4", "550e8400-e29b-41d4-a716-446655440000"),
    LookAlike("uuid_upper", "F47AC10B-58CC-4372-A567-0E02B2C3D479"),
    LookAlike("uuid7_event_id", "01890a5d-ac96-774b-bcce-b302099a8057"),
    LookAlike("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
    LookAlike("span_id", "00f067aa0ba902b7"),
    LookAlike("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    LookAlike("iso_timestamp_ms", "2026-05-01T12:34:56.789Z"),
    LookAlike("iso_timestamp_offset", "2026-05-01T12:34:56.789123+05:30"),
    LookAlike("sql_timestamp", "2026-05-01 12:34:56"),
    LookAlike("date_us", "05/01/2026"),
    LookAlike("epoch_seconds", "1714560000"),
    LookAlike("epoch_ms", "1714560000123"),
    LookAlike("epoch_us_relay", "1453843029218310"),
    LookAlike("semver", "1.2.3"),
    LookAlike("semver_pre", "v2.10.0-rc.1"),
    LookAlike("calver_build", "2026.05.01-rc.3"),
    LookAlike("git_sha_short", "9fceb02"),
    LookAlike("git_sha_full", "9fceb02d0ae598e95dc970b74767f19372d61af8"),
    LookAlike("order_number", "ORD-2024-000123"),
    LookAlike("invoice_number", "INV-000042-2026"),
    LookAlike("chrome_version", "Chrome/124.0.0.0"),
    LookAlike(
        "user_agent",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    ),
    LookAlike("luhn_invalid_16", "4111111111111112"),
    LookAlike("luhn_valid_no_brand", "1234567812345670"),
    LookAlike("long_numeric_id", "123456789012345678901234567890"),
    LookAlike("pi_digits", "3.14159265358979"),
    LookAlike("prose_password", "User password is secret123 for authentication"),
    LookAlike("prose_reset", "Please reset your password using the link we sent"),
    LookAlike("prose_token", "the tokenizer split the prompt into 512 tokens"),
    LookAlike("duration", "1h30m15s"),
    LookAlike("duration_ms", "duration_ms=183.25"),
    LookAlike("file_path", "/var/log/app/2026-05-01/worker-07.log"),
    LookAlike("ipv4_documented_kept", "10.0.0.12"),
    LookAlike("postgres_socket_url", "postgres:///var/run/postgresql"),
    LookAlike("url_without_credentials", "https://example.com/docs/page-2?lang=en"),
    LookAlike("iban_inside_word", "fooNO9386011117947bar"),
    LookAlike("pod_name", "api-7d9f8b6c5d-x2kq9"),
    LookAlike("correlation_assignment", "session_id=s-123 request_id=req-42"),
    LookAlike("usage_counter_assignment", "prompt_tokens=1200 completion_tokens=85"),
    LookAlike("author_assignment", "author: Jane"),
    LookAlike("marker_plain", "[REDACTED]"),
    LookAlike("marker_typed", "value was [REDACTED:email] before"),
    LookAlike("http_status_line", "HTTP/1.1 503 Service Unavailable"),
    LookAlike("sklearn_words", "risk-assessment-framework-2026"),
    LookAlike("mac_address", "00:1A:2B:3C:4D:5E"),
    LookAlike("hex_color", "#ff8800"),
    LookAlike("python_version", "Python 3.11.7"),
    LookAlike("bearer_word", "Send a Bearer token in the header"),
)
