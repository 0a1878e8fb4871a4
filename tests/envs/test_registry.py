import pytest

from eef.envs import make, option_problems, register, registered, unregister
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
        with pytest.raises(EefError, match="option colour: no such option; options: flavour"):
            make("mine-test", colour="red")
        with pytest.raises(EefError, match="option flavour: expected a string, got 3"):
            make("mine-test", flavour=3)
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


def test_option_types_are_checked_from_the_factory_annotations(shop_env):
    def make_typed(count: int = 1, rate: float = 0.5, names: list[str] | str | None = None, flag: bool = False):
        return shop_env

    register("typed-test", make_typed)
    try:
        assert option_problems("typed-test", {"count": 2, "rate": 1, "names": ["a"], "flag": True}) == []
        assert (
            option_problems("typed-test", {"names": "a"}) == [] and option_problems("typed-test", {"names": None}) == []
        )
        assert option_problems("typed-test", {"count": 2.5, "rate": "x", "names": 3, "flag": 1}) == [
            ("count", "expected an integer, got 2.5"),
            ("rate", "expected a number, got 'x'"),
            ("names", "expected a list or a string or null, got 3"),
            ("flag", "expected true or false, got 1"),
        ]
        assert option_problems("typed-test", {"count": True}) == [("count", "expected an integer, got True")]
    finally:
        unregister("typed-test")


def test_annotations_yaml_cannot_give_are_left_to_the_factory_and_kwargs_still_checked(shop_env, tmp_path):
    from pathlib import Path

    from eef.checks import FieldErrors

    def make_paths(data_dir: Path | None = None, size: tuple[int, int] = (1, 2), **rest: object):
        return shop_env

    def check(options):
        if options.get("size", (1, 2))[0] < 1:
            raise FieldErrors([("size", "must start at 1 or more")])

    register("paths-test", make_paths, check=check)
    try:
        assert option_problems("paths-test", {"data_dir": str(tmp_path), "size": [3, 4], "anything": 1}) == []
        assert option_problems("paths-test", {"size": [0, 4]}) == [("size", "must start at 1 or more")]
    finally:
        unregister("paths-test")


def test_webshop_episode_settings_are_checked_before_its_data_are_read():
    assert option_problems("webshop", {"data_dir": "/nowhere", "max_steps": 0, "reward_mode": "exact"}) == [
        ("max_steps", "must be at least 1, got 0"),
        ("reward_mode", "must be one of faithful, fixed, got 'exact'"),
    ]
    assert option_problems("webshop", {"data_dir": "/nowhere", "goals": "human", "prepared": "auto"}) == []


def test_a_registered_check_reports_values_out_of_range_without_building(shop_env):
    from eef.checks import FieldErrors

    built = []

    def make_ranged(size: int = 1):
        built.append(size)
        return shop_env

    def check(options):
        if options.get("size", 1) < 1:
            raise FieldErrors([("size", f"must be at least 1, got {options['size']}")])

    register("ranged-test", make_ranged, check=check)
    try:
        assert option_problems("ranged-test", {"size": 0}) == [("size", "must be at least 1, got 0")]
        with pytest.raises(EefError, match="environment 'ranged-test': option size: must be at least 1, got 0"):
            make("ranged-test", size=0)
        assert built == []
    finally:
        unregister("ranged-test")


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"goals": -5}, ("goals", "must be at least 1, got -5")),
        ({"groups": 0}, ("groups", "must be a number in [1, 54], got 0")),
        ({"goals": 150}, ("goals", "must be at least test + dev (200), got 150")),
        ({"goals_per_target": 0}, ("goals_per_target", "must be at least 1, got 0")),
        ({"max_steps": 0}, ("max_steps", "must be at least 1, got 0")),
        ({"view": "wide"}, ("view", "must be one of webshop, compact, got 'wide'")),
        ({"seed": "abc"}, ("seed", "expected an integer, got 'abc'")),
    ],
)
def test_the_shop_refuses_options_out_of_range_by_name(options, problem):
    assert option_problems("shop", options) == [problem]
    with pytest.raises(EefError, match=f"option {problem[0]}: "):
        make("shop", **options)
