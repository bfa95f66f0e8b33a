"""The WSGI entry point for gunicorn: settings from the environment."""

from service.app import create_app

app = create_app()
