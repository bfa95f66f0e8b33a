"""The WSGI entry point for the HTTP server (docker/bin/api): settings from the environment."""

from service import lean

lean.keep_out()

from contract import logs  # noqa: E402 (after keep_out: nothing below may load what it keeps out)
from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402

settings = Settings()
logs.configure(settings.log_level)
app = create_app(settings)
