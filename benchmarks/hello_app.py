"""The reference: a bare Litestar hello-world handler, served exactly like CPMS."""

from litestar import Litestar, get


@get("/", sync_to_thread=False)
def hello() -> str:
    return "Hello, world!"


app = Litestar(route_handlers=[hello])
