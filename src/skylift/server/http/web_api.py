"""The `container.web_*` methods: how a container answers the web request it was given as an input.

`container.web_send` carries ASGI messages (response start and body chunks, WebSocket accept,
send and close) to the gateway, which writes them to the client at once; it answers only once
the client's socket has taken them (backpressure), and says `closed` when the client is gone.
Complete responses of many requests come batched (`items`), a response that ends in one go as
`{input_id, r: [status, headers, body]}`, and are answered at once.
`container.web_receive` long-polls for request-body chunks and WebSocket messages that did not
fit in the input. Both address the request by its input id; only the container that first
answered may continue (a redelivered input is told the client is gone).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from ..._protocol import api
from ..._protocol.rpc_server import Ready, Session
from ..auth import Routes
from ..longpoll import Deadline
from ..params import Params, invalid

if TYPE_CHECKING:
    from .gateway import Gateway
    from .web_exchange import Exchange

log = logging.getLogger("skylift.server")

_TYPES = frozenset({"http.response.start", "http.response.body", "http.response.trailers", "websocket.accept",
                    "websocket.send", "websocket.close"})


def _where(item: int | None) -> str:
    return "container.web_send" if item is None else f"container.web_send items[{item}]"


class WebApi:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def routes(self) -> Routes:
        return {
            "container.web_send": self.send,
            "container.web_receive": self.receive,
            "web.list": self.list,
        }

    def send(self, session: Session, raw: dict[str, Any]) -> Awaitable[dict[str, Any]]:
        items = raw.get("items")
        if items is None:  # one input's messages: the answer waits until the client's socket took them
            return self._send_one(session, raw)
        # Complete responses of many inputs, batched by the container: applied without waiting,
        # and answered in the same step (no task for the call).
        if not isinstance(items, list):
            raise invalid("container.web_send", "'items' must be a list of {input_id, messages}")
        closed = []
        for n, item in enumerate(items):
            if not isinstance(item, dict):
                raise invalid("container.web_send", f"items[{n}] must be a map {{input_id, messages}}")
            try:
                exchange = self._respond(session, item, n) if "r" in item else self._apply(session, item, n)
            except (TypeError, ValueError) as exc:
                # One app's malformed response (say, str headers) fails that request alone, not
                # the others that share the batch.
                failed = self.gateway.exchanges.get(str(item.get("input_id")))
                if failed is not None and failed.writer is not None:
                    failed.writer.error(500, "Internal Server Error")
                log.warning("web response of input %s is not valid ASGI: %s", item.get("input_id"), exc)
                exchange = None
            if exchange is None or exchange.client_gone:
                closed.append(item.get("input_id"))
        return Ready({"closed": closed})

    async def _send_one(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        exchange = self._apply(session, raw, None)
        if exchange is None:
            return {"closed": True}
        await exchange.drain()
        return {"closed": exchange.client_gone}

    def _apply(self, session: Session, raw: dict[str, Any], item: int | None) -> Exchange | None:
        input_id = raw.get("input_id")
        messages = raw.get("messages")
        if not isinstance(input_id, str) or not isinstance(messages, list):
            raise invalid(_where(item), "needs 'input_id' (str) and 'messages' (a list of ASGI messages)")
        for n, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("type") not in _TYPES:
                raise invalid(_where(item), f"messages[{n}] is not an ASGI response message "
                                            f"(type one of {', '.join(sorted(_TYPES))})")
        exchange = self._answering(session, input_id)
        if exchange is not None:
            exchange.apply(messages)
        return exchange

    def _respond(self, session: Session, raw: dict[str, Any], item: int) -> Exchange | None:
        """A whole response in the short form of a batch item: `{input_id, r: [status, headers, body]}`."""
        input_id = raw.get("input_id")
        response = raw.get("r")
        if not isinstance(input_id, str) or not isinstance(response, list) or len(response) != 3:
            raise invalid(_where(item), "needs 'input_id' (str) and 'r' ([status, headers, body])")
        exchange = self._answering(session, input_id)
        if exchange is not None:
            exchange.respond(*response)
        return exchange

    def _answering(self, session: Session, input_id: str) -> Exchange | None:
        """The exchange this container may answer, if its client is still there."""
        exchange = self.gateway.exchanges.get(input_id)
        if exchange is None or exchange.client_gone:
            return None
        if exchange.sender != session.identity:
            if exchange.sender:
                return None  # another container answers it (this one had a lapsed lease)
            exchange.sender = session.identity
        return exchange

    async def receive(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("container.web_receive", raw)
        input_id = p.text("input_id")
        deadline = Deadline(p.timeout(default=api.MAX_POLL_SECONDS))
        exchange = self.gateway.exchanges.get(input_id)
        if exchange is None:
            return {"messages": [{"type": "http.disconnect"}]}
        while not exchange.inbound and not exchange.client_gone and deadline.remaining() > 0:
            await exchange.signal.wait(deadline.remaining())
        return {"messages": exchange.take_inbound()}

    async def list(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        return {"gateway_url": self.gateway.url, "endpoints": self.gateway.describe()}
