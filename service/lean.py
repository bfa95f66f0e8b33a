"""What an API process never loads: TensorFlow, and the data stacks MLflow's client imports only when installed.

MLflow's client imports pandas, pyarrow and scipy if it finds them (the development environment
has them, for the worker): about 75 MB and a second of start an API process never uses. The API's
image lacks them; in any other environment the API's entry point keeps them out the same way.
"""

import sys

KEPT_OUT = ("tensorflow", "keras", "pandas", "pyarrow", "scipy", "sklearn", "matplotlib")


def keep_out() -> None:
    """Make the packages above unimportable in this process, as if not installed (before anything imports them)."""
    for name in KEPT_OUT:
        if sys.modules.get(name) is not None:
            raise RuntimeError(f"{name} was imported before the API process could keep it out")
        sys.modules[name] = None  # type: ignore[assignment]  # Python's own way: its import raises ModuleNotFoundError
