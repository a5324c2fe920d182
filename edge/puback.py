"""PUBACK reason codes, which aiomqtt does not surface.

An MQTT 5 broker can acknowledge a publish without keeping it: 0x10 "No matching subscribers"
(Mosquitto 2.0 answers so after a restart, until the cloud's shared subscription is back) or a
failure code >= 0x80 (e.g. 0x87 not authorised). For a gateway that is not delivered: the
message must stay in the buffer. This module records each publish's reason code per task.
"""

from __future__ import annotations

import contextvars
from typing import Any

import aiomqtt
from paho.mqtt.client import MQTTMessageInfo

NO_MATCHING_SUBSCRIBERS = 0x10

_last_publish: contextvars.ContextVar[MQTTMessageInfo | None] = contextvars.ContextVar(
    "last_publish", default=None
)


class NotDeliveredError(Exception):
    """The broker acknowledged a publish without delivering it; keep the message, try later."""


def track_reason_codes(client: aiomqtt.Client) -> dict[int, int]:
    """Record the PUBACK reason code of every publish of this client, by message id."""
    paho = client._client
    codes: dict[int, int] = {}
    on_publish: Any = paho.on_publish
    publish = paho.publish

    def recording_on_publish(c: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        codes[mid] = int(getattr(rc, "value", 0) or 0)
        on_publish(c, userdata, mid, rc, props)

    def recording_publish(*args: Any, **kwargs: Any) -> MQTTMessageInfo:
        info: MQTTMessageInfo = publish(*args, **kwargs)
        _last_publish.set(info)  # aiomqtt calls this synchronously in the caller's task
        return info

    paho.on_publish = recording_on_publish
    paho.publish = recording_publish  # type: ignore[method-assign]
    return codes


def check_delivered(codes: dict[int, int]) -> None:
    """Raise NotDeliveredError if the current task's last publish was not kept by the broker."""
    info = _last_publish.get()
    if info is None:
        return
    code = codes.pop(info.mid, 0)
    if code == NO_MATCHING_SUBSCRIBERS or code >= 0x80:
        raise NotDeliveredError(f"broker acknowledged without delivering (reason 0x{code:02x})")
