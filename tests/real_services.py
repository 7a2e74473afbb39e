"""Helpers for tests that run against the real servers: each test leaves them as it found them.

The real servers are started once per session (Atlas alone takes about a minute), so a test that used
them is followed by a clean-up: the HDFS namespace emptied, every model unloaded from MLeap, and every
entity and every type the test made purged from Atlas.
"""

from __future__ import annotations

from typing import Any

import requests

ALL_ENTITY_TYPES = "_ALL_ENTITY_TYPES"  # Atlas's basic-search name for every entity type


def empty_hdfs(hdfs: Any) -> None:
    from hdfs import InsecureClient

    host, port = hdfs.namenodes[0]
    client = InsecureClient(f"http://{host}:{port}", user="hdfs")
    for name in client.list("/"):
        client.delete(f"/{name}", recursive=True)


def unload_mleap(mleap: Any) -> None:
    """A restart (3-4 s): the spring-boot API lists no models, so a restart is the sure way to none."""
    mleap.stop()
    mleap.start()


def purge_atlas(atlas: Any) -> None:
    """Delete, then purge, every entity, then drop the types made since start-up: the next test sees an
    Atlas with only its base types."""
    auth = (atlas.user, atlas.password)
    guids: list[str] = []
    for deleted in (False, True):
        offset = 0
        while True:
            body = {"typeName": ALL_ENTITY_TYPES, "excludeDeletedEntities": not deleted, "limit": 500, "offset": offset}
            answer = requests.post(f"{atlas.url}/api/atlas/v2/search/basic", json=body, auth=auth, timeout=60)
            answer.raise_for_status()
            entities = answer.json().get("entities") or []
            guids += [e["guid"] for e in entities]
            if len(entities) < 500:
                break
            offset += 500
    guids = sorted(set(guids))
    for start in range(0, len(guids), 100):
        chunk = guids[start : start + 100]
        requests.delete(f"{atlas.url}/api/atlas/v2/entity/bulk", params={"guid": chunk}, auth=auth, timeout=60)
        answer = requests.put(f"{atlas.url}/api/atlas/admin/purge/", json=chunk, auth=auth, timeout=60)
        answer.raise_for_status()
    drop_test_types(atlas)


def _typedef_names(atlas: Any) -> dict[str, str]:
    answer = requests.get(f"{atlas.url}/api/atlas/v2/types/typedefs/headers", auth=(atlas.user, atlas.password), timeout=60)
    answer.raise_for_status()
    return {header["name"]: header["category"] for header in answer.json()}


def remember_base_types(atlas: Any) -> None:
    """The types the server loaded at start-up (its models): purge_atlas keeps these and drops the rest."""
    atlas.base_types = frozenset(_typedef_names(atlas))


# a type is deleted only once nothing refers to it: relationships first, then subtypes before supertypes
_DELETE_ORDER = ("RELATIONSHIP", "CLASSIFICATION", "BUSINESS_METADATA", "ENTITY", "STRUCT", "ENUM")


def drop_test_types(atlas: Any) -> None:
    """Delete every type made since start-up (the `model` type, the tests' own): the next test starts from
    the base models, as on a fresh stand-in."""
    base = getattr(atlas, "base_types", None)
    if base is None:
        return
    auth = (atlas.user, atlas.password)
    made = {name: category for name, category in _typedef_names(atlas).items() if name not in base}
    for category in _DELETE_ORDER:
        left = sorted(name for name, c in made.items() if c == category)
        while left:
            refused = []
            for name in left:
                answer = requests.delete(f"{atlas.url}/api/atlas/v2/types/typedef/name/{name}", auth=auth, timeout=60)
                if answer.status_code >= 400:
                    refused.append((name, answer.status_code, answer.text[:300]))
            if len(refused) == len(left):  # no progress: something still refers to them
                raise AssertionError(f"Atlas keeps types a test made: {refused}")
            left = [name for name, _, _ in refused]


def unload_named(mleap: Any, *names: str) -> None:
    """Unload the named models from the MLeap host (spring-boot wants the JSON content type on DELETE):
    cheaper than a restart when a test knows what it loaded."""
    for name in names:
        answer = requests.delete(f"{mleap.url}/models/{name}", headers={"Content-Type": "application/json"}, timeout=30)
        assert answer.status_code in (200, 404), (name, answer.status_code, answer.text)
