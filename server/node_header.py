"""``X-Webinar-Node``: which node answered, behind a load balancer (setting ``node_name``).

Added to every HTTP response and to the WebSocket handshake answer
(``websocket.accept``). With an empty ``node_name`` the middleware passes
everything through untouched.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-webinar-node"


class NodeHeaderMiddleware:
    def __init__(self, app: ASGIApp, node_name: str) -> None:
        self.app = app
        self.value = node_name.encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.value or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_with_node(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message = {**message, "headers": [*message.get("headers", []), (HEADER, self.value)]}
            await send(message)

        await self.app(scope, receive, send_with_node)
