"""Applying a partial update to a row and describing it the way the audit log records it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def assign_changes(row: object, requested: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Sets each requested attribute whose value differs; returns `{field: {"from", "to"}}`
    for those alone (empty: nothing changed, nothing to flush or audit)."""
    changes: dict[str, dict[str, Any]] = {}
    for field, value in requested.items():
        old = getattr(row, field)
        if old != value:
            changes[field] = {"from": old, "to": value}
            setattr(row, field, value)
    return changes
