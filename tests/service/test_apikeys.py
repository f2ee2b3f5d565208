"""API keys: shown once, stored hashed, found by prefix, revocable; and the `payrecon apikey` CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys

import asyncpg
import pytest

from service import apikeys


async def test_only_a_hash_is_stored(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        created = await apikeys.create(conn, "shop-backend", ["orders:write", "orders:read", "orders:read"])
    key = created.key
    assert key.startswith(created.api_key.prefix + "_")
    assert created.api_key.scopes == ["orders:read", "orders:write"]
    row = await pool.fetchrow("select * from api_keys")
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in {str(v) for v in row.values()}
    assert row["prefix"] == key[:12]


async def test_authenticate(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        created = await apikeys.create(conn, "shop", ["orders:read"])
        other = await apikeys.create(conn, "ops", ["recon:run"])
        found = await apikeys.authenticate(conn, created.key)
        assert found is not None
        assert (found.id, found.name, found.allows("orders:read"), found.allows("orders:write")) == (
            created.api_key.id,
            "shop",
            True,
            False,
        )
        assert await conn.fetchval("select last_used_at from api_keys where id = $1", found.id) is not None
        # another key's secret under this key's prefix
        assert await apikeys.authenticate(conn, created.api_key.prefix + other.key[12:]) is None
        assert await apikeys.authenticate(conn, "nope") is None
        assert await apikeys.authenticate(conn, "") is None


async def test_list_and_revoke_by_prefix_or_id(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        one = await apikeys.create(conn, "one", ["orders:read"])
        two = await apikeys.create(conn, "two", ["recon:read"])
        revoked = await apikeys.revoke(conn, one.api_key.prefix)
        assert revoked.revoked_at is not None
        again = await apikeys.revoke(conn, one.api_key.prefix)
        assert again.revoked_at == revoked.revoked_at  # the first time stands
        await apikeys.revoke(conn, str(two.api_key.id))
        assert [k.name for k in await apikeys.list_keys(conn)] == ["one", "two"]
        assert await apikeys.list_keys(conn, include_revoked=False) == []
        assert await apikeys.authenticate(conn, one.key) is None
        with pytest.raises(apikeys.ApiKeyError):
            await apikeys.revoke(conn, "prk_nothere")


@pytest.mark.parametrize(("name", "scopes"), [("x", []), ("x", ["orders:delete"]), ("", ["orders:read"])])
async def test_bad_keys_are_refused(pool: asyncpg.Pool, name: str, scopes: list[str]) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(apikeys.ApiKeyError):
            await apikeys.create(conn, name, scopes)


async def payrecon(database_url: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PAYRECON_DATABASE_URL": database_url}
    env.pop("PAYRECON_TEST_DATABASE_URL", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from service.cli import main; main()",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_create_list_revoke(database_url: str, pool: asyncpg.Pool) -> None:
    code, out, err = await payrecon(
        database_url, "apikey", "create", "--name", "shop-backend", "--scope", "orders:read", "--scope", "orders:write"
    )
    assert code == 0, err
    key = out.strip().splitlines()[-1]
    assert key.startswith("prk_")
    assert " " not in key
    async with pool.acquire() as conn:
        found = await apikeys.authenticate(conn, key)
    assert found is not None
    assert (found.name, found.scopes) == ("shop-backend", ["orders:read", "orders:write"])

    code, out, _ = await payrecon(database_url, "apikey", "create", "--name", "ops", "--scope", "recon:run", "--json")
    assert code == 0
    made = json.loads(out)
    assert made["key"].startswith(made["prefix"])
    assert made["scopes"] == ["recon:run"]

    code, out, _ = await payrecon(database_url, "apikey", "list", "--json")
    assert code == 0
    assert [k["name"] for k in json.loads(out)] == ["shop-backend", "ops"]
    assert "key" not in out.replace('"key_', "")  # no key material in listings

    code, out, _ = await payrecon(database_url, "apikey", "revoke", key[:12])
    assert code == 0
    assert "revoked" in out
    async with pool.acquire() as conn:
        assert await apikeys.authenticate(conn, key) is None

    code, out, _ = await payrecon(database_url, "apikey", "list")
    assert code == 0
    assert "shop-backend" in out
    assert key not in out


async def test_cli_errors_are_one_line(database_url: str) -> None:
    code, _, err = await payrecon(database_url, "apikey", "revoke", "prk_missing")
    assert code != 0
    assert err.strip().splitlines() == ["payrecon: no API key with prefix or id 'prk_missing'"]
    code, _, err = await payrecon(database_url, "apikey", "create", "--name", "x", "--scope", "orders:delete")
    assert code != 0
    assert "orders:delete" in err


async def test_key_cache_saves_the_lookup_and_keeps_only_keys_that_verified(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        created = await apikeys.create(conn, "cached", ["orders:read"])
    lookups: list[str] = []
    async with pool.acquire() as conn:
        conn.add_query_logger(lambda record: lookups.append(record.query))
        cache = apikeys.KeyCache(60.0)
        assert await cache.authenticate(conn, created.key) == await cache.authenticate(conn, created.key)
        await asyncio.sleep(0.01)
        assert len([q for q in lookups if "from api_keys" in q]) == 1  # the second came from the cache
        wrong = created.api_key.prefix + "_" + "x" * 43
        assert await cache.authenticate(conn, wrong) is None
        assert await cache.authenticate(conn, wrong) is None
        await asyncio.sleep(0.01)  # asyncpg calls query loggers soon after, not during
        assert len([q for q in lookups if "from api_keys" in q]) == 3  # a wrong key is looked up every time


async def test_key_cache_is_bounded(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        keys = [(await apikeys.create(conn, f"k{i}", ["orders:read"])).key for i in range(5)]
        cache = apikeys.KeyCache(60.0, size=3)
        for key in keys:
            assert await cache.authenticate(conn, key) is not None
            assert len(cache) <= 3
