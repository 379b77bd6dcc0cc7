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


def test_layer_sets_name_their_parameters():
    from patcher.layersets import LayerSet

    assert parameters(LayerSet.LSTM) == parameters(LayerSet.CONVLSTM)
    gru = parameters(LayerSet.GRU)
    assert [(p.name, p.inherits, p.gate) for p in gru] == [
        ("recurrent_activation_z", "recurrent_activation", "z"),
        ("recurrent_activation_r", "recurrent_activation", "r"),
    ]
