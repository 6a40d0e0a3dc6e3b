"""The byte path: request and response bodies between the client's connection and a
backend, off the event loop.

``transfer`` is what the API calls (downloads, uploads, listings in threads);
``block_pipe`` trades blocks between the loop and a transfer's thread; ``socket_send``,
``socket_receive``, ``socket_splice`` and ``socket_thread`` move bodies straight through
the client's socket when the server offers it. Every transfer's thread trades its blocks
through the one bounded ``handoff``. ``scope`` names the keys through which the server,
the middleware and the transfers talk; ``uvicorn_seam`` is the only module that knows
uvicorn's internals: everything else sees the two offers declared in ``scope``.
"""
