"""The ceiling: a bare aiohttp handler that parses the same form and answers ``<Response/>``.

    python -m bench.bare --port PORT

No signature check, no database: what one Python process on aiohttp can acknowledge at most.
"""

from __future__ import annotations

import argparse

from aiohttp import web

TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


async def webhook(request: web.Request) -> web.Response:
    form = await request.post()
    if "MessageSid" not in form:
        return web.Response(status=400)
    return web.Response(body=TWIML, content_type="text/xml", charset="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/{tail:.*}", webhook)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
