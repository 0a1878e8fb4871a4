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
        env.close()  # ScienceWorld: give back its simulator


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


def test_the_builtin_environments_declare_the_protocol_and_fork(shop_env):
    from eef.envs.protocol import SupportsFork, SupportsOracle, TextEnv
    from eef.envs.scienceworld import JvmPool, ScienceWorldEnv

    try:
        scienceworld = ScienceWorldEnv(JvmPool(), tasks=["find-animal"])  # no JVM starts before an episode
    except JavaNotFoundError:
        scienceworld = None
    envs = [shop_env, shop_env.fork()] + ([scienceworld, scienceworld.fork()] if scienceworld else [])
    for env in envs:
        assert TextEnv in type(env).__mro__
        assert isinstance(env, TextEnv) and isinstance(env, SupportsFork) and isinstance(env, SupportsOracle)
    assert shop_env.process_local and shop_env.metrics == {} and shop_env.agent_instruction is None
    if scienceworld:
        assert not scienceworld.process_local and scienceworld.agent_instruction and scienceworld.agent_example
        assert scienceworld.metrics == {"episode_retries": 0, "restore_divergences": 0}
        with scienceworld as env:  # the protocol's context manager gives the simulator back
            assert env is scienceworld
