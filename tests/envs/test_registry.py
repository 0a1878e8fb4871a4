import pytest

from eef.envs import make, register, registered, unregister
from eef.errors import EefError, UnknownNameError


def test_user_environment_registers_and_builds(shop_env):
    def make_mine(flavour: str = "plain"):
        """My environment."""
        shop_env.flavour = flavour
        return shop_env

    register("mine-test", make_mine)
    try:
        assert "mine-test" in [s.name for s in registered()]
        assert make("mine-test", flavour="spicy").flavour == "spicy"
        with pytest.raises(EefError, match="no option colour; options: flavour"):
            make("mine-test", colour="red")
        with pytest.raises(ValueError, match="already registered"):
            register("mine-test", make_mine)
    finally:
        unregister("mine-test")


def test_unknown_environment_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="unknown environment 'nope'; known: .*shop"):
        make("nope")


def test_an_unregistered_environment_is_gone_and_cannot_go_twice(shop_env):
    register("gone-test", lambda: shop_env)
    unregister("gone-test")
    assert "gone-test" not in [s.name for s in registered()]
    with pytest.raises(UnknownNameError, match="unknown environment 'gone-test'"):
        unregister("gone-test")
