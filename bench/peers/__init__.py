"""The designs the service's worker pipeline is compared with in ``./run bench --only replies``,
built small and honestly from the service's own parts (``SessionService``, the OpenAI extractor,
the Twilio sender, the order merge and reply templates), fed by the same signed webhooks."""
