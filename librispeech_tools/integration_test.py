"""`test` (`poetry run test`): leap_test's integration test from the command line.

leap_test reads the configuration when it is imported (the prediction labels come from the vocabulary), so a bad
setting such as LIBRISPEECH_SAMPLES_PER_SPLIT=abc would stop the import with a traceback; here it is one line.
"""
from __future__ import annotations

import sys

import librispeech  # noqa: F401  first: its telemetry guard runs before anything imports code_loader
from librispeech.config import ConfigError


def main(argv: list[str] | None = None) -> None:
    try:
        import leap_test
    except ConfigError as error:
        sys.exit(f"error: {error}")
    leap_test.main(argv)


if __name__ == "__main__":
    main()
