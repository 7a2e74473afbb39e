"""model-governance as an Airflow provider: its connection types name hooks that exist and declare them."""

from __future__ import annotations

import importlib


def test_provider_info_names_the_hooks_and_their_connection_types():
    from model_governance.provider import get_provider_info

    info = get_provider_info()
    assert info["package-name"] == "model-governance" and info["versions"]
    for entry in info["connection-types"]:
        module, _, name = entry["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        assert hook.conn_type == entry["connection-type"]
        behaviour = hook.get_ui_field_behaviour()
        assert set(behaviour) == {"hidden_fields", "relabeling", "placeholders"}
    assert {e["connection-type"] for e in info["connection-types"]} == {"atlas", "mleap"}


def test_hooks_test_their_connection_against_the_stand_ins(devstack):
    from model_governance.hooks.atlas import AtlasHook
    from model_governance.hooks.mleap import MLeapServingHook

    assert AtlasHook().test_connection()[0] is True
    assert MLeapServingHook().test_connection()[0] is True
    assert AtlasHook("atlas_default", timeout=1).cluster_name == "primary"


def test_the_hooks_own_extras_are_not_sent_as_headers(devstack):
    from model_governance.hooks.mleap import MLeapServingHook

    hook = MLeapServingHook()
    session = hook.get_conn()
    assert not {"api", "models_dir", "models_mount"} & {key.lower() for key in session.headers}
    assert hook.model_config == {
        "memoryTimeout": 180 * 24 * 3600 * 1000,
        "diskTimeout": 180 * 24 * 3600 * 1000,
    }
