"""The WSGI entry point for gunicorn: settings from the environment."""

from service.app import create_app
from service.settings import Settings
from worker import logs

settings = Settings()
logs.configure(settings.log_level)
app = create_app(settings)
