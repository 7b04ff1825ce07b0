"""Holds taken by `POST /check`: below usage and credits, which count them, and below the
decisions domain, which takes and settles them. Repository only: the rules live above."""
