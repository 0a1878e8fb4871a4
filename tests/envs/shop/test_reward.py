from eef.envs.shop.reward import count_option_matches, normalize_color


def test_colour_normalisation_takes_the_first_contained_colour_word():
    assert normalize_color("navy blue") == "blue"
    assert normalize_color("light blue") == "blue"
    assert normalize_color("rectangular") == "tan"
    assert normalize_color("webshop") == "webshop"


def test_goal_pairs_make_values_with_hidden_colour_words_unmatchable():
    # WebShop's (name, value) quirk: the bought value becomes "tan", the goal stays "shape rectangular".
    assert count_option_matches(["rectangular"], [("shape", "rectangular")]) == 0
    assert count_option_matches(["rectangular"], ["rectangular"]) == 1
    assert count_option_matches(["navy blue"], [("color", "light blue")]) == 1


def test_one_bought_option_may_match_several_goal_options():
    assert count_option_matches(["large"], [("size", "large"), ("fit", "large")]) == 2
