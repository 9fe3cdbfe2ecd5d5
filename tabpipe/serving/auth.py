"""Bearer-token authorisation for the repository extension (load, unload, index) and, optionally, inference.

The token comes from a mounted file (``--admin-token-file``, e.g. a Kubernetes
Secret volume; re-read when the file changes, so a rotated Secret takes effect
without a restart) or from the ``TABPIPE_SERVING_ADMIN_TOKEN`` environment
variable. Without one, the repository endpoints are disabled (403): nobody can
unload the served model or load another URI into it. Health probes stay open;
inference stays open unless the operator requires the token for it too.

Tokens are compared with :func:`hmac.compare_digest` and never logged or echoed.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from pathlib import Path

from tabpipe.errors import ConfigError

#: The environment variable holding the token itself.
TOKEN_ENV = "TABPIPE_SERVING_ADMIN_TOKEN"
#: Tokens shorter than this are refused at startup (a guessable secret protects nothing).
MIN_TOKEN_CHARS = 16
#: How often (seconds) a token file is checked for a new version.
RELOAD_INTERVAL_SECONDS = 1.0
DISABLED_MESSAGE = (
    "the repository extension is disabled: the server has no admin token "
    f"(set {TOKEN_ENV} or --admin-token-file)"
)


class AuthError(Exception):
    """A request without the right token.

    Attributes:
        status: 401 (no or wrong token) or 403 (the endpoint is disabled).
        message: Why, without the token.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _checked(token: str, where: str) -> bytes:
    token = token.strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"{where}: the admin token must be at least {MIN_TOKEN_CHARS} characters")
    if any(c.isspace() for c in token) or not token.isprintable():
        raise ConfigError(f"{where}: the admin token must be printable, without spaces")
    return token.encode()


def _read_file(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--admin-token-file {path}: cannot read it ({exc.__class__.__name__})") from None
    return _checked(text, f"--admin-token-file {path}")


class AdminToken:
    """The operator's token, from a file (re-read when it changes) or the environment.

    Args:
        token_file: A file holding the token (whitespace around it ignored).
        env: The environment to read :data:`TOKEN_ENV` from when there is no file.
        require_for_inference: Whether inference and model metadata need the token too.

    Raises:
        ConfigError: the file cannot be read, or the token is too short or has spaces.
    """

    def __init__(
        self,
        token_file: Path | None = None,
        env: dict[str, str] | None = None,
        require_for_inference: bool = False,
    ) -> None:
        self._file = token_file
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked_at = 0.0
        self.require_for_inference = require_for_inference
        environ = os.environ if env is None else env
        if token_file is not None:
            self._token: bytes | None = _read_file(token_file)
            self._stamp = self._file_stamp()
        elif environ.get(TOKEN_ENV):
            self._token = _checked(environ[TOKEN_ENV], TOKEN_ENV)
        else:
            self._token = None
        if require_for_inference and self._token is None:
            raise ConfigError(
                f"--require-token-for-inference needs a token ({TOKEN_ENV} or --admin-token-file)"
            )

    def __repr__(self) -> str:
        return f"AdminToken(configured={self.configured}, file={self._file})"

    @property
    def configured(self) -> bool:
        """Whether a token is set (the repository extension is enabled)."""
        return self._token is not None

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self._file.stat()  # type: ignore[union-attr]
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _current(self) -> bytes | None:
        """The token now: a changed file (a rotated Secret) is re-read, at most once a second."""
        if self._file is None:
            return self._token
        now = time.monotonic()
        if now - self._checked_at >= RELOAD_INTERVAL_SECONDS:
            with self._lock:
                self._checked_at = now
                stamp = self._file_stamp()
                if stamp is not None and stamp != self._stamp:
                    try:
                        self._token = _read_file(self._file)
                        self._stamp = stamp
                    except ConfigError:
                        pass  # a half-written file: keep the previous token until it is whole
        return self._token

    def check(self, authorization: str | None) -> None:
        """Accept ``Authorization: Bearer <token>`` with the configured token.

        Raises:
            AuthError: 403 when no token is configured (the endpoint is disabled),
                401 when the header is missing, malformed or holds another token.
        """
        token = self._current()
        if token is None:
            raise AuthError(403, DISABLED_MESSAGE)
        if not authorization:
            raise AuthError(401, "missing Authorization: Bearer <token> header")
        scheme, _, given = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise AuthError(401, "the Authorization header must be 'Bearer <token>'")
        # compare_digest on bytes: no early exit that would time out the token a byte at a time.
        if not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token):
            raise AuthError(401, "invalid token")
