"""Client CPU per call of the ways to call OpenAI's Responses API and Twilio's Messages API from
an event loop, against a local stand-in (in its own process, so its CPU is not counted).

    python -m bench.sdk_cost [--calls 1500] [--in-flight 64]

Why the extractor calls ``AsyncOpenAI.post`` with a schema computed once rather than
``responses.parse`` (``orders/openai.py``), and why the Twilio sender is the SDK's async client:
at hundreds of messages a second the client's CPU per call is what bounds a worker process.
Each variant runs in a fresh process (``uvloop``), warms up, then times ``--calls`` calls with
``--in-flight`` of them at once; printed: client CPU per call and calls per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

VARIANTS = (
    "openai-parse-httpx2",
    "openai-parse-aiohttp",
    "openai-create-raw",
    "openai-post",
    "aiohttp-bare",
    "twilio-sdk-async",
)
_ANSWER = {
    "found": True,
    "changes": [{"action": "add", "name": "Product A", "quantity": 5, "unit": None}],
    "customer_name": None,
    "delivery_address": None,
    "notes": None,
    "currency": None,
    "total_amount": None,
}
_RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1,
    "status": "completed",
    "model": "m",
    "output": [
        {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "annotations": [], "text": json.dumps(_ANSWER)}],
        }
    ],
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
}
_ACCOUNT = "AC" + "0" * 32


def serve(port: int) -> None:
    """The stand-in: both APIs, answering at once."""
    from aiohttp import web

    async def responses(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(_RESPONSE)

    async def messages(request: web.Request) -> web.Response:
        await request.post()
        return web.json_response({"sid": "SM" + uuid.uuid4().hex, "status": "queued"}, status=201)

    app = web.Application()
    app.router.add_post("/v1/responses", responses)
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", messages)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _one_call(variant: str, port: int) -> Callable[[], Awaitable[None]]:
    """A coroutine function making one call of ``variant`` (clients built once)."""
    import aiohttp
    import httpx2
    import openai

    from wa_sessions.orders.models import ExtractionResult
    from wa_sessions.orders.openai_prompt import TEXT_FORMAT

    base = f"http://127.0.0.1:{port}"
    prompt = [{"role": "user", "content": [{"type": "input_text", "text": "5 units of A"}]}]
    if variant.startswith("openai"):
        transport = (
            {} if variant.endswith("httpx2") else {"http_client": openai.DefaultAioHttpClient()}
        )
        client = openai.AsyncOpenAI(
            api_key="x", base_url=f"{base}/v1", max_retries=0, timeout=10, **transport
        )
        if variant.startswith("openai-parse"):

            async def parse() -> None:
                answer = await client.responses.parse(
                    model="m",
                    input=prompt,
                    text_format=ExtractionResult,
                    store=False,  # type: ignore[arg-type]
                )
                assert answer.output_parsed is not None

            return parse
        if variant == "openai-create-raw":

            async def create() -> None:
                raw = await client.responses.with_raw_response.create(
                    model="m",
                    input=prompt,
                    store=False,
                    extra_body={"text": TEXT_FORMAT},  # type: ignore[arg-type]
                )
                text = json.loads(raw.http_response.content)["output"][0]["content"][0]["text"]
                assert ExtractionResult.model_validate_json(text).found

            return create

        async def post() -> None:
            body = {"model": "m", "input": prompt, "store": False, "text": TEXT_FORMAT}
            answer = await client.post("/responses", cast_to=httpx2.Response, body=body)
            text = json.loads(answer.content)["output"][0]["content"][0]["text"]
            assert ExtractionResult.model_validate_json(text).found

        return post
    if variant == "aiohttp-bare":
        session = aiohttp.ClientSession()

        async def bare() -> None:
            async with session.post(f"{base}/v1/responses", json={"input": prompt}) as answer:
                assert (await answer.json())["status"] == "completed"

        return bare
    from wa_sessions.replies.twilio import TwilioSender
    from wa_sessions.retries import RetryPolicy

    sender = TwilioSender(
        account_sid=_ACCOUNT, auth_token="t", policy=RetryPolicy(), api_base_url=base
    )

    async def send() -> None:
        sent = await sender.send(to="+14155550100", from_="+14155238886", body="Order received")
        assert getattr(sent, "sid", None)

    return send


def measure(variant: str, port: int, calls: int, in_flight: int) -> None:
    import uvloop

    async def run() -> None:
        one = _one_call(variant, port)
        slots = asyncio.Semaphore(in_flight)

        async def limited() -> None:
            async with slots:
                await one()

        await asyncio.gather(*(limited() for _ in range(min(200, calls))))
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(limited() for _ in range(calls)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"{variant:22} {cpu / calls * 1e6:7.0f} us CPU/call {calls / wall:7.0f} calls/s")

    uvloop.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sdk_cost")
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.variant:
        measure(args.variant, args.port, args.calls, args.in_flight)
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "bench.sdk_cost", "--serve", str(port)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        for variant in VARIANTS:
            subprocess.run(
                [
                    sys.executable,
                    "-W",
                    "ignore",
                    "-m",
                    "bench.sdk_cost",
                    "--variant",
                    variant,
                    "--port",
                    str(port),
                    "--calls",
                    str(args.calls),
                    "--in-flight",
                    str(args.in_flight),
                ],
                check=False,
                stderr=subprocess.DEVNULL,
            )
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
