"""Outgoing events: the business's backend learns of session starts and ends, order updates and
failed messages by signed webhooks (Standard Webhooks), fed by the outbox (docs/EVENTS.md).

Kept free of imports here: ``config`` reads this package's settings (``settings``) without
loading the HTTP client.
"""
