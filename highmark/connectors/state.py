"""What an API mover does with its checkpoint state: save it after each committed page, and
turn the greatest times it loaded into the marks committed with the run's success."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from highmark import clock
from highmark.models import MarkUpdate, Watermark, WatermarkType

if TYPE_CHECKING:
    from highmark.movers.base import RunContext

State = TypeVar("State", bound=BaseModel)


def save_state(ctx: RunContext, state: State, **changes: Any) -> State:
    """``state`` with ``changes``, the run's batch number and the time, validated by its own
    model and saved as the job's checkpoint; the new state is returned."""
    stamped = state.model_copy(
        update={**changes, "batch_number": ctx.batch_number, "last_checkpoint_at": clock.now()}
    )
    data = stamped.model_dump(mode="json", exclude_none=True)
    ctx.save_checkpoint(type(state).model_validate(data).model_dump(mode="json", exclude_none=True))
    return stamped


def bounded_marks(
    keys: Iterable[str],
    loaded: Mapping[str, datetime],
    bounds: Mapping[str, datetime],
    column: str,
) -> list[MarkUpdate]:
    """A mark per key that loaded anything: the greatest time loaded, but never past the key's
    bound (the service's clock minus the job's lag when its scan began)."""
    updates = []
    for key in keys:
        value = loaded.get(key)
        if value is None:
            continue
        bound = bounds.get(key)
        if bound is not None:
            value = min(value, bound)
        updates.append(MarkUpdate(key, column, Watermark(WatermarkType.TIMESTAMP, ts=value)))
    return updates
