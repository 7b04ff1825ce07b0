from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from orgbill.stripe_sync.client import StripeGateway


def get_stripe_gateway(request: Request) -> StripeGateway | None:
    """None when ORGBILL_STRIPE_API_KEY is unset (billing actions then answer 503)."""
    return request.app.state.stripe


StripeGatewayDep = Annotated[StripeGateway | None, Depends(get_stripe_gateway)]
