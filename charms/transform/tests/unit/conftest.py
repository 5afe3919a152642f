# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""The host the charm runs on, faked: `host` (charms/testing/oscied_testing.py)."""

from oscied_testing import host  # noqa: F401  (a fixture: pytest finds it here)
