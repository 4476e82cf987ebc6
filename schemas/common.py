"""Building blocks shared by inbound and outbound messages."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

Priority = Literal["urgent", "normal"]
Code = Annotated[str, Field(min_length=1, max_length=64)]
Id = Annotated[str, Field(min_length=1, max_length=200)]


def _positive(d: timedelta) -> timedelta:
    if d <= timedelta(0):
        raise ValueError("duration must be positive")
    return d


Duration = Annotated[timedelta, AfterValidator(_positive)]
Time = AwareDatetime


class Open(BaseModel):
    """Contract messages keep unknown extra fields (CONTRACT.md: "kept, not rejected")."""

    model_config = ConfigDict(extra="allow")


class UnitLocation(Open):
    unit: Code


class GeoLocation(Open):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class AddressLocation(Open):
    address: str = Field(min_length=1, max_length=500)


Location = UnitLocation | GeoLocation | AddressLocation
