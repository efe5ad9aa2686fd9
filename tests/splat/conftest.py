"""The local Hub of tests/hub, for the splat tests that push a scene and pull it back."""

from tests.hub.conftest import local_hub  # noqa: F401 (a fixture, found by name)
