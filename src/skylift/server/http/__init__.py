"""The HTTP gateway of web endpoints: connections, limits, routes, ASGI exchanges,
WebSockets, proxy auth (docs/web.md)."""
