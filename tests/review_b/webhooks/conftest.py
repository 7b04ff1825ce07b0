"""The outbound-webhook fixtures of tests/webhooks_out (fast dispatcher, loopback receiver)."""

from tests.webhooks_out.conftest import app, receiver, settings, webhook_settings

__all__ = ["app", "receiver", "settings", "webhook_settings"]
