"""The audit log, shared by admin actions, credit grants and Stripe replays (a lower piece
than any of them, so none imports another for it)."""
