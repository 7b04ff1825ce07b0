"""Review E: the events a product receives. The webhooks_out fixtures (fast dispatcher, a real
receiver on loopback), reused as they are."""

from tests.webhooks_out.conftest import app, receiver, settings, webhook_settings

__all__ = ["app", "receiver", "settings", "webhook_settings"]
