"""`leasewatch cloud create-tenant/create-user/create-key` as an operator bootstraps access."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cloud.api.main import create_app
from cloud.cli import app
from tests.cloud.access.conftest import AUTH_SECRET, BOOTSTRAP_KEY, make_services


def test_cli_creates_a_tenant_user_whose_key_the_api_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "STATE_URL": f"sqlite:///{tmp_path / 'state.sqlite'}",
        "API_KEY": BOOTSTRAP_KEY,
        "AUTH_SECRET": AUTH_SECRET,
    }.items():
        monkeypatch.setenv(f"LEASEWATCH_{name}", value)
    runner = CliRunner()
    assert runner.invoke(app, ["create-tenant", "lessor-a", "Lessor A"]).exit_code == 0
    made = runner.invoke(
        app, ["create-user", "ann", "--role", "asset_manager", "--tenant", "lessor-a"]
    )
    assert made.exit_code == 0, made.output
    issued = runner.invoke(app, ["create-key", "ann"])
    key = issued.stdout.strip()
    assert key.startswith("lwk_")
    missing = runner.invoke(app, ["create-key", "nobody"])
    assert missing.exit_code == 1 and "no user named 'nobody'" in missing.output
    services = make_services(tmp_path)
    with TestClient(create_app(services)) as client:
        me = client.get("/v1/auth/me", headers={"X-API-Key": key}).json()
    services.state.close()
    assert (me["user"], me["role"], me["tenant"]) == ("ann", "asset_manager", "lessor-a")
