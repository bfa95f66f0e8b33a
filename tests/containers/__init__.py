"""The containers built and run (make test-containers): the compose stack against real Docker."""
