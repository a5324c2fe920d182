"""Cheaper MQTT 5 packet decoding for paho-mqtt 2.x, installed by the ingestor.

paho decodes every incoming PUBLISH into a new `Properties` object whose constructor builds
its constant tables (27 property names, 27 property types with their packet lists) again, and
whose `unpack` first probes all 27 names with `hasattr` to clear it. On the ingestor's receive
path that was about 15 us per message, more than the payload's own decoding per reading.
`SharedTableProperties` keeps the tables on the class (built once from paho's own) and clears
only the attributes it holds; decoding is otherwise paho's, so every property decodes, checks
and reads as before (`tests/cloud/test_mqtt_decoding.py` compares both on every property a
PUBLISH may carry).
"""

from __future__ import annotations

from paho.mqtt import _packet
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

_TABLES = ("types", "names", "properties")


class SharedTableProperties(Properties):
    """paho's `Properties` whose constant tables are built once, on the class."""

    def __init__(self, packetType: int) -> None:  # noqa: N803 - paho's name
        object.__setattr__(self, "packetType", packetType)

    def clear(self) -> None:
        """Remove every property this object holds (paho probes each of the 27 names)."""
        for name in [n for n in vars(self) if n != "packetType"]:
            object.__delattr__(self, name)


_template = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
for _table in _TABLES:
    setattr(SharedTableProperties, _table, getattr(_template, _table))


def install_shared_table_properties() -> None:
    """Make paho's packet decoder build `SharedTableProperties` (process-wide, idempotent)."""
    _packet.Properties = SharedTableProperties  # type: ignore[attr-defined]
