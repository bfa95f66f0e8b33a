"""The WSGI entry point for the HTTP server (docker/bin/api): settings from the environment."""

import threading

from service.app import create_app
from service.serving import configure_tensorflow
from service.settings import Settings
from contract import logs

settings = Settings()
logs.configure(settings.log_level)
app = create_app(settings)
# TensorFlow takes seconds to import: do it now, beside the server, not on the first prediction.
threading.Thread(target=configure_tensorflow, args=(settings.tensorflow_threads,), name="warm-tensorflow", daemon=True).start()
