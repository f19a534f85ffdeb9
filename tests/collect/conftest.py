import pytest

from tests.collect.imageserver import Handler, ImageServer


@pytest.fixture()
def server():
    with ImageServer() as srv:
        yield srv


class _FilesHandler(Handler):
    """The image server's routes, plus the (body, content type) a test put in ``server.files`` under a path."""

    def do_GET(self) -> None:
        found = self.server.files.get(self.path.split("?", 1)[0])
        if found is None:
            return super().do_GET()
        return self._send(200, *found)


@pytest.fixture()
def files_server():
    """The image server, also serving ``server.files``: {path: (body, content type)} set by the test."""
    srv = ImageServer()
    srv.files = {}
    srv.RequestHandlerClass = _FilesHandler
    with srv:
        yield srv
