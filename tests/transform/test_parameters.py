"""patches/parameters.toml: the five, in the order every expected output is written in."""

from patcher.spec import parameters


def test_parameters_are_the_five_in_order():
    assert tuple(parameter.name for parameter in parameters()) == (
        "activation_i",
        "activation_o",
        "recurrent_activation_f",
        "recurrent_activation_i",
        "recurrent_activation_o",
    )
