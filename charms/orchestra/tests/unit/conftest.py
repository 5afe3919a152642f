# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""The host the charm runs on, faked (charms/testing/oscied_testing.py)."""

import pytest
from oscied_testing import FakeSystem, fake_system, host  # noqa: F401  (host: a fixture)


@pytest.fixture
def fake(tmp_path, monkeypatch) -> FakeSystem:
    """For the library tests: the files go straight under tmp_path."""
    return fake_system(monkeypatch, tmp_path)
