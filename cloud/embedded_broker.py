"""The embedded MQTT broker of the one-command demo: amqtt in-process, LeaseWatch's access rules.

amqtt speaks MQTT 3.1.1 only and has no shared subscriptions: an ingestor on this broker
subscribes to `lw/v1/+/telemetry` itself (a `$share/...` filter is refused). Production and the
tests run Mosquitto with the same rules (see `cloud.broker_access`).
"""

from __future__ import annotations

import errno
import hmac
import logging
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from amqtt.broker import Broker
from amqtt.contexts import Action, BrokerConfig, ListenerConfig
from amqtt.errors import BrokerError
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from pydantic import SecretStr

from cloud.access.digests import verify_mosquitto_hash
from cloud.broker_access import AmqttAcl, Principal, Role, amqtt_acl_for, check_unique
from leasewatch.lifecycle import StartStop

_LOGGER = logging.getLogger(__name__)
_NOISY_LOGGERS = ("amqtt", "transitions")
_PORT_ATTEMPTS = 5
_SESSION_EXPIRY_S = 3 * 24 * 3600  # as persistent_client_expiration in mosquitto.conf


class EmbeddedBrokerError(Exception):
    """The embedded broker could not start."""


class _SubscriptionTable(dict[str, Any]):
    """amqtt's table of subscriptions by topic filter, iterated over a snapshot.

    amqtt 0.12.1 awaits inside its loops over this table (fanning a message out, handing
    retained messages to a returning session). A client subscribing to a new filter or leaving
    meanwhile made the loop fail with "dictionary changed size during iteration", and the
    message being fanned out reached nobody. Iterating a snapshot keeps every fan-out whole;
    a change applies from the next message on, as it would on any broker.
    """

    def __iter__(self) -> Iterator[str]:
        """The filters as they are now, unaffected by later changes."""
        return iter(list(dict.keys(self)))

    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        """(filter, subscriptions) pairs as they are now."""
        return list(dict.items(self))


@dataclass(frozen=True)
class BrokerAccess:
    """Credentials and topic rules the embedded broker enforces."""

    passwords: Mapping[str, SecretStr]
    acl: AmqttAcl
    ## Gateways provisioned through the API: username -> Mosquitto `$7$` hash.
    hashes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_principals(
        cls, principals: Iterable[Principal], gateway_hashes: Mapping[str, str] | None = None
    ) -> Self:
        """Build the access rules from the principal list shared with Mosquitto."""
        index = check_unique(principals)
        hashes = dict(gateway_hashes or {})
        if clash := sorted(set(hashes) & set(index)):
            raise EmbeddedBrokerError(f"usernames listed twice: {', '.join(clash)}")
        passwords = {name: principal.password for name, principal in index.items()}
        accounts = [(n, p.role) for n, p in index.items()] + [(n, Role.GATEWAY) for n in hashes]
        return cls(passwords=passwords, acl=amqtt_acl_for(accounts), hashes=hashes)

    def _password_ok(self, username: str, given: str) -> bool:
        """Whether `given` is the password of `username` (plain principal or hashed gateway)."""
        if username in self.hashes:
            return verify_mosquitto_hash(self.hashes[username], given)
        expected = self.passwords.get(username)
        return expected is not None and hmac.compare_digest(
            expected.get_secret_value().encode(), given.encode()
        )

    def refusal(self, session: Any) -> str | None:
        """Why a connecting session is refused, or None when it may connect."""
        username: str | None = session.username
        if not username:
            return "anonymous clients are not allowed"
        if not self._password_ok(username, session.password or ""):
            return f"bad username or password for {username!r}"
        client_id = session.client_id or ""
        if client_id != username and (client_id in self.passwords or client_id in self.hashes):
            return f"{username!r} may not use client id {client_id!r} of another principal"
        if session.will_flag and not self.acl.may_publish(username, session.will_topic or ""):
            return f"{username!r} may not set a last will on {session.will_topic!r}"
        return None


@dataclass
class LiveAccess:
    """The rules in force; replaced whole when gateways are provisioned or revoked."""

    current: BrokerAccess


def _access_of(plugin: Any) -> BrokerAccess:
    """The BrokerAccess handed to a plugin through its amqtt Config."""
    access = plugin.context.config.access
    if isinstance(access, LiveAccess):
        access = access.current
    if not isinstance(access, BrokerAccess):
        raise EmbeddedBrokerError("plugin configured without a BrokerAccess")
    return access


class AccessAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """amqtt authentication: known username and password; no anonymous clients."""

    @dataclass
    class Config:
        """amqtt plugin configuration: the rules to enforce."""

        access: Any = None

    async def authenticate(self, *, session: Any) -> bool:
        """Admit a connecting client or refuse it with a logged reason."""
        reason = _access_of(self).refusal(session)
        if reason is not None:
            _LOGGER.warning("refused connection: %s", reason)
        return reason is None


class AccessTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """amqtt topic check: each principal's publish, subscribe and receive rules."""

    @dataclass
    class Config:
        """amqtt plugin configuration: the rules to enforce."""

        access: Any = None

    async def topic_filtering(
        self, *, session: Any = None, topic: str | None = None, action: Any = None
    ) -> bool:
        """Allow or refuse one publish, subscribe or delivery."""
        acl = _access_of(self).acl
        username: str | None = session.username if session is not None else None
        if topic is None:
            return False
        match action:
            case Action.PUBLISH:
                allowed = acl.may_publish(username, topic)
            case Action.SUBSCRIBE:
                allowed = acl.may_subscribe(username, topic)
            case Action.RECEIVE:
                return acl.may_receive(username, topic)
            case _:
                return False
        if not allowed:
            _LOGGER.warning("refused %s on %r for %r", action, topic, username)
        return allowed


def _dotted(cls: type) -> str:
    """The import path amqtt needs to load one of this module's plugin classes."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _probe_bind(host: str, port: int) -> int | None:
    """Bind and release `host:port` as amqtt would (0: any port); the port, or None if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return None
            raise EmbeddedBrokerError(f"cannot listen on {host}:{port}: {err}") from err
        bound: int = sock.getsockname()[1]
        return bound


def _address_in_use(err: BrokerError) -> bool:
    """Whether amqtt failed to start because its port is taken."""
    cause = err.__cause__
    return isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE


def quiet_amqtt_logging(level: int = logging.WARNING) -> None:
    """Lower amqtt's chatty loggers to `level` unless the application set them itself."""
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(level)


class EmbeddedBroker(StartStop):
    """An authenticated amqtt broker on loopback, as an async context manager.

    Asks for `port` (0: any free port) and falls back to a free port when it is taken;
    `.port` is the port actually bound.
    """

    def __init__(self, principals: Iterable[Principal], host: str = "127.0.0.1", port: int = 0):
        """Prepare (not start) a broker for these principals."""
        self.host = host
        self.requested_port = port
        self._principals = list(principals)
        self._access = LiveAccess(BrokerAccess.from_principals(self._principals))
        self._broker: Broker | None = None
        self._port: int | None = None

    @property
    def static_usernames(self) -> frozenset[str]:
        """Usernames of the principals the broker was started with."""
        return frozenset(p.username for p in self._principals)

    def set_gateway_hashes(self, hashes: Mapping[str, str]) -> None:
        """Accept exactly these API-provisioned gateways from now on (new connects, publishes)."""
        self._access.current = BrokerAccess.from_principals(self._principals, hashes)

    @property
    def port(self) -> int:
        """The TCP port the running broker listens on."""
        if self._port is None:
            raise EmbeddedBrokerError("the embedded broker is not running")
        return self._port

    def _config(self, port: int) -> BrokerConfig:
        """amqtt configuration: one TCP listener and this module's two access plugins."""
        bind_host = f"[{self.host}]" if ":" in self.host else self.host
        plugin_config = {"access": self._access}
        return BrokerConfig(
            listeners={"default": ListenerConfig(bind=f"{bind_host}:{port}")},
            plugins={
                _dotted(AccessAuthPlugin): plugin_config,
                _dotted(AccessTopicPlugin): plugin_config,
            },
            session_expiry_interval=_SESSION_EXPIRY_S,
        )

    async def _start_on(self, port: int) -> bool:
        """Start on `port`; False when the port is taken."""
        broker = Broker(self._config(port))
        broker._subscriptions = _SubscriptionTable(broker._subscriptions)  # see its docstring
        try:
            await broker.start()
        except BrokerError as err:
            if _address_in_use(err):
                return False
            raise EmbeddedBrokerError(f"amqtt could not start on {self.host}:{port}") from err
        self._broker, self._port = broker, port
        return True

    async def _start_on_free_port(self) -> None:
        """Start on a port the OS picks, retrying if another process grabs it first."""
        for _attempt in range(_PORT_ATTEMPTS):
            port = _probe_bind(self.host, 0)
            if port is not None and await self._start_on(port):
                return
        raise EmbeddedBrokerError(f"no free port found on {self.host}")

    async def start(self) -> None:
        """Start listening: on the requested port if free, else on a free one."""
        quiet_amqtt_logging()
        wanted = self.requested_port
        if not (wanted and _probe_bind(self.host, wanted) and await self._start_on(wanted)):
            if wanted:
                _LOGGER.warning("port %d is taken, using a free port instead", wanted)
            await self._start_on_free_port()
        _LOGGER.info("embedded MQTT broker listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Disconnect every client and close the listener."""
        broker, self._broker, self._port = self._broker, None, None
        if broker is not None:
            await broker.shutdown()

    def __repr__(self) -> str:
        """Host, port and principal count; never credentials."""
        return (
            f"EmbeddedBroker(host={self.host!r}, port={self._port}, "
            f"principals={len(self._access.current.passwords)})"
        )
