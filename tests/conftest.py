"""Test-wide settings: hypothesis profiles and the device fixture.

Profiles (pick with HYPOTHESIS_PROFILE=name, default "dev"):
  ci        derandomized, few examples, no example database: what .ci/run uses
  dev       a little more, still quick
  thorough  many examples, for a deep local run before a release
"""

import os

import pytest
from hypothesis import HealthCheck, settings

import minigrad as mg

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=8, derandomize=True, database=None, **_common)
settings.register_profile("dev", max_examples=20, **_common)
settings.register_profile("thorough", max_examples=300, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

DEVICES = ["cpu", "fake"] + (["cuda"] if mg.cuda.is_available() else [])


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA GPU (minigrad.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords and not mg.cuda.is_available():
            item.add_marker(skip)


@pytest.fixture(params=["cpu", "fake", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request):
    """Every device-generic test runs on cpu, on the strict fake device, and on cuda if present."""
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    mg.manual_seed(1234)
    yield
