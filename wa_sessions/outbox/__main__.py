"""``python -m wa_sessions.outbox``: the Procfile's ``outbox`` process (thin: built in
``bootstrap_outbox.build_outbox``). Stops on SIGTERM or Ctrl-C after the batch in hand."""

from __future__ import annotations

import asyncio
import logging
import signal

from wa_sessions import bootstrap, bootstrap_outbox

log = logging.getLogger(__name__)


async def _serve() -> None:
    settings = bootstrap.load_serving_settings()
    process = bootstrap_outbox.build_outbox(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("outbox started: consumers %s", [c.group for c in process.runner.loops])
    try:
        await process.runner.run(stop)
    finally:
        await process.aclose()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
