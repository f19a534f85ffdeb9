import pytest

from tests.collect.imageserver import ImageServer


@pytest.fixture()
def server():
    with ImageServer() as srv:
        yield srv
