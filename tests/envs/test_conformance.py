import pytest

from eef.envs import make, registered
from eef.envs.conformance import check_env
from eef.envs.scienceworld.java import JavaNotFoundError


def test_every_registered_environment_keeps_the_protocol(webshop_1k_dir):
    options = {"webshop": {"data_dir": str(webshop_1k_dir)}}
    names = [spec.name for spec in registered()]
    assert {"shop", "webshop"} <= set(names)
    for name in names:
        try:
            env = make(name, **options.get(name, {}))
        except JavaNotFoundError:  # ScienceWorld without Java: tests/envs/scienceworld skips with the reason
            continue
        check_env(env)
        getattr(env, "close", lambda: None)()  # ScienceWorld: stop its JVM


def test_check_env_catches_a_broken_restore(shop_env):
    class NoRestore:
        def __getattr__(self, attr):
            return getattr(shop_env, attr)

        def restore(self, snapshot):  # forgets to restore
            pass

    broken = NoRestore()
    broken.name, broken.max_steps, broken.supports_snapshot = "broken", 10, True
    with pytest.raises(AssertionError, match="restore"):
        check_env(broken, ["search[cotton shirt]", "click[next >]", "click[next >]"])
