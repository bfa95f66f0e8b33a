"""The WSGI entry point for the HTTP server (docker/bin/api): settings from the environment."""

from contract import logs
from service.app import create_app
from service.settings import Settings

settings = Settings()
logs.configure(settings.log_level)
app = create_app(settings)
